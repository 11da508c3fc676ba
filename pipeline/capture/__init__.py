"""Capture framing: turn a pcap or pcapng file (plain, compressed, or on stdin) into frames.

    with open_capture("x.pcap.gz") as cap:
        for batch in cap.batches():
            for item in batch:
                if type(item) is Frame: ...          # a packet: where, when, which bytes
                else: ...                            # a FramingError: a record we could not read

Modules: `frame` (the output types), `walker` (the sans-IO contract), `pcap` and `pcapng`
(one record walker per format), `source` (files, mmap, decompression, stdin, `Capture`).
"""

from pipeline.capture.frame import (
    REASON_LENGTH,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    Frame,
    FramingError,
)
from pipeline.capture.source import Capture, CaptureOpenError, open_capture, open_stream

__all__ = [
    "REASON_LENGTH",
    "REASON_MALFORMED",
    "REASON_TRUNCATED",
    "Capture",
    "CaptureOpenError",
    "Frame",
    "FramingError",
    "open_capture",
    "open_stream",
]
