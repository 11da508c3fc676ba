#!/usr/bin/env python3
"""Write a deterministic, realistic synthetic capture for benchmarks and tests.

    scripts/gen_capture.py --packets N --seed S -o FILE [--profile NAME] [--flows F]
                           [--format pcap|pcapng] [--nanosecond]

`--profile` is one of the named workloads of `pipeline.gen.profiles` (default `mixed`, the
realistic mix); `--help` lists them. `--flows` sets the number of connections of
`ooo-holes` (default packets // 50) and `small-flood` (default 16).

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
