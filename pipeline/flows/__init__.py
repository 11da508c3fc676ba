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

from pipeline.flows.defrag import (
    DONE_LINGER_NS,
    FRAGMENT_TIMEOUT_NS,
    IPV4_MAX_DATAGRAM_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_DONE_KEYS,
    MAX_PENDING_BYTES,
    MAX_PENDING_DATAGRAMS,
    MAX_PENDING_FRAGMENTS,
    Defragmenter,
)

__all__ += [
    "DONE_LINGER_NS",
    "FRAGMENT_TIMEOUT_NS",
    "IPV4_MAX_DATAGRAM_BYTES",
    "MAX_DATAGRAM_BYTES",
    "MAX_DONE_KEYS",
    "MAX_PENDING_BYTES",
    "MAX_PENDING_DATAGRAMS",
    "MAX_PENDING_FRAGMENTS",
    "Defragmenter",
]
