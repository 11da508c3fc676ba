"""Link layers: Ethernet (802.1Q/802.1ad tags, MPLS, PPPoE), Linux SLL/SLL2, NULL/LOOP, raw IP.

Every decoder takes the frame bytes and returns the same tuple shape, `LinkHeader`:
``(dst_mac, src_mac, vlan_id, inner_vlan_id, ethertype, network_offset)``. ``ethertype`` names
what follows at ``network_offset`` with EtherType numbers even where the link layer does not
(an address family, a PPP protocol, the first nibble of a raw IP header), so the network layer
has one table to dispatch on. A frame that carries no network layer we decode (ARP, LLDP, an
802.3 LLC frame) returns its EtherType (or 0 for LLC) and the packet stops there, decoded.

`LINK_DECODERS` maps a LINKTYPE_* number (https://www.tcpdump.org/linktypes.html) to its
decoder; unknown link types are the packet decoder's to report.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pipeline.decode.errors import REASON_LIMIT, REASON_MALFORMED, REASON_TRUNCATED, DecodeStop

LinkHeader = tuple[bytes | None, bytes | None, int | None, int | None, int, int]

# EtherTypes we look behind.
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = 0x8100  # 802.1Q customer tag
ETH_QINQ = 0x88A8  # 802.1ad service tag
ETH_QINQ_OLD = 0x9100  # pre-standard QinQ tag, still seen on old switches
ETH_MPLS = 0x8847
ETH_MPLS_MCAST = 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_TEB = 0x6558  # Transparent Ethernet Bridging: an Ethernet frame follows (GRE, Geneve)
VLAN_TPIDS = frozenset((ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD))

# A frame may stack tags, but real networks use two (QinQ), rarely three; past this many it is
# a loop in hostile or corrupt data, so we stop and report it.
MAX_VLAN_TAGS = 8
# MPLS label stacks are short (VPN + transport + entropy labels); the cap bounds the walk.
MAX_MPLS_LABELS = 16

# PPP protocol numbers inside PPPoE session frames.
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# BSD NULL/LOOP address families: AF_INET is 2 everywhere; AF_INET6 differs per OS
# (Linux 10, FreeBSD 28, OpenBSD/NetBSD 24, macOS 30).
AF_INET = 2
AF_INET6_VALUES = frozenset((10, 24, 28, 30))

# Linux cooked capture ARPHRD values whose "protocol" field is not an EtherType.
SLL_PROTO_8023 = 0x0001  # Novell 802.3 without 802.2 LLC
SLL_PROTO_8022 = 0x0004  # 802.2 LLC frame

# Link types (LINKTYPE_* numbers as they appear in capture files).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD_12 = 12  # DLT_RAW on some BSDs, written as-is by old libpcaps
LINKTYPE_RAW_OLD_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_ethernet_header = struct.Struct("!6s6sH").unpack_from


def _truncated(layer: str, have: int, need: int) -> DecodeStop:
    return DecodeStop(REASON_TRUNCATED, layer, f"{have} bytes left, header needs {need}")


def ethertype_payload(
    buf: bytes, ethertype: int, off: int
) -> tuple[int | None, int | None, int, int]:
    """Walk VLAN tags, MPLS labels and PPPoE after an EtherType at `off`.

    Returns ``(vlan_id, inner_vlan_id, ethertype, offset)`` of the first header that is
    neither. Shared by Ethernet and the cooked-capture link types.
    """
    vlan_id: int | None = None
    inner_vlan_id: int | None = None
    n = len(buf)
    tags = 0
    while ethertype in VLAN_TPIDS:
        if n - off < 4:
            raise _truncated("vlan", n - off, 4)
        tags += 1
        if tags > MAX_VLAN_TAGS:
            raise DecodeStop(REASON_LIMIT, "vlan", f"more than {MAX_VLAN_TAGS} VLAN tags")
        tci = buf[off] << 8 | buf[off + 1]
        if vlan_id is None:
            vlan_id = tci & 0x0FFF
        elif inner_vlan_id is None:
            inner_vlan_id = tci & 0x0FFF
        ethertype = buf[off + 2] << 8 | buf[off + 3]
        off += 4
    if ethertype == ETH_MPLS or ethertype == ETH_MPLS_MCAST:
        return (vlan_id, inner_vlan_id, *_mpls(buf, off))
    if ethertype == ETH_PPPOE_SESSION:
        return (vlan_id, inner_vlan_id, *_pppoe_session(buf, off))
    return vlan_id, inner_vlan_id, ethertype, off


def _mpls(buf: bytes, off: int) -> tuple[int, int]:
    """Skip an MPLS label stack; guess the payload from its first nibble, as Wireshark does."""
    n = len(buf)
    for _ in range(MAX_MPLS_LABELS):
        if n - off < 4:
            raise _truncated("mpls", n - off, 4)
        bottom_of_stack = buf[off + 2] & 0x01
        off += 4
        if bottom_of_stack:
            if off >= n:
                raise _truncated("mpls", 0, 1)
            version = buf[off] >> 4
            if version == 4:
                return ETH_IPV4, off
            if version == 6:
                return ETH_IPV6, off
            # Pseudowire control word + Ethernet, or something we do not look into.
            return 0, off
    raise DecodeStop(REASON_LIMIT, "mpls", f"more than {MAX_MPLS_LABELS} MPLS labels")


def _pppoe_session(buf: bytes, off: int) -> tuple[int, int]:
    """PPPoE session header (6 bytes) and the PPP protocol field (2 bytes)."""
    n = len(buf)
    if n - off < 8:
        raise _truncated("pppoe", n - off, 8)
    if buf[off] != 0x11:  # version 1, type 1: the only values RFC 2516 defines
        raise DecodeStop(REASON_MALFORMED, "pppoe", f"version/type byte 0x{buf[off]:02x}")
    ppp_protocol = buf[off + 6] << 8 | buf[off + 7]
    off += 8
    if ppp_protocol == PPP_IPV4:
        return ETH_IPV4, off
    if ppp_protocol == PPP_IPV6:
        return ETH_IPV6, off
    return 0, off  # LCP, IPCP, CHAP...: PPP control traffic, decoded as far as we go


def ethernet(buf: bytes) -> LinkHeader:
    """Ethernet II (and 802.3/LLC, which carries no EtherType: reported as 0)."""
    if len(buf) < 14:
        raise _truncated("ethernet", len(buf), 14)
    dst, src, ethertype = _ethernet_header(buf, 0)
    if ethertype == ETH_IPV4 or ethertype == ETH_IPV6:  # the common case, no walk
        return dst, src, None, None, ethertype, 14
    if ethertype < 0x0600:  # an 802.3 length field, not an EtherType: LLC follows
        return dst, src, None, None, 0, 14
    vlan_id, inner_vlan_id, ethertype, off = ethertype_payload(buf, ethertype, 14)
    return dst, src, vlan_id, inner_vlan_id, ethertype, off


def ethernet_at(buf: bytes, off: int) -> LinkHeader:
    """Ethernet starting at `off`: the inner frame of a tunnel (VXLAN, Geneve, GRE, ERSPAN).

    A separate function so `ethernet`, on every outer frame, keeps its constant offsets.
    """
    if len(buf) - off < 14:
        raise _truncated("ethernet", len(buf) - off, 14)
    dst, src, ethertype = _ethernet_header(buf, off)
    off += 14
    if ethertype < 0x0600:  # an 802.3 length field, not an EtherType: LLC follows
        return dst, src, None, None, 0, off
    vlan_id, inner_vlan_id, ethertype, off = ethertype_payload(buf, ethertype, off)
    return dst, src, vlan_id, inner_vlan_id, ethertype, off


def linux_sll(buf: bytes) -> LinkHeader:
    """Linux cooked capture v1: 16-byte header, link-layer source address, protocol."""
    if len(buf) < 16:
        raise _truncated("sll", len(buf), 16)
    addr_len = buf[4] << 8 | buf[5]
    src_mac = buf[6:12] if addr_len == 6 else None
    protocol = buf[14] << 8 | buf[15]
    if protocol == SLL_PROTO_8023 or protocol == SLL_PROTO_8022:
        return None, src_mac, None, None, 0, 16
    vlan_id, inner_vlan_id, ethertype, off = ethertype_payload(buf, protocol, 16)
    return None, src_mac, vlan_id, inner_vlan_id, ethertype, off


def linux_sll2(buf: bytes) -> LinkHeader:
    """Linux cooked capture v2: protocol first, then interface index and the address."""
    if len(buf) < 20:
        raise _truncated("sll2", len(buf), 20)
    protocol = buf[0] << 8 | buf[1]
    addr_len = buf[11]
    src_mac = buf[12:18] if addr_len == 6 else None
    if protocol == SLL_PROTO_8023 or protocol == SLL_PROTO_8022:
        return None, src_mac, None, None, 0, 20
    vlan_id, inner_vlan_id, ethertype, off = ethertype_payload(buf, protocol, 20)
    return None, src_mac, vlan_id, inner_vlan_id, ethertype, off


def _address_family(family: int, layer: str) -> int:
    if family == AF_INET:
        return ETH_IPV4
    if family in AF_INET6_VALUES:
        return ETH_IPV6
    raise DecodeStop(REASON_MALFORMED, layer, f"unknown address family {family}")


def bsd_null(buf: bytes) -> LinkHeader:
    """DLT_NULL: a 4-byte address family in the *capturing host's* byte order.

    The file does not say which order that was; a family is a small number, so whichever
    reading is below 0x10000 is the right one (libpcap's own heuristic).
    """
    if len(buf) < 4:
        raise _truncated("null", len(buf), 4)
    family = int.from_bytes(buf[0:4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(buf[0:4], "big")
    return None, None, None, None, _address_family(family, "null"), 4


def bsd_loop(buf: bytes) -> LinkHeader:
    """DLT_LOOP: like NULL but the family is always in network byte order."""
    if len(buf) < 4:
        raise _truncated("loop", len(buf), 4)
    family = int.from_bytes(buf[0:4], "big")
    return None, None, None, None, _address_family(family, "loop"), 4


def raw_ip(buf: bytes) -> LinkHeader:
    """Raw IP (either version): the version nibble says which."""
    if not buf:
        raise _truncated("raw", 0, 1)
    version = buf[0] >> 4
    if version == 4:
        return None, None, None, None, ETH_IPV4, 0
    if version == 6:
        return None, None, None, None, ETH_IPV6, 0
    raise DecodeStop(REASON_MALFORMED, "raw", f"IP version {version}")


def raw_ipv4(buf: bytes) -> LinkHeader:
    return None, None, None, None, ETH_IPV4, 0


def raw_ipv6(buf: bytes) -> LinkHeader:
    return None, None, None, None, ETH_IPV6, 0


LINK_DECODERS: dict[int, Callable[[bytes], LinkHeader]] = {
    LINKTYPE_NULL: bsd_null,
    LINKTYPE_ETHERNET: ethernet,
    LINKTYPE_RAW_OLD_12: raw_ip,
    LINKTYPE_RAW_OLD_14: raw_ip,
    LINKTYPE_RAW: raw_ip,
    LINKTYPE_LOOP: bsd_loop,
    LINKTYPE_LINUX_SLL: linux_sll,
    LINKTYPE_IPV4: raw_ipv4,
    LINKTYPE_IPV6: raw_ipv6,
    LINKTYPE_LINUX_SLL2: linux_sll2,
}

LINK_TYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_OLD_12: "raw",
    LINKTYPE_RAW_OLD_14: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux_sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux_sll2",
}
