"""IPv4 (with options) and IPv6 (with extension headers), fragments flagged.

Both decoders return the same tuple shape, `IpHeader`:
``(src, dst, protocol, ttl, ip_id, fragment_offset, more_fragments, payload_offset, end)``
where ``src``/``dst`` are the packed addresses (4 or 16 bytes), ``protocol`` is the upper-layer
protocol after every extension header (and AH) we skipped, ``fragment_offset`` is in bytes, and
``end`` is where the IP payload ends in the frame: the header's own length field says so, which
drops Ethernet padding, clipped to the captured bytes (a snaplen cut is not an error here).
"""

from __future__ import annotations

import struct

from pipeline.decode.errors import REASON_LIMIT, REASON_MALFORMED, REASON_TRUNCATED, DecodeStop

IpHeader = tuple[bytes, bytes, int, int, int, int, bool, int, int]

PROTO_HOPOPTS = 0
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_AH = 51
PROTO_NONE = 59  # IPv6 "no next header"
PROTO_DSTOPTS = 60
PROTO_MOBILITY = 135
PROTO_HIP = 139
PROTO_SHIM6 = 140

# Extension headers shaped as (next header, length in 8-octet units - 1, ...).
IPV6_GENERIC_EXTENSIONS = frozenset(
    (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_MOBILITY, PROTO_HIP, PROTO_SHIM6)
)

# Real stacks emit a handful of extension headers; denial-of-service traffic chains hundreds to
# exhaust parsers. Past this many we stop and report it (RFC 8200 sets no limit; Linux uses a
# similar bound for its own walk).
MAX_IPV6_EXTENSION_HEADERS = 32

# One struct call per fixed header is ~3x faster than indexing the fields one by one.
_ipv4_header = struct.Struct("!BxHHHBB2x4s4s").unpack_from
_ipv6_header = struct.Struct("!B3xHBB16s16s").unpack_from


def _truncated(layer: str, have: int, need: int) -> DecodeStop:
    return DecodeStop(REASON_TRUNCATED, layer, f"{have} bytes left, header needs {need}")


def skip_ah(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """Authentication Header (RFC 4302): length in 4-octet units minus 2. Returns (next, off)."""
    if end - off < 8:
        raise _truncated("ah", end - off, 8)
    length = (buf[off + 1] + 2) * 4
    if end - off < length:
        raise _truncated("ah", end - off, length)
    return buf[off], off + length


def ipv4(buf: bytes, off: int) -> IpHeader:
    n = len(buf)
    if n - off < 20:
        raise _truncated("ipv4", n - off, 20)
    version_ihl, total_len, ip_id, flags_fragment, ttl, protocol, src, dst = _ipv4_header(buf, off)
    if version_ihl >> 4 != 4:
        raise DecodeStop(REASON_MALFORMED, "ipv4", f"version {version_ihl >> 4} in an IPv4 header")
    header_len = (version_ihl & 0x0F) * 4
    if header_len < 20:
        raise DecodeStop(REASON_MALFORMED, "ipv4", f"header length {header_len} < 20")
    if n - off < header_len:
        raise _truncated("ipv4", n - off, header_len)
    if total_len == 0:
        # TCP segmentation offload: the NIC fills the length in later, so captures taken on the
        # sending host carry 0. Wireshark takes the captured length then; so do we.
        end = n
    elif total_len < header_len:
        raise DecodeStop(
            REASON_MALFORMED, "ipv4", f"total length {total_len} < header length {header_len}"
        )
    else:
        end = off + total_len
        if end > n:
            end = n
    payload_off = off + header_len
    fragment_offset = (flags_fragment & 0x1FFF) * 8
    if protocol == PROTO_AH and not fragment_offset:
        protocol, payload_off = skip_ah(buf, payload_off, end)
    return (
        src,
        dst,
        protocol,
        ttl,
        ip_id,
        fragment_offset,
        bool(flags_fragment & 0x2000),
        payload_off,
        end,
    )


def ipv6(buf: bytes, off: int) -> IpHeader:
    n = len(buf)
    if n - off < 40:
        raise _truncated("ipv6", n - off, 40)
    version, payload_len, nxt, hop_limit, src, dst = _ipv6_header(buf, off)
    if version >> 4 != 6:
        raise DecodeStop(REASON_MALFORMED, "ipv6", f"version {version >> 4} in an IPv6 header")
    # Payload length 0 means a jumbogram (RFC 2675) or offload: the frame decides.
    end = n if payload_len == 0 else min(n, off + 40 + payload_len)
    off += 40
    fragment_offset = 0
    more_fragments = False
    ip_id = 0
    chain = 0
    while True:
        if nxt in IPV6_GENERIC_EXTENSIONS:
            if end - off < 8:
                raise _truncated("ipv6-ext", end - off, 8)
            length = (buf[off + 1] + 1) * 8
            if end - off < length:
                raise _truncated("ipv6-ext", end - off, length)
            nxt = buf[off]
            off += length
        elif nxt == PROTO_FRAGMENT:
            if end - off < 8:
                raise _truncated("ipv6-frag", end - off, 8)
            offset_flags = buf[off + 2] << 8 | buf[off + 3]
            fragment_offset = offset_flags & 0xFFF8
            more_fragments = bool(offset_flags & 1)
            ip_id = int.from_bytes(buf[off + 4 : off + 8], "big")
            nxt = buf[off]
            off += 8
            if fragment_offset:  # later fragments carry no upper-layer header
                break
        elif nxt == PROTO_AH:
            nxt, off = skip_ah(buf, off, end)
        else:
            break
        chain += 1
        if chain > MAX_IPV6_EXTENSION_HEADERS:
            raise DecodeStop(
                REASON_LIMIT, "ipv6-ext", f"more than {MAX_IPV6_EXTENSION_HEADERS} headers"
            )
    return src, dst, nxt, hop_limit, ip_id, fragment_offset, more_fragments, off, end
