"""Synthetic capture generation for benchmarks and tests (see `capture_mix`, `profiles`)."""

from pipeline.gen.capture_mix import iter_frames, main, write_capture
from pipeline.gen.profiles import PROFILES

__all__ = ["PROFILES", "iter_frames", "main", "write_capture"]
