"""Tunnel decapsulation: every tunnel kind, hand-built and from reference captures.

Hand-built frames check each header variant (GRE flag bits, PPTP's PPP framing, ERSPAN I/II/III,
Geneve options, Teredo indicators, GTP-U extension chains), nesting and the depth cap, what
is not a tunnel, and every cut of every frame. Reference captures check inner 5-tuples that
tshark reported, and that the frames whose outer or innermost protocol is TCP (UDP) are the
truth's ``tcp_packets`` (``udp_packets``), with each difference named and its reason checked.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.capture import Frame, open_capture
from pipeline.decode import errors
from pipeline.decode.link import ETH_TEB
from pipeline.decode.packet import Packet, decode_from, decode_packet
from pipeline.decode.tunnel import (
    MAX_GTPU_EXTENSION_HEADERS,
    MAX_TUNNEL_DEPTH,
    Tunnel,
    decapsulate,
    is_tunnel_carrier,
)
from tests.conftest import SHARED, needs_shared, truth_for


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


# Outer and inner endpoints, all different so a mix-up shows.
OUT4_A, OUT4_B = ip("198.51.100.1"), ip("198.51.100.2")
IN4_A, IN4_B = ip("10.1.0.1"), ip("10.1.0.2")
OUT6_A, OUT6_B = ip("2001:db8::a"), ip("2001:db8::b")
IN6_A, IN6_B = ip("2001:db8:1::1"), ip("2001:db8:1::2")
MAC_A, MAC_B = mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b")
IN_MAC_A, IN_MAC_B = mac("02:00:00:00:01:0a"), mac("02:00:00:00:01:0b")
PAYLOAD = b"inner payload!"


# --- builders --------------------------------------------------------------------------------


def tcp(sport: int = 40000, dport: int = 443, flags: int = 0x18, payload: bytes = PAYLOAD) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1111, 2222, 5 << 4, flags, 512, 0, 0) + payload


def udp(sport: int = 5353, dport: int = 53, payload: bytes = PAYLOAD) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(type_: int = 8, code: int = 0, body: bytes = b"\x00\x01\x00\x01") -> bytes:
    return bytes([type_, code, 0, 0]) + body


def ipv4(
    protocol: int, payload: bytes, src: bytes = IN4_A, dst: bytes = IN4_B, frag: int = 0
) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 9, frag, 64, protocol, 0, src, dst
    )
    return head + payload


def ipv6(next_header: int, payload: bytes, src: bytes = IN6_A, dst: bytes = IN6_B) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, src, dst) + payload


def ether(ethertype: int, payload: bytes, dst: bytes = MAC_B, src: bytes = MAC_A) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def outer4(protocol: int, payload: bytes, frag: int = 0) -> bytes:
    return ether(0x0800, ipv4(protocol, payload, OUT4_A, OUT4_B, frag))


def outer6(protocol: int, payload: bytes) -> bytes:
    return ether(0x86DD, ipv6(protocol, payload, OUT6_A, OUT6_B))


def outer_udp(dport: int, payload: bytes, sport: int = 50000) -> bytes:
    return outer4(17, udp(sport, dport, payload))


def gre(
    protocol: int,
    payload: bytes,
    *,
    checksum: bool = False,
    key: int | None = None,
    seq: int | None = None,
    flags: int = 0,
    version: int = 0,
) -> bytes:
    flags |= (0x80 if checksum else 0) | (0x20 if key is not None else 0)
    flags |= 0x10 if seq is not None else 0
    head = struct.pack("!BBH", flags, version, protocol)
    if checksum:
        head += b"\xbe\xef\x00\x00"
    if key is not None:
        head += struct.pack("!I", key)
    if seq is not None:
        head += struct.pack("!I", seq)
    return head + payload


def pptp(ppp: bytes, call_id: int = 0x1234, ack: int | None = None, seq: bool = True) -> bytes:
    flags = 0x20 | (0x10 if seq else 0)
    head = struct.pack(
        "!BBHHH", flags, 0x01 | (0x80 if ack is not None else 0), 0x880B, len(ppp), call_id
    )
    if seq:
        head += struct.pack("!I", 7)
    if ack is not None:
        head += struct.pack("!I", ack)
    return head + ppp


def mpls(label: int, payload: bytes, bottom: bool = True) -> bytes:
    return struct.pack("!I", label << 12 | (0x100 if bottom else 0) | 64) + payload


def erspan2(session: int, frame: bytes) -> bytes:
    return struct.pack("!HHI", 1 << 12 | 23, session, 0) + frame


def erspan3(session: int, payload: bytes, frame_type: int = 0, platform: bool = False) -> bytes:
    last = frame_type << 10 | (1 if platform else 0)
    head = struct.pack("!HHIHH", 2 << 12 | 23, session, 0xAABBCCDD, 0, last)
    return head + (bytes(8) if platform else b"") + payload


def vxlan(vni: int, frame: bytes, flags: int = 0x08) -> bytes:
    return struct.pack("!B3xI", flags, vni << 8) + frame


def geneve(
    vni: int, protocol: int, payload: bytes, options: bytes = b"", version: int = 0
) -> bytes:
    first = version << 6 | len(options) // 4
    return struct.pack("!BBHI", first, 0, protocol, vni << 8) + options + payload


def teredo_auth(client_id: bytes = b"", auth: bytes = b"") -> bytes:
    return struct.pack("!HBB", 1, len(client_id), len(auth)) + client_id + auth + bytes(8) + b"\x00"


TEREDO_ORIGIN = struct.pack("!HH4s", 0, 0xFFFF ^ 3797, bytes(b ^ 0xFF for b in IN4_A))


def gtpu(
    teid: int,
    payload: bytes,
    *,
    seq: int | None = None,
    extensions: list[tuple[int, bytes]] | None = None,
    message: int = 0xFF,
    flags: int = 0x30,
) -> bytes:
    """GTP-U v1; `extensions` is a chain of (type, content) with 4n-2 content bytes each."""
    optional = b""
    if seq is not None or extensions:
        flags |= (0x02 if seq is not None else 0) | (0x04 if extensions else 0)
        first_type = extensions[0][0] if extensions else 0
        optional = struct.pack("!HBB", seq or 0, 0, first_type)
        for i, (_, content) in enumerate(extensions or []):
            next_type = extensions[i + 1][0] if extensions and i + 1 < len(extensions) else 0
            optional += bytes([(len(content) + 2) // 4]) + content + bytes([next_type])
    body = optional + payload
    return struct.pack("!BBHI", flags, message, len(body), teid) + body


V4_TCP = ipv4(6, tcp())
V4_UDP = ipv4(17, udp())
V6_UDP = ipv6(17, udp())
V6_TCP = ipv6(6, tcp())
ETH_V4_TCP = ether(0x0800, V4_TCP, IN_MAC_B, IN_MAC_A)
VLAN_ETH_V4_UDP = IN_MAC_B + IN_MAC_A + struct.pack("!HHH", 0x8100, 42, 0x0800) + V4_UDP

# Expected inner fields per inner packet.
IN_V4_TCP = {"ip_version": 4, "src_ip": IN4_A, "dst_ip": IN4_B, "protocol": 6,
             "src_port": 40000, "dst_port": 443, "tcp_flags": 0x18, "tcp_seq": 1111,
             "tcp_ack": 2222}  # fmt: skip
IN_V4_UDP = {"ip_version": 4, "src_ip": IN4_A, "dst_ip": IN4_B, "protocol": 17,
             "src_port": 5353, "dst_port": 53}  # fmt: skip
IN_V6_UDP = {"ip_version": 6, "src_ip": IN6_A, "dst_ip": IN6_B, "protocol": 17,
             "src_port": 5353, "dst_port": 53}  # fmt: skip
IN_V6_TCP = {"ip_version": 6, "src_ip": IN6_A, "dst_ip": IN6_B, "protocol": 6,
             "src_port": 40000, "dst_port": 443}  # fmt: skip
IN_ETH = {"dst_mac": IN_MAC_B, "src_mac": IN_MAC_A, "vlan_id": None}
O4 = (OUT4_A, OUT4_B)
O6 = (OUT6_A, OUT6_B)

# (id, frame, [(kind, tunnel id, outer addresses)], expected inner fields). Every inner packet
# carries PAYLOAD as its transport payload.
TunnelSpec = tuple[str, int | None, tuple[bytes, bytes]]  # kind, id, outer addresses
DECAPSULATED: list[tuple[str, bytes, list[TunnelSpec], dict[str, Any]]] = [
    ("gre", outer4(47, gre(0x0800, V4_TCP)), [("gre", None, O4)], IN_V4_TCP),
    (
        "gre-checksum",
        outer4(47, gre(0x0800, V4_TCP, checksum=True)),
        [("gre", None, O4)],
        IN_V4_TCP,
    ),
    ("gre-key", outer4(47, gre(0x0800, V4_TCP, key=77)), [("gre", 77, O4)], IN_V4_TCP),
    ("gre-seq", outer4(47, gre(0x86DD, V6_UDP, seq=5)), [("gre", None, O4)], IN_V6_UDP),
    (
        "gre-checksum-key-seq",
        outer4(47, gre(0x0800, V4_UDP, checksum=True, key=0xFFFFFFFF, seq=9)),
        [("gre", 0xFFFFFFFF, O4)],
        IN_V4_UDP,
    ),
    ("gre-over-ipv6", outer6(47, gre(0x0800, V4_TCP, key=1)), [("gre", 1, O6)], IN_V4_TCP),
    (
        "gre-teb",
        outer4(47, gre(0x6558, ETH_V4_TCP, key=3)),
        [("gre", 3, O4)],
        {**IN_V4_TCP, **IN_ETH, "ethertype": 0x0800},
    ),
    (
        "gre-teb-vlan",
        outer4(47, gre(0x6558, VLAN_ETH_V4_UDP)),
        [("gre", None, O4)],
        {**IN_V4_UDP, **IN_ETH, "vlan_id": 42},
    ),
    (
        "gre-mpls",
        outer4(47, gre(0x8847, mpls(16, mpls(17, V4_UDP), False))),
        [("gre", None, O4)],
        IN_V4_UDP,
    ),
    (
        "gre-cisco-metadata",
        outer4(47, gre(0x8909, b"\x08\x00\x01\x01\x00\x01\x00\x00" + V4_TCP, key=40)),
        [("gre", 40, O4)],
        IN_V4_TCP,
    ),
    ("pptp", outer4(47, pptp(b"\xff\x03\x00\x21" + V4_TCP)), [("gre", 0x1234, O4)], IN_V4_TCP),
    ("pptp-compressed", outer4(47, pptp(b"\x21" + V4_UDP)), [("gre", 0x1234, O4)], IN_V4_UDP),
    (
        "pptp-ack-ipv6",
        outer4(47, pptp(b"\xff\x03\x00\x57" + V6_UDP, ack=3)),
        [("gre", 0x1234, O4)],
        IN_V6_UDP,
    ),
    (
        "erspan-i",
        outer4(47, gre(0x88BE, ETH_V4_TCP)),
        [("erspan", None, O4)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    (
        "erspan-ii",
        outer4(47, gre(0x88BE, erspan2(100, ETH_V4_TCP), seq=1)),
        [("erspan", 100, O4)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    (
        "erspan-iii",
        outer4(47, gre(0x22EB, erspan3(1023, ETH_V4_TCP), seq=1)),
        [("erspan", 1023, O4)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    (
        "erspan-iii-platform",
        outer6(47, gre(0x22EB, erspan3(5, ETH_V4_TCP, platform=True), seq=1)),
        [("erspan", 5, O6)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    (
        "erspan-iii-ip",
        outer4(47, gre(0x22EB, erspan3(6, V6_UDP, frame_type=2), seq=1)),
        [("erspan", 6, O4)],
        {**IN_V6_UDP, "dst_mac": None},
    ),
    (
        "vxlan",
        outer_udp(4789, vxlan(0xABCDEF, ETH_V4_TCP)),
        [("vxlan", 0xABCDEF, O4)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    (
        "geneve-options",
        outer_udp(6081, geneve(77, 0x6558, ETH_V4_TCP, options=bytes(4) + bytes(8))),
        [("geneve", 77, O4)],
        {**IN_V4_TCP, **IN_ETH},
    ),
    ("geneve-ipv4", outer_udp(6081, geneve(1, 0x0800, V4_UDP)), [("geneve", 1, O4)], IN_V4_UDP),
    (
        "geneve-ipv6",
        outer_udp(6081, geneve(2, 0x86DD, V6_TCP, options=bytes(8))),
        [("geneve", 2, O4)],
        IN_V6_TCP,
    ),
    ("ipip", outer4(4, V4_TCP), [("ipip", None, O4)], {**IN_V4_TCP, "ethertype": 0x0800}),
    ("6in4", outer4(41, V6_UDP), [("6in4", None, O4)], {**IN_V6_UDP, "ethertype": 0x86DD}),
    ("4in6", outer6(4, V4_UDP), [("4in6", None, O6)], IN_V4_UDP),
    ("6in6", outer6(41, V6_TCP), [("6in6", None, O6)], IN_V6_TCP),
    ("teredo", outer_udp(3544, V6_UDP), [("teredo", None, O4)], IN_V6_UDP),
    ("teredo-origin", outer_udp(3544, TEREDO_ORIGIN + V6_UDP), [("teredo", None, O4)], IN_V6_UDP),
    (
        "teredo-auth-origin",
        outer_udp(3544, teredo_auth(b"id", b"auth") + TEREDO_ORIGIN + V6_TCP),
        [("teredo", None, O4)],
        IN_V6_TCP,
    ),
    (
        "teredo-from-server",
        outer4(17, udp(3544, 3797, TEREDO_ORIGIN + V6_UDP)),
        [("teredo", None, O4)],
        IN_V6_UDP,
    ),
    ("gtpu", outer_udp(2152, gtpu(0x8C61BE36, V4_TCP)), [("gtpu", 0x8C61BE36, O4)], IN_V4_TCP),
    ("gtpu-seq", outer_udp(2152, gtpu(7, V6_UDP, seq=300)), [("gtpu", 7, O4)], IN_V6_UDP),
    (
        "gtpu-extensions",
        outer_udp(2152, gtpu(8, V4_UDP, seq=1, extensions=[(0x85, bytes(6)), (0x40, bytes(2))])),
        [("gtpu", 8, O4)],
        IN_V4_UDP,
    ),
    (
        "nested-vxlan-gre-gtpu",
        outer_udp(
            4789,
            vxlan(
                5,
                ether(
                    0x0800,
                    ipv4(
                        47,
                        gre(0x0800, ipv4(17, udp(2152, 2152, gtpu(9, V4_TCP)), OUT4_B, IN4_A)),
                        IN4_B,
                        OUT4_A,
                    ),
                    IN_MAC_B,
                    IN_MAC_A,
                ),
            ),
        ),
        [("vxlan", 5, O4), ("gre", None, (IN4_B, OUT4_A)), ("gtpu", 9, (OUT4_B, IN4_A))],
        {**IN_V4_TCP, "dst_mac": None, "vlan_id": None},
    ),
]


def _inner_checks(buf: bytes, inner: Packet, expected: dict[str, Any]) -> None:
    assert inner.error is None, (inner.error, inner.error_layer, inner.error_detail)
    for name, value in expected.items():
        assert getattr(inner, name) == value, name
    assert inner.link_type == 1
    assert inner.payload_offset is not None and inner.payload_end is not None
    assert buf[inner.payload_offset : inner.payload_end] == PAYLOAD


@pytest.mark.parametrize(
    ("frame", "tunnels", "expected"),
    [c[1:] for c in DECAPSULATED],
    ids=[c[0] for c in DECAPSULATED],
)
def test_decapsulates(frame: bytes, tunnels: list, expected: dict[str, Any]) -> None:
    pkt = decode_packet(1, frame)
    assert pkt.error is None and is_tunnel_carrier(pkt)
    result = decapsulate(pkt, frame)
    assert result is not None
    inner, got = result
    assert got == tuple(Tunnel(kind, id_, src, dst) for kind, id_, (src, dst) in tunnels)
    _inner_checks(frame, inner, expected)


def test_inner_payload_is_bounded_by_the_inner_then_the_outer_ip_length() -> None:
    # Bytes after the inner IP packet inside the tunnel, then Ethernet padding: neither is payload.
    frame = outer4(47, gre(0x0800, ipv4(17, udp()) + b"TAIL")) + bytes(20)
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    assert frame[result[0].payload_offset : result[0].payload_end] == PAYLOAD
    # An inner IP header claiming more than the outer payload holds is clipped to the outer
    # packet's end, not the frame's (which has padding).
    long_inner = bytearray(ipv4(17, udp()))
    long_inner[2:4] = struct.pack("!H", 1000)
    frame = outer4(47, gre(0x0800, bytes(long_inner))) + bytes(20)
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    assert frame[result[0].payload_offset : result[0].payload_end] == PAYLOAD


# (id, frame): tunnels we do not decode, payloads that do not validate, fragments.
NOT_DECAPSULATED = [
    ("tcp", ether(0x0800, V4_TCP)),
    ("udp-dns", ether(0x0800, V4_UDP)),
    ("teredo-port-not-ipv6", outer_udp(3544, b"\x12\x34\x01\x00" + bytes(40))),
    ("teredo-ipv6-wrong-length", outer_udp(3544, V6_UDP + b"extra")),
    ("teredo-auth-cut", outer_udp(3544, b"\x00\x01\x05")),
    ("vxlan-no-i-flag", outer_udp(4789, vxlan(1, ETH_V4_TCP, flags=0))),
    ("vxlan-short", outer_udp(4789, b"\x08\x00\x00")),
    ("geneve-version-1", outer_udp(6081, geneve(1, 0x6558, ETH_V4_TCP, version=1))),
    ("geneve-unknown-protocol", outer_udp(6081, geneve(1, 0x1234, ETH_V4_TCP))),
    ("gtpu-echo", outer_udp(2152, gtpu(0, b"", message=1))),
    ("gtp-prime", outer_udp(2152, gtpu(1, V4_TCP, flags=0x20))),
    ("gtp-v0", outer_udp(2152, gtpu(1, V4_TCP, flags=0x10))),
    ("gtpu-empty", outer_udp(2152, gtpu(1, b""))),
    ("gtpu-not-ip", outer_udp(2152, gtpu(1, ETH_V4_TCP))),
    ("gtpu-source-port-only", outer4(17, udp(2152, 40000, gtpu(1, V4_TCP)))),
    ("gre-keepalive", outer4(47, gre(0x0000, b""))),
    ("gre-cdp", outer4(47, gre(0x2000, bytes(20)))),
    ("gre-routing", outer4(47, gre(0x0800, bytes(8) + V4_TCP, flags=0x40 | 0x80))),
    ("gre-mpls-pseudowire", outer4(47, gre(0x8847, mpls(16, bytes(4) + ETH_V4_TCP)))),
    (
        "erspan-iii-unknown-frame-type",
        outer4(47, gre(0x22EB, erspan3(1, ETH_V4_TCP, frame_type=3))),
    ),
    ("pptp-ack-only", outer4(47, pptp(b"", ack=5, seq=False))),
    ("pptp-lcp", outer4(47, pptp(b"\xff\x03\xc0\x21" + bytes(10)))),
    ("pptp-not-ppp", outer4(47, gre(0x0800, V4_TCP, key=1, version=1))),
    ("ipip-first-fragment", outer4(4, V4_TCP, frag=0x2000)),
    ("gre-later-fragment", outer4(47, gre(0x0800, V4_TCP), frag=0x0010)),
    ("vxlan-first-fragment", outer4(17, udp(1, 4789, vxlan(1, ETH_V4_TCP)), frag=0x2000)),
]


@pytest.mark.parametrize(
    "frame", [c[1] for c in NOT_DECAPSULATED], ids=[c[0] for c in NOT_DECAPSULATED]
)
def test_not_decapsulated(frame: bytes) -> None:
    assert decapsulate(decode_packet(1, frame), frame) is None


# (id, frame, tunnel kind, reason, error layer): the tunnel is there, a header is not right.
FAILED = [
    (
        "gre-version-2",
        outer4(47, gre(0x0800, V4_TCP, version=2)),
        "gre",
        errors.REASON_MALFORMED,
        "gre",
    ),
    (
        "gre-cut-in-key",
        outer4(47, gre(0x0800, b"", key=1))[:-2],
        "gre",
        errors.REASON_TRUNCATED,
        "gre",
    ),
    ("gre-header-cut", outer4(47, b"\x00\x00"), "gre", errors.REASON_TRUNCATED, "gre"),
    (
        "pptp-without-key",
        outer4(47, b"\x10\x01\x88\x0b" + bytes(8)),
        "gre",
        errors.REASON_MALFORMED,
        "gre",
    ),
    ("pptp-ppp-cut", outer4(47, pptp(b"")), "gre", errors.REASON_TRUNCATED, "ppp"),
    ("pptp-ppp-address-cut", outer4(47, pptp(b"\xff")), "gre", errors.REASON_TRUNCATED, "ppp"),
    (
        "pptp-ppp-bad-control",
        outer4(47, pptp(b"\xff\x05\x00\x21" + V4_TCP)),
        "gre",
        errors.REASON_MALFORMED,
        "ppp",
    ),
    (
        "cisco-metadata-cut",
        outer4(47, gre(0x8909, b"\x08\x00")),
        "gre",
        errors.REASON_TRUNCATED,
        "cisco-metadata",
    ),
    ("mpls-cut", outer4(47, gre(0x8847, b"\x00\x01")), "gre", errors.REASON_TRUNCATED, "mpls"),
    (
        "erspan-ii-wrong-version",
        outer4(47, gre(0x88BE, b"\x20\x00\x00\x01" + bytes(4) + ETH_V4_TCP, seq=1)),
        "erspan",
        errors.REASON_MALFORMED,
        "erspan",
    ),
    (
        "erspan-ii-cut",
        outer4(47, gre(0x88BE, b"\x10\x00", seq=1)),
        "erspan",
        errors.REASON_TRUNCATED,
        "erspan",
    ),
    (
        "erspan-iii-platform-cut",
        outer4(47, gre(0x22EB, erspan3(1, b"", platform=True)[:-3])),
        "erspan",
        errors.REASON_TRUNCATED,
        "erspan",
    ),
    (
        "geneve-options-cut",
        outer_udp(6081, geneve(1, 0x6558, b"", options=bytes(8))[:-4]),
        "geneve",
        errors.REASON_TRUNCATED,
        "geneve",
    ),
    (
        "gtpu-extension-length-0",
        outer_udp(
            2152,
            struct.pack("!BBHI", 0x34, 0xFF, 8 + len(V4_TCP), 1)
            + b"\x00\x00\x00\x85"
            + bytes(4)
            + V4_TCP,
        ),
        "gtpu",
        errors.REASON_MALFORMED,
        "gtpu",
    ),
    (
        "gtpu-extension-chain-too-long",
        outer_udp(
            2152, gtpu(1, V4_TCP, extensions=[(0x40, bytes(2))] * (MAX_GTPU_EXTENSION_HEADERS + 1))
        ),
        "gtpu",
        errors.REASON_LIMIT,
        "gtpu",
    ),
]


@pytest.mark.parametrize(
    ("frame", "kind", "reason", "layer"), [c[1:] for c in FAILED], ids=[c[0] for c in FAILED]
)
def test_broken_tunnel_headers_are_typed(frame: bytes, kind: str, reason: str, layer: str) -> None:
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    inner, tunnels = result
    assert [t.kind for t in tunnels] == [kind]
    assert (inner.error, inner.error_layer) == (reason, layer), inner.error_detail
    assert inner.src_ip is None and inner.link_type == 1


def test_gtpu_extension_chain_at_the_cap_decodes() -> None:
    frame = outer_udp(
        2152, gtpu(1, V4_TCP, extensions=[(0x40, bytes(2))] * MAX_GTPU_EXTENSION_HEADERS)
    )
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    _inner_checks(frame, result[0], IN_V4_TCP)


def test_broken_inner_headers_keep_what_decoded() -> None:
    """An inner header that fails is reported the way decode_packet reports it."""
    bad_version = bytearray(V4_TCP)
    bad_version[0] = 0x55
    frame = outer4(47, gre(0x0800, bytes(bad_version), key=2))
    inner, tunnels = decapsulate(decode_packet(1, frame), frame) or (None, ())
    assert inner is not None and tunnels[0].id == 2
    assert (inner.error, inner.error_layer) == (errors.REASON_MALFORMED, "ipv4")
    assert inner.ethertype == 0x0800 and inner.src_ip is None
    # A cut inner TCP header keeps the inner addresses, as decode_packet keeps the outer ones.
    frame = outer_udp(4789, vxlan(1, ether(0x0800, ipv4(6, tcp()[:12]), IN_MAC_B, IN_MAC_A)))
    inner, _ = decapsulate(decode_packet(1, frame), frame) or (None, ())
    assert inner is not None
    assert (inner.error, inner.error_layer) == (errors.REASON_TRUNCATED, "tcp")
    assert (inner.src_mac, inner.src_ip, inner.dst_ip, inner.protocol) == (
        IN_MAC_A,
        IN4_A,
        IN4_B,
        6,
    )
    # The same inner packet as a frame of its own: the same fields after the link layer.
    alone = ether(0x0800, ipv4(6, tcp()[:12]), IN_MAC_B, IN_MAC_A)
    expected = decode_packet(1, alone)
    assert inner[1:22] == expected[1:22] and inner[24:] == expected[24:]


@pytest.mark.parametrize(
    ("frame", "tunnels"), [c[1:3] for c in DECAPSULATED], ids=[c[0] for c in DECAPSULATED]
)
def test_every_cut_decodes_or_is_typed(frame: bytes, tunnels: list) -> None:
    """Cut anywhere: never raises; a cut inside the inner headers is REASON_TRUNCATED, or the
    walk stops a level early where a cut UDP payload no longer validates as its tunnel; past
    the inner headers, the full decode."""
    full = decapsulate(decode_packet(1, frame), frame)
    assert full is not None
    inner_payload = full[0].payload_offset
    assert inner_payload is not None
    outer_ip_payload = decode_packet(1, frame).payload_offset
    assert outer_ip_payload is not None
    by_protocol = tunnels[0][0] not in ("vxlan", "geneve", "teredo", "gtpu")
    for cut in range(len(frame)):
        data = frame[:cut]
        result = decapsulate(decode_packet(1, data), data)
        if cut < outer_ip_payload:
            assert result is None, cut
        elif cut < inner_payload:
            if by_protocol:  # the IP protocol number says "tunnel": a cut is reported
                assert result is not None, cut
            if result is not None and len(result[1]) == len(full[1]):
                assert result[0].error == errors.REASON_TRUNCATED, (cut, result[0].error_detail)
            elif result is not None:  # stopped early: cut there, or a UDP tunnel not validated
                assert result[0].error == errors.REASON_TRUNCATED or (
                    result[0].error is None and result[0].protocol == 17
                ), cut
        else:
            assert result is not None and result[0].error is None, cut
            assert result[0][:22] == full[0][:22], cut


def _ipip_chain(depth: int) -> bytes:
    """`depth` IPv4-in-IPv4 tunnels around an IPv4/TCP packet."""
    packet = V4_TCP
    for level in range(depth):
        packet = ipv4(4, packet, bytes([192, 0, 2, level]), OUT4_B)
    return ether(0x0800, packet)


def test_nesting_up_to_the_cap_decodes_every_level() -> None:
    frame = _ipip_chain(MAX_TUNNEL_DEPTH)
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    inner, tunnels = result
    assert [t.kind for t in tunnels] == ["ipip"] * MAX_TUNNEL_DEPTH
    # Outermost first: the outermost header was built last, with the highest level number.
    assert [t.outer_src_ip[3] for t in tunnels] == list(range(MAX_TUNNEL_DEPTH - 1, -1, -1))
    _inner_checks(frame, inner, IN_V4_TCP)


def test_nesting_past_the_cap_stops_there_flagged() -> None:
    frame = _ipip_chain(MAX_TUNNEL_DEPTH + 2)
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    inner, tunnels = result
    assert len(tunnels) == MAX_TUNNEL_DEPTH
    assert (inner.error, inner.error_layer) == (errors.REASON_LIMIT, "tunnel")
    assert inner.protocol == 4 and inner.src_ip == bytes([192, 0, 2, 1])  # the level at the cap
    # A smaller cap, asked for.
    result = decapsulate(decode_packet(1, frame), frame, max_depth=1)
    assert result is not None and len(result[1]) == 1 and result[0].error == errors.REASON_LIMIT
    with pytest.raises(ValueError):
        decapsulate(decode_packet(1, frame), frame, max_depth=0)


def test_inner_tunnel_that_does_not_decode_ends_the_walk() -> None:
    """GRE keepalive: GRE carrying IP carrying an empty GRE. The inner IP/GRE is innermost."""
    frame = outer4(47, gre(0x0800, ipv4(47, gre(0, b""), OUT4_B, OUT4_A), key=40))
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    inner, tunnels = result
    assert tunnels == (Tunnel("gre", 40, OUT4_A, OUT4_B),)
    assert (inner.src_ip, inner.dst_ip, inner.protocol, inner.error) == (OUT4_B, OUT4_A, 47, None)


def test_inner_fragment_ends_the_walk() -> None:
    """Fragments are reassembled before decapsulation, at every level: a fragment inside a
    tunnel is the innermost packet, not looked into."""
    frame = outer4(47, gre(0x0800, ipv4(4, V4_TCP, OUT4_B, IN4_A, frag=0x2000)))
    result = decapsulate(decode_packet(1, frame), frame)
    assert result is not None
    inner, tunnels = result
    assert [t.kind for t in tunnels] == ["gre"]
    assert (inner.protocol, inner.more_fragments, inner.error) == (4, True, None)


# --- is_tunnel_carrier -------------------------------------------------------------------------

CARRIERS = [
    (outer4(47, gre(0x0800, V4_TCP)), True),
    (outer4(4, V4_TCP), True),
    (outer4(41, V6_UDP), True),
    (outer6(4, V4_UDP), True),
    (outer_udp(4789, b""), True),
    (outer_udp(6081, b""), True),
    (outer_udp(2152, b""), True),
    (outer_udp(3544, b""), True),
    (outer4(17, udp(3544, 1000)), True),
    (outer4(17, udp(4789, 1000)), False),  # VXLAN, Geneve and GTP-U are named by destination
    (ether(0x0800, V4_TCP), False),
    (ether(0x0800, V4_UDP), False),
    (ether(0x0800, ipv4(1, icmp())), False),
    (ether(0x0806, bytes(28)), False),
    (b"", False),
]


@pytest.mark.parametrize(("frame", "carrier"), CARRIERS)
def test_is_tunnel_carrier(frame: bytes, carrier: bool) -> None:
    assert is_tunnel_carrier(decode_packet(1, frame)) is carrier


def test_carrier_test_reads_the_right_positions() -> None:
    """is_tunnel_carrier indexes the Packet tuple for speed: the positions must stay right."""
    assert Packet._fields[9] == "protocol"
    assert Packet._fields[14] == "src_port" and Packet._fields[15] == "dst_port"


# --- decode_from -------------------------------------------------------------------------------


def test_decode_from_ip_and_ethernet() -> None:
    frame = outer4(47, gre(0x0800, V4_TCP))
    at = len(frame) - len(V4_TCP)
    inner = decode_from(1, 0x0800, frame, at)
    assert (inner.ethertype, inner.src_ip, inner.src_port, inner.dst_mac) == (
        0x0800,
        IN4_A,
        40000,
        None,
    )
    assert frame[inner.payload_offset : inner.payload_end] == PAYLOAD
    assert decode_from(1, 0x86DD, frame, at).error == errors.REASON_MALFORMED  # IPv4 bytes
    arp = decode_from(1, 0x0806, frame, at)  # named, not looked into, as decode_packet does
    assert (arp.ethertype, arp.ip_version, arp.error) == (0x0806, None, None)
    short = decode_from(1, 0x0800, frame, at, at + 30)  # `end` cuts the TCP header
    assert (short.error, short.error_layer, short.src_ip) == (errors.REASON_TRUNCATED, "tcp", IN4_A)
    assert decode_from(1, ETH_TEB, ETH_V4_TCP, 0) == decode_packet(1, ETH_V4_TCP)


TUNNEL_CAPTURES = [
    "zeek__Teredo.pcap",
    "zeek__6in4.pcap",
    "zeek__gre-sample.pcap",
    "zeek__erspanII.pcap",
    "zeek__geneve.pcap",
    "zeek__vxlan.pcap",
    "zeek__gtp1_gn_normal_incl_fragmentation.pcap",
    "tcpdump__various_gre.pcap",
    "tcpdump__pptp.pcap",
    "zeek__mpls-in-vlan.pcap",
]


def _frames(name: str) -> list[Frame]:
    with open_capture(str(SHARED / name)) as cap:
        return [record for record in cap if isinstance(record, Frame)]


@needs_shared
@pytest.mark.parametrize("name", TUNNEL_CAPTURES)
def test_decode_from_equals_decode_packet_on_ethernet_frames(name: str) -> None:
    """decode_from repeats decode_packet_layered's network steps; they must not drift apart."""
    for frame in _frames(name):
        assert frame.data is not None and frame.link_type == 1
        assert decode_from(1, ETH_TEB, frame.data, 0) == decode_packet(1, frame.data), frame.index


# --- reference captures ------------------------------------------------------------------------

# Per file: how many frames decapsulate, and a few frames' tunnels and inner fields as tshark
# shows them (tshark -n -r FILE -T fields -e ...). None: that frame must not decapsulate.
TCP_22 = {"protocol": 6, "src_port": 40264, "dst_port": 22, "tcp_flags": 0xC2, "tcp_seq": 813658343,
          "tcp_ack": 0, "tcp_window": 5744, "ttl": 64}  # fmt: skip
FrameSpec = tuple[list[tuple[str, int | None, str, str]], dict[str, Any]] | None
EXPECTED_FRAMES: dict[str, tuple[int, dict[int, FrameSpec]]] = {
    "zeek__Teredo.pcap": (
        4,
        {
            6: (
                [("teredo", None, "192.168.2.16", "65.55.158.80")],  # authentication header
                {
                    "src_ip": ip("fe80::8000:ffff:ffff:fffd"),
                    "dst_ip": ip("ff02::2"),
                    "protocol": 58,
                    "icmp_type": 133,
                },
            ),
            7: (
                [("teredo", None, "65.55.158.81", "192.168.2.16")],  # authentication + origin
                {
                    "src_ip": ip("fe80::8000:f227:bec8:61af"),
                    "dst_ip": ip("fe80::8000:ffff:ffff:fffd"),
                    "icmp_type": 134,
                },
            ),
            30: (
                [("teredo", None, "192.168.2.16", "65.55.158.80")],
                {
                    "src_ip": ip("2001:0:4137:9e50:8000:f12a:b9c8:2815"),
                    "dst_ip": ip("2001:4860:0:2001::68"),
                    "icmp_type": 128,
                },
            ),
            31: (
                [("teredo", None, "65.55.158.80", "192.168.2.16")],  # origin indication, bubble
                {
                    "src_ip": ip("fe80::708d:fe83:4114:a512"),
                    "dst_ip": ip("2001:0:4137:9e50:8000:f12a:b9c8:2815"),
                    "protocol": 59,
                },
            ),
            1: None,
        },
    ),
    "zeek__6in4.pcap": (
        1,
        {
            1: (
                [("6in4", None, "1.2.3.4", "5.6.7.8")],
                {
                    "src_ip": ip("dead::beef"),
                    "dst_ip": ip("cafe::babe"),
                    "protocol": 17,
                    "src_port": 30000,
                    "dst_port": 13000,
                },
            ),
        },
    ),
    "zeek__gre-sample.pcap": (
        40,
        {
            1: (
                [("gre", None, "172.27.1.66", "66.59.109.137")],
                {
                    "src_ip": ip("66.59.111.190"),
                    "dst_ip": ip("172.28.2.3"),
                    "protocol": 1,
                    "icmp_type": 8,
                },
            ),
            9: (
                [("gre", None, "172.27.1.66", "66.59.109.137")],
                {
                    "src_ip": ip("66.59.111.190"),
                    "dst_ip": ip("18.26.4.105"),
                    "protocol": 17,
                    "src_port": 123,
                    "dst_port": 123,
                },
            ),
            11: (
                [("gre", None, "172.27.1.66", "66.59.109.137")],
                {"src_ip": ip("66.59.111.190"), "dst_ip": ip("172.28.2.3"), **TCP_22},
            ),
            34: (
                [("gre", None, "66.59.109.137", "172.27.1.66")],
                {
                    "src_ip": ip("172.28.2.3"),
                    "dst_ip": ip("66.59.111.190"),
                    "icmp_type": 3,
                    "icmp_code": 3,
                },
            ),
        },
    ),
    "zeek__erspanII.pcap": (
        4,
        {
            1: (
                [("erspan", 100, "2.2.2.2", "1.1.1.1")],
                {
                    "src_mac": mac("64:00:f1:e1:02:02"),
                    "dst_mac": mac("64:00:f1:e1:03:03"),
                    "src_ip": ip("23.0.0.2"),
                    "dst_ip": ip("23.0.0.3"),
                    "protocol": 1,
                    "icmp_type": 8,
                },
            ),
        },
    ),
    "zeek__geneve.pcap": (
        6,
        {
            1: (
                [("geneve", 0, "20.0.0.1", "20.0.0.2")],  # 8 bytes of options
                {
                    "src_mac": mac("b2:1a:43:d5:fa:4c"),
                    "dst_mac": mac("76:b5:d5:0a:a6:41"),
                    "src_ip": ip("30.0.0.1"),
                    "dst_ip": ip("30.0.0.2"),
                    "icmp_type": 8,
                },
            ),
            2: (
                [("geneve", 0, "20.0.0.2", "20.0.0.1")],
                {"src_ip": ip("30.0.0.2"), "dst_ip": ip("30.0.0.1"), "icmp_type": 0},
            ),
        },
    ),
    "zeek__vxlan.pcap": (
        10,
        {
            1: (
                [("vxlan", 123, "192.168.56.11", "192.168.56.12")],  # ARP: Ethernet, no IP
                {
                    "src_mac": mac("ba:09:2b:6e:f8:be"),
                    "dst_mac": mac("ff:ff:ff:ff:ff:ff"),
                    "ethertype": 0x0806,
                    "ip_version": None,
                },
            ),
            3: (
                [("vxlan", 123, "192.168.56.11", "192.168.56.12")],
                {"src_ip": ip("10.0.0.1"), "dst_ip": ip("10.0.0.2"), "icmp_type": 8},
            ),
        },
    ),
    "zeek__gtp1_gn_normal_incl_fragmentation.pcap": (
        32,
        {
            1: (
                [("gtpu", 0x8C61BE36, "239.114.155.111", "63.94.149.181")],
                {
                    "src_ip": ip("10.131.47.185"),
                    "dst_ip": ip("79.101.110.141"),
                    "protocol": 6,
                    "src_port": 1923,
                    "dst_port": 80,
                    "tcp_flags": 0x02,
                    "tcp_seq": 3446434231,
                },
            ),
            2: (
                [("gtpu", 0xB2B7, "63.94.149.181", "239.114.155.111")],
                {"src_port": 80, "dst_port": 1923, "tcp_flags": 0x12, "tcp_ack": 3446434232},
            ),
            4: None,  # first fragment of a GTP-U datagram
            5: None,  # its second fragment
        },
    ),
    "tcpdump__various_gre.pcap": (
        20,
        {
            11: (
                [("gre", 40, "10.172.64.7", "10.172.64.6")],  # keepalive: GRE in GRE, empty inside
                {"src_ip": ip("10.172.64.6"), "dst_ip": ip("10.172.64.7"), "protocol": 47},
            ),
            12: None,  # the keepalive coming back: GRE protocol 0, nothing inside
            25: (
                [("gre", 40, "10.172.64.6", "10.172.64.7")],  # Cisco MetaData before the IP
                {"src_ip": ip("172.17.1.54"), "dst_ip": ip("172.17.1.55"), "icmp_type": 8},
            ),
            49: None,  # CDP in GRE
            67: (
                [("gre", 40, "10.172.64.6", "10.172.64.7")],
                {"src_ip": ip("172.17.1.54"), "dst_ip": ip("224.0.0.13"), "protocol": 103},
            ),
        },
    ),
    "tcpdump__pptp.pcap": (0, {16: None}),  # the one GRE frame carries PPP LCP
    "zeek__mpls-in-vlan.pcap": (0, {2: None}),  # MPLS on the link, no tunnel
}


@needs_shared
@pytest.mark.parametrize("name", TUNNEL_CAPTURES)
def test_reference_capture_inner_packets(name: str) -> None:
    count, expected = EXPECTED_FRAMES[name]
    seen = 0
    checked = set()
    for frame in _frames(name):
        assert frame.data is not None
        pkt = decode_packet(frame.link_type, frame.data)
        result = decapsulate(pkt, frame.data)
        if result is not None:
            seen += 1
            assert result[0].error is None, (frame.index, result[0].error_detail)
        if frame.index not in expected:
            continue
        checked.add(frame.index)
        want = expected[frame.index]
        if want is None:
            assert result is None, frame.index
            continue
        assert result is not None, frame.index
        tunnels, fields = want
        assert result[1] == tuple(Tunnel(k, i, ip(s), ip(d)) for k, i, s, d in tunnels), frame.index
        for field, value in fields.items():
            assert getattr(result[0], field) == value, (frame.index, field)
    assert checked == set(expected)
    assert seen == count


def _quotes_udp(buf: bytes, inner: Packet) -> bool:
    """An ICMP error whose quoted IP header names UDP (tshark dissects the quoted UDP)."""
    if inner.protocol != 1 or inner.icmp_type not in (3, 4, 5, 11, 12):
        return False
    quote = (inner.payload_offset or 0) + 4  # past the ICMP "unused"/pointer word
    return len(buf) > quote + 9 and buf[quote] >> 4 == 4 and buf[quote + 9] == 17


def _first_fragment_to(port: int) -> Callable[[bytes, Packet], bool]:
    def check(buf: bytes, pkt: Packet) -> bool:
        return bool(pkt.more_fragments) and not pkt.fragment_offset and pkt.dst_port == port

    return check


# Per file: (truth minus ours, per protocol; the reason; a check that picks out exactly the
# frames the reason names, applied to (frame bytes, innermost-or-outer packet)).
TRUTH_DIFFERENCES: dict[str, tuple[dict[str, int], str, Callable[[bytes, Packet], bool]]] = {
    "zeek__gre-sample.pcap": (
        {"udp": 2},
        "frames 34 and 36 are ICMP port unreachable inside GRE quoting a UDP/53 datagram; "
        "tshark counts the quoted UDP, our innermost protocol is ICMP",
        _quotes_udp,
    ),
    "zeek__gtp1_gn_normal_incl_fragmentation.pcap": (
        {"tcp": 40},
        "40 outer first fragments (MF set) of GTP-U datagrams: tshark, defragmentation off, "
        "dissects GTP-U and the inner TCP inside them; we do not decapsulate fragments (the "
        "flow layer reassembles them first), so their innermost protocol is the outer UDP",
        _first_fragment_to(2152),
    ),
}


@needs_shared
@pytest.mark.parametrize("name", TUNNEL_CAPTURES)
def test_outer_or_innermost_transport_counts_match_truth(name: str) -> None:
    """Frames whose outer or innermost protocol is TCP (UDP) = truth tcp_packets (udp_packets).

    The outer protocol counts only where its header is in the frame: a later IP fragment
    carries none (tshark: "data").
    """
    truth = truth_for(SHARED / name)
    counts = {"tcp": 0, "udp": 0}
    explained = 0
    for frame in _frames(name):
        assert frame.data is not None
        pkt = decode_packet(frame.link_type, frame.data)
        result = decapsulate(pkt, frame.data)
        outer_protocol = None if pkt.fragment_offset else pkt.protocol
        inner_protocol = result[0].protocol if result is not None else None
        for key, number in (("tcp", 6), ("udp", 17)):
            counts[key] += number in (outer_protocol, inner_protocol)
        if name in TRUTH_DIFFERENCES:
            innermost = result[0] if result is not None else pkt
            explained += TRUTH_DIFFERENCES[name][2](frame.data, innermost)
    differences, reason, _ = TRUTH_DIFFERENCES.get(name, ({}, "", None))
    for key in ("tcp", "udp"):
        assert truth[f"{key}_packets"] - counts[key] == differences.get(key, 0), (key, reason)
    if differences:
        # The frames the reason names are exactly as many as the difference.
        assert explained == sum(differences.values()), reason


# --- property tests ----------------------------------------------------------------------------

REASONS = {errors.REASON_TRUNCATED, errors.REASON_MALFORMED, errors.REASON_LIMIT}

# Each carrier: bytes → a frame with those bytes behind a valid outer header.
CARRIER_FRAMES: dict[str, Callable[[bytes], bytes]] = {
    "gre-v4": lambda b: outer4(47, b),
    "gre-v6": lambda b: outer6(47, b),
    "ipip": lambda b: outer4(4, b),
    "6in4": lambda b: outer4(41, b),
    "4in6": lambda b: outer6(4, b),
    "6in6": lambda b: outer6(41, b),
    "vxlan": lambda b: outer_udp(4789, b),
    "geneve": lambda b: outer_udp(6081, b),
    "teredo-to-server": lambda b: outer_udp(3544, b),
    "teredo-from-server": lambda b: outer4(17, udp(3544, 3797, b)),
    "gtpu": lambda b: outer_udp(2152, b),
}
# Valid tunnel header starts, so random bytes also reach the inner decoders.
PREFIXES = [
    b"",
    b"\x00\x00\x08\x00",
    b"\xb0\x00\x65\x58" + bytes(12),
    b"\x30\x81\x88\x0b\x00\x20\x00\x01" + bytes(8) + b"\xff\x03\x00\x21",
    b"\x10\x00\x88\xbe\x00\x00\x00\x01\x10\x00\x00\x64\x00\x00\x00\x00",
    b"\x10\x00\x22\xeb\x00\x00\x00\x01\x20\x00\x00\x64" + bytes(7) + b"\x01",
    b"\x08\x00\x00\x00\x00\x00\x01\x00",
    b"\x02\x00\x65\x58\x00\x00\x01\x00",
    b"\x00\x00" + bytes(6),
    b"\x00\x01\x01\x01" + bytes(11),
    b"\x34\xff\x00\x40\x00\x00\x00\x01\x00\x00\x00\x85\x01\x00\x00\x40",
    b"\x45\x00\x00\x30" + bytes(5) + b"\x2f" + bytes(10),
    b"\x60\x00\x00\x00\x00\x20\x04\x40" + bytes(32),
]


@settings(max_examples=1500, deadline=None)
@given(
    carrier=st.sampled_from(sorted(CARRIER_FRAMES)),
    prefix=st.sampled_from(PREFIXES),
    tail=st.binary(max_size=120),
)
def test_never_raises_on_random_bytes_behind_a_carrier(
    carrier: str, prefix: bytes, tail: bytes
) -> None:
    frame = CARRIER_FRAMES[carrier](prefix + tail)
    result = decapsulate(decode_packet(1, frame), frame)
    if result is not None:
        inner, tunnels = result
        assert 1 <= len(tunnels) <= MAX_TUNNEL_DEPTH
        assert inner.error is None or inner.error in REASONS, (inner.error, inner.error_detail)


@settings(max_examples=1500, deadline=None)
@given(
    case=st.sampled_from(DECAPSULATED),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_never_raises_on_mutated_tunnels(case: tuple, flips: list[tuple[int, int]]) -> None:
    data = bytearray(case[1])
    for pos, value in flips:
        data[pos % len(data)] = value
    frame = bytes(data)
    result = decapsulate(decode_packet(1, frame), frame)
    if result is not None:
        assert result[0].error is None or result[0].error in REASONS, result[0].error_detail
