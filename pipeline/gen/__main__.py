"""`python -m pipeline.gen --packets N --seed S -o FILE [--profile NAME]`: write a capture."""

import sys

from pipeline.gen.capture_mix import main

sys.exit(main())
