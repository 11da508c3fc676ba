"""Traffic statistics: exact counts, merges that equal one pass, caps, intervals, the command.

The accumulator (pipeline/flows/traffic.py) is checked against a naive model on hand-built
and generated packets; merging the parts of any split must give exactly the one-pass
summaries, with caps small enough to bite. The command (pipeline/traffic_report.py) is
checked against the tshark truth of every reference capture and against capinfos.
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.decode.packet import Packet
from pipeline.events.ecs import DATASET_STATS, stats_event
from pipeline.flows.traffic import (
    L3_CLASSES,
    L4_CLASSES,
    MAX_TABLE_KEYS,
    NS,
    PENDING_KEYS,
    PROTOCOL_CLASSES,
    CappedTable,
    TrafficStats,
    TrafficSummary,
)
from pipeline.traffic_report import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    render_table,
    stats_command,
)
from tests.capture_writers import Rec, pcap_bytes
from tests.conftest import CAPTURE_PARAMS, SHARED, needs_shared, truth_for
from tests.test_truth_packets import FRAME_DIFFERENCES, OUTER_DIFFERENCES, OUTER_TRANSPORT

PROPERTY = settings(max_examples=300, deadline=None)

TRANSPORT_LAYERS = {"tcp", "udp", "icmp", "sctp"}
L4_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 47: "gre", 50: "esp"}
PORT_PROTOCOLS = (6, 17, 132, 136)


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def make_packet(
    src: str | bytes | None = None,
    dst: str | bytes | None = None,
    protocol: int | None = None,
    dst_port: int | None = None,
    *,
    ethertype: int | None = None,
    fragment_offset: int | None = None,
    error_layer: str | None = None,
) -> Packet:
    """A `Packet` as decode_packet would leave it, with only what the statistics read."""
    fields: dict[str, Any] = dict.fromkeys(Packet._fields)
    src_ip = ip(src) if isinstance(src, str) else src
    dst_ip = ip(dst) if isinstance(dst, str) else dst
    if src_ip is not None:
        version = 4 if len(src_ip) == 4 else 6
        fields.update(ip_version=version, fragment_offset=fragment_offset or 0)
        ethertype = ethertype or (0x0800 if version == 4 else 0x86DD)
    fields.update(
        link_type=1,
        ethertype=ethertype,
        src_ip=src_ip,
        dst_ip=dst_ip,
        protocol=protocol,
        dst_port=dst_port,
        src_port=None if dst_port is None else 40000,
        error=None if error_layer is None else "truncated",
        error_layer=error_layer,
    )
    return Packet(**fields)


# An operation on the accumulator: ("packet", ts_ns, wire_len, Packet) or
# ("undecoded", ts_ns or None, 0, None) for a framing error.
Op = tuple[str, Any, int, Packet | None]


def run(ops: list[Op], stats: TrafficStats) -> TrafficStats:
    for kind, ts_ns, wire_len, pkt in ops:
        if kind == "packet":
            assert pkt is not None
            stats.add(ts_ns, wire_len, pkt)
        else:
            stats.add_undecoded(ts_ns)
    return stats


def model(ops: list[Op]) -> dict[str, Any]:
    """The capture summary's exact answers, computed the obvious way (no caps, no pending)."""
    protocols: Counter[str] = Counter()
    nbytes: Counter[str] = Counter()
    talkers: dict[bytes, list[int]] = {}
    ports: Counter[tuple[int, int]] = Counter()
    anomalies = 0
    times = [ts for _, ts, _, _ in ops if ts is not None]
    for kind, _, wire_len, pkt in ops:
        if kind != "packet" or pkt is None:
            classes = ["undecoded"]
            anomalies += 1
        else:
            anomalies += pkt.error_layer is not None
            if pkt.src_ip is not None:
                assert pkt.dst_ip is not None
                if pkt.fragment_offset or pkt.error_layer in TRANSPORT_LAYERS:
                    l4 = "no_l4"
                else:
                    l4 = L4_NAMES.get(pkt.protocol or -1, "other_l4")
                classes = ["ipv4" if len(pkt.src_ip) == 4 else "ipv6", l4]
                tx = talkers.setdefault(pkt.src_ip, [0, 0, 0, 0])
                tx[0] += 1
                tx[1] += wire_len
                rx = talkers.setdefault(pkt.dst_ip, [0, 0, 0, 0])
                rx[2] += 1
                rx[3] += wire_len
                if pkt.dst_port is not None:
                    assert pkt.protocol is not None
                    ports[(pkt.protocol, pkt.dst_port)] += 1
            elif pkt.error_layer is not None or pkt.ethertype is None:
                classes = ["undecoded"]
            elif pkt.ethertype in (0x0806, 0x8035):
                classes = ["arp"]
            else:
                classes = ["other_l3"]
        for name in classes:
            protocols[name] += 1
            nbytes[name] += wire_len
    return {
        "packets": len(ops),
        "bytes": sum(n for _, _, n, _ in ops),
        "anomalies": anomalies,
        "protocols": {name: (protocols[name], nbytes[name]) for name in PROTOCOL_CLASSES},
        "talkers": {ip_: tuple(row) for ip_, row in talkers.items()},
        "ports": dict(ports),
        "start_ns": min(times, default=None),
        "end_ns": max(times, default=None),
    }


def observed(summary: TrafficSummary) -> dict[str, Any]:
    """The same answers read off a summary (whose top lists hold every key)."""
    return {
        "packets": summary.packets,
        "bytes": summary.bytes,
        "anomalies": summary.anomalies,
        "protocols": summary.protocols,
        "talkers": {
            t.ip: (t.tx_packets, t.tx_bytes, t.rx_packets, t.rx_bytes) for t in summary.talkers
        },
        "ports": {(p.protocol, p.port): p.packets for p in summary.ports},
        "start_ns": summary.start_ns,
        "end_ns": summary.end_ns,
    }


# ---------------------------------------------------------------------- hand-built packets

T0 = 1_700_000_000 * NS  # 2023-11-14T22:13:20Z, a whole second

HAND_OPS: list[Op] = [
    ("packet", T0 + 0, 100, make_packet("10.0.0.1", "10.0.0.2", 6, 80)),
    ("packet", T0 + NS // 2, 200, make_packet("10.0.0.1", "10.0.0.2", 6, 80)),
    ("packet", T0 + NS + NS // 5, 300, make_packet("10.0.0.1", "10.0.0.2", 6, 80)),
    ("packet", T0 + 10, 80, make_packet("10.0.0.2", "10.0.0.3", 17, 53)),
    ("packet", T0 + 20, 90, make_packet("2001:db8::1", "2001:db8::2", 58)),
    ("packet", T0 + 30, 60, make_packet(ethertype=0x0806)),  # ARP
    ("packet", T0 + 40, 70, make_packet(ethertype=0x88CC)),  # LLDP
    # A later fragment of a UDP datagram: IP, but no transport header.
    ("packet", T0 + 50, 500, make_packet("10.0.0.3", "10.0.0.2", 17, fragment_offset=1480)),
    # A TCP header cut short: an anomaly that still counts for IPv4 and its addresses.
    ("packet", T0 + 60, 40, make_packet("10.0.0.2", "10.0.0.1", 6, error_layer="tcp")),
    # A frame whose link layer did not decode.
    ("packet", T0 + 70, 10, make_packet(error_layer="ethernet")),
    ("undecoded", T0 + 70, 0, None),  # a framing error filed at the last frame's time
]


def test_hand_built_packets_count_exactly() -> None:
    (whole,) = run(HAND_OPS, TrafficStats(top=100)).summaries()
    assert observed(whole) == model(HAND_OPS)
    assert whole.packets == 11
    assert whole.bytes == 1450
    assert whole.anomalies == 3
    expected = {
        "ipv4": (6, 1220),
        "ipv6": (1, 90),
        "arp": (1, 60),
        "other_l3": (1, 70),
        "undecoded": (2, 10),
        "tcp": (3, 600),
        "udp": (1, 80),
        "icmpv6": (1, 90),
        "no_l4": (2, 540),
    }
    assert whole.protocols == {name: expected.get(name, (0, 0)) for name in PROTOCOL_CLASSES}
    # Talkers by bytes (both directions), then the ports by packets.
    assert [(socket.inet_ntop(socket.AF_INET, t.ip), t.bytes) for t in whole.talkers[:3]] == [
        ("10.0.0.2", 1220),
        ("10.0.0.1", 640),
        ("10.0.0.3", 580),
    ]
    assert [(p.protocol, p.port, p.packets, p.bytes) for p in whole.ports] == [
        (6, 80, 3, 600),
        (17, 53, 1, 80),
    ]
    assert (whole.talkers_tracked, whole.talkers_untracked_packets) == (5, 0)
    assert not whole.talkers_overflow and not whole.ports_overflow
    assert (whole.start_ns, whole.end_ns) == (T0, T0 + NS + NS // 5)
    assert whole.pps_mean == pytest.approx(11 / 1.2)
    assert whole.bps_mean == pytest.approx(1450 * 8 / 1.2)
    # Second T0 holds 10 records, second T0+1 one: the busiest second.
    assert (whole.pps_peak, whole.peak_window_ns) == (10.0, NS)


def test_top_lists_are_cut_and_ties_go_to_the_lower_key() -> None:
    ops: list[Op] = [
        ("packet", T0, 100, make_packet(f"10.0.0.{i}", "10.9.9.9", 17, 1000 + i)) for i in (5, 3, 4)
    ]
    (whole,) = run(ops, TrafficStats(top=2)).summaries()
    assert [socket.inet_ntop(socket.AF_INET, t.ip) for t in whole.talkers] == [
        "10.9.9.9",
        "10.0.0.3",
    ]
    assert [p.port for p in whole.ports] == [1003, 1004]
    assert whole.talkers_tracked == 4 and whole.ports_tracked == 3


def test_nothing_added_has_no_summaries() -> None:
    assert TrafficStats().summaries() == []
    assert TrafficStats(interval_ns=NS).summaries() == []


def test_framing_error_before_any_frame_has_no_time() -> None:
    stats = TrafficStats(interval_ns=NS)
    stats.add_undecoded(None)
    (whole,) = stats.summaries()
    assert (whole.packets, whole.anomalies, whole.start_ns, whole.end_ns) == (1, 1, None, None)
    assert whole.protocols["undecoded"] == (1, 0)
    assert whole.pps_mean is None and whole.pps_peak is None


# ---------------------------------------------------------------------- intervals


def test_intervals_bucket_out_of_order_timestamps() -> None:
    # Seconds, in arrival order: a capture whose clock steps back and forth.
    seconds = [2.5, 0.1, 1.7, 0.9, 2.0, -0.5, 0.2]
    ops: list[Op] = [
        ("packet", T0 + round(s * NS), 100 + i, make_packet("10.0.0.1", "10.0.0.2", 17, 53))
        for i, s in enumerate(seconds)
    ]
    stats = run(ops, TrafficStats(interval_ns=NS))
    whole, *intervals = stats.summaries()
    assert (whole.start_ns, whole.end_ns) == (T0 - NS // 2, T0 + 5 * NS // 2)
    assert whole.packets == 7
    base = T0 // NS
    assert [(s.index, s.packets, s.bytes) for s in intervals] == [
        (base - 1, 1, 105),
        (base, 3, 101 + 103 + 106),
        (base + 1, 1, 102),
        (base + 2, 2, 100 + 104),
    ]
    for s in intervals:
        assert s.scope == "interval" and s.interval_ns == NS
        assert s.start_ns == s.index * NS and s.end_ns == s.start_ns + NS
        assert s.pps_mean == s.packets  # one-second intervals
        assert s.pps_peak == s.packets  # one one-second window each
        assert s.talkers[0].packets == s.packets
    assert sum(s.packets for s in intervals) == whole.packets


def test_sub_second_and_odd_intervals() -> None:
    ops: list[Op] = [
        ("packet", T0 + ms * 1_000_000, 10, make_packet("10.0.0.1", "10.0.0.2", 6, 443))
        for ms in (0, 100, 250, 600, 1400, 1500)
    ]
    quarter = run(ops, TrafficStats(interval_ns=NS // 4)).summaries()[1:]
    assert [(s.index - T0 // (NS // 4), s.packets) for s in quarter] == [
        (0, 2),
        (1, 1),
        (2, 1),
        (5, 1),
        (6, 1),
    ]
    assert all(s.pps_peak is None for s in quarter)  # shorter than the one-second window
    # 1.5 s does not divide a second, nor a second it: the pending counts tick in 0.5 s.
    odd = run(ops, TrafficStats(interval_ns=3 * NS // 2)).summaries()[1:]
    first = (T0 // (3 * NS // 2)) * (3 * NS // 2)
    assert sum(s.packets for s in odd) == 6
    for s in odd:
        assert s.start_ns is not None and s.end_ns is not None
        inside = [ts for _, ts, _, _ in ops if s.start_ns <= ts < s.end_ns]
        assert len(inside) == s.packets, s.start_ns - first


def test_too_many_intervals_double_the_interval() -> None:
    ops: list[Op] = [
        ("packet", T0 + k * NS, 1, make_packet("10.0.0.1", "10.0.0.2", 17, 53)) for k in range(5)
    ]
    whole, *intervals = run(ops, TrafficStats(interval_ns=NS, max_intervals=2)).summaries()
    # T0 is a multiple of 4 s: seconds 0-3 and 4 fall in two 4-second intervals.
    assert [(s.interval_ns, s.packets) for s in intervals] == [(4 * NS, 4), (4 * NS, 1)]
    assert whole.packets == 5


def test_too_many_seconds_widen_the_rate_window() -> None:
    ops: list[Op] = [
        ("packet", T0 + k * NS, 1, make_packet("10.0.0.1", "10.0.0.2", 17, 53))
        for k in (0, 0, 0, 1, 2, 3, 4)
    ]
    (whole,) = run(ops, TrafficStats(max_windows=3)).summaries()
    # Windows of 2 s: seconds {0,1}, {2,3}, {4}: the busiest holds 4 packets.
    assert (whole.peak_window_ns, whole.pps_peak) == (2 * NS, 2.0)


# ---------------------------------------------------------------------- merge property

V4 = [ip(f"10.0.0.{i}") for i in range(1, 6)]
V6 = [ip(f"2001:db8::{i}") for i in range(1, 4)]


@st.composite
def ops_strategy(draw: st.DrawFn) -> Op:
    ts = draw(st.integers(-2 * NS, 6 * NS))
    wire_len = draw(st.integers(0, 1600))
    kind = draw(st.sampled_from(["ip", "ip", "ip", "ip", "l2", "bad_link", "framing"]))
    if kind == "framing":
        return ("undecoded", draw(st.one_of(st.none(), st.just(ts))), 0, None)
    if kind == "l2":
        ethertype = draw(st.sampled_from([0x0806, 0x8035, 0x88CC, 0]))
        return ("packet", ts, wire_len, make_packet(ethertype=ethertype))
    if kind == "bad_link":
        return ("packet", ts, wire_len, make_packet(error_layer="ethernet"))
    pool = draw(st.sampled_from([V4, V6]))
    protocol = draw(st.sampled_from([6, 17, 1, 58, 132, 47, 50, 136, 99]))
    fragment = draw(st.sampled_from([0, 0, 0, 1480]))
    layer = draw(st.sampled_from([None, None, None, "tcp", "ipv4"]))
    dst_port = None
    if protocol in PORT_PROTOCOLS and not fragment and layer not in TRANSPORT_LAYERS:
        dst_port = draw(st.sampled_from([53, 80, 443, 8080, 40000]))
    pkt = make_packet(
        draw(st.sampled_from(pool)),
        draw(st.sampled_from(pool)),
        protocol,
        dst_port,
        fragment_offset=fragment,
        error_layer=layer,
    )
    return ("packet", ts, wire_len, pkt)


CONFIGS = st.fixed_dictionaries(
    {
        "interval_ns": st.sampled_from([None, NS, NS // 4, 3 * NS // 2, 2 * NS]),
        "top": st.integers(0, 4),
        "max_table_keys": st.sampled_from([1, 2, 3, 100]),
        "max_interval_table_keys": st.sampled_from([1, 3, 100]),
        "max_intervals": st.sampled_from([2, 3, 100]),
        "max_windows": st.sampled_from([2, 3, 100]),
        "pending_keys": st.sampled_from([1, 2, PENDING_KEYS]),
    }
)


@PROPERTY
@given(
    ops=st.lists(ops_strategy(), max_size=40),
    config=CONFIGS,
    k=st.integers(1, 4),
    data=st.data(),
)
def test_merging_any_split_equals_one_pass(
    ops: list[Op], config: dict[str, Any], k: int, data: st.DataObject
) -> None:
    expected = run(ops, TrafficStats(**config)).summaries()
    assignment = data.draw(st.lists(st.integers(0, k - 1), min_size=len(ops), max_size=len(ops)))
    parts = [TrafficStats(**config) for _ in range(k)]
    for op, part in zip(ops, assignment, strict=True):
        run([op], parts[part])
    # Parts travel to the coordinator pickled (pending counts and all), in any order.
    parts = [pickle.loads(pickle.dumps(part)) for part in parts]
    order = data.draw(st.permutations(range(k)))
    merged = parts[order[0]]
    for i in order[1:]:
        before = pickle.dumps(parts[i])
        merged.merge(parts[i])
        assert pickle.dumps(parts[i]) == before  # merge leaves the other part as it was
    assert merged.summaries() == expected


@PROPERTY
@given(ops=st.lists(ops_strategy(), max_size=40), interval=st.sampled_from([None, NS, NS // 4]))
def test_summaries_agree_with_the_model(ops: list[Op], interval: int | None) -> None:
    summaries = run(ops, TrafficStats(interval_ns=interval, top=1000)).summaries()
    if not ops:
        assert summaries == []
        return
    whole, *intervals = summaries
    assert observed(whole) == model(ops)
    assert sum(whole.protocols[name][0] for name in L3_CLASSES) == whole.packets
    assert sum(whole.protocols[name][0] for name in L4_CLASSES) == (
        whole.protocols["ipv4"][0] + whole.protocols["ipv6"][0]
    )
    if interval is None:
        assert intervals == []
        return
    for s in intervals:
        assert s.start_ns is not None and s.end_ns is not None
        inside = [op for op in ops if op[1] is not None and s.start_ns <= op[1] < s.end_ns]
        assert observed(s) | {"start_ns": None, "end_ns": None} == model(inside) | {
            "start_ns": None,
            "end_ns": None,
        }
    untimed = [op for op in ops if op[1] is None]
    assert sum(s.packets for s in intervals) == whole.packets - len(untimed)


def colliding_crc(key: int) -> int:
    return key % 3  # few CRC values: ranks tie on the CRC and the key must break them


@PROPERTY
@given(
    keys=st.lists(st.integers(0, 30), max_size=60),
    cap=st.integers(1, 6),
    assignment=st.lists(st.integers(0, 2), min_size=60, max_size=60),
)
def test_capped_table_keeps_the_lowest_ranks_exactly(
    keys: list[int], cap: int, assignment: list[int]
) -> None:
    single: CappedTable[int] = CappedTable(cap, 2, colliding_crc)
    parts: list[CappedTable[int]] = [CappedTable(cap, 2, colliding_crc) for _ in range(3)]
    for key, part in zip(keys, assignment, strict=False):
        single.add(key, 0, 1, key)
        parts[part].add(key, 0, 1, key)
    merged = parts[0]
    merged.merge(parts[1])
    merged.merge(parts[2])
    single.compact()
    merged.compact()
    lowest = sorted(set(keys), key=lambda k: (colliding_crc(k), k))[:cap]
    assert single.rows == merged.rows == {k: [keys.count(k), keys.count(k) * k] for k in lowest}
    assert single.overflowed == merged.overflowed == (len(set(keys)) > cap)


def test_merge_refuses_other_settings() -> None:
    with pytest.raises(ValueError, match="different intervals or caps"):
        TrafficStats(interval_ns=NS).merge(TrafficStats())


# ---------------------------------------------------------------------- hostile input


def test_hostile_sources_keep_the_tables_bounded() -> None:
    # A spoofed-source flood: 200,000 addresses, each sending one packet to one target port.
    n = 200_000
    stats = TrafficStats()
    victim = ip("192.0.2.1")
    for i in range(n):
        stats.add(T0 + i * 1000, 60, make_packet(struct.pack("!I", 0x0A000000 + i), victim, 6, 22))
        if i % 20_000 == 0:
            assert stats.table_sizes()["pending"] <= PENDING_KEYS
    (whole,) = stats.summaries()
    sizes = stats.table_sizes()
    assert sizes["talkers"] == MAX_TABLE_KEYS
    assert whole.talkers_overflow and not whole.ports_overflow
    assert whole.talkers_tracked == MAX_TABLE_KEYS
    # What the table does not itemise is counted: every packet has two endpoints.
    tracked = {t.ip: t for t in whole.talkers}
    assert whole.talkers_untracked_packets > 0
    assert whole.ports[0].packets == n and whole.ports_tracked == 1
    # Kept addresses are counted exactly (one packet each, or all n for the victim).
    for t in tracked.values():
        assert t.packets == (n if t.ip == victim else 1)


def test_hostile_timestamps_keep_intervals_and_windows_bounded() -> None:
    stats = TrafficStats(interval_ns=NS, max_intervals=64, max_windows=128)
    step = 7_919 * NS * 3_600  # scattered over ~90 years
    for i in range(2_000):
        stats.add(i * step, 60, make_packet("10.0.0.1", "10.0.0.2", 17, 53))
    sizes = stats.table_sizes()
    assert sizes["intervals"] <= 64 and sizes["windows"] <= 128
    whole, *intervals = stats.summaries()
    assert 2 <= len(intervals) <= 64
    assert intervals[0].interval_ns is not None and intervals[0].interval_ns > NS
    assert sum(s.packets for s in intervals) == whole.packets == 2_000
    assert whole.peak_window_ns > NS


# ---------------------------------------------------------------------- the event


def test_stats_event_fields() -> None:
    stats = run(HAND_OPS, TrafficStats(interval_ns=NS, top=2))
    whole, first, _ = stats.summaries()
    event = stats_event(whole, "x.pcap", "abc123")
    assert event["@timestamp"] == "2023-11-14T22:13:20.000000000Z"
    assert event["event"] | {"category": list(event["event"]["category"])} == {
        "id": "abc123-stats",
        "kind": "metric",
        "category": ["network"],
        "type": ("info",),
        "dataset": DATASET_STATS,
        "module": "pcap_ingest",
        "start": "2023-11-14T22:13:20.000000000Z",
        "end": "2023-11-14T22:13:21.200000000Z",
        "duration": 1_200_000_000,
    }
    assert event["network"] == {"packets": 11, "bytes": 1450}
    stats_fields = event["pcap"]["stats"]
    assert event["pcap"]["file"] == "x.pcap"
    assert stats_fields["scope"] == "capture"
    assert (stats_fields["tcp_packets"], stats_fields["tcp_bytes"]) == (3, 600)
    assert stats_fields["anomalies"] == 3
    assert stats_fields["top_talkers"][0] == {
        "ip": "10.0.0.2",
        "packets": 6,
        "bytes": 1220,
        "tx_packets": 2,
        "tx_bytes": 120,
        "rx_packets": 4,
        "rx_bytes": 1100,
    }
    assert stats_fields["top_destination_ports"] == [
        {"transport": "tcp", "port": 80, "packets": 3, "bytes": 600},
        {"transport": "udp", "port": 53, "packets": 1, "bytes": 80},
    ]
    assert stats_fields["pps_peak"] == 10.0 and stats_fields["peak_window_s"] == 1.0
    interval = stats_event(first, "x.pcap", "abc123")
    assert interval["event"]["id"] == f"abc123-stats-{NS}-{T0 // NS}"
    assert interval["event"]["duration"] == NS
    assert interval["pcap"]["stats"]["interval_s"] == 1.0
    assert interval["network"]["packets"] == 10
    orjson.dumps(event)  # serialisable as it is


# ---------------------------------------------------------------------- the command


def udp_frame(src: str, dst: str, dst_port: int, payload: int) -> bytes:
    udp = struct.pack("!HHHH", 40000, dst_port, 8 + payload, 0) + bytes(payload)
    ip_header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, ip(src), ip(dst)
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip_header + udp


def write_capture(path: Path, truncate: bool = False) -> Path:
    records = [
        Rec(1_700_000_000, 0, udp_frame("10.0.0.1", "10.0.0.53", 53, 30)),
        Rec(1_700_000_000, 500_000, udp_frame("10.0.0.53", "10.0.0.1", 40000, 60)),
        Rec(1_700_000_002, 0, udp_frame("10.0.0.1", "10.0.0.53", 53, 30)),
    ]
    if truncate:
        records.append(Rec(1_700_000_003, 0, b"\x00" * 20, caplen=1000))
    path.write_bytes(pcap_bytes(records))
    return path


def test_stats_command_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = write_capture(tmp_path / "dns.pcap")
    out = io.StringIO()
    assert stats_command([str(capture)], 1.0, 10, False, out) == EXIT_OK
    text = out.getvalue()
    assert f"Capture: {capture}" in text
    assert "Packets:          3" in text
    assert "Duration:         2.000000 s" in text
    assert "udp/53" in text and "10.0.0.1" in text
    assert "Intervals of 1 s" in text
    assert capsys.readouterr().err == ""


def test_stats_command_json(tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "dns.pcap")
    out = io.StringIO()
    assert stats_command([str(capture)], 1.0, 10, True, out) == EXIT_OK
    events = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [e["pcap"]["stats"]["scope"] for e in events] == ["capture", "interval", "interval"]
    assert [e["network"]["packets"] for e in events] == [3, 2, 1]
    assert all(e["event"]["dataset"] == DATASET_STATS for e in events)
    assert len({e["event"]["id"] for e in events}) == 3


def test_stats_command_reports_a_cut_short_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = write_capture(tmp_path / "cut.pcap", truncate=True)
    out = io.StringIO()
    assert stats_command([str(capture)], None, 10, False, out) == EXIT_INCOMPLETE
    assert "Packets:          4   (anomalies: 1)" in out.getvalue()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(capture) in err[0] and "truncated" in err[0]


@pytest.mark.parametrize(
    ("name", "interval", "top", "words"),
    [
        ("missing.pcap", None, 10, "capture not found"),
        ("junk.bin", None, 10, "unknown capture format"),
        ("dns.pcap", 0.0, 10, "--interval must be at least"),
        ("dns.pcap", float("nan"), 10, "--interval must be at least"),
        ("dns.pcap", None, -1, "--top must be 0 or more"),
    ],
)
def test_stats_command_usage_errors(
    name: str,
    interval: float | None,
    top: int,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_capture(tmp_path / "dns.pcap")
    (tmp_path / "junk.bin").write_bytes(b"definitely not a capture file")
    out = io.StringIO()
    assert stats_command([str(tmp_path / name)], interval, top, False, out) == EXIT_USAGE
    assert out.getvalue() == ""
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pcap-ingest: error: ") and words in err[0]


def test_render_table_of_nothing() -> None:
    assert render_table([], "empty.pcap") == "Capture: empty.pcap\n  no packets\n"


# ---------------------------------------------------------------------- reference captures

# Our class → truth "outer" key. ESP: see OUTER_TRANSPORT in test_truth_packets (tshark's
# outer view skips it like AH, leaving no_l4).
OUTER_KEY = {name: name for name in ("ipv4", "ipv6", *L4_CLASSES)} | {"esp": OUTER_TRANSPORT["esp"]}
# Where our `arp` (outermost ARP/RARP) differs from truth `arp_packets` (ARP anywhere).
ARP_DIFFERENCES = {"zeek__vxlan.pcap": "2 ARP frames inside VXLAN: the outer view sees UDP"}


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_stats_match_truth(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = truth_for(capture)
    rel = truth["file"]
    out = io.StringIO()
    code = stats_command([str(capture)], None, 5, True, out)
    assert code in (EXIT_OK, EXIT_INCOMPLETE)
    event = orjson.loads(out.getvalue().splitlines()[0])
    stats = event["pcap"]["stats"]
    packets = event["network"]["packets"]

    if truth["read_error"] is None and rel not in FRAME_DIFFERENCES:
        assert packets == truth["frames"]
    else:
        assert packets >= truth["frames"]
    if truth["read_error"] is not None and rel not in FRAME_DIFFERENCES:
        assert code == EXIT_INCOMPLETE  # cut short for tshark too: we say so
    if code == EXIT_INCOMPLETE:
        assert len(capsys.readouterr().err.splitlines()) == 1

    outer: Counter[str] = Counter()
    for name, key in OUTER_KEY.items():
        outer[key] += stats[f"{name}_packets"]
    expected = {k: v for k, v in truth["outer"].items() if v}
    if rel in OUTER_DIFFERENCES:
        expected = OUTER_DIFFERENCES[rel][0]
    assert {k: v for k, v in outer.items() if v} == expected
    if rel not in ARP_DIFFERENCES:
        assert stats["arp_packets"] == truth["arp_packets"]
    assert sum(stats[f"{name}_packets"] for name in L3_CLASSES) == packets
    assert sum(stats[f"{name}_packets"] for name in L4_CLASSES) == (
        stats["ipv4_packets"] + stats["ipv6_packets"]
    )


@needs_shared
def test_totals_match_capinfos() -> None:
    """`capinfos -M -c -d -u -a -e -y -i -x -z` (Wireshark 4.0) on two reference captures."""
    for name, packets, data_bytes, first, duration_s, bps, pps, size in [
        ("dpkt__http.pcap", 43, 25091, "2004-05-13T10:17:07.311224",
         30.393704, 6604.26, 1.41, 583.51),
        # Captured with a short snaplen: capinfos' data size counts bytes on the wire.
        ("malformed/zeek__truncated-header.pcap", 24, 1993, "2004-12-15T19:43:41.634774",
         1.511184, 10550.67, 15.88, 83.04),
    ]:  # fmt: skip
        out = io.StringIO()
        stats_command([str(SHARED / name)], None, 10, True, out)
        event = orjson.loads(out.getvalue().splitlines()[0])
        stats = event["pcap"]["stats"]
        assert event["network"] == {"packets": packets, "bytes": data_bytes}
        assert event["event"]["start"].startswith(first)
        assert event["event"]["duration"] / NS == pytest.approx(duration_s, abs=1e-9)
        assert round(stats["bps_mean"], 2) == bps
        assert round(stats["pps_mean"], 2) == pps
        assert round(stats["packet_size_mean"], 2) == size
