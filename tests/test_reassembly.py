"""TCP stream reassembly: streams fed whole, by segment, byte by byte, reordered, duplicated.

In the style of h11's tests: whatever the segmentation and arrival order, the concatenation of
``segment()`` returns and ``flush()`` must be exactly the original bytes, and the counters must
account for every byte fed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.flows import MAX_AHEAD_BYTES, MAX_BUFFERED_SEGMENTS, SEQ_MOD, StreamReassembler

Segments = list[tuple[int, bytes]]  # (stream offset, payload)

PROPERTY = settings(max_examples=400, deadline=None)
STREAM = bytes(range(256)) * 4 + b"tail of the stream"
WRAP_ISN = SEQ_MOD - 3  # Data starts 2 bytes before the wrap: offsets 2.. cross 2**32.


def split(stream: bytes, cuts: Iterable[int]) -> Segments:
    """Cut ``stream`` at the given offsets into contiguous (offset, payload) segments."""
    points = sorted({0, len(stream), *(c for c in cuts if 0 < c < len(stream))})
    return [(a, stream[a:b]) for a, b in itertools.pairwise(points)]


def feed(
    segments: Segments, isn: int, *, syn: bool = True, **caps: int | None
) -> tuple[bytes, StreamReassembler]:
    """Feed segments as raw wrapped sequence numbers; return all delivered bytes and the state."""
    r = StreamReassembler(**caps)  # type: ignore[arg-type]
    if syn:
        r.syn(isn)
    out = [r.segment((isn + 1 + off) % SEQ_MOD, data) for off, data in segments]
    out.append(r.flush())
    return b"".join(out), r


def whole(stream: bytes) -> Segments:
    return [(0, stream)]


def by_segment(stream: bytes) -> Segments:
    return split(stream, range(0, len(stream), 100))


def byte_by_byte(stream: bytes) -> Segments:
    return [(i, stream[i : i + 1]) for i in range(len(stream))]


def reordered(stream: bytes) -> Segments:
    segs = split(stream, range(0, len(stream), 37))
    random.Random(7).shuffle(segs)
    return segs


def duplicated(stream: bytes) -> Segments:
    segs = split(stream, range(0, len(stream), 50))
    return [s for seg in segs for s in (seg, seg)]


def overlapping_retransmissions(stream: bytes) -> Segments:
    """Each segment re-sent as a larger one that straddles its neighbours, with the same bytes."""
    segs = split(stream, range(0, len(stream), 64))
    extra = [(max(0, a - 20), stream[max(0, a - 20) : a + len(d) + 20]) for a, d in segs]
    mixed = [s for pair in zip(segs, extra, strict=True) for s in pair]
    random.Random(11).shuffle(mixed)
    return mixed


FEEDS = [whole, by_segment, byte_by_byte, reordered, duplicated, overlapping_retransmissions]


@pytest.mark.parametrize("isn", [0, 1000, WRAP_ISN, SEQ_MOD - 1, SEQ_MOD - 600])
@pytest.mark.parametrize("make", FEEDS, ids=lambda f: f.__name__)
def test_every_feeding_gives_the_original_bytes(make: object, isn: int) -> None:
    segments = make(STREAM)  # type: ignore[operator]
    out, r = feed(segments, isn)
    assert out == STREAM
    assert r.delivered_bytes == len(STREAM)
    assert r.missed_bytes == r.truncated_bytes == r.overlap_conflict_bytes == 0
    assert r.duplicate_bytes == sum(len(d) for _, d in segments) - len(STREAM)
    assert r.buffered_bytes == 0


@pytest.mark.parametrize(
    "make", [whole, by_segment, byte_by_byte, duplicated], ids=lambda f: f.__name__
)
def test_delivers_eagerly_when_in_order(make: object) -> None:
    """With no holes, nothing is left for flush(): segment() already delivered it all."""
    r = StreamReassembler()
    r.syn(WRAP_ISN)
    out = b"".join(r.segment(WRAP_ISN + 1 + off, d) for off, d in make(STREAM))  # type: ignore[operator]
    assert out == STREAM
    assert r.flush() == b""
    assert r.out_of_order_segments == 0


# --- Properties ----------------------------------------------------------------------------


@st.composite
def fed_streams(draw: st.DrawFn) -> tuple[bytes, Segments, int]:
    """A random stream, a random segmentation, permuted, with random duplicates and overlaps."""
    stream = draw(st.binary(max_size=600))
    cuts = draw(st.lists(st.integers(0, max(0, len(stream))), max_size=40))
    segs = split(stream, cuts) if stream else []
    n = len(stream)
    ranges = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, 80)), max_size=10))
    segs += [(a, stream[a : a + k]) for a, k in ranges]
    if segs:
        segs += draw(st.lists(st.sampled_from(segs), max_size=10))
    segs = draw(st.permutations(segs))
    isn = draw(st.one_of(st.integers(0, SEQ_MOD - 1), st.sampled_from([WRAP_ISN, SEQ_MOD - 1])))
    return stream, segs, isn


@PROPERTY
@given(fed_streams())
def test_property_any_order_any_duplication_gives_the_original(
    case: tuple[bytes, Segments, int],
) -> None:
    stream, segs, isn = case
    out, r = feed(segs, isn)
    assert out == stream
    assert r.delivered_bytes == len(stream)
    assert r.missed_bytes == r.truncated_bytes == r.overlap_conflict_bytes == 0
    # Every byte fed is either new (delivered once) or counted as a duplicate.
    assert r.duplicate_bytes == sum(len(d) for _, d in segs) - len(stream)
    assert r.buffered_bytes == 0


@PROPERTY
@given(
    st.binary(max_size=400),
    st.one_of(st.integers(0, SEQ_MOD - 1), st.just(WRAP_ISN)),
    st.randoms(use_true_random=False),
)
def test_property_one_byte_segments_reordered(stream: bytes, isn: int, rnd: random.Random) -> None:
    segs = byte_by_byte(stream)
    rnd.shuffle(segs)
    out, _ = feed(segs, isn)
    assert out == stream


def is_subsequence(small: bytes, big: bytes) -> bool:
    it = iter(big)
    return all(b in it for b in small)


@PROPERTY
@given(fed_streams(), st.integers(0, 200), st.one_of(st.none(), st.integers(0, 700)))
def test_property_caps_keep_the_books_balanced(
    case: tuple[bytes, Segments, int], max_buffered: int, max_stream: int | None
) -> None:
    """Under any caps: memory stays bounded and delivered + missed + truncated == length."""
    stream, segs, isn = case
    r = StreamReassembler(max_buffered_bytes=max_buffered, max_stream_bytes=max_stream)
    r.syn(isn)
    out = []
    biggest = 0
    for off, data in segs:
        out.append(r.segment(isn + 1 + off, data))
        biggest = max(biggest, len(data))
        assert r.buffered_bytes <= max_buffered
    out.append(r.flush())
    got = b"".join(out)
    assert len(got) == r.delivered_bytes
    assert r.delivered_bytes + r.missed_bytes + r.truncated_bytes == len(stream)
    assert is_subsequence(got, stream)
    if max_stream is not None:
        assert r.delivered_bytes <= max_stream
    if r.missed_bytes == 0:
        assert got == stream[: len(got)]


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(), st.integers(-(2**40), 2**40)),
            st.binary(max_size=300),
            st.booleans(),
        ),
        max_size=30,
    ),
    st.one_of(st.none(), st.integers()),
    st.integers(0, 500),
)
def test_property_never_raises_on_garbage(
    ops: list[tuple[int, bytes, bool]], syn: int | None, max_buffered: int
) -> None:
    r = StreamReassembler(max_buffered_bytes=max_buffered, max_stream_bytes=1000)
    if syn is not None:
        r.syn(syn)
    total = 0
    for seq, data, fin in ops:
        total += len(r.segment(seq, data, fin))
        assert r.buffered_bytes <= max_buffered
    total += len(r.flush())
    assert total == r.delivered_bytes <= 1000
    assert r.buffered_bytes == 0
    assert r.closed == r.fin_seen


# --- Table tests -----------------------------------------------------------------------------


def test_mid_stream_pickup_without_syn() -> None:
    r = StreamReassembler()
    isn = 123_456
    assert r.segment(isn, b"hello ") == b"hello "
    assert r.segment(isn + 6, b"world") == b"world"
    assert r.delivered_bytes == 11


def test_mid_stream_pickup_across_the_wrap() -> None:
    r = StreamReassembler()
    assert r.segment(SEQ_MOD - 2, b"ab") == b"ab"
    assert r.segment(0, b"cd") == b"cd"
    assert r.segment(2**33 + 2, b"ef") == b"ef"  # Raw seq values are taken modulo 2**32.
    assert r.segment(-(2**32) + 4, b"gh") == b"gh"


def test_gap_never_filled_is_skipped_at_flush() -> None:
    segs = [(0, STREAM[:100]), (150, STREAM[150:])]
    out, r = feed(segs, WRAP_ISN)
    assert out == STREAM[:100] + STREAM[150:]
    assert r.missed_bytes == 50
    assert r.delivered_bytes + r.missed_bytes == len(STREAM)


def test_conflicting_overlap_keeps_the_first_bytes() -> None:
    r = StreamReassembler()
    r.syn(WRAP_ISN)
    base = WRAP_ISN + 1
    assert r.segment(base + 4, b"EFGH") == b""
    # The overlap with held "EFGH" differs, so the whole overlapping region is a conflict.
    assert r.segment(base + 2, b"CDxxyyIJ") == b""
    assert r.overlap_conflict_bytes == 4
    assert r.segment(base + 6, b"GH") == b""  # Identical to held bytes.
    assert r.duplicate_bytes == 2
    assert r.segment(base, b"AB") == b"ABCDEFGHIJ"
    assert r.out_of_order_segments == 3


def test_retransmission_of_delivered_bytes_counts_as_duplicate() -> None:
    """Delivered bytes are not kept, so re-sent ones count as duplicates without comparison."""
    r = StreamReassembler()
    r.syn(0)
    assert r.segment(1, b"abcdef") == b"abcdef"
    assert r.segment(3, b"XXXXgh") == b"gh"
    assert r.duplicate_bytes == 4
    assert r.overlap_conflict_bytes == 0


def test_buffer_cap_skips_the_gap() -> None:
    r = StreamReassembler(max_buffered_bytes=10)
    r.syn(WRAP_ISN)
    base = WRAP_ISN + 1
    assert r.segment(base, b"0123") == b"0123"
    assert r.segment(base + 8, b"89abcdef") == b""  # Hole at 4..8, 8 bytes held.
    assert r.buffered_bytes == 8
    assert r.segment(base + 20, b"klmn") == b"89abcdef"  # 12 > 10: skip the hole.
    assert r.buffer_cap_hits == 1
    assert r.missed_bytes == 4
    assert r.buffered_bytes == 4
    assert r.segment(base + 16, b"ghij") == b"ghijklmn"
    assert r.segment(base + 4, b"4567") == b""  # Too late: counted as already passed.
    assert r.duplicate_bytes == 4


def test_single_segment_bigger_than_the_buffer_cap() -> None:
    r = StreamReassembler(max_buffered_bytes=3)
    r.syn(0)
    assert r.segment(1 + 5, b"abcdefgh") == b"abcdefgh"
    assert (r.missed_bytes, r.buffer_cap_hits, r.buffered_bytes) == (5, 1, 0)


def test_stream_cap_truncates_and_counts() -> None:
    out, r = feed(by_segment(STREAM), WRAP_ISN, max_stream_bytes=250)
    assert out == STREAM[:250]
    assert r.stream_cap_hit
    assert r.truncated_bytes == len(STREAM) - 250
    assert r.delivered_bytes + r.truncated_bytes == len(STREAM)


def test_stream_cap_not_hit_when_exactly_reached() -> None:
    out, r = feed(whole(b"abcd"), 0, max_stream_bytes=4)
    assert out == b"abcd"
    assert not r.stream_cap_hit


def test_fin_ends_the_stream_and_later_data_is_ignored() -> None:
    r = StreamReassembler()
    r.syn(WRAP_ISN)
    base = WRAP_ISN + 1
    assert r.segment(base + 4, b"efgh", fin=True) == b""
    assert r.fin_seen
    assert not r.closed
    assert r.segment(base + 8, b"after") == b""
    assert r.segment(base + 6, b"ghIJ") == b""  # "IJ" lies past the FIN.
    assert r.after_fin_bytes == 7
    assert r.segment(base, b"abcd") == b"abcdefgh"
    assert r.closed
    assert r.flush() == b""


def test_fin_drops_held_bytes_past_it() -> None:
    r = StreamReassembler()
    r.syn(0)
    assert r.segment(1 + 10, b"0123456789") == b""
    assert r.segment(1, b"abcde", fin=True) == b"abcde"
    assert r.closed
    assert r.buffered_bytes == 0
    assert r.after_fin_bytes == 10


def test_flush_with_fin_counts_the_hole_before_it() -> None:
    r = StreamReassembler()
    r.syn(0)
    r.segment(1, b"ab")
    r.segment(1 + 6, b"gh", fin=True)
    assert r.flush() == b"gh"
    assert r.missed_bytes == 4
    assert r.closed
    assert r.delivered_bytes + r.missed_bytes == 8


def test_nothing_is_delivered_after_flush() -> None:
    r = StreamReassembler()
    r.syn(0)
    assert r.segment(1, b"ab") == b"ab"
    assert r.flush() == b""
    assert r.segment(3, b"cd") == b""
    assert r.flush() == b""
    assert r.after_flush_segments == 1


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(MAX_AHEAD_BYTES, True), (MAX_AHEAD_BYTES + 1, False), (2**31, False), (3 * 2**30 - 1, False)],
)
def test_segments_far_ahead_are_ignored(ahead: int, accepted: bool) -> None:
    r = StreamReassembler()
    r.syn(WRAP_ISN)
    r.segment(WRAP_ISN + 1 + ahead, b"zz")
    assert r.out_of_window_segments == (0 if accepted else 1)
    assert r.buffered_bytes == (2 if accepted else 0)
    assert r.segment(WRAP_ISN + 1, b"ok") == b"ok"


def test_segments_within_the_behind_window_are_retransmissions() -> None:
    """3 * 2**30 ahead is 2**30 behind: an old retransmission, not garbage."""
    r = StreamReassembler()
    r.syn(WRAP_ISN)
    assert r.segment(WRAP_ISN + 1 + 3 * 2**30, b"zz") == b""
    assert (r.out_of_window_segments, r.duplicate_bytes) == (0, 2)


def test_syn_retransmission_does_not_move_the_start() -> None:
    r = StreamReassembler()
    r.syn(100)
    r.syn(5000)
    assert r.segment(101, b"x") == b"x"


def test_negative_caps_are_clamped() -> None:
    r = StreamReassembler(max_buffered_bytes=-1, max_stream_bytes=-5)
    r.syn(0)
    assert r.segment(1, b"abc") == b""
    assert r.truncated_bytes == 3


def test_segment_count_cap_bounds_tiny_pieces() -> None:
    """A flood of 1-byte out-of-order pieces hits the piece cap long before the byte cap."""
    r = StreamReassembler()
    r.syn(0)
    for i in range(MAX_BUFFERED_SEGMENTS):
        assert r.segment(1 + 2 + 2 * i, b"x") == b""  # Every other byte: nothing merges.
    assert r.segment(1 + 2 + 2 * MAX_BUFFERED_SEGMENTS, b"y") == b"x"
    assert (r.buffer_cap_hits, r.missed_bytes) == (1, 2)
    assert r.buffered_bytes == MAX_BUFFERED_SEGMENTS


def test_skip_holes_gives_up_the_gaps_and_goes_on() -> None:
    stream = StreamReassembler()
    stream.syn(99)
    assert stream.segment(110, b"bbbbb") == b""  # a 10-byte hole before it
    assert stream.skip_holes() == b"bbbbb"
    assert stream.missed_bytes == 10 and not stream.closed
    assert stream.segment(115, b"cc") == b"cc"  # the stream goes on
    assert stream.segment(100, b"a" * 10) == b""  # the hole's bytes, too late: duplicates
    assert stream.delivered_bytes == 7


def test_a_hole_the_receiver_acknowledged_is_skipped_at_once() -> None:
    """Bytes acknowledged but never captured will not come again: `acked` gives the hole up
    (missed bytes) and delivers what follows, instead of holding it until the flow ends."""
    stream = StreamReassembler()
    stream.syn(999)  # data starts at 1000
    assert stream.segment(1000, b"abc") == b"abc"
    assert stream.segment(1010, b"after-gap") == b""  # bytes 1003..1009 not captured
    assert stream.acked(1005) == b""  # the hole reaches past the ack: its end may still come
    assert stream.acked(1019) == b"after-gap"
    assert stream.missed_bytes == 7 and stream.buffered_bytes == 0
    assert stream.segment(1019, b"more") == b"more"
    assert stream.acked(5000) == b""  # nothing held: nothing to do
