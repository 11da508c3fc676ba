"""The flow an ICMP error message quotes. Pure.

An ICMP error (destination unreachable, time exceeded, parameter problem, source quench,
redirect; ICMPv6 1-4) carries the start of the datagram that caused it: its IP header and at
least 8 bytes after it (RFC 792, RFC 4443 2.4) — enough for the ports. `quoted_flow` reads
them, so an error can be linked to the connection it is about (by the Community ID of that
connection, which its flow and packet events carry). Quoted IPv6 extension headers are walked;
a quote cut before the ports gives the addresses and protocol alone.
"""

from __future__ import annotations

from typing import NamedTuple

# ICMP types that quote the offending datagram, by IP protocol (1: ICMPv4, 58: ICMPv6).
ERROR_TYPES: dict[int, frozenset[int]] = {
    1: frozenset((3, 4, 5, 11, 12)),
    58: frozenset((1, 2, 3, 4)),
}
# The type-specific word after type, code and checksum, before the quoted datagram.
QUOTE_OFFSET = 4
_IPV6_EXTENSIONS = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_EXTENSIONS = 8
_PORTED = frozenset((6, 17, 132, 136))  # TCP, UDP, SCTP, UDP-Lite
_ICMPS = frozenset((1, 58))


class QuotedFlow(NamedTuple):
    ip_version: int
    protocol: int
    src_ip: bytes
    dst_ip: bytes
    src_port: int | None  # the ports, or a quoted ICMP message's type and code
    dst_port: int | None


def is_error(protocol: int, icmp_type: int) -> bool:
    types = ERROR_TYPES.get(protocol)
    return types is not None and icmp_type in types


def quoted_flow(buf: bytes, start: int, end: int) -> QuotedFlow | None:
    """The flow of the datagram quoted from `start` (after the ICMP type-specific word) to
    `end` in `buf`, or None when the quote is not a readable IP header."""
    if end - start < 20:
        return None
    version = buf[start] >> 4
    if version == 4:
        header_len = (buf[start] & 0x0F) * 4
        if header_len < 20 or end - start < 20:
            return None
        protocol = buf[start + 9]
        src, dst = bytes(buf[start + 12 : start + 16]), bytes(buf[start + 16 : start + 20])
        off = start + header_len
        if (int.from_bytes(buf[start + 6 : start + 8], "big") & 0x1FFF) != 0:
            return QuotedFlow(4, protocol, src, dst, None, None)  # a later fragment: no ports
    elif version == 6:
        if end - start < 40:
            return None
        protocol = buf[start + 6]
        src, dst = bytes(buf[start + 8 : start + 24]), bytes(buf[start + 24 : start + 40])
        off = start + 40
        for _ in range(_MAX_EXTENSIONS):
            if protocol in _IPV6_EXTENSIONS and end - off >= 2:
                protocol, off = buf[off], off + (buf[off + 1] + 1) * 8
            elif protocol == _IPV6_FRAGMENT and end - off >= 8:
                if int.from_bytes(buf[off + 2 : off + 4], "big") >> 3:
                    return QuotedFlow(6, buf[off], src, dst, None, None)
                protocol, off = buf[off], off + 8
            else:
                break
    else:
        return None
    if protocol in _PORTED and end - off >= 4:
        sport = int.from_bytes(buf[off : off + 2], "big")
        dport = int.from_bytes(buf[off + 2 : off + 4], "big")
        return QuotedFlow(version, protocol, src, dst, sport, dport)
    if protocol in _ICMPS and end - off >= 2:
        return QuotedFlow(version, protocol, src, dst, buf[off], buf[off + 1])
    return QuotedFlow(version, protocol, src, dst, None, None)
