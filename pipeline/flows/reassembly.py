"""Pure (sans-IO) TCP stream reassembly for one direction of one connection.

The caller feeds segments as they appear in the capture (any order, duplicated, overlapping) and
gets back the bytes that became deliverable in stream order. Nothing here does I/O or raises on
packet content: every odd case is counted on the reassembler so the flow layer can flag it.

Positions are stream offsets (bytes since the first data byte), not raw sequence numbers. A raw
32-bit ``seq`` is unwrapped against the delivered point with modular arithmetic, so a stream that
crosses 2**32 (or is longer than 4 GiB) reassembles like any other.

Overlap policy: FIRST DATA WINS. Bytes already delivered or buffered are never replaced. Where a
new segment overlaps bytes still buffered, the overlapping region is compared: identical counts as
``duplicate_bytes``, different as ``overlap_conflict_bytes`` (the new bytes are dropped). Delivered
bytes are not retained (memory stays bounded by the buffer cap), so anything that falls before the
delivered point is counted as ``duplicate_bytes`` without comparison.

Buffer discipline: out-of-order data is held as non-overlapping pieces in a dict keyed by offset
plus a sorted key list (bisect). Insert is O(log n) search + O(n) list memmove, delivery drains
from the front with one ``del keys[:i]`` per call, and n is bounded by ``MAX_BUFFERED_SEGMENTS``.
"""

from __future__ import annotations

from bisect import bisect_right, insort

SEQ_MOD = 2**32  # TCP sequence numbers are 32 bits and wrap.
MAX_AHEAD_BYTES = 2**30  # Farther ahead is garbage or a stale wrap: ignoring it bounds allocation.
MAX_BEHIND_BYTES = 2**30  # Farther behind is not a plausible retransmission: ignore, don't guess.
MAX_BUFFERED_BYTES = 1 << 20  # Default out-of-order bytes held; ~ a large receive window.
MAX_BUFFERED_SEGMENTS = (
    16384  # Per-piece overhead (~100 B) dwarfs tiny payloads; caps 1-byte floods.
)


class StreamReassembler:
    """Reassemble one direction of one TCP connection into in-order bytes.

    Counters are plain ints so the flow layer can copy them into events without a method call.
    Invariant once every byte has been fed and ``flush()`` called:
    ``delivered_bytes + missed_bytes + truncated_bytes == stream length``.
    """

    __slots__ = (
        "_base",
        "_fin_offset",
        "_flushed",
        "_held",
        "_keys",
        "_max_buffered",
        "_max_stream",
        "_next",
        "after_fin_bytes",
        "after_flush_segments",
        "buffer_cap_hits",
        "buffered_bytes",
        "closed",
        "delivered_bytes",
        "duplicate_bytes",
        "fin_seen",
        "missed_bytes",
        "out_of_order_segments",
        "out_of_window_segments",
        "overlap_conflict_bytes",
        "stream_cap_hit",
        "truncated_bytes",
    )

    def __init__(
        self, max_buffered_bytes: int = MAX_BUFFERED_BYTES, max_stream_bytes: int | None = None
    ) -> None:
        # Negative caps are clamped rather than rejected: a bad option must not kill a run.
        self._max_buffered: int = max(0, max_buffered_bytes)
        self._max_stream: int | None = (
            None if max_stream_bytes is None else max(0, max_stream_bytes)
        )
        self._base: int | None = None  # Sequence number of stream offset 0.
        self._next: int = 0  # Stream offset of the next byte to deliver (the delivered point).
        self._fin_offset: int | None = None  # Stream offset where the FIN sits (end of data).
        self._flushed: bool = False
        self._held: dict[int, bytes] = {}  # Buffered out-of-order pieces, non-overlapping.
        self._keys: list[int] = []  # Sorted offsets of ``_held``; every key > ``_next``.
        self.delivered_bytes: int = 0
        self.missed_bytes: int = 0  # Gap bytes skipped (cap hit or flush); never seen.
        self.duplicate_bytes: int = (
            0  # Re-sent bytes: identical to held ones, or already delivered.
        )
        self.overlap_conflict_bytes: int = 0  # Re-sent bytes that differ from held ones; dropped.
        self.out_of_order_segments: int = 0
        self.out_of_window_segments: int = 0  # Segments too far ahead/behind; ignored whole.
        self.after_fin_bytes: int = 0  # Bytes at or past the FIN's position; ignored.
        self.after_flush_segments: int = 0  # Segments fed after ``flush()``; ignored.
        self.buffered_bytes: int = 0
        self.buffer_cap_hits: int = 0
        self.stream_cap_hit: bool = False
        self.truncated_bytes: int = 0
        self.fin_seen: bool = False
        self.closed: bool = False

    def syn(self, seq: int) -> None:
        """Record the SYN: data starts at ``seq + 1``. A later SYN (retransmit) changes nothing."""
        if self._base is None:
            self._base = (seq + 1) % SEQ_MOD

    def segment(self, seq: int, payload: bytes, fin: bool = False) -> bytes:
        """Feed one segment; return the bytes that became deliverable in order now (often b"").

        Without a prior ``syn()`` the first segment's ``seq`` is taken as stream offset 0 (capture
        picked up mid-connection); bytes fed later from before that point count as duplicates.
        """
        if self._flushed:
            self.after_flush_segments += 1
            return b""
        if self._base is None:
            self._base = seq % SEQ_MOD
        start = self._unwrap(seq)
        if start is None:
            self.out_of_window_segments += 1
            return b""
        data = bytes(payload)
        end = start + len(data)
        if fin and not self.fin_seen and end >= self._next:
            self._set_fin(end)
        if self._fin_offset is not None and end > self._fin_offset:
            cut = max(start, self._fin_offset)
            self.after_fin_bytes += end - cut
            data = data[: cut - start]
            end = cut
        if start < self._next:
            behind = min(end, self._next) - start
            self.duplicate_bytes += behind
            data = data[behind:]
            start += behind
        out: list[bytes] = []
        if start < end:
            if start == self._next and not self._keys:
                # In order with nothing held, as most segments are: what holding it and
                # draining it at once would do, without the bookkeeping.
                self._emit(data, out)
            else:
                if start > self._next:
                    self.out_of_order_segments += 1
                self._store(start, data)
                self._drain(out)
                self._enforce_buffer_cap(out)
        self._update_closed()
        return b"".join(out)

    def flush(self) -> bytes:
        """End of the flow: deliver everything buffered in order, counting holes as missed.

        If a FIN was seen, the bytes between the last buffered piece and the FIN are missed too,
        so the counters still add up to the stream length. Afterwards nothing more is delivered.
        """
        if self._flushed:
            return b""
        out: list[bytes] = []
        while self._keys:
            self._skip_to(self._keys[0])
            self._drain(out)
        if self._fin_offset is not None and self._next < self._fin_offset:
            self._skip_to(self._fin_offset)
        self._flushed = True
        self._update_closed()
        return b"".join(out)

    def skip_holes(self) -> bytes:
        """Give up every hole now (counted as missed) and deliver what is held; unlike
        `flush`, the stream goes on. What a memory budget over many streams calls."""
        out: list[bytes] = []
        while self._keys:
            self._skip_to(self._keys[0])
            self._drain(out)
        self._update_closed()
        return b"".join(out)

    def acked(self, ack: int) -> bytes:
        """The receiver acknowledged every byte before the raw sequence number `ack`: holes
        below it were received but not captured, so they never fill. Skip them (missed bytes)
        and deliver the held pieces that follow, as Zeek does on a content gap. A hole that
        reaches past `ack` stays: its end may still come."""
        if not self._keys or self._base is None or self._flushed:
            return b""
        offset = self._unwrap(ack)
        if offset is None or offset <= self._next:
            return b""
        out: list[bytes] = []
        while self._keys and self._keys[0] <= offset:
            self._skip_to(self._keys[0])
            self._drain(out)
        self._update_closed()
        return b"".join(out)

    def _unwrap(self, seq: int) -> int | None:
        """Map a raw seq to a stream offset near the delivered point, or None if out of window."""
        base = 0 if self._base is None else self._base  # Always set by the caller; no assert.
        delta = (seq - base - self._next) % SEQ_MOD
        if delta <= MAX_AHEAD_BYTES:
            return self._next + delta
        if delta >= SEQ_MOD - MAX_BEHIND_BYTES:
            return self._next + delta - SEQ_MOD
        return None

    def _set_fin(self, fin_offset: int) -> None:
        """Mark the end of the stream and drop held bytes past it (the FIN outranks them)."""
        self.fin_seen = True
        self._fin_offset = fin_offset
        keys, held = self._keys, self._held
        while keys:
            k = keys[-1]
            d = held[k]
            if k + len(d) <= fin_offset:
                break
            keep = max(0, fin_offset - k)
            self.after_fin_bytes += len(d) - keep
            self.buffered_bytes -= len(d) - keep
            if keep:
                held[k] = d[:keep]
                break
            del held[k]
            keys.pop()

    def _store(self, start: int, data: bytes) -> None:
        """Hold the parts of ``data`` not already held; compare and count the parts that are."""
        keys, held = self._keys, self._held
        end = start + len(data)
        pos = bisect_right(keys, start) - 1
        if pos < 0 or keys[pos] + len(held[keys[pos]]) <= start:
            pos += 1
        cursor = start
        pieces: list[tuple[int, bytes]] = []
        while pos < len(keys) and keys[pos] < end:
            k = keys[pos]
            d = held[k]
            if k > cursor:
                pieces.append((cursor, data[cursor - start : k - start]))
            a = max(k, cursor)
            b = min(k + len(d), end)
            if data[a - start : b - start] == d[a - k : b - k]:
                self.duplicate_bytes += b - a
            else:
                self.overlap_conflict_bytes += b - a
            cursor = b
            pos += 1
        if cursor < end:
            pieces.append((cursor, data[cursor - start :]))
        for off, piece in pieces:
            held[off] = piece
            insort(keys, off)
            self.buffered_bytes += len(piece)

    def _drain(self, out: list[bytes]) -> None:
        """Deliver held pieces that start exactly at the delivered point, in order."""
        keys, held = self._keys, self._held
        i = 0
        while i < len(keys) and keys[i] == self._next:
            d = held.pop(keys[i])
            self.buffered_bytes -= len(d)
            self._emit(d, out)
            i += 1
        if i:
            del keys[:i]

    def _enforce_buffer_cap(self, out: list[bytes]) -> None:
        """Over a cap, give up on the oldest hole: skip it and deliver from the next piece on."""
        while self._keys and (
            self.buffered_bytes > self._max_buffered or len(self._keys) > MAX_BUFFERED_SEGMENTS
        ):
            self.buffer_cap_hits += 1
            self._skip_to(self._keys[0])
            self._drain(out)

    def _skip_to(self, offset: int) -> None:
        """Move the delivered point over a hole that will never be filled."""
        self.missed_bytes += offset - self._next
        self._next = offset

    def _emit(self, data: bytes, out: list[bytes]) -> None:
        """Advance past ``data``, delivering what the stream cap allows and counting the rest."""
        self._next += len(data)
        room = len(data) if self._max_stream is None else self._max_stream - self.delivered_bytes
        if room >= len(data):
            out.append(data)
            self.delivered_bytes += len(data)
            return
        if room > 0:
            out.append(data[:room])
            self.delivered_bytes += room
        self.truncated_bytes += len(data) - max(0, room)
        self.stream_cap_hit = True

    def _update_closed(self) -> None:
        self.closed = self._fin_offset is not None and self._next >= self._fin_offset
