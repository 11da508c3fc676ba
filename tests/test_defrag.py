"""IP defragmentation: datagrams fed in order, reversed, shuffled, duplicated and overlapped.

Whatever the arrival order and duplication, each datagram must come back exactly once and byte
for byte; the table tests pin each policy (timeout by capture time, first data wins, caps,
oversize, length conflicts) to its counter.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.flows import (
    DONE_LINGER_NS,
    FRAGMENT_TIMEOUT_NS,
    MAX_DONE_KEYS,
    Defragmenter,
)

Fragment = tuple[int, bool, bytes]  # (offset in bytes, MF flag, payload)

PROPERTY = settings(max_examples=300, deadline=None)
SEC = 1_000_000_000
V4 = (4, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 17, 0x1234)
V6 = (6, b"\x20\x01" + b"\x00" * 13 + b"\x01", b"\x20\x01" + b"\x00" * 13 + b"\x02", 17, 0x1234)
PAYLOAD = bytes(range(256)) * 5 + b"end of the datagram"  # 1299 bytes: last fragment is odd.


def v4(ip_id: int) -> tuple[object, ...]:
    return (*V4[:4], ip_id)


def split(payload: bytes, cuts: list[int]) -> list[Fragment]:
    """Cut ``payload`` at the given 8-aligned offsets into contiguous fragments."""
    points = sorted({0, len(payload), *(c for c in cuts if 0 < c < len(payload))})
    return [(a, b < len(payload), payload[a:b]) for a, b in itertools.pairwise(points)]


def feed(
    d: Defragmenter, frags: list[Fragment], key: tuple[object, ...] = V4, ts_ns: int = 0
) -> list[bytes]:
    """Feed fragments at one capture time; return every completed payload."""
    out = [d.fragment(ts_ns, key, off, more, data) for off, more, data in frags]
    return [p for p in out if p is not None]


FRAGS = split(PAYLOAD, list(range(200, len(PAYLOAD), 200)))  # Seven fragments.


def orderings() -> dict[str, list[Fragment]]:
    rng = random.Random(7)
    shuffled = FRAGS[:]
    rng.shuffle(shuffled)
    dup = [f for f in FRAGS for _ in (0, 1)]
    # Overlapping re-sends of the same bytes, straddling the original cuts.
    overlaps = [(off, off + 24 < len(PAYLOAD), PAYLOAD[off : off + 24]) for off in (192, 392, 584)]
    mixed = FRAGS[:] + overlaps
    rng.shuffle(mixed)
    return {
        "in_order": FRAGS,
        "reversed": FRAGS[::-1],
        "shuffled": shuffled,
        "duplicated": dup,
        "duplicated_reversed": dup[::-1],
        "twice_over": FRAGS + FRAGS[::-1],
        "overlapping_duplicates": mixed,
        "byte_aligned_eighths": split(PAYLOAD, list(range(8, len(PAYLOAD), 8)))[::-1],
    }


@pytest.mark.parametrize("name", list(orderings()))
@pytest.mark.parametrize("key", [V4, V6], ids=["ipv4", "ipv6"])
def test_orderings_give_payload_once(name: str, key: tuple[object, ...]) -> None:
    d = Defragmenter()
    assert feed(d, orderings()[name], key) == [PAYLOAD]
    assert d.datagrams_completed == 1
    assert (d.pending_datagrams, d.pending_bytes, d.pending_fragments) == (0, 0, 0)
    assert d.overlap_conflict_bytes == 0
    assert d.malformed_fragments == 0
    assert d.timeouts == d.evictions == d.inconsistent_datagrams == 0


@st.composite
def fed_datagrams(draw: st.DrawFn) -> tuple[bytes, list[Fragment]]:
    """A payload cut at 8-aligned points, shuffled, with duplicates and same-byte overlaps."""
    payload = draw(st.binary(min_size=9, max_size=1500))
    units = (len(payload) - 1) // 8  # Cut points 8*i with 0 < 8*i < len.
    cuts = draw(st.lists(st.integers(1, units), min_size=1, max_size=40))
    frags = split(payload, [8 * c for c in cuts])
    extra = draw(st.lists(st.sampled_from(frags), max_size=10))  # Exact duplicates.
    for _ in range(draw(st.integers(0, 6))):  # Overlapping duplicates of the same bytes.
        a = 8 * draw(st.integers(0, units))
        b = min(len(payload), a + 8 * draw(st.integers(1, 30)))
        if (a, b) != (0, len(payload)):  # That would be an atomic fragment, a datagram itself.
            extra.append((a, b < len(payload), payload[a:b]))
    order = draw(st.permutations(frags + extra))
    return payload, list(order)


@PROPERTY
@given(fed_datagrams(), st.sampled_from([V4, V6]))
def test_property_any_order_gives_payload_once(
    case: tuple[bytes, list[Fragment]], key: tuple[object, ...]
) -> None:
    payload, frags = case
    d = Defragmenter()
    assert feed(d, frags, key) == [payload]
    assert (d.pending_datagrams, d.pending_bytes, d.pending_fragments) == (0, 0, 0)
    assert d.overlap_conflict_bytes == 0
    assert d.malformed_fragments == 0
    assert d.fragments_seen == len(frags)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.integers(-2 * SEC, 5 * SEC),  # Capture time steps, some backwards.
            st.integers(0, 3),  # Key choice.
            st.integers(-16, 70_000),
            st.booleans(),
            st.binary(max_size=300),
        ),
        max_size=60,
    ),
    st.integers(0, 4),
    st.integers(0, 2000),
)
def test_property_never_raises_and_stays_bounded(
    ops: list[tuple[int, int, int, bool, bytes]], max_datagrams: int, max_bytes: int
) -> None:
    d = Defragmenter(timeout_ns=3 * SEC, max_datagrams=max_datagrams, max_bytes=max_bytes)
    keys = [V4, V6, v4(1), [1, 2]]  # The last is unhashable: must be counted, not raised.
    ts = last = 0
    for step, k, off, more, data in ops:
        ts += step
        last = max(last, ts)
        d.fragment(ts, keys[k], off, more, data)  # type: ignore[arg-type]
        assert d.pending_datagrams <= max_datagrams
        assert d.pending_bytes <= max_bytes
        assert d.pending_datagrams == len(d._table)
        assert d.pending_bytes == sum(dg.held_bytes for dg in d._table.values())
        assert len(d._done) <= MAX_DONE_KEYS
    d.expire(last + 4 * SEC)
    assert (d.pending_datagrams, d.pending_bytes, d.pending_fragments) == (0, 0, 0)
    assert d.fragments_seen == len(ops)


def test_hole_never_filled_times_out_on_expire() -> None:
    d = Defragmenter()
    assert feed(d, [f for f in FRAGS if f[0] != 400]) == []
    assert d.pending_datagrams == 1
    assert d.expire(FRAGMENT_TIMEOUT_NS) == 0  # Exactly the timeout old: not yet stale.
    assert d.expire(FRAGMENT_TIMEOUT_NS + 1) == 1
    assert d.timeouts == 1
    assert (d.pending_datagrams, d.pending_bytes, d.pending_fragments) == (0, 0, 0)


@pytest.mark.parametrize(
    ("gap_ns", "completes"),
    [(29 * SEC, True), (FRAGMENT_TIMEOUT_NS, True), (31 * SEC, False)],
)
def test_timeout_uses_capture_time(gap_ns: int, completes: bool) -> None:
    """Age is measured from the first fragment's capture time, never the wall clock."""
    start = 1_700_000_000 * SEC  # A realistic epoch; only differences matter.
    d = Defragmenter()
    assert d.fragment(start, V4, 0, True, PAYLOAD[:8]) is None
    got = d.fragment(start + gap_ns, V4, 8, False, PAYLOAD[8:16])
    assert (got == PAYLOAD[:16]) is completes
    if not completes:  # The late fragment started a new datagram; the old one timed out.
        assert (d.timeouts, d.pending_datagrams) == (1, 1)
        assert d.fragment(start + gap_ns, V4, 0, True, PAYLOAD[:8]) == PAYLOAD[:16]


def test_expire_sweeps_entries_behind_backwards_time() -> None:
    d = Defragmenter()
    d.fragment(100 * SEC, v4(1), 0, True, PAYLOAD[:8])
    d.fragment(10 * SEC, v4(2), 0, True, PAYLOAD[:8])  # Capture time stepped back.
    d.fragment(45 * SEC, v4(3), 0, True, PAYLOAD[:8])  # Front (t=100) is fresh: t=10 is stuck.
    assert (d.pending_datagrams, d.timeouts) == (3, 0)
    assert d.expire(45 * SEC) == 1  # The sweep finds t=10 behind the front.
    assert d.expire(131 * SEC) == 2
    assert (d.pending_datagrams, d.timeouts) == (0, 3)


@pytest.mark.parametrize("new_first", [False, True], ids=["old_low", "old_high"])
def test_conflicting_overlap_keeps_first_bytes(new_first: bool) -> None:
    a = (0, True, b"A" * 16)
    b = (8, True, b"B" * 16)
    last = (24, False, b"C" * 8)
    d = Defragmenter()
    first, second = (b, a) if new_first else (a, b)
    got = feed(d, [first, second, last])
    want = b"A" * 8 + b"B" * 16 + b"C" * 8 if new_first else b"A" * 16 + b"B" * 8 + b"C" * 8
    assert got == [want]
    assert (d.overlap_fragments, d.overlap_conflict_bytes, d.duplicate_bytes) == (1, 8, 0)


def test_identical_overlap_counts_duplicates() -> None:
    d = Defragmenter()
    got = feed(d, [(0, True, PAYLOAD[:16]), (8, True, PAYLOAD[8:24]), (24, False, PAYLOAD[24:32])])
    assert got == [PAYLOAD[:32]]
    assert (d.overlap_fragments, d.overlap_conflict_bytes, d.duplicate_bytes) == (1, 0, 8)


def test_datagram_cap_evicts_oldest() -> None:
    d = Defragmenter(max_datagrams=2)
    for ip_id in (1, 2, 3):
        assert d.fragment(ip_id, v4(ip_id), 0, True, PAYLOAD[:8]) is None
    assert (d.evictions, d.pending_datagrams) == (1, 2)
    assert d.fragment(9, v4(1), 8, False, b"x") is None  # Oldest is gone.
    assert d.fragment(9, v4(3), 8, False, b"x") == PAYLOAD[:8] + b"x"


def test_byte_cap_evicts_oldest_including_self() -> None:
    d = Defragmenter(max_bytes=64)
    d.fragment(0, v4(1), 0, True, PAYLOAD[:48])
    d.fragment(1, v4(2), 0, True, PAYLOAD[:32])  # 80 > 64: the older datagram goes.
    assert (d.evictions, d.pending_datagrams, d.pending_bytes) == (1, 1, 32)
    d.fragment(2, v4(2), 32, True, PAYLOAD[32:72])  # 72 > 64 alone: it evicts itself.
    assert (d.evictions, d.pending_datagrams, d.pending_bytes) == (2, 0, 0)


def test_completing_fragment_is_not_evicted() -> None:
    """Completion frees the memory, so a datagram completing over the byte cap is returned."""
    d = Defragmenter(max_bytes=64)
    assert feed(d, split(PAYLOAD[:100], [48])) == [PAYLOAD[:100]]
    assert d.evictions == 0


@pytest.mark.parametrize(
    ("key", "max_datagram_bytes", "oversize"),
    [
        (V4, 65535, True),
        (V6, 65535, True),
        (V4, 70_000, True),  # IPv4 cannot describe more than 65535 whatever the option.
        (V6, 70_000, False),
        (V6, 1000, True),
    ],
)
def test_oversize_dropped(key: tuple[object, ...], max_datagram_bytes: int, oversize: bool) -> None:
    d = Defragmenter(max_datagram_bytes=max_datagram_bytes)
    d.fragment(0, key, 0, True, PAYLOAD[:16])
    assert d.fragment(0, key, 65528, False, PAYLOAD[:16]) is None
    assert d.oversize_datagrams == int(oversize)
    assert d.pending_datagrams == int(not oversize)
    if oversize:  # The rest of the datagram is absorbed, not started afresh.
        assert d.fragment(0, key, 16, True, PAYLOAD[:16]) is None
        assert (d.late_fragments, d.pending_bytes) == (1, 0)


def test_ipv4_and_ipv6_keys_independent() -> None:
    d = Defragmenter()
    v6_payload = PAYLOAD[::-1]
    d.fragment(0, V4, 0, True, PAYLOAD[:8])
    d.fragment(0, V6, 0, True, v6_payload[:8])
    assert d.pending_datagrams == 2
    assert d.fragment(0, V6, 8, False, v6_payload[8:20]) == v6_payload[:20]
    assert d.fragment(0, V4, 8, False, PAYLOAD[8:20]) == PAYLOAD[:20]


def test_interleaved_datagrams_both_complete() -> None:
    other = PAYLOAD[::-1]
    a = [(v4(1), *f) for f in split(PAYLOAD, [400, 800])]
    b = [(v4(2), *f) for f in split(other, [200, 400, 1000])]
    interleaved = [f for pair in itertools.zip_longest(b, a[::-1]) for f in pair if f]
    d = Defragmenter()
    out = [d.fragment(0, k, off, more, data) for k, off, more, data in interleaved]
    assert sorted(p for p in out if p is not None) == sorted([PAYLOAD, other])
    assert d.datagrams_completed == 2 and d.pending_datagrams == 0


def test_unaligned_fragments_counted_but_used() -> None:
    d = Defragmenter()
    got = feed(d, [(0, True, PAYLOAD[:10]), (10, False, PAYLOAD[10:20])])
    assert got == [PAYLOAD[:20]]
    assert d.malformed_fragments == 2  # Length 10 with MF, then offset 10.


@pytest.mark.parametrize(
    "frags",
    [
        [(8, False, b"x" * 8), (16, False, b"y" * 8)],  # Two final fragments, different ends.
        [(8, False, b"x" * 8), (16, True, b"y" * 8)],  # Data past the fixed end.
        [(16, True, b"y" * 8), (8, False, b"x" * 8)],  # Final ends before held data.
    ],
)
def test_inconsistent_length_drops_datagram(frags: list[Fragment]) -> None:
    d = Defragmenter()
    assert feed(d, frags) == []  # Offset 0 never arrives: only the length can settle it.
    assert d.inconsistent_datagrams == 1
    assert (d.pending_datagrams, d.pending_bytes) == (0, 0)


def test_atomic_fragment_returned_alone() -> None:
    """Offset 0 and MF=0 is a whole datagram (RFC 6946); pending state is left untouched."""
    d = Defragmenter()
    d.fragment(0, V6, 0, True, PAYLOAD[:8])
    assert d.fragment(0, V6, 0, False, b"whole") == b"whole"
    assert d.fragment(0, V6, 0, False, b"") == b""
    assert d.fragment(0, V6, 8, False, PAYLOAD[8:9]) == PAYLOAD[:9]
    assert d.atomic_fragments == 2 and d.datagrams_completed == 3


def test_late_duplicates_absorbed_then_id_reuse_completes_again() -> None:
    d = Defragmenter()
    assert feed(d, FRAGS) == [PAYLOAD]
    assert feed(d, FRAGS, ts_ns=DONE_LINGER_NS) == []  # Within the linger: absorbed.
    assert d.late_fragments == len(FRAGS) and d.pending_datagrams == 0
    assert feed(d, FRAGS, ts_ns=DONE_LINGER_NS + 1) == [PAYLOAD]  # The IP ID came round again.


@pytest.mark.parametrize(
    "args",
    [
        (0, V4, 0, True, 5),  # An int payload: bytes(5) would invent zeros.
        (0, V4, 0, True, None),
        (0, V4, -8, True, b"x" * 8),
        (None, V4, 0, True, b"x" * 8),
        (0, V4, 8.0, True, b"x" * 8),
        (0, [4, 1], 8, True, b"x" * 8),  # Unhashable key.
    ],
)
def test_invalid_arguments_counted_not_raised(args: tuple[object, ...]) -> None:
    d = Defragmenter()
    assert d.fragment(*args) is None  # type: ignore[arg-type]
    assert (d.invalid_fragments, d.fragments_seen, d.pending_datagrams) == (1, 1, 0)


def test_payload_views_accepted() -> None:
    d = Defragmenter()
    d.fragment(0, V4, 0, True, memoryview(PAYLOAD)[:8])  # type: ignore[arg-type]
    assert d.fragment(0, V4, 8, False, bytearray(b"tail")) == PAYLOAD[:8] + b"tail"  # type: ignore[arg-type]


def test_negative_options_clamped() -> None:
    d = Defragmenter(timeout_ns=-1, max_datagrams=-1, max_bytes=-1, max_datagram_bytes=-1)
    assert d.fragment(0, V4, 0, True, b"x" * 8) is None
    assert d.pending_datagrams == 0 and d.oversize_datagrams == 1
