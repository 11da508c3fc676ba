#!/usr/bin/env python3
"""Write a deterministic, realistic synthetic capture for benchmarks and tests.

    scripts/gen_capture.py --packets N --seed S -o FILE [--format pcap|pcapng] [--nanosecond]

A thin wrapper around `pipeline.gen.capture_mix.main`, runnable from a checkout without
installing the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Make `pipeline` importable when run as a script from a checkout (not installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.gen.capture_mix import main

if __name__ == "__main__":
    sys.exit(main())
