"""Pure (sans-IO) IP defragmentation for IPv4 and IPv6, driven by capture time.

The caller decodes each fragment's IP header, builds the datagram key
``(ip_version, src_ip, dst_ip, protocol, ip_id)`` and feeds the fragment's payload (the bytes
after the IPv4 header or the IPv6 Fragment header) with its offset in bytes and its MF flag.
``fragment()`` returns the whole reassembled payload when that fragment completes the datagram,
else None. Nothing here does I/O, reads the wall clock or raises on packet content: every odd
case is counted on the defragmenter so the decode layer can flag it.

Time is capture time only. A pending datagram lives ``timeout_ns`` from the capture time of its
first fragment (like Linux ``ipfrag_time`` and Zeek's ``frag_timeout``); ``fragment()`` expires
the oldest pending datagrams against each fragment's ``ts_ns`` (amortised O(1): the table is an
``OrderedDict`` in arrival order, checked from the front), and ``expire()`` sweeps the whole table
so captures whose timestamps step backwards still lose their stale entries.

Overlap policy: FIRST DATA WINS (as in ``reassembly.py``). Bytes already held are never replaced;
an overlapping fragment counts once in ``overlap_fragments``, its identical overlapping bytes in
``duplicate_bytes`` and its differing ones in ``overlap_conflict_bytes``; only its new bytes are
kept. (Linux and RFC 5722 drop the whole datagram on overlap instead; the counters show where a
host may have seen something else.)

Length policy (as Linux ``ip_frag_queue``): the first final fragment (MF=0) fixes the datagram's
length. A second final fragment with another length, or any fragment reaching past the fixed
length, or a final fragment ending before bytes already held, makes the datagram inconsistent:
it is dropped whole and counted in ``inconsistent_datagrams``. A datagram whose end would pass
the size limit is dropped and counted in ``oversize_datagrams``. Non-final fragments whose
length is not a multiple of 8 (RFC 791 / RFC 8200), or offsets that are not, are counted in
``malformed_fragments`` but their data is still used.

After a datagram completes or is dropped its key lingers for ``DONE_LINGER_NS`` so trailing
duplicate fragments (a capture that saw each packet twice) are absorbed and counted in
``late_fragments`` instead of starting a stray datagram that could complete a second time.

A fragment with offset 0 and MF=0 (an IPv6 "atomic fragment") is returned at once and never
merged with pending state (RFC 6946).

Memory: pending payload is held as non-overlapping pieces per datagram (dict keyed by offset plus
a sorted key list, as in ``reassembly.py``). Totals are capped by ``max_datagrams``,
``max_bytes`` and ``MAX_PENDING_FRAGMENTS``; under pressure the oldest pending datagram is
evicted and counted in ``evictions``. Lingering keys are capped by ``MAX_DONE_KEYS``.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Hashable

FRAGMENT_TIMEOUT_NS = 30_000_000_000  # 30 s: Linux ipfrag_time and Zeek frag_timeout default.
MAX_PENDING_DATAGRAMS = 4096  # Far above legitimate concurrent fragmented datagrams; caps floods.
MAX_PENDING_BYTES = 8 << 20  # 8 MiB held in total; ~ 128 full 64 KiB datagrams at once.
MAX_PENDING_FRAGMENTS = 65536  # Per-piece overhead (~100 B) dwarfs tiny fragments; caps floods.
MAX_DATAGRAM_BYTES = 65535  # No IP length field describes more; IPv6 jumbograms can't fragment.
IPV4_MAX_DATAGRAM_BYTES = 65535  # IPv4 total length is 16 bits; the option can't raise this.
DONE_LINGER_NS = 1_000_000_000  # Absorbs duplicated trailing fragments; short, as IDs get reused.
MAX_DONE_KEYS = 4096  # Lingering keys remembered; forgetting one only risks a stray datagram.
FRAGMENT_UNIT = 8  # Fragment offsets are in 8-byte units: non-final lengths must be multiples.

_BYTES_TYPES = (bytes, bytearray, memoryview)

DatagramKey = tuple[object, ...]  # (ip_version, src_ip bytes, dst_ip bytes, protocol, ip_id)


class _Datagram:
    """One pending datagram: non-overlapping held pieces and what is known of its length."""

    __slots__ = ("end", "first_ts_ns", "held", "held_bytes", "keys")

    def __init__(self, first_ts_ns: int) -> None:
        self.first_ts_ns: int = first_ts_ns  # Capture time of the first fragment; sets timeout.
        self.held: dict[int, bytes] = {}  # Offset -> piece; pieces never overlap.
        self.keys: list[int] = []  # Sorted offsets of ``held``.
        self.held_bytes: int = 0  # Sum of piece lengths; == end means no hole (pieces < end).
        self.end: int | None = None  # Payload length, fixed by the first MF=0 fragment.


class Defragmenter:
    """Reassemble IPv4 and IPv6 fragments into whole IP payloads, by capture time.

    Counters are plain ints so the decode layer can copy them into events without a call.
    Every fragment fed lands in ``fragments_seen``; every datagram started leaves the table
    exactly once, as one of ``datagrams_completed``, ``timeouts``, ``evictions``,
    ``oversize_datagrams`` or ``inconsistent_datagrams`` (atomic fragments skip the table).
    """

    __slots__ = (
        "_done",
        "_ipv4_limit",
        "_limit",
        "_max_bytes",
        "_max_datagrams",
        "_table",
        "_timeout",
        "atomic_fragments",
        "datagrams_completed",
        "duplicate_bytes",
        "evictions",
        "fragments_seen",
        "inconsistent_datagrams",
        "invalid_fragments",
        "late_fragments",
        "malformed_fragments",
        "overlap_conflict_bytes",
        "overlap_fragments",
        "oversize_datagrams",
        "pending_bytes",
        "pending_datagrams",
        "pending_fragments",
        "timeouts",
    )

    def __init__(
        self,
        timeout_ns: int = FRAGMENT_TIMEOUT_NS,
        max_datagrams: int = MAX_PENDING_DATAGRAMS,
        max_bytes: int = MAX_PENDING_BYTES,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
    ) -> None:
        # Negative options are clamped rather than rejected: a bad option must not kill a run.
        self._timeout: int = max(0, timeout_ns)
        self._max_datagrams: int = max(0, max_datagrams)
        self._max_bytes: int = max(0, max_bytes)
        self._limit: int = max(0, max_datagram_bytes)
        self._ipv4_limit: int = min(self._limit, IPV4_MAX_DATAGRAM_BYTES)
        # Pending datagrams in arrival order of their first fragment: the front is the oldest.
        self._table: OrderedDict[Hashable, _Datagram] = OrderedDict()
        # Completed or dropped keys -> capture time until which late fragments are absorbed.
        self._done: OrderedDict[Hashable, int] = OrderedDict()
        self.fragments_seen: int = 0
        self.datagrams_completed: int = 0
        self.atomic_fragments: int = 0  # Offset 0, MF=0: returned at once (RFC 6946).
        self.timeouts: int = 0
        self.evictions: int = 0  # Pending datagrams dropped for cap pressure.
        self.overlap_fragments: int = 0  # Fragments overlapping bytes already held.
        self.duplicate_bytes: int = 0  # Overlapping bytes identical to held ones.
        self.overlap_conflict_bytes: int = 0  # Overlapping bytes differing; new ones dropped.
        self.oversize_datagrams: int = 0
        self.inconsistent_datagrams: int = 0  # Length conflicts; dropped whole (as Linux).
        self.malformed_fragments: int = 0  # Not 8-byte aligned; counted, data still used.
        self.invalid_fragments: int = 0  # Unusable arguments (types, negative offset); ignored.
        self.late_fragments: int = 0  # Fragments of a just completed or dropped datagram.
        self.pending_datagrams: int = 0
        self.pending_bytes: int = 0
        self.pending_fragments: int = 0  # Held pieces (after overlap trimming).

    def fragment(
        self, ts_ns: int, key: DatagramKey, offset: int, more: bool, payload: bytes
    ) -> bytes | None:
        """Feed one fragment; return the whole IP payload if it completes a datagram, else None.

        ``key`` is ``(ip_version, src_ip, dst_ip, protocol, ip_id)``; ``offset`` is in bytes.
        A completed payload may be ``b""`` (an empty atomic fragment): test ``is not None``.
        """
        self.fragments_seen += 1
        if not self._valid(ts_ns, key, offset, payload):
            self.invalid_fragments += 1
            return None
        self._expire_front(ts_ns)
        data = bytes(payload)
        end = offset + len(data)
        if (more and len(data) % FRAGMENT_UNIT) or offset % FRAGMENT_UNIT:
            self.malformed_fragments += 1
        limit = self._ipv4_limit if type(key) is tuple and key and key[0] == 4 else self._limit
        if offset == 0 and not more:
            return self._atomic(data, limit)
        if key in self._done:
            self.late_fragments += 1
            return None
        dg = self._table.get(key)
        if dg is None:
            dg = self._table[key] = _Datagram(ts_ns)
            self.pending_datagrams += 1
        if end > limit:
            self.oversize_datagrams += 1
            self._drop(key, dg, ts_ns)
            return None
        if self._inconsistent(dg, end, more):
            self.inconsistent_datagrams += 1
            self._drop(key, dg, ts_ns)
            return None
        if not more:
            dg.end = end
        if data:
            self._store(dg, offset, data)
        if dg.end is not None and dg.held_bytes == dg.end:
            return self._complete(key, dg, ts_ns)
        self._enforce_caps()
        return None

    def expire(self, now_ns: int) -> int:
        """Drop pending datagrams whose first fragment is older than the timeout at ``now_ns``.

        Sweeps the whole table (bounded by ``max_datagrams``) rather than only the front, so
        entries stuck behind a newer one by backwards capture time still go. Returns how many
        datagrams timed out.
        """
        if type(now_ns) is not int:
            return 0
        stale = [k for k, dg in self._table.items() if now_ns - dg.first_ts_ns > self._timeout]
        for k in stale:
            self._remove(k)
        self.timeouts += len(stale)
        for k in [k for k, until in self._done.items() if now_ns > until]:
            del self._done[k]
        return len(stale)

    @staticmethod
    def _valid(ts_ns: object, key: object, offset: object, payload: object) -> bool:
        """True if the arguments can be used at all; checked so odd input never raises."""
        if type(ts_ns) is not int or type(offset) is not int or offset < 0:
            return False
        if not isinstance(payload, _BYTES_TYPES):
            return False  # bytes(5) would invent 5 zero bytes; bytes(10**12) would exhaust RAM.
        try:
            hash(key)
        except TypeError:
            return False
        return True

    def _expire_front(self, now_ns: int) -> None:
        """Expire from the oldest end only: amortised O(1) per fragment in capture order."""
        table, done, timeout = self._table, self._done, self._timeout
        while table:
            k, dg = next(iter(table.items()))
            if now_ns - dg.first_ts_ns <= timeout:
                break
            self._remove(k)
            self.timeouts += 1
        while done:
            k, until = next(iter(done.items()))
            if now_ns <= until:
                break
            del done[k]

    def _atomic(self, data: bytes, limit: int) -> bytes | None:
        """A whole datagram in one fragment: hand it back without touching pending state."""
        if len(data) > limit:
            self.oversize_datagrams += 1
            return None
        self.atomic_fragments += 1
        self.datagrams_completed += 1
        return data

    @staticmethod
    def _inconsistent(dg: _Datagram, end: int, more: bool) -> bool:
        """True if this fragment contradicts the datagram's length (Linux drops such queues)."""
        if dg.end is not None:
            return end > dg.end or (not more and end != dg.end)
        if more:
            return False
        return bool(dg.keys) and dg.keys[-1] + len(dg.held[dg.keys[-1]]) > end

    def _store(self, dg: _Datagram, start: int, data: bytes) -> None:
        """Hold the parts of ``data`` not already held; compare and count the parts that are."""
        keys, held = dg.keys, dg.held
        end = start + len(data)
        pos = bisect_right(keys, start) - 1
        if pos < 0 or keys[pos] + len(held[keys[pos]]) <= start:
            pos += 1
        cursor = start
        pieces: list[tuple[int, bytes]] = []
        overlapped = False
        while pos < len(keys) and keys[pos] < end:
            k = keys[pos]
            d = held[k]
            if k > cursor:
                pieces.append((cursor, data[cursor - start : k - start]))
            a = max(k, cursor)
            b = min(k + len(d), end)
            overlapped = True
            if data[a - start : b - start] == d[a - k : b - k]:
                self.duplicate_bytes += b - a
            else:
                self.overlap_conflict_bytes += b - a
            cursor = b
            pos += 1
        if cursor < end:
            pieces.append((cursor, data[cursor - start :]))
        if overlapped:
            self.overlap_fragments += 1
        for off, piece in pieces:
            held[off] = piece
            insort(keys, off)
            dg.held_bytes += len(piece)
        self.pending_bytes += sum(len(p) for _, p in pieces)
        self.pending_fragments += len(pieces)

    def _complete(self, key: Hashable, dg: _Datagram, ts_ns: int) -> bytes:
        """Join the pieces, forget the datagram, and linger its key against duplicates."""
        out = b"".join(dg.held[k] for k in dg.keys)
        self._remove(key)
        self._linger(key, ts_ns)
        self.datagrams_completed += 1
        return out

    def _drop(self, key: Hashable, dg: _Datagram, ts_ns: int) -> None:
        """Give up on a bad datagram; its later fragments are absorbed while its key lingers."""
        self._remove(key)
        self._linger(key, ts_ns)

    def _linger(self, key: Hashable, ts_ns: int) -> None:
        done = self._done
        done[key] = ts_ns + DONE_LINGER_NS
        done.move_to_end(key)
        while len(done) > MAX_DONE_KEYS:
            done.popitem(last=False)

    def _enforce_caps(self) -> None:
        """Over any cap, evict the oldest pending datagram (possibly the one just fed)."""
        table = self._table
        while table and (
            len(table) > self._max_datagrams
            or self.pending_bytes > self._max_bytes
            or self.pending_fragments > MAX_PENDING_FRAGMENTS
        ):
            self._remove(next(iter(table)))
            self.evictions += 1

    def _remove(self, key: Hashable) -> None:
        dg = self._table.pop(key)
        self.pending_datagrams -= 1
        self.pending_bytes -= dg.held_bytes
        self.pending_fragments -= len(dg.keys)
