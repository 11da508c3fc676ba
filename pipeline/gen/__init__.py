"""Synthetic capture generation for benchmarks and tests (see `capture_mix`)."""

from pipeline.gen.capture_mix import iter_frames, main, write_capture

__all__ = ["iter_frames", "main", "write_capture"]
