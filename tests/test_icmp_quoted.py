"""ICMP errors linked to the flow they quote (issue #5): `pcap.icmp_quoted` on the packet event
of an ICMP error names the quoted connection and its Community ID, which that connection's own
events carry — the join key between an error and the flow it is about."""

from __future__ import annotations

import struct
from pathlib import Path

import communityid
import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.convert import read_events
from pipeline.decode.icmp import QuotedFlow, is_error, quoted_flow
from tests.conftest import SHARED

V4_SRC, V4_DST = bytes([10, 0, 0, 1]), bytes([192, 0, 2, 7])


def ipv4(payload: bytes, protocol: int, offset_field: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, offset_field, 64, protocol, 0,
        V4_SRC, V4_DST,
    )  # fmt: skip
    return header + payload


def test_quoted_udp_tcp_icmp_and_cut_quotes() -> None:
    udp = struct.pack("!HHHH", 5353, 53, 8, 0)
    assert quoted_flow(ipv4(udp, 17), 0, 28) == QuotedFlow(4, 17, V4_SRC, V4_DST, 5353, 53)
    tcp = struct.pack("!HHI", 40000, 443, 1)
    assert quoted_flow(ipv4(tcp, 6), 0, 28) == QuotedFlow(4, 6, V4_SRC, V4_DST, 40000, 443)
    echo = bytes([8, 0, 0, 0, 0, 1, 0, 1])
    assert quoted_flow(ipv4(echo, 1), 0, 28) == QuotedFlow(4, 1, V4_SRC, V4_DST, 8, 0)
    # Cut before the ports; a later fragment (no transport header in it); not IP at all.
    assert quoted_flow(ipv4(udp, 17), 0, 22) == QuotedFlow(4, 17, V4_SRC, V4_DST, None, None)
    later = ipv4(udp, 17, offset_field=185)
    assert quoted_flow(later, 0, 28) == QuotedFlow(4, 17, V4_SRC, V4_DST, None, None)
    assert quoted_flow(b"\x00" * 40, 0, 40) is None
    assert quoted_flow(b"\x45" * 10, 0, 10) is None


def test_quoted_ipv6_walks_extension_headers() -> None:
    src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
    hop_by_hop = bytes([17, 0]) + bytes(6)
    udp = struct.pack("!HHHH", 1000, 2000, 8, 0)
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(hop_by_hop) + 8, 0, 64, src, dst)
    quote = ip6 + hop_by_hop + udp
    assert quoted_flow(quote, 0, len(quote)) == QuotedFlow(6, 17, src, dst, 1000, 2000)


def test_which_types_are_errors() -> None:
    assert is_error(1, 3) and is_error(1, 11) and not is_error(1, 8) and not is_error(1, 0)
    assert is_error(58, 1) and is_error(58, 4) and not is_error(58, 128)


def test_error_event_carries_the_quoted_flow_community_id(tmp_path: Path) -> None:
    """A port unreachable for a DNS query, made here: its quote's Community ID equals the
    one the reference `communityid` package computes for the query's flow, and the query's
    own packet event carries it too."""
    query = dpkt.udp.UDP(sport=5353, dport=53, data=b"\x12\x34" + bytes(10))
    query.ulen = len(bytes(query))
    query_ip = dpkt.ip.IP(src=V4_SRC, dst=V4_DST, p=17, ttl=64, data=query)
    query_ip.len = len(bytes(query_ip))
    error_body = bytes(4) + bytes(query_ip)[:28]  # unused word, header + 8 bytes
    icmp = bytes([3, 3, 0, 0]) + error_body
    error_ip = dpkt.ip.IP(src=V4_DST, dst=V4_SRC, p=1, ttl=64, data=icmp)
    error_ip.len = len(bytes(error_ip))
    frames = [bytes(query_ip), bytes(error_ip)]
    path = tmp_path / "unreach.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + i)
    events = list(read_events(str(path), extract=("packet",)))
    query_event, error_event = events
    quoted = error_event["pcap"]["icmp_quoted"]
    reference = communityid.CommunityID().calc(
        communityid.FlowTuple.make_udp("10.0.0.1", "192.0.2.7", 5353, 53)
    )
    assert quoted["community_id"] == reference == query_event["network"]["community_id"]
    assert quoted["source"] == {"ip": "10.0.0.1", "port": 5353}
    assert quoted["transport"] == "udp" and error_event["pcap"]["icmp_type"] == 3


@pytest.mark.parametrize(
    "name", ["zeek__icmp-destunreach-udp.pcap", "zeek__icmp6-destunreach-ip6ext-udp.pcap"]
)
def test_real_unreachables_quote_their_udp_flow(name: str) -> None:
    capture = SHARED / name
    if not capture.is_file():
        pytest.skip(f"{capture} not found (reference captures)")
    errors = [
        e for e in read_events(str(capture), extract=("packet",)) if "icmp_quoted" in e["pcap"]
    ]
    assert len(errors) == 1
    quoted = errors[0]["pcap"]["icmp_quoted"]
    make = communityid.FlowTuple.make_udp
    reference = communityid.CommunityID().calc(
        make(quoted["source"]["ip"], quoted["destination"]["ip"],
             quoted["source"]["port"], quoted["destination"]["port"])
    )  # fmt: skip
    assert quoted["community_id"] == reference and quoted["transport"] == "udp"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 130), st.integers(0, 130))
def test_any_bytes_any_bounds_never_raise(data: bytes, start: int, end: int) -> None:
    end = min(end, len(data))
    result = quoted_flow(data, min(start, end), end)
    assert result is None or result.ip_version in (4, 6)
