"""Traffic statistics: a pure, mergeable accumulator of what a capture carried, and when.

`TrafficStats` sees every frame once (`add`, or `add_undecoded` for a record that has no
packet) and answers `summaries()`: one `TrafficSummary` for the whole input and, with an
interval, one per interval of capture time — packets and bytes, per-protocol counts (the
outermost view, as tests/test_truth_packets.py compares with tshark), top talkers by bytes,
top destination ports, packets per second. No I/O, no clock, no ECS: the schema mapper and the
text table live in pipeline/traffic_report.py.

**Merging.** Workers each see a share of the flows; the coordinator merges their accumulators.
Merging the parts of *any* split of the packets gives exactly the result of one accumulator
over all of them, caps included (tests/test_traffic.py checks it with hypothesis, with caps
small enough to bite). Everything is a sum, a min/max, or one of these two constructions:

* **Capped tables** (talkers, ports): exact counters per key while a table holds at most
  `max_table_keys` keys. Past that, it keeps the keys of lowest *stable* rank (CRC-32 of the
  key, the key itself breaking ties — never Python's per-process `hash`), with exact counts,
  and the rest are counted as untracked. A key in the bottom-k of all keys is in the bottom-k
  of every part that saw it, so its counts are exact in every part and the merge is exact; a
  key evicted once never returns (the rank threshold only falls). What it costs: once a table
  has overflowed, its top-N is the top-N of a deterministic hash sample of the keys, not of
  all of them (a flood's one victim may be left out) — the summary says so
  (`talkers_overflow`) and counts what is untracked.
* **Coarsening** (intervals, per-second windows): at most `max_intervals` intervals and
  `max_windows` rate windows are kept; past that the width doubles (`interval << shift`,
  ``2**shift`` seconds) until they fit. The shift that results is the smallest that fits the
  whole input's set of intervals (or seconds), whatever the order or split, so it merges
  exactly; the summaries report the width used.

**Hot path.** `add` only pre-aggregates: one tuple of seven packet fields (one C call), one
dict look-up, two list increments, and a timestamp comparison or two. The pending counts are
keyed per conversation direction within the current *tick* (one second, or the interval if it
is shorter) and rolled up into the tables when the tick changes or `PENDING_KEYS` entries are
pending — so the per-key work (classification, tables, ranks) is paid per conversation per
tick (~1 µs each), not per packet. Measured with timeit (min of 7) on this project's shared
2-core machine, CPython 3.11, on decoded packets of ``capture_mix`` seed 1; ``decode_packet``
measured 1.0-1.1 µs a packet in the same runs:

* 10,000 packets (0.1 s, ~10 packets per conversation and tick): `add` ~0.30-0.35 µs a
  packet (plus ~0.04 µs for the caller's loop and call); with its roll-ups and `summaries()`
  ~0.50-0.55 µs; with 10 ms intervals ~0.95 µs (each tick's roll-up also fills the
  per-interval tables).
* 100,000 packets (1 s): `add`, roll-ups and `summaries()` ~0.61-0.64 µs a packet; with
  100 ms intervals ~0.82-0.86 µs.
* Hostile input, every packet a new source address: ~4.3 µs a packet, ~9 µs with 1 s
  intervals (each packet its own roll-up entry, and the capped tables sort to evict).

An earlier `add` keyed the pending counts by (tick, 7 fields), dividing the timestamp per
packet: ~0.50 µs. Tracking min/max time in the same comparison as the tick boundary saved
the division.

**Memory** is bounded by the named caps below, not by the input: four tables of at most
1.25 x their cap rows (~150 B a row), `MAX_INTERVALS` counter rows, `MAX_WINDOWS` window
counts and `PENDING_KEYS` pending ones. Measured: 72 MiB peak RSS growth with all four tables
full (300,000 distinct sources, destinations and ports over 300 s, 1 s intervals); a table
sorting to evict briefly adds ~10 MiB.
"""

from __future__ import annotations

import bisect
import heapq
import operator
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from pipeline.decode.link import ETH_ARP
from pipeline.decode.packet import Packet

NS = 1_000_000_000

# How many addresses (talkers) and (transport, port) pairs the whole-input tables track
# exactly. 65,536 covers a busy /16 and every port number of one transport; past it, the
# tables sample by stable hash (see the module docstring) and flag it.
MAX_TABLE_KEYS = 1 << 16
# (interval, address) and (interval, port) rows, all intervals together: the per-interval top
# lists share one budget, so a long capture with short intervals samples rather than grows.
MAX_INTERVAL_TABLE_KEYS = 1 << 16
# Intervals kept; more, and the interval doubles until they fit. 4,096 is a day in
# 30-second intervals; beyond that a report is no longer read line by line.
MAX_INTERVALS = 4096
# Per-second packet counts kept (for the peak rate); more, and the window doubles. 65,536
# seconds is 18 hours of capture time at one-second resolution.
MAX_WINDOWS = 1 << 16
# Pending conversation counts before a roll-up: bounds the pre-aggregation dict even when a
# tick holds a flood of new conversations (a scan, random sources).
PENDING_KEYS = 4096
# Intervals below this make each tick hold a handful of packets (the pre-aggregation no
# longer aggregates) and a report nobody reads.
MIN_INTERVAL_NS = 1_000_000
DEFAULT_TOP = 10

# The error layer `add_undecoded` records: a capture record with no packet (as the anomaly
# events of framing errors say, pcap.anomaly_layer "capture").
FRAMING_LAYER = "capture"
# Layers whose errors leave an IP packet without its transport header: counted as no_l4, as
# tests/test_truth_packets.py counts the outer view.
_TRANSPORT_LAYERS = frozenset(("tcp", "udp", "icmp", "sctp"))

# Protocol classes, outermost view. Network: every frame is exactly one of the first five
# (`undecoded`: no network header could be read — a link-layer error, an unsupported link
# type, a broken IP header, a capture record without a packet). Transport: every IPv4/IPv6
# packet is exactly one of the rest (`no_l4`: a later fragment, or a cut transport header).
L3_CLASSES = ("ipv4", "ipv6", "arp", "other_l3", "undecoded")
L4_CLASSES = ("tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "esp", "other_l4", "no_l4")
PROTOCOL_CLASSES = L3_CLASSES + L4_CLASSES
# `arp` counts RARP too, as tshark's arp dissector does (truth `arp_packets`).
ETH_RARP = 0x8035
_ARP_ETHERTYPES = frozenset((ETH_ARP, ETH_RARP))
_L4_BY_NUMBER = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 47: "gre", 50: "esp"}

# Counter rows (one per interval): these slots, then (packets, bytes) per protocol class.
_PACKETS, _BYTES, _ANOMALIES, _PORT_PACKETS, _PORT_BYTES = range(5)
_CLASS_BASE = 5
_ROW_LEN = _CLASS_BASE + 2 * len(PROTOCOL_CLASSES)
_SLOT = {name: _CLASS_BASE + 2 * i for i, name in enumerate(PROTOCOL_CLASSES)}
_L4_SLOT = {number: _SLOT[name] for number, name in _L4_BY_NUMBER.items()}
_IPV4, _IPV6, _ARP, _OTHER_L3, _UNDECODED = (_SLOT[name] for name in L3_CLASSES)
_OTHER_L4, _NO_L4 = _SLOT["other_l4"], _SLOT["no_l4"]

# What `add` keeps of a packet: its conversation direction and what decides its classes.
# One itemgetter call builds the key tuple in C (cheaper than seven subscripts), and naming
# the fields keeps it right if Packet's field order changes.
_PENDING_FIELDS = (
    "src_ip",
    "dst_ip",
    "protocol",
    "dst_port",
    "ethertype",
    "fragment_offset",
    "error_layer",
)
_pending_key = operator.itemgetter(*(Packet._fields.index(name) for name in _PENDING_FIELDS))
_UNDECODED_KEY = (None, None, None, None, None, None, FRAMING_LAYER)

_FAR = 1 << 200  # beyond any timestamp: the empty tick window and the min/max sentinels


class Talker(NamedTuple):
    """One address's traffic, both directions (as tshark -z endpoints,ip counts it)."""

    ip: bytes  # packed, 4 or 16 bytes
    packets: int
    bytes: int
    tx_packets: int  # as source
    tx_bytes: int
    rx_packets: int  # as destination
    rx_bytes: int


class PortCount(NamedTuple):
    """Packets to one destination port of one transport."""

    protocol: int  # IANA number: 6, 17, 132, 136
    port: int
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    """The traffic of the whole input (``scope == "capture"``) or of one interval.

    Times are capture time in ns since the epoch. For the capture, `start_ns`/`end_ns` are the
    first and last packet (None when no record had a time); for an interval, its bounds
    ``[start_ns, end_ns)``. Rates are per second of capture time; None where undefined: a
    capture of one instant has no mean, and a capture or interval shorter than the rate window
    no peak. The peak is the busiest window (aligned to whole seconds) of the capture, or of
    the windows that start in the interval.
    """

    scope: str  # "capture" or "interval"
    index: int | None  # interval number: floor(ts / interval_ns); None for the capture
    interval_ns: int | None  # the interval used (requested << coarsening); None: no intervals
    start_ns: int | None
    end_ns: int | None
    packets: int  # frames read, decoded or not (framing errors included)
    bytes: int  # on the wire
    anomalies: int  # frames that did not fully decode, and framing errors
    protocols: dict[str, tuple[int, int]]  # class → (packets, bytes), every class present
    talkers: tuple[Talker, ...]  # top N by bytes
    talkers_tracked: int  # addresses in the table (all of them unless talkers_overflow)
    talkers_overflow: bool  # the table hit its cap: top talkers come from a sample
    talkers_untracked_packets: int  # endpoint counts of addresses not in the table
    talkers_untracked_bytes: int
    ports: tuple[PortCount, ...]  # top N destination ports by packets
    ports_tracked: int
    ports_overflow: bool
    ports_untracked_packets: int
    ports_untracked_bytes: int
    pps_mean: float | None
    bps_mean: float | None  # bits per second
    pps_peak: float | None  # the busiest rate window's packets / its length
    peak_window_ns: int  # the rate window: one second unless coarsened

    @property
    def duration_ns(self) -> int:
        if self.start_ns is None or self.end_ns is None:
            return 0
        return self.end_ns - self.start_ns


K = TypeVar("K", bound=Hashable)


class CappedTable(Generic[K]):
    """Counter rows per key, `cap` keys kept; merge-exact for any split (module docstring).

    A key's rank is ``(crc(key), key)``: `crc` must be the same in every process (CRC-32 of
    the key's bytes, never Python's salted `hash`), and the key breaks CRC ties, so no two
    keys rank alike. Between compactions the table holds up to a quarter more rows than `cap`:
    evicting in batches needs no heap of ranks beside the rows (a heap had cost more memory
    than the rows: 9 MiB against 8 MiB at 65,536 rows), and sorting by the CRC alone, an int,
    is 3x faster than by rank tuples. `compact` before reading `rows` as the answer.
    """

    __slots__ = ("_limit", "_threshold", "cap", "crc", "overflowed", "rows", "width")

    def __init__(self, cap: int, width: int, crc: Callable[[K], int]) -> None:
        if cap < 1:
            raise ValueError(f"table cap must be positive, not {cap}")
        self.cap = cap
        self.width = width
        self.crc = crc
        self.rows: dict[K, list[int]] = {}
        self.overflowed = False  # more than `cap` distinct keys were seen
        self._limit = cap + max(1, cap // 4)
        # The highest rank kept by the last compaction: a new key ranked above it can never
        # be among the `cap` lowest (the threshold only falls).
        self._threshold: tuple[int, K] | None = None

    def add(self, key: K, at: int, packets: int, nbytes: int) -> None:
        row = self.rows.get(key) or self.admit(key)
        if row is not None:
            row[at] += packets
            row[at + 1] += nbytes

    def admit(self, key: K) -> list[int] | None:
        """A fresh row for a key not in `rows`, or None when its rank keeps it out (untracked)."""
        if self._threshold is not None:
            crc = self.crc(key)
            top_crc, top_key = self._threshold
            if crc > top_crc or (crc == top_crc and key > top_key):  # type: ignore[operator]
                self.overflowed = True
                return None
        self.rows[key] = [0] * self.width
        if len(self.rows) > self._limit:
            self.compact()
        return self.rows.get(key)

    def compact(self) -> None:
        """Keep only the `cap` keys of lowest rank (their counts are exact)."""
        rows, cap, crc = self.rows, self.cap, self.crc
        if len(rows) <= cap:
            return
        self.overflowed = True
        ranked = sorted(rows, key=crc)
        # Keys that share the CRC at the cut are ordered by the key itself.
        boundary = crc(ranked[cap - 1])
        lo = bisect.bisect_left(ranked, boundary, key=crc)
        hi = bisect.bisect_right(ranked, boundary, key=crc)
        ranked[lo:hi] = sorted(ranked[lo:hi])  # type: ignore[type-var]
        self._threshold = (boundary, ranked[cap - 1])
        for key in ranked[cap:]:
            del rows[key]

    def merge(self, other: CappedTable[K]) -> None:
        for key, theirs in other.rows.items():
            row = self.rows.get(key) or self.admit(key)
            if row is not None:
                for i, value in enumerate(theirs):
                    row[i] += value
        self.overflowed = self.overflowed or other.overflowed


# CRCs of table keys. Per-interval rows take their address's or port's CRC (the interval
# breaks ties): every interval then tracks the same sample of addresses.
def _ip_crc(ip: bytes) -> int:
    return zlib.crc32(ip)


def _port_crc(port_key: int) -> int:
    return zlib.crc32(port_key.to_bytes(4, "big"))


def _interval_ip_crc(key: tuple[int, bytes]) -> int:
    return zlib.crc32(key[1])


def _interval_port_crc(key: tuple[int, int]) -> int:
    return zlib.crc32(key[1].to_bytes(4, "big"))


def _coarsen(counts: dict[int, Any], shift: int, cap: int) -> tuple[dict[int, Any], int]:
    """Halve the resolution of `counts` (keys ``>> 1``) until at most `cap` keys remain.

    Values are ints or equal-length counter lists, summed. Returns the new dict and shift.
    """
    while len(counts) > cap:
        shift += 1
        coarse: dict[int, Any] = {}
        for key, value in counts.items():
            _add_to(coarse, key >> 1, value)
        counts = coarse
    return counts, shift


def _add_to(counts: dict[Any, Any], key: Hashable, value: Any, copy: bool = True) -> None:
    """``counts[key] += value`` for ints or counter lists (a new list is copied if `copy`)."""
    mine = counts.get(key)
    if mine is None:
        counts[key] = list(value) if copy and isinstance(value, list) else value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            mine[i] += v
    else:
        counts[key] = mine + value


class TrafficStats:
    """Packets, bytes, protocols, talkers, ports and rates of one input, mergeable.

    `interval_ns`: also summarise each interval of that much capture time (intervals are
    aligned to the epoch: ``floor(ts / interval_ns)``). `top`: entries in the top lists.
    The ``max_*`` caps default to the module's named limits; tests make them small.
    """

    def __init__(
        self,
        interval_ns: int | None = None,
        top: int = DEFAULT_TOP,
        max_table_keys: int = MAX_TABLE_KEYS,
        max_interval_table_keys: int = MAX_INTERVAL_TABLE_KEYS,
        max_intervals: int = MAX_INTERVALS,
        max_windows: int = MAX_WINDOWS,
        pending_keys: int = PENDING_KEYS,
    ) -> None:
        if interval_ns is not None and interval_ns < 1:
            raise ValueError(f"interval must be positive, not {interval_ns} ns")
        if top < 0:
            raise ValueError(f"top must be 0 or more, not {top}")
        # Coarsening halves until the keys fit; two always do (floor of any set, shifted far
        # enough, is {-1, 0} at most).
        if max_intervals < 2 or max_windows < 2:
            raise ValueError("max_intervals and max_windows must be at least 2")
        self.interval_ns = interval_ns
        self.top = top
        self.caps = (max_table_keys, max_interval_table_keys, max_intervals, max_windows)
        self._pending_cap = max(1, pending_keys)
        # A tick is the time unit of the pending counts: it must divide both the second (for
        # per-second windows) and the interval (for interval numbers).
        if interval_ns is None or interval_ns % NS == 0:
            self._tick_ns = NS
        elif NS % interval_ns == 0:
            self._tick_ns = interval_ns
        else:
            self._tick_ns = _gcd(interval_ns, NS)
        self._tick = 0
        self._tick_lo = self._tick_hi = -_FAR  # the current tick's [lo, hi): empty at first
        self._first_ns = _FAR
        self._last_ns = -_FAR
        self._pending: dict[tuple[Any, ...], list[int]] = {}
        self._rows: dict[int, list[int]] = {}  # interval index >> shift → counters
        self._interval_shift = 0
        self._untimed = [0] * _ROW_LEN  # records with no time (a framing error before any frame)
        self._windows: dict[int, int] = {}  # second >> shift → packets
        self._window_shift = 0
        self._talkers: CappedTable[bytes] = CappedTable(max_table_keys, 4, _ip_crc)
        self._ports: CappedTable[int] = CappedTable(max_table_keys, 2, _port_crc)
        self._interval_talkers: CappedTable[tuple[int, bytes]] | None = None
        self._interval_ports: CappedTable[tuple[int, int]] | None = None
        if interval_ns is not None:
            self._interval_talkers = CappedTable(max_interval_table_keys, 4, _interval_ip_crc)
            self._interval_ports = CappedTable(max_interval_table_keys, 2, _interval_port_crc)

    # ------------------------------------------------------------------ the per-packet path

    def add(self, ts_ns: int, wire_len: int, pkt: Packet) -> None:
        """Count one frame that went through `decode_packet` (an error on it is an anomaly)."""
        # Capture time mostly moves forward: one comparison finds both "new last packet" and
        # "same tick as before"; anything else takes the second branch.
        if ts_ns >= self._last_ns:
            self._last_ns = ts_ns
            if ts_ns >= self._tick_hi:
                self._enter_tick(ts_ns)
        elif ts_ns < self._first_ns or not self._tick_lo <= ts_ns < self._tick_hi:
            self._enter_tick(ts_ns)
        key = _pending_key(pkt)
        counts = self._pending.get(key)
        if counts is None:
            self._new_pending(key, wire_len)
            return
        counts[0] += 1
        counts[1] += wire_len

    def add_undecoded(self, ts_ns: int | None, wire_len: int = 0) -> None:
        """Count a record with no packet (a framing error): a frame, an anomaly, `undecoded`.

        `ts_ns` is the time it is filed under (the last good frame's, as anomaly events do),
        or None before any frame: then it counts in the capture's totals only.
        """
        if ts_ns is None:
            row = self._untimed
            for slot in (_PACKETS, _ANOMALIES, _UNDECODED):
                row[slot] += 1
            row[_BYTES] += wire_len
            row[_UNDECODED + 1] += wire_len
            return
        self._enter_tick(ts_ns)
        counts = self._pending.get(_UNDECODED_KEY)
        if counts is None:
            self._new_pending(_UNDECODED_KEY, wire_len)
        else:
            counts[0] += 1
            counts[1] += wire_len

    def _enter_tick(self, ts_ns: int) -> None:
        """A packet outside the current tick (or before the first): roll up, move the tick."""
        self._first_ns = min(self._first_ns, ts_ns)
        self._last_ns = max(self._last_ns, ts_ns)
        tick = ts_ns // self._tick_ns
        if tick == self._tick and self._tick_lo <= ts_ns < self._tick_hi:
            return
        self._roll_up(self._pending, self._tick)
        self._pending.clear()
        self._tick = tick
        self._tick_lo = tick * self._tick_ns
        self._tick_hi = self._tick_lo + self._tick_ns

    def _new_pending(self, key: tuple[Any, ...], wire_len: int) -> None:
        if len(self._pending) >= self._pending_cap:
            self._roll_up(self._pending, self._tick)
            self._pending.clear()
        self._pending[key] = [1, wire_len]

    # ------------------------------------------------------------------ roll-up, merge

    def _roll_up(self, pending: dict[tuple[Any, ...], list[int]], tick: int) -> None:
        """Add one tick's pending counts to the counters, windows and tables."""
        if not pending:
            return
        start_ns = tick * self._tick_ns
        interval_ns = self.interval_ns
        index = start_ns // interval_ns if interval_ns is not None else 0
        row = self._rows.get(index >> self._interval_shift)
        if row is None:
            row = self._rows[index >> self._interval_shift] = [0] * _ROW_LEN
        # The tables' look-ups are inlined (``get(key) or admit(key)``): a method call per
        # update cost a third of the roll-up.
        talkers_get, talkers_admit = self._talkers.rows.get, self._talkers.admit
        ports_get, ports_admit = self._ports.rows.get, self._ports.admit
        by_interval = self._interval_talkers is not None and self._interval_ports is not None
        if by_interval:
            assert self._interval_talkers is not None and self._interval_ports is not None
            i_talkers_get, i_talkers_admit = (
                self._interval_talkers.rows.get,
                self._interval_talkers.admit,
            )
            i_ports_get, i_ports_admit = self._interval_ports.rows.get, self._interval_ports.admit
        packets_in_tick = 0
        for (src, dst, protocol, dst_port, ethertype, fragment, layer), (
            packets,
            nbytes,
        ) in pending.items():
            packets_in_tick += packets
            row[_PACKETS] += packets
            row[_BYTES] += nbytes
            if layer is not None:
                row[_ANOMALIES] += packets
            if src is not None:
                l3 = _IPV4 if len(src) == 4 else _IPV6
                if fragment or layer in _TRANSPORT_LAYERS:
                    l4 = _NO_L4
                else:
                    l4 = _L4_SLOT.get(protocol, _OTHER_L4)
                row[l4] += packets
                row[l4 + 1] += nbytes
                # Talker rows: tx packets, tx bytes, rx packets, rx bytes.
                t = talkers_get(src) or talkers_admit(src)
                if t is not None:
                    t[0] += packets
                    t[1] += nbytes
                t = talkers_get(dst) or talkers_admit(dst)
                if t is not None:
                    t[2] += packets
                    t[3] += nbytes
                if by_interval:
                    key = (index, src)
                    t = i_talkers_get(key) or i_talkers_admit(key)
                    if t is not None:
                        t[0] += packets
                        t[1] += nbytes
                    key = (index, dst)
                    t = i_talkers_get(key) or i_talkers_admit(key)
                    if t is not None:
                        t[2] += packets
                        t[3] += nbytes
                if dst_port is not None:
                    port_key = protocol << 16 | dst_port
                    row[_PORT_PACKETS] += packets
                    row[_PORT_BYTES] += nbytes
                    t = ports_get(port_key) or ports_admit(port_key)
                    if t is not None:
                        t[0] += packets
                        t[1] += nbytes
                    if by_interval:
                        key = (index, port_key)
                        t = i_ports_get(key) or i_ports_admit(key)
                        if t is not None:
                            t[0] += packets
                            t[1] += nbytes
            elif layer is not None or ethertype is None:
                l3 = _UNDECODED
            elif ethertype in _ARP_ETHERTYPES:
                l3 = _ARP
            else:
                l3 = _OTHER_L3
            row[l3] += packets
            row[l3 + 1] += nbytes
        window = (start_ns // NS) >> self._window_shift
        self._windows[window] = self._windows.get(window, 0) + packets_in_tick
        self._fit()

    def _fit(self) -> None:
        _, _, max_intervals, max_windows = self.caps
        if len(self._rows) > max_intervals:
            self._rows, self._interval_shift = _coarsen(
                self._rows, self._interval_shift, max_intervals
            )
        if len(self._windows) > max_windows:
            self._windows, self._window_shift = _coarsen(
                self._windows, self._window_shift, max_windows
            )

    def flush(self) -> None:
        """Roll up the pending counts now (`summaries` and `merge` do; results are the same)."""
        self._roll_up(self._pending, self._tick)
        self._pending.clear()

    def merge(self, other: TrafficStats) -> None:
        """Add `other` (same interval and caps) into this one, leaving `other` as it was."""
        if (other.interval_ns, other.caps) != (self.interval_ns, self.caps):
            raise ValueError("cannot merge traffic statistics with different intervals or caps")
        self.flush()
        self._first_ns = min(self._first_ns, other._first_ns)
        self._last_ns = max(self._last_ns, other._last_ns)
        for i, value in enumerate(other._untimed):
            self._untimed[i] += value
        self._rows, self._interval_shift = _merge_coarsened(
            self._rows, self._interval_shift, other._rows, other._interval_shift
        )
        self._windows, self._window_shift = _merge_coarsened(
            self._windows, self._window_shift, other._windows, other._window_shift
        )
        self._talkers.merge(other._talkers)
        self._ports.merge(other._ports)
        if self._interval_talkers is not None and other._interval_talkers is not None:
            self._interval_talkers.merge(other._interval_talkers)
        if self._interval_ports is not None and other._interval_ports is not None:
            self._interval_ports.merge(other._interval_ports)
        # Other's pending counts go through the same roll-up its own flush would have done.
        self._roll_up(other._pending, other._tick)
        self._fit()

    def table_sizes(self) -> dict[str, int]:
        """Rows held per structure (what the caps bound), for diagnostics and tests."""
        return {
            "pending": len(self._pending),
            "intervals": len(self._rows),
            "windows": len(self._windows),
            "talkers": len(self._talkers.rows),
            "ports": len(self._ports.rows),
            "interval_talkers": len(self._interval_talkers.rows) if self._interval_talkers else 0,
            "interval_ports": len(self._interval_ports.rows) if self._interval_ports else 0,
        }

    # ------------------------------------------------------------------ answers

    def summaries(self) -> list[TrafficSummary]:
        """The whole input first, then each interval in time order; [] if nothing was added."""
        self.flush()
        for table in (self._talkers, self._ports, self._interval_talkers, self._interval_ports):
            if table is not None:
                table.compact()
        total = list(self._untimed)
        for row in self._rows.values():
            for i, value in enumerate(row):
                total[i] += value
        if not total[_PACKETS]:
            return []
        timed = self._first_ns <= self._last_ns
        start_ns = self._first_ns if timed else None
        end_ns = self._last_ns if timed else None
        window_ns = NS << self._window_shift
        duration_s = (end_ns - start_ns) / NS if start_ns is not None and end_ns is not None else 0
        # The busiest window, once the capture spans one: a capture shorter than a second has
        # no busiest second (its one partial window would read as a rate below the mean).
        peak = max(self._windows.values(), default=None)
        if start_ns is None or end_ns is None or end_ns - start_ns < window_ns:
            peak = None
        out = [
            _summary(
                "capture",
                None,
                None,
                start_ns,
                end_ns,
                total,
                self._talkers.rows.items(),
                self._talkers.overflowed,
                self._ports.rows.items(),
                self._ports.overflowed,
                self.top,
                duration_s or None,
                None if peak is None else peak * NS / window_ns,
                window_ns,
            )
        ]
        if self.interval_ns is None:
            return out
        shift = self._interval_shift
        interval_ns = self.interval_ns << shift
        # The tables are keyed by the requested interval; coarsened intervals add theirs up.
        talkers: dict[int, dict[bytes, list[int]]] = {}
        ports: dict[int, dict[int, list[int]]] = {}
        assert self._interval_talkers is not None and self._interval_ports is not None
        for (index, ip), row in self._interval_talkers.rows.items():
            _add_to(talkers.setdefault(index >> shift, {}), ip, row, shift > 0)
        for (index, port_key), row in self._interval_ports.rows.items():
            _add_to(ports.setdefault(index >> shift, {}), port_key, row, shift > 0)
        # A rate window belongs to the interval it starts in; intervals shorter than a window
        # have no peak rate.
        peaks: dict[int, int] = {}
        if interval_ns >= window_ns:
            for window, packets in self._windows.items():
                index = ((window << self._window_shift) * NS) // interval_ns
                peaks[index] = max(peaks.get(index, 0), packets)
        for index in sorted(self._rows):
            start = index * interval_ns
            peak_packets = peaks.get(index)
            out.append(
                _summary(
                    "interval",
                    index,
                    interval_ns,
                    start,
                    start + interval_ns,
                    self._rows[index],
                    talkers.get(index, {}).items(),
                    self._interval_talkers.overflowed,
                    ports.get(index, {}).items(),
                    self._interval_ports.overflowed,
                    self.top,
                    interval_ns / NS,
                    None if peak_packets is None else peak_packets * NS / window_ns,
                    window_ns,
                )
            )
        return out


def _summary(
    scope: str,
    index: int | None,
    interval_ns: int | None,
    start_ns: int | None,
    end_ns: int | None,
    row: list[int],
    talker_items: Iterable[tuple[bytes, list[int]]],
    talkers_overflow: bool,
    port_items: Iterable[tuple[int, list[int]]],
    ports_overflow: bool,
    top: int,
    seconds: float | None,
    pps_peak: float | None,
    window_ns: int,
) -> TrafficSummary:
    # Records are built for the top entries only: an interval can hold thousands of rows.
    talker_rows = list(talker_items)
    port_rows = list(port_items)
    top_talkers = tuple(
        Talker(ip, tx_p + rx_p, tx_b + rx_b, tx_p, tx_b, rx_p, rx_b)
        for ip, (tx_p, tx_b, rx_p, rx_b) in heapq.nsmallest(top, talker_rows, key=_talker_order)
    )
    top_ports = tuple(
        PortCount(port_key >> 16, port_key & 0xFFFF, packets, nbytes)
        for port_key, (packets, nbytes) in heapq.nsmallest(top, port_rows, key=_port_order)
    )
    tracked_talker_packets = tracked_talker_bytes = tracked_port_packets = tracked_port_bytes = 0
    for _, (tx_p, tx_b, rx_p, rx_b) in talker_rows:
        tracked_talker_packets += tx_p + rx_p
        tracked_talker_bytes += tx_b + rx_b
    for _, (packets, nbytes) in port_rows:
        tracked_port_packets += packets
        tracked_port_bytes += nbytes
    ip_packets = row[_IPV4] + row[_IPV6]
    ip_bytes = row[_IPV4 + 1] + row[_IPV6 + 1]
    return TrafficSummary(
        scope=scope,
        index=index,
        interval_ns=interval_ns,
        start_ns=start_ns,
        end_ns=end_ns,
        packets=row[_PACKETS],
        bytes=row[_BYTES],
        anomalies=row[_ANOMALIES],
        protocols={name: (row[_SLOT[name]], row[_SLOT[name] + 1]) for name in PROTOCOL_CLASSES},
        talkers=top_talkers,
        talkers_tracked=len(talker_rows),
        talkers_overflow=talkers_overflow,
        # Every IP packet counts once for its source and once for its destination.
        talkers_untracked_packets=2 * ip_packets - tracked_talker_packets,
        talkers_untracked_bytes=2 * ip_bytes - tracked_talker_bytes,
        ports=top_ports,
        ports_tracked=len(port_rows),
        ports_overflow=ports_overflow,
        ports_untracked_packets=row[_PORT_PACKETS] - tracked_port_packets,
        ports_untracked_bytes=row[_PORT_BYTES] - tracked_port_bytes,
        pps_mean=row[_PACKETS] / seconds if seconds else None,
        bps_mean=row[_BYTES] * 8 / seconds if seconds else None,
        pps_peak=pps_peak,
        peak_window_ns=window_ns,
    )


# Top-list order: most bytes (talkers) or packets (ports) first; ties go to the lower address
# or port, so that the order never depends on arrival.
def _talker_order(item: tuple[bytes, list[int]]) -> tuple[int, int, int, bytes]:
    ip, (tx_p, tx_b, rx_p, rx_b) = item
    return -(tx_b + rx_b), -(tx_p + rx_p), len(ip), ip


def _port_order(item: tuple[int, list[int]]) -> tuple[int, int, int]:
    port_key, (packets, nbytes) = item
    return -packets, -nbytes, port_key


def _merge_coarsened(
    mine: dict[int, Any], my_shift: int, theirs: dict[int, Any], their_shift: int
) -> tuple[dict[int, Any], int]:
    """Sum two coarsened count dicts at the coarser of their two resolutions."""
    shift = max(my_shift, their_shift)
    merged: dict[int, Any] = {}
    for counts, at in ((mine, my_shift), (theirs, their_shift)):
        for key, value in counts.items():
            _add_to(merged, key >> (shift - at), value)
    return merged, shift


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
