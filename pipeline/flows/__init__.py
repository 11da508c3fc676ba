"""Flows and reassembly: pure state trackers over decoded packets. No I/O here."""

from pipeline.flows.reassembly import (
    MAX_AHEAD_BYTES,
    MAX_BEHIND_BYTES,
    MAX_BUFFERED_BYTES,
    MAX_BUFFERED_SEGMENTS,
    SEQ_MOD,
    StreamReassembler,
)

__all__ = [
    "MAX_AHEAD_BYTES",
    "MAX_BEHIND_BYTES",
    "MAX_BUFFERED_BYTES",
    "MAX_BUFFERED_SEGMENTS",
    "SEQ_MOD",
    "StreamReassembler",
]
