"""L2–L4 decoding, table-driven: every link type, tag, header chain and failure mode."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.capture import Frame, open_capture
from pipeline.decode import errors
from pipeline.decode.ip import MAX_IPV6_EXTENSION_HEADERS
from pipeline.decode.link import MAX_MPLS_LABELS, MAX_VLAN_TAGS
from pipeline.decode.packet import decode_packet, decode_packet_layered
from tests.conftest import CAPTURE_PARAMS

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([192, 168, 1, 2])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db8000000000000000000000002")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def tcp(sport: int = 1234, dport: int = 80, flags: int = 0x02, options: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, offset << 4, flags, 65535, 0, 0) + (
        options
    )


def udp(sport: int = 5353, dport: int = 53, payload: bytes = b"abcd") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(type_: int = 8, code: int = 0) -> bytes:
    return bytes([type_, code, 0, 0, 0, 1, 0, 1])


def ipv4(protocol: int, payload: bytes, *, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    total = ihl * 4 + len(payload)
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 7, frag, 64, protocol, 0, SRC4, DST4)
    return head + options + payload


def ipv6(next_header: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 63, SRC6, DST6) + payload


def ext(next_header: int, length_units: int = 0) -> bytes:
    """A generic IPv6 extension header of (length_units + 1) * 8 bytes."""
    return bytes([next_header, length_units]) + bytes(6 + 8 * length_units)


def ether(ethertype: int, payload: bytes) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", ethertype) + payload


def vlan(tpid: int, vid: int, inner_type: int) -> bytes:
    return struct.pack("!HHH", tpid, vid, inner_type)


def sll(protocol: int, payload: bytes) -> bytes:
    return (
        struct.pack("!HHH", 0, 1, 6) + MAC_A + b"\x00\x00" + struct.pack("!H", protocol) + payload
    )


def sll2(protocol: int, payload: bytes) -> bytes:
    head = struct.pack("!HHIHBB", protocol, 0, 3, 1, 0, 6) + MAC_A + b"\x00\x00"
    return head + payload


V4_TCP = ipv4(6, tcp())
V6_UDP = ipv6(17, udp())

# (id, link type, frame, expected fields)
DECODED = [
    (
        "ethernet-ipv4-tcp",
        1,
        ether(0x0800, V4_TCP),
        dict(
            src_mac=MAC_A,
            dst_mac=MAC_B,
            ip_version=4,
            src_ip=SRC4,
            dst_ip=DST4,
            protocol=6,
            ttl=64,
            src_port=1234,
            dst_port=80,
            tcp_flags=0x02,
            tcp_seq=1000,
            tcp_window=65535,
            payload_offset=54,
            payload_end=54,
        ),
    ),
    (
        "ethernet-padding-dropped",
        1,
        ether(0x0800, ipv4(17, udp(payload=b"xy"))) + bytes(16),
        dict(protocol=17, payload_offset=42, payload_end=44),
    ),
    (
        "tcp-with-options",
        1,
        ether(0x0800, ipv4(6, tcp(options=bytes([2, 4, 5, 0xB4, 1, 1, 4, 2])))),
        dict(src_port=1234, payload_offset=62),
    ),
    (
        "ipv4-with-options",
        1,
        ether(0x0800, ipv4(17, udp(), options=bytes([0x94, 4, 0, 0]))),
        dict(protocol=17, src_port=5353, payload_offset=46),
    ),
    ("ipv6-udp", 1, ether(0x86DD, V6_UDP), dict(ip_version=6, src_ip=SRC6, protocol=17, ttl=63)),
    (
        "dot1q",
        1,
        ether(0x8100, struct.pack("!HH", 100, 0x0800) + V4_TCP),
        dict(vlan_id=100, inner_vlan_id=None, src_port=1234),
    ),
    (
        "qinq",
        1,
        ether(0x88A8, struct.pack("!HH", 200, 0x8100) + struct.pack("!HH", 300, 0x86DD) + V6_UDP),
        dict(vlan_id=200, inner_vlan_id=300, ip_version=6, dst_port=53),
    ),
    (
        "mpls-two-labels",
        1,
        ether(0x8847, bytes([0, 1, 0, 64, 0, 2, 1, 64]) + V4_TCP),
        dict(ip_version=4, src_port=1234),
    ),
    (
        "pppoe-session-ipv6",
        1,
        ether(0x8864, bytes([0x11, 0, 0, 1]) + struct.pack("!HH", len(V6_UDP) + 2, 0x57) + V6_UDP),
        dict(ip_version=6, protocol=17),
    ),
    ("arp", 1, ether(0x0806, bytes(28)), dict(ethertype=0x0806, ip_version=None)),
    ("llc", 1, MAC_B + MAC_A + struct.pack("!H", 38) + bytes(38), dict(ethertype=0)),
    ("sll", 113, sll(0x0800, V4_TCP), dict(src_mac=MAC_A, dst_mac=None, src_port=1234)),
    ("sll-vlan", 113, sll(0x8100, struct.pack("!HH", 5, 0x0800) + V4_TCP), dict(vlan_id=5)),
    ("sll2", 276, sll2(0x86DD, V6_UDP), dict(src_mac=MAC_A, ip_version=6)),
    ("null-le-inet", 0, struct.pack("<I", 2) + V4_TCP, dict(ip_version=4)),
    ("null-be-inet6-bsd", 0, struct.pack(">I", 24) + V6_UDP, dict(ip_version=6)),
    ("null-le-inet6-darwin", 0, struct.pack("<I", 30) + V6_UDP, dict(ip_version=6)),
    ("loop", 108, struct.pack(">I", 2) + V4_TCP, dict(ip_version=4)),
    ("raw-v4", 101, V4_TCP, dict(ip_version=4, src_mac=None)),
    ("raw-v6", 101, V6_UDP, dict(ip_version=6)),
    ("raw-old-12", 12, V6_UDP, dict(ip_version=6)),
    ("raw-old-14", 14, V4_TCP, dict(ip_version=4)),
    ("linktype-ipv4", 228, V4_TCP, dict(ip_version=4)),
    ("linktype-ipv6", 229, V6_UDP, dict(ip_version=6)),
    (
        "ipv6-extension-chain",
        101,
        ipv6(0, ext(43, 1) + ext(60) + ext(17) + udp()),
        dict(protocol=17, src_port=5353, payload_offset=40 + 16 + 8 + 8 + 8),
    ),
    (
        "ipv6-ah",
        101,
        ipv6(51, bytes([6, 4]) + bytes(22) + tcp()),
        dict(protocol=6, src_port=1234),
    ),
    (
        "ipv4-ah",
        101,
        ipv4(51, bytes([17, 4]) + bytes(22) + udp()),
        dict(protocol=17, src_port=5353),
    ),
    (
        "ipv4-first-fragment",
        101,
        ipv4(17, udp(), frag=0x2000),
        dict(fragment_offset=0, more_fragments=True, src_port=5353),
    ),
    (
        "ipv4-later-fragment",
        101,
        ipv4(17, b"middle of a datagram", frag=0x0003),
        dict(fragment_offset=24, more_fragments=False, protocol=17, src_port=None),
    ),
    (
        "ipv4-first-fragment-cuts-tcp-options",
        101,
        ipv4(6, tcp(options=bytes(20))[:28], frag=0x2000),
        dict(src_port=1234, error=None),
    ),
    (
        "ipv6-later-fragment",
        101,
        ipv6(44, bytes([17, 0, 0, 0x19, 0, 0, 0, 9]) + b"data"),
        dict(fragment_offset=24, more_fragments=True, ip_id=9, protocol=17, src_port=None),
    ),
    (
        "ipv6-first-fragment",
        101,
        ipv6(44, bytes([17, 0, 0, 1, 0, 0, 0, 9]) + udp()),
        dict(fragment_offset=0, more_fragments=True, src_port=5353),
    ),
    ("icmp-echo", 101, ipv4(1, icmp(8, 0)), dict(icmp_type=8, icmp_code=0, src_port=None)),
    ("icmpv6", 101, ipv6(58, icmp(135, 0)), dict(icmp_type=135, protocol=58)),
    (
        "sctp",
        101,
        ipv4(132, struct.pack("!HHII", 2905, 2906, 1, 0)),
        dict(protocol=132, src_port=2905, dst_port=2906),
    ),
    ("gre", 101, ipv4(47, bytes([0, 0, 8, 0]) + V4_TCP), dict(protocol=47, src_port=None)),
    ("esp", 101, ipv6(50, bytes(24)), dict(protocol=50)),
    ("ipv4-total-length-zero-tso", 101, V4_TCP[:2] + b"\0\0" + V4_TCP[4:], dict(src_port=1234)),
]


@pytest.mark.parametrize(
    ("link_type", "frame", "expected"), [c[1:] for c in DECODED], ids=[c[0] for c in DECODED]
)
def test_decodes(link_type: int, frame: bytes, expected: dict) -> None:
    pkt = decode_packet(link_type, frame)
    assert pkt.error is None or "error" in expected, (pkt.error, pkt.error_detail)
    for name, value in expected.items():
        assert getattr(pkt, name) == value, name


def _vlan_stack(depth: int) -> bytes:
    tags = b"".join(struct.pack("!HH", i, 0x8100) for i in range(depth - 1))
    return ether(0x8100, tags + struct.pack("!HH", 99, 0x0800) + V4_TCP)


# (id, link type, frame, reason, layer, fields still decoded)
FAILURES = [
    ("empty", 1, b"", errors.REASON_TRUNCATED, "ethernet", {}),
    ("short-ethernet", 1, bytes(13), errors.REASON_TRUNCATED, "ethernet", {}),
    ("unsupported-link", 147, V4_TCP, errors.REASON_UNSUPPORTED_LINK, "link", {}),
    ("cut-vlan", 1, ether(0x8100, b"\x00"), errors.REASON_TRUNCATED, "vlan", {}),
    (
        "cut-ipv4",
        1,
        ether(0x0800, V4_TCP[:19]),
        errors.REASON_TRUNCATED,
        "ipv4",
        {"src_mac": MAC_A},
    ),
    ("ipv4-ihl-4", 101, bytes([0x44]) + V4_TCP[1:], errors.REASON_MALFORMED, "ipv4", {}),
    ("ipv6-in-ipv4-type", 228, V6_UDP, errors.REASON_MALFORMED, "ipv4", {}),
    ("bad-raw-version", 101, bytes([0x50]) + bytes(39), errors.REASON_MALFORMED, "raw", {}),
    (
        "ipv4-total-below-header",
        101,
        V4_TCP[:2] + b"\x00\x10" + V4_TCP[4:],
        errors.REASON_MALFORMED,
        "ipv4",
        {},
    ),
    (
        "cut-tcp",
        101,
        ipv4(6, tcp())[:30],
        errors.REASON_TRUNCATED,
        "tcp",
        {"src_ip": SRC4, "protocol": 6},
    ),
    (
        "tcp-data-offset-below-5",
        101,
        ipv4(6, tcp()[:12] + b"\x40" + tcp()[13:]),
        errors.REASON_MALFORMED,
        "tcp",
        {"src_ip": SRC4},
    ),
    (
        "tcp-options-cut",
        101,
        ipv4(6, tcp(options=bytes(8)))[:-4],
        errors.REASON_TRUNCATED,
        "tcp",
        {"protocol": 6},
    ),
    ("cut-udp", 101, ipv4(17, udp())[:24], errors.REASON_TRUNCATED, "udp", {"protocol": 17}),
    ("cut-icmp", 101, ipv4(1, icmp())[:22], errors.REASON_TRUNCATED, "icmp", {"protocol": 1}),
    ("cut-ipv6", 101, V6_UDP[:39], errors.REASON_TRUNCATED, "ipv6", {}),
    (
        "ipv6-ext-past-payload",
        101,
        ipv6(60, ext(17, 2)[:10]),
        errors.REASON_TRUNCATED,
        "ipv6-ext",
        {},
    ),
    (
        "ipv6-ext-chain-cap",
        101,
        ipv6(60, ext(60) * (MAX_IPV6_EXTENSION_HEADERS + 2) + udp()),
        errors.REASON_LIMIT,
        "ipv6-ext",
        {},
    ),
    ("vlan-depth-cap", 1, _vlan_stack(MAX_VLAN_TAGS + 1), errors.REASON_LIMIT, "vlan", {}),
    (
        "mpls-label-cap",
        1,
        ether(0x8847, bytes([0, 0, 0, 64]) * (MAX_MPLS_LABELS + 1) + V4_TCP),
        errors.REASON_LIMIT,
        "mpls",
        {},
    ),
    (
        "mpls-no-payload",
        1,
        ether(0x8847, bytes([0, 1, 1, 64])),
        errors.REASON_TRUNCATED,
        "mpls",
        {},
    ),
    ("pppoe-bad-version", 1, ether(0x8864, bytes(8)), errors.REASON_MALFORMED, "pppoe", {}),
    ("null-unknown-family", 0, struct.pack("<I", 99) + V4_TCP, errors.REASON_MALFORMED, "null", {}),
]


@pytest.mark.parametrize(
    ("link_type", "frame", "reason", "layer", "kept"),
    [c[1:] for c in FAILURES],
    ids=[c[0] for c in FAILURES],
)
def test_failures_are_typed_and_keep_what_was_decoded(
    link_type: int, frame: bytes, reason: str, layer: str, kept: dict
) -> None:
    pkt = decode_packet(link_type, frame)
    assert (pkt.error, pkt.error_layer) == (reason, layer), pkt.error_detail
    assert pkt.error_detail
    for name, value in kept.items():
        assert getattr(pkt, name) == value, name


def test_vlan_depth_at_the_cap_still_decodes() -> None:
    pkt = decode_packet(1, _vlan_stack(MAX_VLAN_TAGS))
    assert pkt.error is None and pkt.vlan_id == 0 and pkt.src_port == 1234


@pytest.mark.parametrize(
    ("link_type", "frame"), [c[1:3] for c in DECODED], ids=[c[0] for c in DECODED]
)
def test_every_prefix_decodes_or_is_truncated(link_type: int, frame: bytes) -> None:
    """Cutting a good frame anywhere never gives anything but a decode or a typed stop."""
    for cut in range(len(frame)):
        pkt = decode_packet(link_type, frame[:cut])
        assert pkt.error in (None, errors.REASON_TRUNCATED, errors.REASON_MALFORMED), (
            cut,
            pkt.error,
            pkt.error_detail,
        )


REASONS = {
    errors.REASON_TRUNCATED,
    errors.REASON_MALFORMED,
    errors.REASON_UNSUPPORTED_LINK,
    errors.REASON_LIMIT,
}


@settings(max_examples=3000, deadline=None)
@given(
    link_type=st.sampled_from([0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999]),
    frame=st.binary(max_size=200),
)
def test_never_raises_on_random_bytes(link_type: int, frame: bytes) -> None:
    pkt = decode_packet(link_type, frame)
    assert pkt.error is None or pkt.error in REASONS, (pkt.error, pkt.error_detail)


@settings(max_examples=2000, deadline=None)
@given(
    case=st.sampled_from(DECODED),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4),
)
def test_never_raises_on_mutated_packets(case: tuple, flips: list[tuple[int, int]]) -> None:
    _, link_type, frame, _ = case
    data = bytearray(frame)
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    pkt = decode_packet(link_type, bytes(data))
    assert pkt.error is None or pkt.error in REASONS, (pkt.error, pkt.error_detail)


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_fused_path_equals_layered_on_reference_captures(capture: Path) -> None:
    with open_capture(str(capture)) as cap:
        for record in cap:
            if isinstance(record, Frame):
                assert decode_packet(record.link_type, record.data) == decode_packet_layered(
                    record.link_type, record.data
                ), record.index


FUSED_SHAPES = [
    ether(0x0800, V4_TCP),
    ether(0x0800, ipv4(6, tcp(options=bytes(12)))),
    ether(0x0800, ipv4(17, udp())),
    ether(0x0800, ipv4(17, udp())) + bytes(20),
]


@settings(max_examples=3000, deadline=None)
@given(
    frame=st.sampled_from(FUSED_SHAPES),
    flips=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 120),
)
def test_fused_path_equals_layered_on_mutations(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(frame)
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: max(cut, 1)] if cut < len(data) else data
    assert decode_packet(1, bytes(data)) == decode_packet_layered(1, bytes(data))
