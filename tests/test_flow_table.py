"""The flow table on hand-built packets: Zeek states and history, timeouts on capture time,
port reuse, ICMP pairing, sequence accounting, caps, sweep points, and stream delivery."""

from __future__ import annotations

import random
import socket
import struct

import dpkt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.capture.frame import Frame
from pipeline.decode.packet import Packet, decode_packet
from pipeline.flows.table import (
    END_ACTIVE,
    END_EVICTED,
    END_FIN,
    END_IDLE,
    END_OF_INPUT,
    END_REUSED,
    END_RST,
    Flow,
    FlowTable,
)
from pipeline.flows.tracker import FlowTracker, sweep_points, sweep_points_numpy

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
S = 1_000_000_000
F, SY, R, P, A = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp_frame(
    src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 0, ack: int = 0,
    data: bytes = b"", window: int = 1024,
) -> bytes:  # fmt: skip
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=window)
    tcp.data = data
    return ip_frame(src, dst, dpkt.ip.IP_PROTO_TCP, tcp)


def udp_frame(src: str, dst: str, sport: int, dport: int, data: bytes = b"x") -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport)
    udp.data = data
    udp.ulen = 8 + len(data)
    return ip_frame(src, dst, dpkt.ip.IP_PROTO_UDP, udp)


def icmp_frame(src: str, dst: str, icmp_type: int, code: int = 0) -> bytes:
    icmp = dpkt.icmp.ICMP(type=icmp_type, code=code, data=dpkt.icmp.ICMP.Echo(id=1, seq=1))
    return ip_frame(src, dst, dpkt.ip.IP_PROTO_ICMP, icmp)


def ip_frame(src: str, dst: str, protocol: int, payload: dpkt.Packet) -> bytes:
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=protocol)
    ip.data = payload
    ip.len = 20 + len(bytes(payload))
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip)
    return bytes(eth)


class Feeder:
    """Feeds frames to a table the way the converter does, numbering them."""

    def __init__(self, table: FlowTable | None = None) -> None:
        self.table = table or FlowTable(1000)
        self.tracker = FlowTracker(self.table)
        self.index = 0
        self.ended: list[Flow] = []

    def __call__(self, ts_ns: int, frame: bytes) -> Packet:
        self.index += 1
        pkt = decode_packet(1, frame)
        assert pkt.error is None, pkt
        record = Frame(self.index, ts_ns, 0, len(frame), len(frame), 0, 1, frame)
        self.tracker.frame(record, pkt)
        self.ended += self.table.take_ended()
        return pkt

    def finish(self) -> list[Flow]:
        self.ended += self.tracker.finish()
        return self.ended


def handshake(feed: Feeder, t: int = 0, cport: int = 40000) -> None:
    feed(t, tcp_frame(CLIENT, SERVER, cport, 80, SY, seq=100))
    feed(t + 1, tcp_frame(SERVER, CLIENT, 80, cport, SY | A, seq=500, ack=101))
    feed(t + 2, tcp_frame(CLIENT, SERVER, cport, 80, A, seq=101, ack=501))


def test_complete_connection_is_sf_with_zeek_history() -> None:
    feed = Feeder()
    handshake(feed)
    feed(3, tcp_frame(CLIENT, SERVER, 40000, 80, P | A, seq=101, ack=501, data=b"GET /"))
    feed(4, tcp_frame(SERVER, CLIENT, 80, 40000, P | A, seq=501, ack=106, data=b"200 OK"))
    feed(5, tcp_frame(CLIENT, SERVER, 40000, 80, F | A, seq=106, ack=507))
    feed(6, tcp_frame(SERVER, CLIENT, 80, 40000, F | A, seq=507, ack=107))
    feed(7, tcp_frame(CLIENT, SERVER, 40000, 80, A, seq=107, ack=508))
    (flow,) = feed.finish()
    assert flow.conn_state == "SF"
    assert flow.history == "ShADdFf"  # the server sent no pure ACK: no "a"
    assert (flow.orig_ip, flow.orig_port) == (socket.inet_aton(CLIENT), 40000)
    assert (flow.orig_packets, flow.resp_packets) == (5, 3)
    assert (flow.orig_payload, flow.resp_payload) == (5, 6)
    assert flow.missed_bytes == flow.retransmitted_bytes == flow.out_of_order_bytes == 0
    assert flow.end_reason == END_OF_INPUT
    assert (flow.first_index, flow.last_index) == (1, 8)


def test_connection_states() -> None:
    def run(*packets: tuple[str, int]) -> Flow:
        feed = Feeder()
        seqs = {"c": 100, "s": 500}
        for t, (who, flags) in enumerate(packets):
            src, dst, sport, dport = (
                (CLIENT, SERVER, 40000, 80) if who == "c" else (SERVER, CLIENT, 80, 40000)
            )
            feed(t, tcp_frame(src, dst, sport, dport, flags, seq=seqs[who]))
        (flow,) = feed.finish()
        return flow

    assert run(("c", SY)).conn_state == "S0"
    assert run(("c", SY), ("s", R | A)).conn_state == "REJ"
    assert run(("c", SY), ("s", SY | A), ("c", A)).conn_state == "S1"
    assert run(("c", SY), ("s", SY | A), ("c", A), ("c", R)).conn_state == "RSTO"
    assert run(("c", SY), ("s", SY | A), ("c", A), ("s", R)).conn_state == "RSTR"
    assert run(("c", SY), ("c", R)).conn_state == "RSTOS0"
    assert run(("c", SY), ("s", SY | A), ("c", A), ("c", F | A)).conn_state == "S2"
    assert run(("c", SY), ("s", SY | A), ("c", A), ("s", F | A)).conn_state == "S3"
    assert run(("c", SY), ("c", F)).conn_state == "SH"
    assert run(("c", A), ("s", A)).conn_state == "OTH"


def test_syn_ack_first_flips_the_originator() -> None:
    feed = Feeder()
    feed(0, tcp_frame(SERVER, CLIENT, 80, 40000, SY | A, seq=500, ack=101))
    feed(1, tcp_frame(CLIENT, SERVER, 40000, 80, A, seq=101, ack=501))
    (flow,) = feed.finish()
    assert flow.orig_ip == socket.inet_aton(CLIENT) and flow.orig_port == 40000
    assert flow.history.startswith("^")
    assert (flow.orig_packets, flow.resp_packets) == (1, 1)


def test_directions_whichever_endpoint_sorts_first() -> None:
    """The table tells a packet's direction by which side of the key it is (the lower
    address, or port on equal addresses) against the originator's side: checked with the
    originator lower and higher, on one address with two ports, on a flipped (SYN-ACK
    first) flow, across an active-timeout continuation, and on a flow whose two endpoints
    are the same (every packet the originator's)."""
    cases = [
        ("10.0.0.1", "10.0.0.2", 40000, 80),  # originator is the lower address
        ("10.0.0.9", "10.0.0.2", 40000, 80),  # originator is the higher address
        ("10.0.0.5", "10.0.0.5", 50000, 80),  # one address: the higher port originates
        ("10.0.0.5", "10.0.0.5", 80, 50000),  # one address: the lower port originates
    ]
    for client, server, cport, sport in cases:
        feed = Feeder(FlowTable(1000, udp_idle_ns=1000 * S, active_ns=100 * S))
        feed(0, udp_frame(client, server, cport, sport))
        feed(1, udp_frame(server, client, sport, cport))
        feed(2, udp_frame(server, client, sport, cport))
        feed(150 * S, udp_frame(server, client, sport, cport))  # past the active timeout
        feed(151 * S, udp_frame(server, client, sport, cport))
        feed(152 * S, udp_frame(client, server, cport, sport))
        first, second = feed.finish()
        assert first.orig_ip == socket.inet_aton(client) and first.orig_port == cport
        assert (first.orig_packets, first.resp_packets) == (1, 2), (client, server)
        assert second.continued and second.orig_port == cport
        assert (second.orig_packets, second.resp_packets) == (1, 2), (client, server)
    feed = Feeder()
    feed(0, tcp_frame("10.0.0.9", "10.0.0.1", 80, 40000, SY | A, seq=500, ack=101))
    feed(1, tcp_frame("10.0.0.1", "10.0.0.9", 40000, 80, A, seq=101, ack=501))
    feed(2, tcp_frame("10.0.0.1", "10.0.0.9", 40000, 80, A, seq=101, ack=501, data=b"x"))
    (flipped,) = feed.finish()
    assert flipped.orig_ip == socket.inet_aton("10.0.0.1") and flipped.history.startswith("^")
    assert (flipped.orig_packets, flipped.resp_packets, flipped.orig_payload) == (2, 1, 1)
    feed = Feeder()
    for t in range(3):
        feed(t, udp_frame("10.0.0.5", "10.0.0.5", 7000, 7000))
    (same,) = feed.finish()
    assert (same.orig_packets, same.resp_packets) == (3, 0)


def test_timeouts_use_capture_time() -> None:
    feed = Feeder(FlowTable(1000, udp_idle_ns=60 * S, active_ns=100 * S))
    feed(0, udp_frame(CLIENT, SERVER, 5000, 53))
    feed(59 * S, udp_frame(SERVER, CLIENT, 53, 5000))  # within the idle timeout
    feed(200 * S, udp_frame(CLIENT, SERVER, 5000, 53))  # idle for 141 s: a new flow
    for t in range(210, 420, 30):  # a chatty flow for 210 s: split at the active timeout
        feed(t * S, udp_frame(CLIENT, SERVER, 6000, 53))
    flows = feed.finish()
    first = flows[0]
    assert first.end_reason == END_IDLE and first.conn_state == "SF"
    assert (first.orig_packets, first.resp_packets) == (1, 1)
    chatty = [f for f in flows if f.orig_port == 6000]
    # 210..300 s, then 330..390 s: the packet at 330 s is 120 s after the record began.
    assert [f.end_reason for f in chatty] == [END_ACTIVE, END_OF_INPUT]
    assert [f.continued for f in chatty] == [False, True]
    assert [f.orig_packets for f in chatty] == [4, 3]
    assert sum(f.orig_packets for f in chatty) == 7


def test_sweep_ends_quiet_flows_and_closed_ones_after_the_linger() -> None:
    feed = Feeder(FlowTable(1000, tcp_idle_ns=300 * S, linger_ns=5 * S))
    handshake(feed, 0)
    feed(3, tcp_frame(CLIENT, SERVER, 40000, 80, F | A, seq=101, ack=501))
    feed(4, tcp_frame(SERVER, CLIENT, 80, 40000, F | A, seq=501, ack=102))
    feed(10, udp_frame(CLIENT, SERVER, 1, 2))
    feed.table.sweep(4 * S)
    assert feed.table.take_ended() == []
    feed.table.sweep(6 * S)  # the closed TCP flow lingered 5 s; UDP is idle for 60 s
    (closed,) = feed.table.take_ended()
    assert closed.protocol == 6 and closed.end_reason == END_FIN
    feed.table.sweep(61 * S)
    (udp,) = feed.table.take_ended()
    assert udp.protocol == 17 and udp.end_reason == END_IDLE


def test_rst_ends_with_rst_and_a_new_syn_reuses_the_ports() -> None:
    feed = Feeder()
    handshake(feed, 0)
    feed(3, tcp_frame(CLIENT, SERVER, 40000, 80, R, seq=101))
    feed(4, tcp_frame(CLIENT, SERVER, 40000, 80, SY, seq=9000))  # new ISN: new connection
    feed(5, tcp_frame(CLIENT, SERVER, 40000, 80, SY, seq=9000))  # SYN retransmission: same
    first, second = feed.finish()
    assert first.end_reason == END_RST and first.conn_state == "RSTO"
    assert second.orig_packets == 2 and second.conn_state == "S0"
    assert feed.table.reused == 1
    feed2 = Feeder()
    handshake(feed2, 0)
    feed2(3, tcp_frame(CLIENT, SERVER, 40000, 80, SY, seq=7))
    assert feed2.ended[0].end_reason == END_REUSED


def test_icmp_echo_request_and_reply_are_one_flow() -> None:
    feed = Feeder()
    feed(0, icmp_frame(CLIENT, SERVER, 8))
    feed(1, icmp_frame(SERVER, CLIENT, 0))
    feed(2, icmp_frame(SERVER, CLIENT, 3, 1))  # an error: a flow of its own
    echo, error = feed.finish()
    assert (echo.orig_packets, echo.resp_packets, echo.orig_port) == (1, 1, 8)
    assert error.orig_ip == socket.inet_aton(SERVER) and error.orig_packets == 1


def test_sequence_accounting_retransmission_out_of_order_and_missed() -> None:
    feed = Feeder()
    handshake(feed)
    send = lambda t, seq, data: feed(  # noqa: E731
        t, tcp_frame(CLIENT, SERVER, 40000, 80, A, seq=seq, ack=501, data=data)
    )
    send(3, 101, b"a" * 10)  # [0, 10)
    send(4, 121, b"c" * 10)  # [20, 30): a hole [10, 20)
    send(5, 141, b"e" * 10)  # [40, 50): a hole [30, 40)
    send(6, 111, b"b" * 10)  # fills [10, 20): out of order
    send(7, 101, b"a" * 10)  # retransmission
    feed(8, tcp_frame(SERVER, CLIENT, 80, 40000, A, seq=501, ack=101 + 60))  # acks 10 unseen
    (flow,) = feed.finish()
    assert flow.out_of_order_bytes == 10
    assert flow.retransmitted_bytes == 10
    assert flow.missed_bytes == 10 + 10  # the [30, 40) hole, and [50, 60) acked but not seen
    assert "G" in flow.history and "T" in flow.history


def test_sequence_wraparound_is_in_order() -> None:
    feed = Feeder()
    isn = 2**32 - 5
    feed(0, tcp_frame(CLIENT, SERVER, 1, 2, SY, seq=isn))
    feed(1, tcp_frame(CLIENT, SERVER, 1, 2, A, seq=isn + 1, data=b"x" * 10))
    feed(2, tcp_frame(CLIENT, SERVER, 1, 2, A, seq=(isn + 11) % 2**32, data=b"y" * 10))
    (flow,) = feed.finish()
    assert flow.missed_bytes == flow.retransmitted_bytes == flow.out_of_order_bytes == 0


def test_the_flow_cap_evicts_and_counts() -> None:
    feed = Feeder(FlowTable(100))
    for i in range(1000):
        feed(i, tcp_frame(f"10.1.{i // 250}.{i % 250}", SERVER, 1000 + i, 80, SY, seq=i))
    assert len(feed.table.flows) <= 100
    assert feed.table.evicted == 900
    flows = feed.finish()
    assert len(flows) == 1000
    assert sum(f.end_reason == END_EVICTED for f in flows) == 900


def test_flow_stats_spreads() -> None:
    feed = Feeder(FlowTable(10, spreads=True))
    for t in (0, 10, 30):
        feed(t, udp_frame(CLIENT, SERVER, 1, 2, b"x" * t))
    (flow,) = feed.finish()
    spreads = flow.spread_summaries()
    assert spreads is not None
    assert spreads["source_iat_ns"] == {"min": 10, "mean": 15.0, "max": 20, "stddev": 5.0}
    assert spreads["source_size"]["min"] == 42 and spreads["source_size"]["max"] == 72
    assert spreads["destination_size"] is None


def test_fragments_count_once_reassembled() -> None:
    payload = dpkt.udp.UDP(sport=53, dport=5000, data=b"z" * 3000)
    payload.ulen = 8 + 3000
    whole = bytes(payload)
    feed = Feeder()
    feed(0, udp_frame(CLIENT, SERVER, 5000, 53))
    for i, off in enumerate(range(0, len(whole), 1480)):
        chunk = whole[off : off + 1480]
        flags_offset = (off // 8) | (0x2000 if off + 1480 < len(whole) else 0)
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(chunk), 7, flags_offset, 64,
                             17, 0, socket.inet_aton(SERVER), socket.inet_aton(CLIENT))  # fmt: skip
        feed(1 + i, b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00" + header + chunk)
    (flow,) = feed.finish()
    assert flow.resp_packets == 3  # the three fragments, in the flow of their datagram
    assert flow.resp_payload == 3000
    assert feed.tracker.datagrams == 1


def test_split_tables_see_the_same_flows_as_one() -> None:
    """What the engine relies on: route flows to k tables, sweep all at the same points with
    the same clock — the union of their records is what one table gives."""
    rng = random.Random(5)
    frames = []
    t = 0
    for _ in range(3000):
        t += rng.randrange(0, 400_000_000)
        a, b = rng.randrange(20), rng.randrange(20)
        port = rng.randrange(3)
        kind = rng.random()
        if kind < 0.5:
            frame = udp_frame(f"10.0.0.{a}", f"10.0.1.{b}", 1000 + port, 53)
        else:
            flags = rng.choice((SY, SY | A, A, P | A, F | A, R))
            frame = tcp_frame(f"10.0.0.{a}", f"10.0.1.{b}", 2000 + port, 80, flags,
                              seq=rng.randrange(2**32), data=b"d" * rng.randrange(3))  # fmt: skip
        frames.append((t, frame))

    def run(k: int) -> list[tuple[object, ...]]:
        feeders = [
            Feeder(FlowTable(10_000, udp_idle_ns=5 * S, tcp_idle_ns=20 * S)) for _ in range(k)
        ]
        batch = [Frame(i + 1, ts, 0, len(f), len(f), 0, 1, f) for i, (ts, f) in enumerate(frames)]
        points, _ = sweep_points(batch, None)  # type: ignore[arg-type]
        records = []
        for record in batch:
            while points and points[0][0] <= record.index:
                _, clock = points.pop(0)
                for feeder in feeders:
                    records += [(clock, *describe(f)) for f in feeder.tracker.sweep(clock)]
            pkt = decode_packet(1, record.data)
            owner = feeders[hash((min(pkt.src_ip, pkt.dst_ip), max(pkt.src_ip, pkt.dst_ip))) % k]
            owner.index = record.index - 1
            owner(record.ts_ns, record.data)
            records += [
                (record.index, *describe(f)) for f in owner.table.take_ended() + owner.ended
            ]
            owner.ended = []
        for feeder in feeders:
            records += [("end", *describe(f)) for f in feeder.tracker.finish()]
        return sorted(records, key=repr)

    assert run(1) == run(3)


def describe(flow: Flow) -> tuple[object, ...]:
    return (flow.first_index, flow.last_index, flow.end_reason, flow.conn_state, flow.history,
            flow.orig_packets, flow.resp_packets, flow.orig_bytes, flow.resp_bytes)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10**13), max_size=200),
    st.integers(min_value=1, max_value=5),
)
def test_sweep_points_numpy_equals_python(times: list[int], pieces: int) -> None:
    frames = [Frame(i + 1, ts, 0, 0, 0, 0, 1, b"") for i, ts in enumerate(times)]
    size = max(1, len(frames) // pieces)
    py_state: int | None = None
    np_state: int | None = None
    for start in range(0, len(frames), size):
        part = frames[start : start + size]
        py_points, py_state = sweep_points(part, py_state)  # type: ignore[arg-type]
        np_points, np_state = sweep_points_numpy(
            np.array([f.index for f in part], dtype=np.int64),
            np.array([f.ts_ns for f in part], dtype=np.int64),
            np_state,
        )
        assert py_points == np_points
        assert py_state == np_state


class Collector:
    """A stream subscriber that keeps every byte it is given."""

    def __init__(self) -> None:
        self.streams: dict[tuple[int, bool], bytearray] = {}
        self.closed_flows = 0

    def wants(self, flow: Flow) -> bool:
        return True

    def data(self, flow: Flow, from_originator: bool, data: bytes) -> None:
        self.streams.setdefault((flow.first_index, from_originator), bytearray()).extend(data)

    def closed(self, flow: Flow) -> None:
        self.closed_flows += 1


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.randoms(use_true_random=False))
def test_subscriber_gets_the_stream_whatever_the_segmentation(
    data: bytes, rnd: random.Random
) -> None:
    collector = Collector()
    feed = Feeder(FlowTable(10, subscriber=collector))
    handshake(feed)
    cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randrange(0, 20))))
    pieces = [(a, data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    segments = pieces + [rnd.choice(pieces) for _ in range(rnd.randrange(0, 4))]  # duplicates
    rnd.shuffle(segments)
    for i, (offset, chunk) in enumerate(segments):
        feed(10 + i, tcp_frame(CLIENT, SERVER, 40000, 80, A, seq=101 + offset, ack=501, data=chunk))
    (flow,) = feed.finish()
    assert bytes(collector.streams[(flow.first_index, True)]) == data
    assert flow.missed_bytes == 0
    assert collector.closed_flows == 1


def test_reassembly_caps_bite_counted_and_flagged() -> None:
    """A per-flow stream cap and a per-table buffer cap: each bites, is counted, and marks
    the flow; memory held stays under the table cap, and the stream goes on after it."""
    collector = Collector()
    table = FlowTable(10, subscriber=collector, max_stream_bytes=1000)
    feed = Feeder(table)
    handshake(feed, cport=1)
    for i in range(20):  # 20 kB in order: past the 1000-byte stream cap
        feed(10 + i, tcp_frame(CLIENT, SERVER, 1, 80, A, seq=101 + i * 1000, data=b"x" * 1000))
    (capped,) = feed.finish()
    assert table.stream_cap_hits == 1 and capped.reassembly_capped
    assert bytes(collector.streams[(capped.first_index, True)]) == b"x" * 1000

    collector = Collector()
    table = FlowTable(10, subscriber=collector, max_reassembly_bytes=3000)
    feed = Feeder(table)
    handshake(feed, cport=2)
    for i in range(1, 10):  # a hole at the start: everything after it is buffered
        feed(200 + i, tcp_frame(CLIENT, SERVER, 2, 80, A, seq=101 + i * 1000, data=b"y" * 1000))
        assert table.buffered_bytes <= 3000
    (holed,) = feed.finish()
    assert table.reassembly_cap_hits >= 1 and holed.reassembly_capped
    # The budget gave up the hole, not the stream: everything after it was delivered.
    assert bytes(collector.streams[(holed.first_index, True)]) == b"y" * 9000
    assert table.buffered_bytes == 0


def test_zero_window_is_in_the_history_once_per_direction() -> None:
    feed = Feeder()
    handshake(feed)
    for t in range(3, 6):
        feed(t, tcp_frame(SERVER, CLIENT, 80, 40000, A, seq=501, ack=101, window=0))
    feed(6, tcp_frame(CLIENT, SERVER, 40000, 80, A, seq=101, ack=501, window=0))
    (flow,) = feed.finish()
    assert flow.history.count("w") == 1 and flow.history.count("W") == 1
