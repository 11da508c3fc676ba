"""L2–L4 decoding of one frame: a pure function of (link type, bytes) → `Packet`.

This is the per-packet hot path, hand-written over bytes indexing because dpkt's object
decoding costs ~10 µs a packet (NOTES.md: 85k packets/s for Reader + Ethernet + a dict) and
this path must do framing, decoding, mapping and compression in under 7 µs. A test checks it
agrees with dpkt on every packet of ../shared/captures (tests/test_decode_vs_dpkt.py).

Shape: three table look-ups (link, network, transport), each layer a small function in its
own module returning a fixed-shape tuple; a layer that cannot go on raises `DecodeStop`, and
whatever layers were decoded before it stay on the `Packet` (an anomaly event still names the
addresses of a packet whose TCP header is cut short).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from pipeline.decode.errors import REASON_DECODER_ERROR, REASON_UNSUPPORTED_LINK, DecodeStop
from pipeline.decode.ip import ipv4, ipv6
from pipeline.decode.link import (
    ETH_IPV4,
    ETH_IPV6,
    ETH_TEB,
    LINK_DECODERS,
    LinkHeader,
    ethernet_at,
    ethertype_payload,
)
from pipeline.decode.transport import (
    PROTO_TCP,
    TRANSPORT_DECODERS,
    recognised_only,
    tcp_first_fragment,
)


class Packet(NamedTuple):
    """What L2–L4 decoding learnt about one frame. None means "not present / not reached"."""

    link_type: int
    dst_mac: bytes | None
    src_mac: bytes | None
    vlan_id: int | None  # outermost 802.1Q/802.1ad tag
    inner_vlan_id: int | None  # second tag (QinQ)
    ethertype: int | None  # what the link layer carries (EtherType numbers, 0 = LLC)
    ip_version: int | None  # 4 or 6: the outermost IP header
    src_ip: bytes | None  # packed, 4 or 16 bytes
    dst_ip: bytes | None
    protocol: int | None  # IANA number of the header after IP (extension headers skipped)
    ttl: int | None  # IPv4 TTL or IPv6 hop limit
    ip_id: int | None  # IPv4 identification, or IPv6 fragment header identification
    fragment_offset: int | None  # bytes
    more_fragments: bool | None
    src_port: int | None  # TCP, UDP, SCTP
    dst_port: int | None
    tcp_flags: int | None  # 9 bits: FIN=0x01 ... CWR=0x80, NS=0x100
    tcp_seq: int | None
    tcp_ack: int | None
    tcp_window: int | None
    icmp_type: int | None
    icmp_code: int | None
    payload_offset: int | None  # where the transport payload starts in the frame
    payload_end: int | None  # where it ends (IP length, clipped to the captured bytes)
    error: str | None  # an errors.REASON_* when the frame could not be fully decoded
    error_layer: str | None
    error_detail: str | None

    @property
    def is_fragment(self) -> bool:
        return bool(self.fragment_offset or self.more_fragments)


_new_packet = tuple.__new__
_link_decoders_get = LINK_DECODERS.get
_transport_decoders_get = TRANSPORT_DECODERS.get


# The common frame, Ethernet + IPv4 without options, in one struct call (through the IPv4
# addresses), and the TCP fixed header in another.
_ethernet_ipv4 = struct.Struct("!6s6sHBxHHHBB2x4s4s").unpack_from
_tcp_header = struct.Struct("!HHIIBBH").unpack_from
_udp_ports = struct.Struct("!HH").unpack_from


def decode_packet(link_type: int, buf: bytes) -> Packet:
    """Decode one frame's link, network and transport headers. Never raises.

    Ethernet + IPv4 (no options, not a fragment) + TCP or UDP — most of any capture — takes
    a fused path: two struct calls and no layer calls (~0.8 µs against ~1.7 µs). Anything
    it is not sure of goes the general way; tests/test_decode.py checks the two agree on
    every packet of the reference captures and on mutated packets.
    """
    if link_type == 1 and len(buf) >= 54:
        (dst_mac, src_mac, ethertype, version_ihl, total_len, ip_id, flags_fragment, ttl,
         protocol, src_ip, dst_ip) = _ethernet_ipv4(buf, 0)  # fmt: skip
        if (
            ethertype == 0x0800
            and version_ihl == 0x45
            and not flags_fragment & 0x3FFF
            and 20 <= total_len <= len(buf) - 14
        ):
            end = 14 + total_len
            if protocol == 6 and end >= 54:
                src_port, dst_port, seq, ack, offset_ns, flags, window = _tcp_header(buf, 34)
                data_offset = (offset_ns >> 4) * 4
                if 20 <= data_offset <= end - 34:
                    return _new_packet(
                        Packet,
                        (1, dst_mac, src_mac, None, None, 0x0800, 4, src_ip, dst_ip, 6, ttl,
                         ip_id, 0, False, src_port, dst_port, (offset_ns & 1) << 8 | flags,
                         seq, ack, window, None, None, 34 + data_offset, end, None, None,
                         None),
                    )  # fmt: skip
            elif protocol == 17 and end >= 42:
                src_port, dst_port = _udp_ports(buf, 34)
                return _new_packet(
                    Packet,
                    (1, dst_mac, src_mac, None, None, 0x0800, 4, src_ip, dst_ip, 17, ttl, ip_id,
                     0, False, src_port, dst_port, None, None, None, None, None, None, 42, end,
                     None, None, None),
                )  # fmt: skip
    return decode_packet_layered(link_type, buf)


def decode_packet_layered(link_type: int, buf: bytes) -> Packet:
    """The general decoder: one table look-up and one function per layer."""
    link = _link_decoders_get(link_type)
    if link is None:
        link = partial(_unsupported_link, link_type)
    return _decode_layers(link_type, buf, link)


def _unsupported_link(link_type: int, buf: bytes) -> LinkHeader:
    raise DecodeStop(REASON_UNSUPPORTED_LINK, "link", f"link type {link_type}")


def _decode_layers(link_type: int, buf: bytes, link: Callable[[bytes], LinkHeader]) -> Packet:
    """`link` reads the first header (a link layer, or a tunnel's inner start), then one
    function per layer: the general path of `decode_packet` and of `decode_from`."""
    dst_mac = src_mac = vlan_id = inner_vlan_id = ethertype = None
    ip_version = src_ip = dst_ip = protocol = ttl = ip_id = fragment_offset = None
    more_fragments = None
    src_port = dst_port = tcp_flags = tcp_seq = tcp_ack = tcp_window = None
    icmp_type = icmp_code = payload_offset = payload_end = None
    error = error_layer = error_detail = None
    try:
        dst_mac, src_mac, vlan_id, inner_vlan_id, ethertype, off = link(buf)
        if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
            ip_version = 4 if ethertype == ETH_IPV4 else 6
            (
                src_ip,
                dst_ip,
                protocol,
                ttl,
                ip_id,
                fragment_offset,
                more_fragments,
                off,
                end,
            ) = (ipv4 if ip_version == 4 else ipv6)(buf, off)
            if fragment_offset:
                # A later fragment: its payload is the middle of a datagram, no L4 header.
                payload_offset, payload_end = off, end
            else:
                if more_fragments and protocol == PROTO_TCP:
                    transport = tcp_first_fragment
                else:
                    transport = _transport_decoders_get(protocol, recognised_only)
                (
                    src_port,
                    dst_port,
                    tcp_flags,
                    tcp_seq,
                    tcp_ack,
                    tcp_window,
                    icmp_type,
                    icmp_code,
                    payload_offset,
                ) = transport(buf, off, end)
                payload_end = end
    except DecodeStop as stop:
        error, error_layer, error_detail = stop.reason, stop.layer, stop.detail
    except Exception as exc:  # a bug in a decoder must cost one packet, never the run
        error, error_layer, error_detail = REASON_DECODER_ERROR, "decode", repr(exc)
    return _new_packet(
        Packet,
        (
            link_type,
            dst_mac,
            src_mac,
            vlan_id,
            inner_vlan_id,
            ethertype,
            ip_version,
            src_ip,
            dst_ip,
            protocol,
            ttl,
            ip_id,
            fragment_offset,
            more_fragments,
            src_port,
            dst_port,
            tcp_flags,
            tcp_seq,
            tcp_ack,
            tcp_window,
            icmp_type,
            icmp_code,
            payload_offset,
            payload_end,
            error,
            error_layer,
            error_detail,
        ),
    )


def decode_from(
    link_type: int, ethertype: int, buf: bytes, off: int, end: int | None = None
) -> Packet:
    """Decode a packet that starts inside `buf` at `off`: a tunnel's inner packet. Never raises.

    `ethertype` names the header at `off` in EtherType numbers, as a link layer would: `ETH_TEB`
    for an Ethernet header, `ETH_IPV4`/`ETH_IPV6` for an IP header, a VLAN, MPLS or PPPoE
    EtherType for those; any other value is recorded and the packet stops there, decoded.
    Headers end at `end` (the outer IP payload's end), so an inner length field cannot reach
    into what follows the outer packet (Ethernet padding). Offsets in the `Packet` are into
    `buf`; `link_type` is the outer frame's, carried over.

    The network and transport steps are `decode_packet_layered`'s (`_decode_layers`);
    tests/test_tunnel.py checks the two agree on every frame of the tunnel captures.
    """
    if end is not None and end < len(buf):
        # A prefix copy keeps every offset valid; only tunnelled packets pay for it.
        buf = buf[:end]
    return _decode_layers(link_type, buf, partial(_inner_start, ethertype, off))


def _inner_start(ethertype: int, off: int, buf: bytes) -> LinkHeader:
    """The first header of a tunnel's inner packet, as a link decoder would return it."""
    if ethertype == ETH_TEB:
        return ethernet_at(buf, off)
    if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:
        return None, None, None, None, ethertype, off
    vlan_id, inner_vlan_id, ethertype, off = ethertype_payload(buf, ethertype, off)
    return None, None, vlan_id, inner_vlan_id, ethertype, off
