"""Why a frame could not be fully decoded: the typed reasons anomaly events carry.

*Truncated* is not *malformed* (dpkt's NeedData / UnpackError split): a truncated frame ends
before a header does — a short capture or a cut-off packet; a malformed one has a field whose
value cannot be right (an IPv4 header length under 20 bytes, an IP version that disagrees with
the EtherType). Decoders raise `DecodeStop`; the packet decoder turns it into data.
"""

from __future__ import annotations

REASON_TRUNCATED = "truncated"  # the frame ends inside a header
REASON_MALFORMED = "malformed"  # a header field holds an impossible value
REASON_UNSUPPORTED_LINK = "unsupported_link_type"  # no decoder for the capture's link type
REASON_LIMIT = "limit_exceeded"  # a named cap was hit (tag depth, extension header chain)
REASON_DECODER_ERROR = "decoder_error"  # an exception our decoder did not expect: a bug


class DecodeStop(Exception):
    """Raised by a layer decoder: ``DecodeStop(reason, layer, detail)``.

    Cheap on the hot path: Python's try/except costs nothing until something is raised, and
    only bad frames raise.
    """

    def __init__(self, reason: str, layer: str, detail: str) -> None:
        super().__init__(reason, layer, detail)
        self.reason = reason
        self.layer = layer
        self.detail = detail
