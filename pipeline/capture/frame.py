"""What capture framing produces: frames (packet references) and framing errors.

Framing walks a capture's record headers and nothing else. It yields, in file order, one
`Frame` per packet record and one `FramingError` per record it could not read (a bad length,
a cut-short record). Both count as a frame read, so that the accounting
``frames read = frames decoded + frames reported as anomalies`` holds per file.

`Frame` is a plain tuple on purpose: it is made once per packet on the hot path, and the
multiprocess runtime sends batches of them (without ``data``) to worker processes.
"""

from __future__ import annotations

from typing import NamedTuple


class Frame(NamedTuple):
    """One captured packet: where it is, when it was seen, and (usually) its bytes."""

    index: int  # 1-based frame number within the capture, as tshark and Wireshark count
    ts_ns: int  # capture timestamp, nanoseconds since the Unix epoch (tsoffset applied)
    offset: int  # byte offset of the packet data in the (decompressed) capture stream
    caplen: int  # bytes captured (== len(data) when data is present)
    origlen: int  # length of the packet on the wire
    interface: int  # interface number, unique across pcapng sections (0 for classic pcap)
    link_type: int  # LINKTYPE_* value of the interface the packet was captured on
    data: bytes | None  # the captured bytes; None when only references were asked for


class FramingError(NamedTuple):
    """A record that could not be read. `reason` is one of the REASON_* values below."""

    index: int  # the frame number this record would have had
    offset: int  # byte offset of the bad record header in the (decompressed) stream
    reason: str
    detail: str  # one human line: what was wrong, with the numbers
    fatal: bool  # True when the reader stopped reading this capture here
    # The last good frame's timestamp (a bad record has none of its own): -1 until whoever
    # sees the frames in order fills it in (the multiprocess reader, before it splits a batch).
    ts_ns: int = -1


# Typed reasons for a record that cannot be read. They become anomaly event reasons.
REASON_LENGTH = "length_error"  # a length field out of bounds (caplen, block length, ...)
REASON_TRUNCATED = "truncated"  # the capture ends inside a record
REASON_MALFORMED = "malformed"  # a record that is structurally wrong in another way
