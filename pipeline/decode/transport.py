"""Transport layers: TCP (with options), UDP, ICMP, ICMPv6, SCTP; GRE and ESP recognised.

Every decoder takes ``(buf, off, end)`` — the IP payload is ``buf[off:end]`` — and returns the
same tuple shape, `TransportHeader`:
``(src_port, dst_port, tcp_flags, tcp_seq, tcp_ack, tcp_window, icmp_type, icmp_code,
payload_offset)``; fields a protocol does not have are None. One shape keeps the packet decoder
a single table look-up (`TRANSPORT_DECODERS`), with no per-protocol branches.

GRE and ESP are recognised (named in the event) but not looked into here: tunnels are
decapsulated by the flow layer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pipeline.decode.errors import REASON_MALFORMED, REASON_TRUNCATED, DecodeStop

TransportHeader = tuple[
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int | None,
    int,
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ESP = 50
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
PROTO_UDPLITE = 136

# ECS `network.transport`: the IANA protocol keyword, lower case.
TRANSPORT_NAMES: dict[int, str] = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipv4",  # IP-in-IP
    6: "tcp",
    17: "udp",
    41: "ipv6",  # 6in4
    46: "rsvp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    59: "ipv6-nonxt",
    88: "eigrp",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
    136: "udplite",
}

# One struct call per fixed header is ~3x faster than indexing the fields one by one.
_tcp_header = struct.Struct("!HHIIBBH").unpack_from
_ports = struct.Struct("!HH").unpack_from


def _truncated(layer: str, have: int, need: int) -> DecodeStop:
    return DecodeStop(REASON_TRUNCATED, layer, f"{have} bytes left, header needs {need}")


def tcp(buf: bytes, off: int, end: int) -> TransportHeader:
    return _tcp(buf, off, end, False)


def tcp_first_fragment(buf: bytes, off: int, end: int) -> TransportHeader:
    """TCP in the first fragment of a datagram: the options may go on in the next fragment.

    The fixed header must be here; options cut by the fragment boundary are expected, not an
    error (the payload then starts in a later fragment).
    """
    return _tcp(buf, off, end, True)


def _tcp(buf: bytes, off: int, end: int, options_may_be_cut: bool) -> TransportHeader:
    if end - off < 20:
        raise _truncated("tcp", end - off, 20)
    src_port, dst_port, seq, ack, offset_ns, flags, window = _tcp_header(buf, off)
    data_offset = (offset_ns >> 4) * 4
    if data_offset < 20:
        raise DecodeStop(REASON_MALFORMED, "tcp", f"data offset {data_offset} < 20")
    if end - off < data_offset:
        if options_may_be_cut:
            data_offset = end - off
        else:
            # The options run past the captured bytes: the fixed header is sound, the rest is not.
            raise _truncated("tcp", end - off, data_offset)
    # NS bit + the eight classic flags.
    return (
        src_port,
        dst_port,
        (offset_ns & 1) << 8 | flags,
        seq,
        ack,
        window,
        None,
        None,
        (off + data_offset),
    )


def udp(buf: bytes, off: int, end: int) -> TransportHeader:
    if end - off < 8:
        raise _truncated("udp", end - off, 8)
    src_port, dst_port = _ports(buf, off)
    return src_port, dst_port, None, None, None, None, None, None, off + 8


def sctp(buf: bytes, off: int, end: int) -> TransportHeader:
    if end - off < 12:
        raise _truncated("sctp", end - off, 12)
    src_port, dst_port = _ports(buf, off)
    return src_port, dst_port, None, None, None, None, None, None, off + 12


def icmp(buf: bytes, off: int, end: int) -> TransportHeader:
    """ICMP and ICMPv6 share the type/code/checksum header (the body differs per type)."""
    if end - off < 4:
        raise _truncated("icmp", end - off, 4)
    return None, None, None, None, None, None, buf[off], buf[off + 1], off + 4


def recognised_only(buf: bytes, off: int, end: int) -> TransportHeader:
    """GRE, ESP and other protocols we name but whose header this layer does not read."""
    return None, None, None, None, None, None, None, None, off


TRANSPORT_DECODERS: dict[int, Callable[[bytes, int, int], TransportHeader]] = {
    PROTO_TCP: tcp,
    PROTO_UDP: udp,
    PROTO_UDPLITE: udp,
    PROTO_ICMP: icmp,
    PROTO_ICMPV6: icmp,
    PROTO_SCTP: sctp,
}

TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")
