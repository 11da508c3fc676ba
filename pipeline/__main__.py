"""`python -m pipeline ...` is `pcap-ingest ...`."""

import sys

from pipeline.cli import main

sys.exit(main())
