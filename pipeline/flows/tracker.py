"""Per-input flow tracking: decoded frames → defragmentation → decapsulation → the flow table.

`FlowTracker.frame` is what the converter calls for each decoded IP frame. Most frames go
straight to `FlowTable.packet`; IP fragments are held by the `Defragmenter` until their
datagram is whole (the datagram then counts once, with the bytes and frames of all its
fragments), and tunnel carriers (GRE, VXLAN, Geneve, IP-in-IP, Teredo, GTP-U) are
decapsulated so the inner flow is the one tracked, the tunnels kept on the flow.

Sweep points: `sweep_points` finds them in a batch of frames (the reader has a vectorised
twin, `pipeline.runtime.routing.sweep_points_numpy`), and `sweep` ends the flows that have
timed out at that point's clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.capture.frame import Frame, FramingError
from pipeline.decode.errors import DecodeStop
from pipeline.decode.ip import ipv4, ipv6
from pipeline.decode.link import ETH_IPV4, ETH_IPV6, LINK_DECODERS
from pipeline.decode.packet import Packet
from pipeline.decode.transport import TRANSPORT_DECODERS, recognised_only
from pipeline.decode.tunnel import decapsulate, is_tunnel_carrier
from pipeline.flows.defrag import MAX_PENDING_DATAGRAMS, Defragmenter
from pipeline.flows.table import SWEEP_NS, Flow, FlowTable

_new_packet = tuple.__new__


def sweep_points(
    batch: list[Frame | FramingError], next_ns: int | None, interval_ns: int = SWEEP_NS
) -> tuple[list[tuple[int, int]], int | None]:
    """The batch's sweep points ``(frame index, clock)`` and the carried state.

    A sweep point is a frame whose timestamp first reaches a new `interval_ns` interval of
    the capture's running-maximum time; the sweep runs just before it, at the interval's
    start. `next_ns` is the start of the next interval (None before the first frame).
    """
    points: list[tuple[int, int]] = []
    frame_class = Frame
    for record in batch:
        if record.__class__ is not frame_class:
            continue
        ts_ns = record.ts_ns
        if next_ns is None:
            next_ns = (ts_ns // interval_ns + 1) * interval_ns
        elif ts_ns >= next_ns:
            start = ts_ns // interval_ns * interval_ns
            points.append((record.index, start))
            next_ns = start + interval_ns
    return points, next_ns


def sweep_points_numpy(
    index: Any, ts_ns: Any, next_ns: int | None, interval_ns: int = SWEEP_NS
) -> tuple[list[tuple[int, int]], int | None]:
    """`sweep_points` over column arrays (frame numbers and timestamps): the reader's twin."""
    if not len(ts_ns):
        return [], next_ns
    buckets = ts_ns // interval_ns
    current = int(buckets[0]) if next_ns is None else next_ns // interval_ns - 1
    running = np.maximum.accumulate(np.concatenate((np.array([current], dtype=np.int64), buckets)))
    changed = np.nonzero(running[1:] > running[:-1])[0]
    points = [(int(index[i]), int(buckets[i]) * interval_ns) for i in changed.tolist()]
    return points, (int(running[-1]) + 1) * interval_ns


class FlowTracker:
    """Flow state of one input: a `FlowTable`, with a defragmenter and the decapsulator in
    front of it for the packets the table hands over (`FlowTable.special`)."""

    def __init__(self, table: FlowTable) -> None:
        self.table = table
        table.special = self.special
        self.defrag = Defragmenter()
        # Per pending datagram: [frames, wire bytes] of its fragments so far (bounded like
        # the defragmenter's own table; a forgotten entry only under-counts one datagram).
        self._fragment_totals: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self.tunnelled = 0
        self.datagrams = 0
        self.fragment_errors = 0
        self.tunnel_errors = 0  # tunnels too deep or with a broken inner packet
        # Told of every UDP packet the tracker makes — a tunnel's inner packet, a reassembled
        # datagram — with the record it came in: how the DNS extractor sees DNS in tunnels
        # and in IP fragments, which the converter's own loop (outer headers) cannot.
        self.inner_udp: Callable[[Frame, Packet], None] | None = None

    def frame(self, frame: Frame, pkt: Packet) -> None:
        """Account one decoded frame that has an IP header."""
        self.table.packet(frame, pkt)

    def special(self, frame: Frame, pkt: Packet) -> bool:
        """Take a fragment or a tunnel carrier; False: neither after all, the table goes on."""
        if pkt[12] or pkt[13]:  # fragment offset, more fragments
            self._fragment(frame, pkt)
            return True
        inner = decapsulate(pkt, frame.data)  # type: ignore[arg-type]
        if inner is None or inner[0].error is not None or inner[0].src_ip is None:
            if inner is not None and inner[0].error is not None:
                # Nested past the depth cap, or a broken inner packet: the outer flow counts it.
                self.tunnel_errors += 1
            return False
        self.tunnelled += 1
        self.table.packet(frame, inner[0], inner[1])
        if inner[0][9] == 17 and self.inner_udp is not None:
            self.inner_udp(frame, inner[0])
        return True

    def _fragment(self, frame: Frame, pkt: Packet) -> None:
        data = frame.data
        bounds = _ip_payload(pkt[0], data)  # type: ignore[arg-type]
        if bounds is None:
            self.fragment_errors += 1
            return
        off, end = bounds
        key = (pkt[6], pkt[7], pkt[8], pkt[9], pkt[11])
        totals = self._fragment_totals.get(key)
        if totals is None:
            if len(self._fragment_totals) >= MAX_PENDING_DATAGRAMS * 2:
                self._fragment_totals.popitem(last=False)
            totals = self._fragment_totals[key] = [0, 0]
        totals[0] += 1
        totals[1] += frame.origlen
        datagram = self.defrag.fragment(
            frame.ts_ns,
            key,
            pkt[12] or 0,
            bool(pkt[13]),
            data[off:end],  # type: ignore[index]
        )
        if datagram is None:
            return
        frames, wire = self._fragment_totals.pop(key, totals)
        whole = _datagram_packet(pkt, datagram)
        if whole is None:
            self.fragment_errors += 1
            return
        self.datagrams += 1
        # The datagram as one record: its bytes, the wire bytes of all its fragments.
        record = _new_packet(Frame, (frame.index, frame.ts_ns, frame.offset, wire, wire,
                                     frame.interface, frame.link_type, datagram))  # fmt: skip
        if is_tunnel_carrier(whole):
            inner = decapsulate(whole, datagram)
            if inner is not None and inner[0].error is None and inner[0].src_ip is not None:
                self.tunnelled += 1
                self.table.packet(record, inner[0], inner[1], frames)
                if inner[0][9] == 17 and self.inner_udp is not None:
                    self.inner_udp(record, inner[0])
                return
        self.table.packet(record, whole, None, frames)
        if whole[9] == 17 and self.inner_udp is not None:
            self.inner_udp(record, whole)

    def sweep(self, clock_ns: int) -> list[Flow]:
        self.table.sweep(clock_ns)
        self.defrag.expire(clock_ns)
        return self.table.take_ended()

    def finish(self) -> list[Flow]:
        self.table.flush()
        return self.table.take_ended()

    def counters(self) -> dict[str, int]:
        table = self.table
        defrag = self.defrag
        return {
            "flows": table.created,
            "evicted": table.evicted,
            "idle_timeouts": table.idle_timeouts,
            "active_timeouts": table.active_timeouts,
            "port_reuse": table.reused,
            "hole_cap_hits": table.hole_cap_hits,
            "stream_cap_hits": table.stream_cap_hits,
            "reassembly_cap_hits": table.reassembly_cap_hits,
            "tunnelled_packets": self.tunnelled,
            "fragments": defrag.fragments_seen,
            "datagrams_reassembled": self.datagrams,
            "fragment_timeouts": defrag.timeouts,
            "fragment_evictions": defrag.evictions,
            "fragment_overlaps": defrag.overlap_fragments,
            "fragment_errors": self.fragment_errors
            + defrag.inconsistent_datagrams
            + defrag.oversize_datagrams,
            "tunnel_errors": self.tunnel_errors,
        }


def _ip_payload(link_type: int, buf: bytes) -> tuple[int, int] | None:
    """Where a fragment's IP payload is in its frame (after the fragment header for IPv6)."""
    link = LINK_DECODERS.get(link_type)
    if link is None:
        return None
    try:
        ethertype, off = link(buf)[4:6]
        if ethertype == ETH_IPV4:
            header = ipv4(buf, off)
        elif ethertype == ETH_IPV6:
            header = ipv6(buf, off)
        else:
            return None
    except DecodeStop:
        return None
    return header[7], header[8]


def _datagram_packet(fragment: Packet, datagram: bytes) -> Packet | None:
    """The packet of a reassembled datagram: the fragment's IP fields, the datagram's L4."""
    protocol = fragment[9]
    transport = TRANSPORT_DECODERS.get(protocol, recognised_only)  # type: ignore[arg-type]
    try:
        l4 = transport(datagram, 0, len(datagram))
    except DecodeStop:
        return None
    fields = list(fragment)
    fields[12] = 0
    fields[13] = False
    fields[14:22] = l4[:8]
    fields[22] = l4[8]
    fields[23] = len(datagram)
    return _new_packet(Packet, fields)
