"""`python -m pipeline.gen --packets N --seed S -o FILE`: write a synthetic capture."""

import sys

from pipeline.gen.capture_mix import main

sys.exit(main())
