"""Broken captures: every bad length, cut and stray byte gives the right FramingError.

The rules under test (pipeline/capture/pcap.py, pcapng.py):
* a bad length is `length_error` at the offset of the bad header, then a resync (non-fatal,
  the detail names where reading resumed) or, if nothing plausible follows, a fatal stop;
* a capture that ends inside a record is `truncated`, fatal, at the record's offset;
* structurally wrong packets (no such interface) are `malformed` and cost only themselves;
* nothing raises, and no length from the file is used to size an allocation.
All cases are read every way (mapped, streamed in 1/3/64-byte and 1 MiB chunks) and must agree.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.capture import (
    REASON_LENGTH,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    Frame,
    FramingError,
    open_capture,
    open_stream,
)
from pipeline.capture.pcap import MAX_CAPLEN
from pipeline.capture.pcapng import MAX_BLOCK_LEN
from pipeline.capture.walker import RESYNC_WINDOW
from tests.capture_writers import (
    Rec,
    block,
    epb,
    idb,
    option,
    packet,
    pb,
    pcap_bytes,
    pcap_header,
    pcap_record,
    read_every_way,
    shb,
    spb,
)

HUGE_CAPLENS = [2**31 - 1, 2**32 - 16, MAX_CAPLEN + 1]


def _recs(n: int, start: int = 0) -> list[Rec]:
    return [Rec(1_700_000_000 + i, 1000 * i, packet(60 + 50 * i, i)) for i in range(start, n)]


def _offsets(chunks: list[bytes]) -> list[int]:
    out, at = [], 0
    for c in chunks:
        out.append(at)
        at += len(c)
    return out


def _frames_and_errors(items: list[Frame | FramingError]) -> list[tuple[str, int, int]]:
    """(kind, index, offset) per item: offsets are record headers for errors, data for frames."""
    return [("F" if type(i) is Frame else "E", i.index, i.offset) for i in items]


def _error(items: list[Frame | FramingError], n: int = 0) -> FramingError:
    errors = [i for i in items if type(i) is FramingError]
    return errors[n]


# ------------------------------------------------------------------------ classic pcap


@pytest.mark.parametrize("caplen", HUGE_CAPLENS)
def test_pcap_huge_caplen_resyncs_to_the_next_record(tmp_path: Path, caplen: int) -> None:
    recs = _recs(5)
    chunks = [pcap_header()] + [pcap_record(r) for r in recs]
    bad = Rec(recs[2].ts_sec, recs[2].ts_frac, recs[2].data, caplen=caplen)
    chunks[3] = pcap_record(bad)
    at = _offsets(chunks)
    items, cap = read_every_way(b"".join(chunks), tmp_path)
    assert _frames_and_errors(items) == [
        ("F", 1, at[1] + 16),
        ("F", 2, at[2] + 16),
        ("E", 3, at[3]),
        ("F", 4, at[4] + 16),
        ("F", 5, at[5] + 16),
    ]
    err = _error(items)
    assert err.reason == REASON_LENGTH
    assert not err.fatal
    assert f"caplen {caplen}" in err.detail
    assert f"resynchronised at offset {at[4]}" in err.detail
    assert items[3].data == recs[3].data
    assert cap.status == "partial"


@pytest.mark.parametrize("caplen", HUGE_CAPLENS)
def test_pcap_huge_caplen_on_the_last_record_is_fatal(tmp_path: Path, caplen: int) -> None:
    recs = _recs(3)
    recs[2] = Rec(recs[2].ts_sec, 0, recs[2].data, caplen=caplen)
    data = pcap_bytes(recs)
    items, _ = read_every_way(data, tmp_path)
    assert [type(i) for i in items] == [Frame, Frame, FramingError]
    err = _error(items)
    assert (err.index, err.reason, err.fatal) == (3, REASON_LENGTH, True)
    assert err.offset == len(pcap_bytes(recs[:2]))
    assert "no plausible record header" in err.detail


def test_pcap_caplen_above_snaplen_but_within_the_bound_is_a_frame(tmp_path: Path) -> None:
    big = packet(MAX_CAPLEN)
    items, cap = read_every_way(pcap_bytes([Rec(1, 0, big)], snaplen=96), tmp_path)
    assert [(type(i), i.caplen) for i in items] == [(Frame, MAX_CAPLEN)]
    assert cap.status == "ok"


@pytest.mark.parametrize(
    "garbage",
    [b"\xff" * 37, b"\xde\xad\xbe\xef" * 5 + b"\x01", b"\x00\x00\x00\x00" + b"\xff" * 13],
    ids=["ff", "deadbeef", "zeros-then-ff"],
)
def test_pcap_garbage_between_records_resyncs(tmp_path: Path, garbage: bytes) -> None:
    recs = _recs(4)
    chunks = [pcap_header()] + [pcap_record(r) for r in recs[:2]] + [garbage]
    chunks += [pcap_record(r) for r in recs[2:]]
    at = _offsets(chunks)
    items, _ = read_every_way(b"".join(chunks), tmp_path)
    assert _frames_and_errors(items) == [
        ("F", 1, at[1] + 16),
        ("F", 2, at[2] + 16),
        ("E", 3, at[3]),
        ("F", 4, at[4] + 16),
        ("F", 5, at[5] + 16),
    ]
    err = _error(items)
    assert (err.reason, err.fatal) == (REASON_LENGTH, False)
    assert f"resynchronised at offset {at[4]} ({len(garbage)} bytes skipped)" in err.detail


def test_pcap_garbage_beyond_the_resync_window_is_fatal(tmp_path: Path) -> None:
    recs = _recs(3)
    data = pcap_bytes(recs[:1]) + b"\xff" * (RESYNC_WINDOW + 100) + pcap_record(recs[1])
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    expected = None
    for opener in (lambda: open_capture(str(path)), lambda: open_stream(io.BytesIO(data))):
        with opener() as cap:
            items = list(cap)
        assert [type(i) for i in items] == [Frame, FramingError]
        assert items[1].fatal
        assert expected in (None, items)
        expected = items


def test_pcap_every_truncation_of_the_last_record(tmp_path: Path) -> None:
    recs = _recs(3)
    data = pcap_bytes(recs)
    last = len(pcap_bytes(recs[:2]))
    with open_capture(_write(tmp_path / "full.pcap", data)) as cap:
        full = list(cap)
    for cut in range(last + 1, len(data)):
        items, cap = read_every_way(data[:cut], tmp_path)
        assert items[:2] == full[:2], cut
        assert len(items) == 3, cut
        err = items[2]
        assert type(err) is FramingError
        assert (err.index, err.offset, err.reason, err.fatal) == (3, last, REASON_TRUNCATED, True)
        assert cap.status == "partial"
    items, cap = read_every_way(data[:last], tmp_path)  # cut on a record boundary: fine
    assert items == full[:2]
    assert cap.status == "ok"


@pytest.mark.parametrize(
    ("content", "reason", "words"),
    [
        (pcap_header()[:10], REASON_TRUNCATED, "10 of 24 bytes"),
        (pcap_header()[:4], REASON_TRUNCATED, "4 of 24 bytes"),
        (pcap_header(version=(1, 0)), REASON_MALFORMED, "unsupported pcap version 1.0"),
        (shb()[:10], REASON_TRUNCATED, "10 of 12 bytes"),
        (shb()[:20], REASON_TRUNCATED, "cut short"),
        (shb()[:8] + b"\x01\x02\x03\x04" + shb()[12:], REASON_MALFORMED, "byte-order magic"),
    ],
    ids=["pcap-10", "pcap-4", "pcap-v1", "shb-10", "shb-20", "shb-bad-bom"],
)
def test_corrupt_file_header_is_a_fatal_error_not_an_exception(
    tmp_path: Path, content: bytes, reason: str, words: str
) -> None:
    items, cap = read_every_way(content, tmp_path)
    assert len(items) == 1
    err = items[0]
    assert type(err) is FramingError
    assert (err.index, err.offset, err.reason, err.fatal) == (1, 0, reason, True)
    assert words in err.detail
    assert cap.status == "partial"


# ------------------------------------------------------------------------------- pcapng


def _pcapng_blocks() -> list[bytes]:
    return [shb(), idb(1, tsresol=9)] + [epb(0, 1000 + i, packet(40 + 8 * i, i)) for i in range(4)]


def _with_length(raw: bytes, length: int) -> bytes:
    return raw[:4] + struct.pack("<I", length) + raw[8:]


@pytest.mark.parametrize(
    ("length", "words"),
    [
        (0, "below the minimum of 12"),
        (11, "below the minimum of 12"),
        (13, "not a multiple of 4"),
        (30, "not a multiple of 4"),
        (MAX_BLOCK_LEN + 4, f"exceeds the maximum of {MAX_BLOCK_LEN}"),
        (2**32 - 4, f"exceeds the maximum of {MAX_BLOCK_LEN}"),
        (44, "trailing length"),  # valid-looking but wrong: the trailer disagrees
        (200, "trailing length"),  # points into a later block: the trailer disagrees
        (
            2000,
            "of length 2000: only 264 bytes left",
        ),  # points past the end, but valid blocks follow
    ],
)
def test_pcapng_bad_block_length_resyncs(tmp_path: Path, length: int, words: str) -> None:
    blocks = _pcapng_blocks()
    blocks[3] = _with_length(blocks[3], length)
    at = _offsets(blocks)
    items, cap = read_every_way(b"".join(blocks), tmp_path)
    assert _frames_and_errors(items) == [
        ("F", 1, at[2] + 28),
        ("E", 2, at[3]),
        ("F", 3, at[4] + 28),
        ("F", 4, at[5] + 28),
    ]
    err = _error(items)
    assert (err.reason, err.fatal) == (REASON_LENGTH, False)
    assert words in err.detail
    assert f"resynchronised at offset {at[4]}" in err.detail
    assert cap.status == "partial"


def test_pcapng_trailer_mismatch(tmp_path: Path) -> None:
    blocks = _pcapng_blocks()
    blocks[3] = epb(0, 1, packet(48, 1), trailer=52)
    at = _offsets(blocks)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    err = _error(items)
    assert (err.index, err.offset, err.reason) == (2, at[3], REASON_LENGTH)
    assert "trailing length 52 != leading 80" in err.detail
    assert [i.index for i in items] == [1, 2, 3, 4]


def test_pcapng_bad_length_on_the_last_block_is_fatal(tmp_path: Path) -> None:
    blocks = _pcapng_blocks()
    blocks[-1] = _with_length(blocks[-1], 13)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    err = items[-1]
    assert type(err) is FramingError
    assert (err.reason, err.fatal, err.offset) == (REASON_LENGTH, True, sum(map(len, blocks[:-1])))


@pytest.mark.parametrize("caplen", [57, 1000, 2**32 - 1])
def test_pcapng_epb_caplen_beyond_its_block_costs_only_that_block(
    tmp_path: Path, caplen: int
) -> None:
    blocks = _pcapng_blocks()
    blocks[3] = epb(0, 5, packet(56), caplen=caplen)
    at = _offsets(blocks)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    assert _frames_and_errors(items) == [
        ("F", 1, at[2] + 28),
        ("E", 2, at[3]),
        ("F", 3, at[4] + 28),
        ("F", 4, at[5] + 28),
    ]
    err = _error(items)
    assert (err.reason, err.fatal) == (REASON_LENGTH, False)
    assert f"caplen {caplen} exceeds the 56 bytes of its 88-byte block" in err.detail


def test_pcapng_too_short_packet_blocks(tmp_path: Path) -> None:
    blocks = [shb(), idb(), block(6, b"\x00" * 16), block(2, b"\x00" * 8), block(3, b"")]
    blocks += [epb(0, 1, packet(4))]
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    assert [(type(i).__name__, i.index) for i in items] == [
        ("FramingError", 1),
        ("FramingError", 2),
        ("FramingError", 3),
        ("Frame", 4),
    ]
    assert all(i.reason == REASON_LENGTH and not i.fatal for i in items[:3])


def test_pcapng_packets_before_any_idb(tmp_path: Path) -> None:
    blocks = [shb(), epb(0, 1, packet(8)), spb(packet(8)), pb(0, 1, packet(8)), idb()]
    blocks += [epb(0, 2, packet(9))]
    at = _offsets(blocks)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    assert _frames_and_errors(items) == [
        ("E", 1, at[1]),
        ("E", 2, at[2]),
        ("E", 3, at[3]),
        ("F", 4, at[5] + 28),
    ]
    for err in items[:3]:
        assert (err.reason, err.fatal) == (REASON_MALFORMED, False)
        assert "before any interface description block" in err.detail


def test_pcapng_unknown_interface_id(tmp_path: Path) -> None:
    blocks = [shb(), idb(), idb(), epb(2, 1, packet(8)), pb(7, 1, packet(8)), epb(1, 1, b"x")]
    at = _offsets(blocks)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    assert _frames_and_errors(items) == [("E", 1, at[3]), ("E", 2, at[4]), ("F", 3, at[5] + 28)]
    assert "packet for interface 2, but the section declares 2" in items[0].detail
    assert items[2].interface == 1


def test_pcapng_interfaces_do_not_carry_over_to_the_next_section(tmp_path: Path) -> None:
    blocks = [shb(), idb(), epb(0, 1, b"a"), shb(order=">"), epb(0, 1, b"b", order=">")]
    blocks += [idb(order=">"), epb(0, 1, b"c", order=">")]
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    assert [(type(i).__name__, getattr(i, "interface", None)) for i in items] == [
        ("Frame", 0),
        ("FramingError", None),
        ("Frame", 1),  # the second section's interface 0 is global interface 1
    ]


def test_pcapng_bad_byte_order_magic_mid_file_resyncs(tmp_path: Path) -> None:
    blocks = _pcapng_blocks()
    bad_shb = shb()
    blocks.insert(4, bad_shb[:8] + b"\xaa\xbb\xcc\xdd" + bad_shb[12:])
    at = _offsets(blocks)
    items, _ = read_every_way(b"".join(blocks), tmp_path)
    err = _error(items)
    assert (err.offset, err.reason, err.fatal) == (at[4], REASON_MALFORMED, False)
    assert "unknown byte-order magic 0xaabbccdd" in err.detail
    assert f"resynchronised at offset {at[5]}" in err.detail
    assert sum(type(i) is Frame for i in items) == 4


@pytest.mark.parametrize(
    ("raw_options", "note"),
    [
        (option(9, b""), "invalid if_tsresol (length 0, value none)"),
        (option(9, b"\x06\x06"), "invalid if_tsresol (length 2"),
        (option(9, bytes([0x80 | 64])), "invalid if_tsresol (length 1, value 192)"),
        (option(9, bytes([0x80 | 127])), "invalid if_tsresol (length 1, value 255)"),
        (option(9, bytes([20])), "invalid if_tsresol (length 1, value 20)"),
        (option(14, b"\x01\x02"), "invalid if_tsoffset (length 2)"),
        (struct.pack("<HH", 9, 200) + b"\x09", "runs past the block"),
    ],
)
def test_pcapng_malformed_interface_options_fall_back_to_defaults(
    tmp_path: Path, raw_options: bytes, note: str
) -> None:
    data = shb() + idb(raw_options=raw_options) + epb(0, 1_500_000, packet(4))
    items, cap = read_every_way(data, tmp_path)
    assert [i.ts_ns for i in items] == [1_500_000_000]  # microseconds, the default
    assert len(cap.notes) == 1
    assert note in cap.notes[0]
    assert cap.status == "ok"


def test_pcapng_every_truncation_of_the_last_block(tmp_path: Path) -> None:
    blocks = _pcapng_blocks()
    data = b"".join(blocks)
    last = len(data) - len(blocks[-1])
    for cut in range(last + 1, len(data)):
        items, _ = read_every_way(data[:cut], tmp_path)
        assert len(items) == 4, cut
        err = items[3]
        assert type(err) is FramingError
        assert (err.index, err.offset, err.reason, err.fatal) == (4, last, REASON_TRUNCATED, True)


# ------------------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    "content",
    [
        pcap_bytes(_recs(2)) + struct.pack("<IIII", 1, 0, 2**32 - 16, 2**32 - 16) + b"x" * 64,
        pcap_bytes(_recs(2)) + struct.pack("<IIII", 1, 0, 2**31 - 1, 60) + b"x" * 64,
        b"".join(_pcapng_blocks()) + struct.pack("<II", 6, 2**32 - 4) + b"\x00" * 64,
        b"".join(_pcapng_blocks()) + struct.pack("<II", 6, MAX_BLOCK_LEN) + b"\x00" * 64,
        b"".join(_pcapng_blocks()) + epb(0, 1, packet(8), caplen=2**32 - 1),
    ],
    ids=["pcap-4G", "pcap-2G", "pcapng-4G", "pcapng-16M", "epb-caplen-4G"],
)
def test_bad_lengths_allocate_nothing(tmp_path: Path, content: bytes) -> None:
    """No length read from the file sizes a buffer: memory stays far below the claimed size."""
    path = _write(tmp_path / "x.cap", content)
    openers = [
        lambda: open_capture(path),
        lambda: open_stream(io.BytesIO(content)),
        lambda: open_stream(io.BytesIO(content), chunk_size=7),
    ]
    for opener in openers:
        tracemalloc.start()
        try:
            with opener() as cap:
                items = list(cap)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(items[-1], FramingError)
        assert peak < 256 * 1024, peak


# ---------------------------------------------------------------------------- fuzzing


def _fuzz_seeds() -> list[bytes]:
    pcap = pcap_bytes(_recs(6))
    pcapng = b"".join(_pcapng_blocks()) + spb(packet(30)) + pb(0, 9, packet(12))
    return [pcap, pcapng, pcap_bytes(_recs(4), order=">", nano=True)]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(_fuzz_seeds()),
    edits=st.lists(
        st.tuples(st.integers(min_value=4, max_value=2000), st.integers(0, 255)), max_size=8
    ),
    cut=st.integers(min_value=0, max_value=64),
)
def test_fuzzed_captures_never_raise_and_agree_across_drivers(
    tmp_path: Path, seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for at, value in edits:  # keep the 4-byte magic: an unknown one is an open error
        data[at % len(data) if at % len(data) >= 4 else 4] = value
    content = bytes(data[: len(data) - cut])
    path = _write(tmp_path / "fuzz.cap", content)
    with open_capture(path) as cap:
        items = list(cap)
    with open_stream(io.BytesIO(content), chunk_size=5) as stream:
        assert list(stream) == items
    assert [i.index for i in items] == list(range(1, len(items) + 1))
    for item in items:
        if type(item) is Frame:
            assert item.data == content[item.offset : item.offset + item.caplen]
        else:
            assert item.reason in (REASON_LENGTH, REASON_TRUNCATED, REASON_MALFORMED)
            assert 0 <= item.offset <= len(content)
    assert sum(type(i) is FramingError and i.fatal for i in items) <= 1
    assert cap.status == ("partial" if any(type(i) is FramingError for i in items) else "ok")


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


# ----------------------------------------------------------------- zstd frame tracking


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize("level", [1, 19])
def test_zstd_frame_tracker_knows_where_frames_end(checksum: bool, level: int) -> None:
    import zstandard

    from pipeline.capture.zstd_frames import ZstdFrameTracker

    data = pcap_bytes(_recs(30))
    comp = zstandard.ZstdCompressor(
        level=level, write_checksum=checksum, write_content_size=checksum
    )
    first = comp.compress(data[:500])
    skippable = struct.pack("<II", 0x184D2A53, 3) + b"abc"
    packed = first + skippable + comp.compress(data[500:])
    boundaries = {len(first), len(first) + len(skippable), len(packed)}
    for step in (1, 2, 7, 4096):
        tracker = ZstdFrameTracker()
        for i in range(0, len(packed), step):
            tracker.feed(packed[i : i + step])
        assert not tracker.cut_short()
    for cut in range(1, len(packed)):
        tracker = ZstdFrameTracker()
        tracker.feed(packed[:cut])
        assert tracker.cut_short() == (cut not in boundaries), cut


# ------------------------------------------------------------------- trailing garbage


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00" * 5, REASON_TRUNCATED),  # shorter than any record header
        (b"\xff" * 40, REASON_LENGTH),  # a header with a huge length, nothing after it
    ],
    ids=["short", "ff"],
)
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_trailing_garbage_costs_nothing_before_it(
    tmp_path: Path, fmt: str, garbage: bytes, reason: str
) -> None:
    clean = pcap_bytes(_recs(4)) if fmt == "pcap" else b"".join(_pcapng_blocks())
    with open_capture(_write(tmp_path / "clean.cap", clean)) as cap:
        expected = list(cap)
    items, cap = read_every_way(clean + garbage, tmp_path)
    assert items[:-1] == expected
    err = items[-1]
    assert type(err) is FramingError
    assert (err.offset, err.reason, err.fatal) == (len(clean), reason, True)


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (pcap_bytes(_recs(1), version=(3, 0)), "pcap version 3.0: read as 2.4"),
        (shb(major=2, minor=1) + idb() + epb(0, 1, b"x"), "pcapng version 2.1, read as 1.0"),
    ],
    ids=["pcap-3.0", "pcapng-2.1"],
)
def test_unknown_newer_versions_are_read_and_noted(
    tmp_path: Path, content: bytes, note: str
) -> None:
    items, cap = read_every_way(content, tmp_path)
    assert [type(i) for i in items] == [Frame]
    assert any(note in n for n in cap.notes)
