"""The flow table: per-connection state over decoded packets, on capture time only (sans-IO).

A worker keeps one `FlowTable` per input. `FlowTable.packet` is called for every decoded
IP packet; it hands fragments and tunnel carriers to `special` (the `FlowTracker`, which
defragments and decapsulates and comes back), and flows leave the table as `Flow` records in
`FlowTable.ended`, which the caller drains and maps to events. Nothing here reads the wall
clock, does I/O, or raises on packet content.

Keys. A flow is the normalised (lower endpoint first) ``(protocol, ip, ip, port, port,
vlan, inner vlan, tunnel id)`` (the tunnel id: a VXLAN/Geneve network, `KEYED_TUNNELS`),
packed in one bytes object when there is no VLAN or tunnel id (`_pack_key`); for
ICMP the type and its paired reply type stand in for the ports as in Community ID, so an echo
request and its reply are one flow. The originator is decided as Zeek does: the SYN side (a
first packet that is a SYN-ACK flips the direction and writes ``^`` in the history), else the
sender of the first packet.

Time. Every decision uses packet timestamps. A packet arriving more than the idle timeout
after its flow's last one ends that flow (``idle_timeout``) and starts a new one; one arriving
more than the active timeout after the flow began ends that record (``active_timeout``) and
continues in a new record. A TCP flow closed by FIN from both sides or a RST lingers
`CLOSED_LINGER_NS` for late segments. `sweep(clock_ns)` expires flows nobody hears from any
more; the caller calls it at *sweep points* that depend on the capture only (`tracker.sweep_points`:
each time the capture's running-maximum timestamp crosses a multiple of `SWEEP_NS`), so which
flows end where is the same for any number of workers (each worker sees only its own flows
but every sweep point, with the same clock). `flush()` ends every flow at end of input.

Expiry uses a heap of ``(check time, flow)`` with exactly one live entry per flow
(``flow.check_ns`` marks it), so a sweep touches only flows that may have expired: O(log n)
per flow per timeout period, not a scan of the table.

TCP. Each endpoint has a Zeek endpoint state (inactive, SYN sent, SYN-ACK sent, partial,
established, closed, reset) from which `conn_state` derives Zeek's S0/S1/SF/REJ/S2/S3/RSTO/
RSTR/RSTOS0/RSTRH/SH/SHR/OTH, and a history string of Zeek letters (S H A D F R T G W I Q ^;
upper case from the originator; each letter once per direction). Per direction the sequence
space is tracked without buffering: the highest byte seen and a capped list of holes, so a
segment is in order, fills a hole (out of order), or repeats bytes (retransmitted); holes
still open at the end, and bytes the peer acknowledged but the capture never showed, are
missed bytes (as Zeek's ``missed_bytes``). A pure SYN with a new initial sequence number on
a flow's ports is port reuse: the old flow ends and a new one starts (as tshark does).

Speed. The per-packet path is one flat function; the TCP history and states are looked at
only when a direction sends a combination of flags (with or without data, with or without a
zero window) it has not sent since the states last changed — most segments repeat one.

Caps. At most ``max_flows`` flows (default sized to the machine: `default_max_flows`); a new
flow beyond it evicts the flow that is nearest its timeout, counted in ``evicted``. Eviction
depends on what else a worker holds, so it is the one thing that can differ with the worker
count: the default is set so that it does not happen on ordinary captures, and the counter
says when it did.

Streams. A `StreamSubscriber` (an application extractor) can ask for a flow's TCP payload:
its directions then get a `StreamReassembler` (first data wins), with a per-flow byte cap
and a per-table cap on buffered out-of-order bytes (over it, the stream that pushed it over
gives up its holes); each cap hit is counted and marks the flow.
"""

from __future__ import annotations

import heapq
import os
import struct
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.capture.frame import Frame
from pipeline.decode.packet import Packet
from pipeline.decode.tunnel import CARRIER_PROTOCOLS, PORT_TEREDO, TUNNEL_DST_PORTS
from pipeline.flows.reassembly import StreamReassembler

# Timeouts, capture time (ns). Zeek's defaults for TCP inactivity (5 min) and UDP and ICMP
# inactivity (1 min); the active timeout is NetFlow's 30 min. A closed TCP flow (FIN from both
# sides, or a RST) lingers 60 s as Suricata's `closed` timeout does: late RSTs and ACKs,
# which real captures show tens of seconds after the close, still belong to it (Zeek's 5 s
# makes each of them a connection of its own). A new SYN starts a new flow at once.
TCP_IDLE_TIMEOUT_NS = 300_000_000_000
UDP_IDLE_TIMEOUT_NS = 60_000_000_000
OTHER_IDLE_TIMEOUT_NS = 60_000_000_000
CLOSED_LINGER_NS = 60_000_000_000
# Tunnels whose id names a virtual network both directions share; GTP-U TEIDs and GRE keys
# differ by direction, so they stay on the record but out of the key.
KEYED_TUNNELS = frozenset(("vxlan", "geneve"))
ACTIVE_TIMEOUT_NS = 1_800_000_000_000
SWEEP_NS = 1_000_000_000  # sweep points: each new second of capture time

# Private memory per tracked flow: ~1.4 KB measured for a SYN-only flow, more with data both
# ways, and ~0.8 KB more for its event when input ends with it open (bench/RESULTS.md).
FLOW_BYTES_ESTIMATE = 3072
MAX_HOLES = 64  # sequence holes tracked per direction; older ones are written off as missed
MAX_SEQ_JUMP = 1 << 30  # a jump farther than this is not this stream: ignore, don't guess
MAX_STREAM_BYTES = 16 << 20  # per flow and direction, reassembled for a subscriber
MAX_REASSEMBLY_BYTES = 256 << 20  # out-of-order bytes buffered per table, all flows together

SEQ_MASK = 0xFFFFFFFF
# A flow's key: its lower endpoint's address, the other's, then protocol and the two ports
# in the same order (`FlowTable.packet`); with a VLAN or a keyed tunnel, a tuple of that and
# them. ICMP's type and paired type stand in for ports (< 2**16 too).
_pack_key = struct.Struct("!BHH").pack
FlowKey = bytes | tuple[bytes, int | None, int | None, Any]
_INT64_MAX = (1 << 63) - 1
SEQ_HALF = 0x80000000

# TCP flag bits as decoded (pipeline.decode.transport).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Zeek endpoint states.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

END_FIN = "fin"
END_RST = "rst"
END_IDLE = "idle_timeout"
END_ACTIVE = "active_timeout"
END_OF_INPUT = "end_of_input"
END_EVICTED = "evicted"
END_REUSED = "port_reuse"


def default_max_flows(workers: int = 1) -> int:
    """A flow cap per table that keeps all tables within a quarter of physical memory."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 4 << 30
    per_table = memory // 4 // max(1, workers) // FLOW_BYTES_ESTIMATE
    return max(1 << 16, min(per_table, 1 << 22))


class StreamSubscriber(Protocol):
    """An extractor that wants reassembled TCP payload of some flows. `data` returning False
    means it has seen enough of that flow (a handshake parsed): its reassembly stops."""

    def wants(self, flow: Flow) -> bool: ...

    def data(self, flow: Flow, from_originator: bool, data: bytes) -> bool | None: ...

    def closed(self, flow: Flow) -> None: ...


class _Declined:
    """The subscriber of a flow nobody (or nobody any more) wants the stream of."""

    def wants(self, flow: Flow) -> bool:
        return False

    def data(self, flow: Flow, from_originator: bool, data: bytes) -> bool | None:
        return False

    def closed(self, flow: Flow) -> None:
        return None


DECLINED = _Declined()


class _Direction:
    """Sequence tracking for one direction of a TCP flow, allocated when it first sends data."""

    __slots__ = ("ack", "acking", "base", "end", "fin", "holes", "isn", "written_off")

    def __init__(self, seq: int, syn: bool) -> None:
        self.isn = seq  # sequence number of the first segment seen (the SYN's, if seen)
        self.base = (seq + 1) & SEQ_MASK if syn else seq  # raw seq of relative offset 0
        self.end = 0  # relative offset past the highest byte seen (unwrapped)
        self.holes: list[list[int]] | None = None  # [start, end) gaps below `end`
        self.written_off = 0  # hole bytes dropped when the hole list was full
        self.ack = 0  # the acknowledgement number field this side sent last (raw)
        self.acking = False  # whether that segment had the ACK flag (else `ack` means nothing)
        self.fin = False


class _Spread:
    """Count, min, max, sum and sum of squares: enough for mean and standard deviation."""

    __slots__ = ("count", "high", "low", "total", "total_sq")

    def __init__(self) -> None:
        self.count = 0
        self.low = 0
        self.high = 0
        self.total = 0
        self.total_sq = 0

    def add(self, value: int) -> None:
        if self.count == 0 or value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        self.count += 1
        self.total += value
        self.total_sq += value * value

    def summary(self) -> dict[str, float | int] | None:
        if not self.count:
            return None
        mean = self.total / self.count
        variance = max(0.0, self.total_sq / self.count - mean * mean)
        # Within 64 bits, as JSON carries them: corrupt capture times can be far apart.
        return {"min": min(self.low, _INT64_MAX), "mean": round(mean, 3),
                "max": min(self.high, _INT64_MAX), "stddev": round(variance**0.5, 3)}  # fmt: skip


class Flow:
    """One flow record. Plain attributes: the table updates them on the per-packet path."""

    __slots__ = (
        "active_end",
        "check_ns",
        "continued",
        "done",
        "end_reason",
        "first_index",
        "history",
        "history_mask",
        "icmp_code",
        "idle_ns",
        "inner_vlan_id",
        "ip_version",
        "key",
        "last_from_orig",
        "last_index",
        "last_ns",
        "orig_bytes",
        "orig_dir",
        "orig_ip",
        "orig_last_ns",
        "orig_line_parts",
        "orig_low",
        "orig_packets",
        "orig_payload",
        "orig_port",
        "orig_seen",
        "orig_state",
        "orig_stream",
        "out_of_order_bytes",
        "protocol",
        "reassembly_capped",
        "resp_bytes",
        "resp_dir",
        "resp_ip",
        "resp_last_ns",
        "resp_line_parts",
        "resp_packets",
        "resp_payload",
        "resp_port",
        "resp_seen",
        "resp_state",
        "resp_stream",
        "retransmitted_bytes",
        "spreads",
        "start_ns",
        "subscriber",
        "tunnels",
        "vlan_id",
    )

    def __init__(self, key: FlowKey, index: int, ts_ns: int, pkt: Packet,
                 src_port: int, dst_port: int, tunnels: tuple[Any, ...] | None,
                 flip: bool) -> None:  # fmt: skip
        self.key = key
        self.first_index = self.last_index = index
        # Whether the packet `FlowTable.packet` accounted last came from the originator: the
        # packet-event encoder, called next for the same packet, reads it.
        self.last_from_orig = True
        self.start_ns = self.last_ns = ts_ns
        self.check_ns = 0
        self.protocol: int = pkt[9]
        self.ip_version: int = pkt[6]
        if flip:
            self.orig_ip, self.resp_ip = pkt[8], pkt[7]
            self.orig_port, self.resp_port = dst_port, src_port
        else:
            self.orig_ip, self.resp_ip = pkt[7], pkt[8]
            self.orig_port, self.resp_port = src_port, dst_port
        self.orig_low = originator_is_low(self)
        self.icmp_code: int | None = pkt[21]  # of the first packet, for ICMP flows
        self.vlan_id = pkt[3]
        self.inner_vlan_id = pkt[4]
        self.tunnels = tunnels
        self.orig_packets = self.orig_bytes = self.orig_payload = 0
        self.resp_packets = self.resp_bytes = self.resp_payload = 0
        self.orig_state = self.resp_state = INACTIVE
        # Per direction, the (TCP flags, has data) combinations seen, one bit each.
        self.orig_seen = self.resp_seen = 0
        self.idle_ns = 0  # set by the table: the timeout for its protocol and state
        self.active_end = 0  # set by the table: when the active timeout ends this record
        self.history = "^" if flip else ""
        self.history_mask = 0
        self.orig_dir: _Direction | None = None
        self.resp_dir: _Direction | None = None
        self.retransmitted_bytes = 0
        self.reassembly_capped = False  # a stream cap cut what its subscriber got
        self.out_of_order_bytes = 0
        self.orig_last_ns = self.resp_last_ns = -1
        self.spreads: list[_Spread] | None = None  # orig size, resp size, orig iat, resp iat
        self.subscriber: StreamSubscriber | None = None
        self.orig_stream: StreamReassembler | None = None
        self.resp_stream: StreamReassembler | None = None
        # The packet-event encoder's rendering of each direction (`PacketLineEncoder.line`),
        # kept here so that with flows on a packet costs one key lookup, not two.
        self.orig_line_parts: tuple[bytes | None, bytes | None, bytes, bytes] | None = None
        self.resp_line_parts: tuple[bytes | None, bytes | None, bytes, bytes] | None = None
        self.end_reason = ""
        self.continued = False  # this record continues one ended by the active timeout
        self.done = False

    # -- what the event needs ------------------------------------------------------------

    @property
    def duration_ns(self) -> int:
        return self.last_ns - self.start_ns

    @property
    def missed_bytes(self) -> int:
        return _missed(self.orig_dir, self.resp_dir) + _missed(self.resp_dir, self.orig_dir)

    @property
    def conn_state(self) -> str:
        return conn_state(self)

    def spread_summaries(self) -> dict[str, dict[str, float | int] | None] | None:
        if self.spreads is None:
            return None
        names = ("source_size", "destination_size", "source_iat_ns", "destination_iat_ns")
        return {name: spread.summary() for name, spread in zip(names, self.spreads, strict=True)}


def originator_is_low(flow: Flow) -> bool:
    """Whether the originator is the key's first endpoint: the lower address, or the lower
    port on equal addresses (`FlowTable.packet` compares this with the packet's own side
    instead of comparing the addresses again)."""
    return flow.orig_ip < flow.resp_ip or (
        flow.orig_ip == flow.resp_ip and flow.orig_port <= flow.resp_port
    )


def _missed(direction: _Direction | None, peer: _Direction | None) -> int:
    """Hole bytes never filled, plus bytes the peer acknowledged past what was seen."""
    if direction is None:
        return 0
    missed = direction.written_off
    if direction.holes:
        missed += sum(end - start for start, end in direction.holes)
    if peer is not None and peer.acking:
        seen_end = (direction.base + direction.end + (1 if direction.fin else 0)) & SEQ_MASK
        ahead = (peer.ack - seen_end) & SEQ_MASK
        if 0 < ahead < MAX_SEQ_JUMP:
            missed += ahead
    return missed


def conn_state(flow: Flow) -> str:
    """Zeek's connection state summary (base/protocols/conn/main.zeek `conn_state`)."""
    protocol = flow.protocol
    if protocol == 6:
        os_, rs = flow.orig_state, flow.resp_state
        o_inactive = os_ == INACTIVE or os_ == PARTIAL
        r_inactive = rs == INACTIVE or rs == PARTIAL
        if rs == RESET:
            if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                os_ == RESET and flow.orig_payload == 0 and flow.resp_payload == 0
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                history = flow.history.lstrip("^")
                if history.startswith("S") and "R" in history:
                    before_r = history[1 : history.index("R")]
                    if not any(c in "HAFGIQ" for c in before_r):
                        return "RSTOS0"
                return "OTH"
            return "RSTO"
        if rs == CLOSED and os_ == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"
    if flow.orig_packets:
        return "SF" if flow.resp_packets else "S0"
    return "SHR" if flow.resp_packets else "OTH"


# History letters per TCP packet: (flags & 0x1F, has payload) → [(bit, letter)], built once.
_LETTER_BITS = {c: 1 << i for i, c in enumerate("SHADFRTGWIQ")}


def _packet_letters(flags: int, data: bool) -> tuple[str, ...]:
    letters: list[str] = []
    syn, ack, fin, rst = flags & SYN, flags & ACK, flags & FIN, flags & RST
    if syn and (fin or rst):
        letters.append("Q" if fin else "I")
    if syn:
        letters.append("H" if ack else "S")
    if rst:
        letters.append("R")
    if fin:
        letters.append("F")
    if data:
        letters.append("D")
    elif ack and not (syn or fin or rst):
        letters.append("A")
    return tuple(letters)


def _history_table() -> dict[int, tuple[int, str]]:
    """Key ``(flags & 0x1F) << 2 | data << 1 | from_originator`` → (mask bits, letters)."""
    table: dict[int, tuple[int, str]] = {}
    for flags in range(0x20):
        for data in (0, 1):
            letters = _packet_letters(flags, bool(data))
            for orig in (0, 1):
                shift = 0 if orig else 16
                mask = 0
                text = ""
                for letter in letters:
                    mask |= _LETTER_BITS[letter] << shift
                    text += letter if orig else letter.lower()
                table[flags << 2 | data << 1 | orig] = (mask, text)
    return table


_HISTORY = _history_table()


def _add_letter(flow: Flow, letter: str, from_orig: bool) -> None:
    bit = _LETTER_BITS[letter] << (0 if from_orig else 16)
    if not flow.history_mask & bit:
        flow.history_mask |= bit
        flow.history += letter if from_orig else letter.lower()


def _endpoint_state(state: int, flags: int, peer: int) -> int:
    """An endpoint's Zeek state after it sends a segment with `flags` (peer's state given)."""
    if flags & RST:
        return RESET
    if flags & FIN:
        return CLOSED if state != RESET else state
    if state == RESET or state == CLOSED:
        return state
    if flags & SYN:
        if state == INACTIVE:
            return SYN_ACK_SENT if flags & ACK else SYN_SENT
        return state
    if state == INACTIVE:
        return PARTIAL
    if (state == SYN_SENT or state == SYN_ACK_SENT) and peer != INACTIVE:
        return ESTABLISHED
    return state


class FlowTable:
    """Flows of one input in one worker. See the module docstring for the model."""

    def __init__(
        self,
        max_flows: int | None = None,
        *,
        tcp_idle_ns: int = TCP_IDLE_TIMEOUT_NS,
        udp_idle_ns: int = UDP_IDLE_TIMEOUT_NS,
        other_idle_ns: int = OTHER_IDLE_TIMEOUT_NS,
        active_ns: int = ACTIVE_TIMEOUT_NS,
        linger_ns: int = CLOSED_LINGER_NS,
        spreads: bool = False,
        subscriber: StreamSubscriber | None = None,
        max_stream_bytes: int = MAX_STREAM_BYTES,
        max_reassembly_bytes: int = MAX_REASSEMBLY_BYTES,
    ) -> None:
        self.max_flows = max(1, max_flows if max_flows is not None else default_max_flows())
        self.tcp_idle_ns = tcp_idle_ns
        self.udp_idle_ns = udp_idle_ns
        self.other_idle_ns = other_idle_ns
        self.active_ns = active_ns
        self.linger_ns = linger_ns
        self.spreads = spreads
        self.subscriber = subscriber
        self.max_stream_bytes = max_stream_bytes
        self.max_reassembly_bytes = max_reassembly_bytes
        self.flows: dict[FlowKey, Flow] = {}
        # Added to frame numbers: a capture set's parts number their frames from 1 each, the
        # table counts through the set (`pipeline.convert.CaptureSet` maps them back).
        self.index_base = 0
        # Fragments and tunnel carriers go here (`FlowTracker`); True when it took the packet.
        self.special: Callable[[Frame, Packet], bool] | None = None
        self._heap: list[tuple[int, int, Flow]] = []
        self._pushes = 0  # heap tie-breaker: never compare Flow objects
        self.ended: list[Flow] = []  # finished records, in the order they ended
        # Counters for the run's statistics.
        self.created = 0
        self.evicted = 0
        self.idle_timeouts = 0
        self.active_timeouts = 0
        self.reused = 0
        self.hole_cap_hits = 0
        self.stream_cap_hits = 0
        self.reassembly_cap_hits = 0
        self.buffered_bytes = 0  # out-of-order bytes held by every reassembler of the table
        self.peak_flows = 0

    # -- the per-packet path -------------------------------------------------------------

    def packet(
        self,
        record: Frame,
        pkt: Packet,
        tunnels: tuple[Any, ...] | None = None,
        packets: int = 1,
    ) -> Flow | None:
        """Account one decoded IP packet (or `packets` frames of one datagram) to its flow;
        return that flow, or None when the packet went to `special` (its flow, if any, is
        the datagram's or the inner packet's).

        `record` gives the frame number, time, lengths and bytes (`pkt`'s payload offsets
        point into ``record.data``). Fragments and tunnel carriers go to `special` (the
        `FlowTracker`), which comes back here with the datagram or the inner packet.

        This runs for every packet, so it is one flat function: the common TCP segment
        (a flag combination its direction has sent before, in sequence) takes no other call.
        """
        index, ts_ns, _, caplen, wire_len, _, _, data = record
        (_, _, _, vlan_id, inner_vlan_id, _, _, src_ip, dst_ip, protocol, _, _, frag_offset,
         more_fragments, src_port, dst_port, tcp_flags, seq, ack, window, icmp_type,
         icmp_code, start, end, _, _, _) = pkt  # fmt: skip
        if tunnels is None:
            if (
                frag_offset
                or more_fragments
                or (
                    dst_port in TUNNEL_DST_PORTS or src_port == PORT_TEREDO
                    if protocol == 17
                    else protocol in CARRIER_PROTOCOLS
                )
            ) and packets == 1 and self.special is not None and self.special(
                record, pkt
            ):  # fmt: skip
                return None
            tunnel_id = None
        else:
            tunnel_id = tunnels[-1][1] if tunnels[-1][0] in KEYED_TUNNELS else None
        if src_port is None:
            if icmp_type is not None:
                src_port = icmp_type
                dst_port = _ICMP_PAIRS.get((protocol, icmp_type), icmp_code)
            else:
                src_port = dst_port = 0
        # One bytes object, not a tuple of eight: the lookup in a table of many flows is
        # mostly cache misses, and comparing a tuple key touches each of its objects.
        low = src_ip < dst_ip or (src_ip == dst_ip and src_port <= dst_port)
        if low:
            key = src_ip + dst_ip + _pack_key(protocol, src_port, dst_port)
        else:
            key = dst_ip + src_ip + _pack_key(protocol, dst_port, src_port)
        if vlan_id is not None or tunnel_id is not None:
            key = (key, vlan_id, inner_vlan_id, tunnel_id)
        flow = self.flows.get(key)
        if flow is None or ts_ns - flow.last_ns > flow.idle_ns or ts_ns > flow.active_end:
            flow = self._arrive(flow, key, record, pkt, src_port, dst_port, tunnels)
        seg_len = 0 if end is None else end - start
        if caplen < wire_len and seg_len:
            seg_len += wire_len - caplen  # cut by the snap length: the wire had the rest
        from_orig = low is flow.orig_low
        if tcp_flags is not None:
            # Flags (FIN SYN RST PSH ACK), with or without data, with or without a zero
            # window, are mostly a combination this direction has sent since the endpoints'
            # states last changed: then neither the history nor a state can change.
            # Otherwise `_flags` looks (and may start a new flow: a SYN reusing the ports).
            signature = 1 << ((tcp_flags & 0x1F) << 2 | (seg_len > 0) << 1 | (not window))
            if not signature & (flow.orig_seen if from_orig else flow.resp_seen):
                flow = self._flags(flow, from_orig, key, record, pkt, src_port, dst_port,
                                   tunnels, signature, seg_len)  # fmt: skip
                from_orig = low is flow.orig_low
            # Never None: `_flags` made it when this direction first sent these flags.
            direction: _Direction = flow.orig_dir if from_orig else flow.resp_dir  # type: ignore[assignment]
        if ts_ns > flow.last_ns:
            flow.last_ns = ts_ns
        flow.last_index = index + self.index_base
        flow.last_from_orig = from_orig
        if from_orig:
            flow.orig_packets += packets
            flow.orig_bytes += wire_len
            flow.orig_payload += seg_len
        else:
            flow.resp_packets += packets
            flow.resp_bytes += wire_len
            flow.resp_payload += seg_len
        if flow.spreads is not None:
            self._spread(flow, from_orig, ts_ns, wire_len)
        if tcp_flags is None:
            return flow
        direction.ack = ack  # what this side acknowledged last (`acking`: if it did)
        if seg_len:
            if (seq - direction.base - direction.end) & SEQ_MASK:
                self._sequence(flow, direction, from_orig, tcp_flags, seq, seg_len)
            else:
                direction.end += seg_len
            if self.subscriber is not None:
                self._stream(flow, from_orig, tcp_flags, seq, data[start:end])
        if self.subscriber is not None and tcp_flags & ACK:
            # The peer's stream holds bytes past a hole this side has acknowledged: the hole
            # was received but not captured and will never fill (Zeek's content gap).
            peer = flow.resp_stream if from_orig else flow.orig_stream
            if peer is not None and peer.buffered_bytes:
                self._acked(flow, not from_orig, peer, ack)
        return flow

    def _arrive(
        self,
        flow: Flow | None,
        key: FlowKey,
        record: Frame,
        pkt: Packet,
        src_port: int,
        dst_port: int,
        tunnels: tuple[Any, ...] | None,
    ) -> Flow:
        """The flow a packet belongs to when it is not the one in the table: none yet,
        timed out, or past the active timeout."""
        index, ts_ns = record[0] + self.index_base, record[1]
        tcp_flags = pkt[16]
        if flow is not None:
            if ts_ns - flow.last_ns > flow.idle_ns:
                self._end(flow, END_IDLE)
                self.idle_timeouts += 1
            else:
                return self._continue(flow, index, ts_ns, pkt, tunnels)
        flip = tcp_flags is not None and tcp_flags & (SYN | ACK) == SYN | ACK
        return self._new(key, index, ts_ns, pkt, src_port, dst_port, tunnels, flip)

    def _flags(
        self,
        flow: Flow,
        from_orig: bool,
        key: FlowKey,
        record: Frame,
        pkt: Packet,
        src_port: int,
        dst_port: int,
        tunnels: tuple[Any, ...] | None,
        signature: int,
        seg_len: int,
    ) -> Flow:
        """New TCP flags in a direction: port reuse, history letters, endpoint states, the
        sequence start. Returns the packet's flow (a new one when the ports are reused)."""
        ts_ns = record[1]
        flags, seq = pkt[16], pkt[17]
        if flags & 0x16 == SYN:  # a pure SYN: every one is looked at, not only the first
            signature = 0
            sender = flow.orig_dir if from_orig else flow.resp_dir
            if sender is not None and sender.isn != seq:
                # A new initial sequence number on the same ports: a new connection.
                self._end(flow, END_REUSED)
                self.reused += 1
                index = record[0] + self.index_base
                flow = self._new(key, index, ts_ns, pkt, src_port, dst_port, tunnels, False)
                from_orig = True
        if from_orig:
            flow.orig_seen |= signature
        else:
            flow.resp_seen |= signature
        if not pkt[19] and not flags & 7:  # a zero window (not on SYN, FIN or RST)
            _add_letter(flow, "W", from_orig)
        mask, letters = _HISTORY[(flags & 0x1F) << 2 | (seg_len > 0) << 1 | from_orig]
        if mask & ~flow.history_mask:
            for letter in letters:
                _add_letter(flow, letter.upper(), from_orig)
        if from_orig:
            state, peer = flow.orig_state, flow.resp_state
        else:
            state, peer = flow.resp_state, flow.orig_state
        new_state = _endpoint_state(state, flags, peer)
        if new_state != state:
            if from_orig:
                flow.orig_state = new_state
            else:
                flow.resp_state = new_state
            self._state_changed(flow, ts_ns, new_state, peer)
        direction = flow.orig_dir if from_orig else flow.resp_dir
        if direction is None:
            syn = flags & SYN
            direction = _Direction(seq, bool(syn))
            if from_orig:
                flow.orig_dir = direction
            else:
                flow.resp_dir = direction
            if syn and self.subscriber is not None:
                if flow.subscriber is None:
                    self._subscribe(flow)
                stream = flow.orig_stream if from_orig else flow.resp_stream
                if stream is not None:
                    stream.syn(seq)
        if flags & FIN:
            direction.fin = True
        direction.acking = bool(flags & ACK)
        return flow

    def _sequence(
        self, flow: Flow, direction: _Direction, from_orig: bool, flags: int, seq: int,
        seg_len: int,
    ) -> None:  # fmt: skip
        """Classify a segment that does not start at the stream's end: data on a SYN, or
        opening a gap, filling a hole, or repeating bytes."""
        if flags & SYN:
            seq = (seq + 1) & SEQ_MASK  # data on a SYN (TCP Fast Open) follows it
        end = direction.end
        offset = (seq - direction.base - end) & SEQ_MASK  # relative to the end, mod 2**32
        if not offset:
            direction.end = end + seg_len
            return
        if offset < SEQ_HALF:  # ahead: a gap opens
            if offset > MAX_SEQ_JUMP:
                return
            holes = direction.holes
            if holes is None:
                holes = direction.holes = []
            elif len(holes) >= MAX_HOLES:
                start, stop = holes.pop(0)
                direction.written_off += stop - start
                self.hole_cap_hits += 1
            holes.append([end, end + offset])
            direction.end = end + offset + seg_len
            _add_letter(flow, "G", from_orig)
            return
        behind = SEQ_MASK + 1 - offset
        if behind > MAX_SEQ_JUMP:
            return
        start = end - behind
        stop = start + seg_len
        if stop > end:
            direction.end = stop
            stop = end
        filled = 0
        holes = direction.holes
        if holes:
            for hole in list(holes):
                lo = max(hole[0], start)
                hi = min(hole[1], stop)
                if lo < hi:
                    filled += hi - lo
                    if lo == hole[0] and hi == hole[1]:
                        holes.remove(hole)
                    elif lo == hole[0]:
                        hole[0] = hi
                    elif hi == hole[1]:
                        hole[1] = lo
                    else:
                        holes.insert(holes.index(hole) + 1, [hi, hole[1]])
                        hole[1] = lo
        repeated = (stop - start) - filled
        if filled:
            flow.out_of_order_bytes += filled
        if repeated > 0:
            flow.retransmitted_bytes += repeated
            _add_letter(flow, "T", from_orig)

    def _state_changed(self, flow: Flow, ts_ns: int, state: int, peer: int) -> None:
        # Whether a segment changes a state can depend on the peer's: look again next time.
        flow.orig_seen = flow.resp_seen = 0
        if state == ESTABLISHED and peer == SYN_ACK_SENT:
            # The originator acknowledged the SYN-ACK: the responder is established too.
            if flow.orig_state == ESTABLISHED:
                flow.resp_state = ESTABLISHED
            else:
                flow.orig_state = ESTABLISHED
        if (state == RESET) or (
            flow.orig_state in (CLOSED, RESET) and flow.resp_state in (CLOSED, RESET)
        ):
            flow.idle_ns = self.linger_ns
            check = ts_ns + self.linger_ns
            if check < flow.check_ns:
                self._schedule(flow, check)

    # -- flows in and out ----------------------------------------------------------------

    def _idle(self, flow: Flow) -> int:
        protocol = flow.protocol
        if protocol == 6:
            if (
                flow.orig_state == RESET
                or flow.resp_state == RESET
                or (flow.orig_state == CLOSED and flow.resp_state == CLOSED)
            ):
                return self.linger_ns
            return self.tcp_idle_ns
        return self.udp_idle_ns if protocol == 17 else self.other_idle_ns

    def _new(
        self,
        key: FlowKey,
        index: int,
        ts_ns: int,
        pkt: Packet,
        src_port: int,
        dst_port: int,
        tunnels: tuple[Any, ...] | None,
        flip: bool,
    ) -> Flow:
        flows = self.flows
        if len(flows) >= self.max_flows:
            self._evict()
        flow = Flow(key, index, ts_ns, pkt, src_port, dst_port, tunnels, flip)
        flow.idle_ns = self._idle(flow)
        flow.active_end = ts_ns + self.active_ns
        if self.spreads:
            flow.spreads = [_Spread(), _Spread(), _Spread(), _Spread()]
        flows[key] = flow
        self.created += 1
        if len(flows) > self.peak_flows:
            self.peak_flows = len(flows)
        self._schedule(flow, ts_ns + flow.idle_ns)
        return flow

    def _continue(
        self, flow: Flow, index: int, ts_ns: int, pkt: Packet, tunnels: tuple[Any, ...] | None
    ) -> Flow:
        """End a long flow's record at the active timeout and go on in a new one."""
        self._end(flow, END_ACTIVE)
        self.active_timeouts += 1
        nxt = self._new(flow.key, index, ts_ns, pkt, flow.orig_port, flow.resp_port, tunnels, False)
        nxt.orig_ip, nxt.resp_ip = flow.orig_ip, flow.resp_ip
        nxt.orig_low = flow.orig_low
        nxt.orig_state, nxt.resp_state = flow.orig_state, flow.resp_state
        nxt.idle_ns = self._idle(nxt)
        nxt.orig_dir, nxt.resp_dir = flow.orig_dir, flow.resp_dir
        for direction in (nxt.orig_dir, nxt.resp_dir):
            if direction is not None:  # holes belong to the record that saw them open
                direction.holes = None
                direction.written_off = 0
        nxt.subscriber = flow.subscriber
        nxt.orig_stream, nxt.resp_stream = flow.orig_stream, flow.resp_stream
        flow.subscriber = None
        flow.orig_stream = flow.resp_stream = None
        nxt.continued = True
        return nxt

    def _schedule(self, flow: Flow, check_ns: int) -> None:
        flow.check_ns = check_ns
        self._pushes += 1
        heapq.heappush(self._heap, (check_ns, self._pushes, flow))

    def _end(self, flow: Flow, reason: str) -> None:
        if flow.done:
            return
        flow.done = True
        if reason in (END_IDLE, END_REUSED) and flow.protocol == 6:
            # A flow that ended with FIN or RST and then went quiet ended by FIN or RST.
            if flow.orig_state == RESET or flow.resp_state == RESET:
                reason = END_RST
            elif flow.orig_state == CLOSED and flow.resp_state == CLOSED:
                reason = END_FIN
        flow.end_reason = reason
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
        if flow.subscriber is not None:
            self._close_streams(flow)
        self.ended.append(flow)

    def _evict(self) -> None:
        heap = self._heap
        while heap:
            check_ns, _, flow = heapq.heappop(heap)
            if flow.done or check_ns != flow.check_ns:
                continue
            self._end(flow, END_EVICTED)
            self.evicted += 1
            return

    def sweep(self, clock_ns: int) -> None:
        """End every flow whose timeout has passed at capture time `clock_ns`."""
        heap = self._heap
        while heap and heap[0][0] <= clock_ns:
            check_ns, _, flow = heapq.heappop(heap)
            if flow.done or check_ns != flow.check_ns:
                continue
            deadline = flow.last_ns + flow.idle_ns
            if deadline <= clock_ns:
                self.idle_timeouts += 1
                self._end(flow, END_IDLE)
            else:
                self._schedule(flow, deadline)
        if len(heap) > 4 * len(self.flows) + 1024:
            # Stale entries (ended flows) pile up when flows end by FIN/RST/reuse: rebuild.
            live = [entry for entry in heap if not entry[2].done and entry[0] == entry[2].check_ns]
            heapq.heapify(live)
            self._heap = live

    def flush(self) -> None:
        """End every flow: the input is over."""
        for flow in sorted(self.flows.values(), key=lambda f: f.first_index):
            self._end(flow, END_OF_INPUT)
        self._heap.clear()

    def take_ended(self) -> list[Flow]:
        ended, self.ended = self.ended, []
        return ended

    # -- optional parts ------------------------------------------------------------------

    def _spread(self, flow: Flow, from_orig: bool, ts_ns: int, wire_len: int) -> None:
        spreads = flow.spreads
        assert spreads is not None
        if from_orig:
            spreads[0].add(wire_len)
            if flow.orig_last_ns >= 0:
                spreads[2].add(max(0, ts_ns - flow.orig_last_ns))
            flow.orig_last_ns = ts_ns
        else:
            spreads[1].add(wire_len)
            if flow.resp_last_ns >= 0:
                spreads[3].add(max(0, ts_ns - flow.resp_last_ns))
            flow.resp_last_ns = ts_ns

    def _subscribe(self, flow: Flow) -> None:
        subscriber = self.subscriber
        if subscriber is not None and flow.protocol == 6 and subscriber.wants(flow):
            flow.subscriber = subscriber
            flow.orig_stream = StreamReassembler(max_stream_bytes=self.max_stream_bytes)
            flow.resp_stream = StreamReassembler(max_stream_bytes=self.max_stream_bytes)
        else:
            flow.subscriber = DECLINED  # asked once

    def _release(self, flow: Flow) -> None:
        """The subscriber has what it wanted of this flow: stop reassembling it."""
        for stream in (flow.orig_stream, flow.resp_stream):
            if stream is not None:
                self.buffered_bytes -= stream.buffered_bytes
        flow.orig_stream = flow.resp_stream = None
        flow.subscriber = DECLINED

    def _stream(self, flow: Flow, from_orig: bool, flags: int, seq: int, payload: bytes) -> None:
        """Feed a data segment to the flow's reassembler, if a subscriber wants the flow."""
        if flow.subscriber is None and not flow.done:
            self._subscribe(flow)
        stream = flow.orig_stream if from_orig else flow.resp_stream
        subscriber = flow.subscriber
        if stream is None or subscriber is None:
            return
        if flags & SYN:
            seq = (seq + 1) & SEQ_MASK
        held = stream.buffered_bytes
        capped = stream.stream_cap_hit
        data = stream.segment(seq, payload, bool(flags & FIN))
        self.buffered_bytes += stream.buffered_bytes - held
        if stream.stream_cap_hit and not capped:
            self.stream_cap_hits += 1
            flow.reassembly_capped = True
        if self.buffered_bytes > self.max_reassembly_bytes:
            # The table's budget is spent: this stream gives up its holes (missed bytes).
            self.reassembly_cap_hits += 1
            flow.reassembly_capped = True
            before = stream.buffered_bytes
            data += stream.skip_holes()
            self.buffered_bytes -= before
        if data and subscriber.data(flow, from_orig, data) is False:
            self._release(flow)

    def _acked(self, flow: Flow, from_orig: bool, stream: StreamReassembler, ack: int) -> None:
        held = stream.buffered_bytes
        data = stream.acked(ack)
        self.buffered_bytes += stream.buffered_bytes - held
        subscriber = flow.subscriber
        if data and subscriber is not None and subscriber.data(flow, from_orig, data) is False:
            self._release(flow)

    def _close_streams(self, flow: Flow) -> None:
        subscriber = flow.subscriber
        assert subscriber is not None
        for from_orig, stream in ((True, flow.orig_stream), (False, flow.resp_stream)):
            if stream is None:
                continue
            held = stream.buffered_bytes
            data = stream.flush()
            self.buffered_bytes -= held
            if data:
                subscriber.data(flow, from_orig, data)
        subscriber.closed(flow)
        flow.orig_stream = flow.resp_stream = None


# ICMP request types → their reply type (Community ID's pairing), keyed by protocol.
def _icmp_pairs() -> dict[tuple[int, int], int]:
    from pipeline.events.community_id import ICMP_PAIRED_TYPES, ICMPV6_PAIRED_TYPES

    pairs = {(1, t): r for t, r in ICMP_PAIRED_TYPES.items()}
    pairs.update({(58, t): r for t, r in ICMPV6_PAIRED_TYPES.items()})
    return pairs


_ICMP_PAIRS = _icmp_pairs()
