"""Capture framing on well-formed synthetic captures: every Frame field, every input path.

Each capture is built byte by byte with tests/capture_writers.py and read every way the
reader supports (mapped with and without data, streamed whole and in tiny chunks); all ways
must agree before any field is checked. Broken captures are in test_capture_errors.py, the
shared reference corpus in test_capture_real.py.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import mmap
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from pipeline.capture import (
    REASON_LENGTH,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    Capture,
    CaptureOpenError,
    Frame,
    FramingError,
    open_capture,
    open_stream,
)
from pipeline.capture.pcapng import tsresol_scale
from tests.capture_writers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    Rec,
    custom_block,
    dsb,
    epb,
    idb,
    isb,
    nrb,
    packet,
    pb,
    pcap_bytes,
    read_every_way,
    shb,
    spb,
)

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- classic pcap

PCAP_RECORDS = [
    Rec(1_700_000_000, 0, packet(60, 1)),
    Rec(1_700_000_000, 999_999, packet(1514, 2)),
    Rec(1_700_000_001, 5, packet(100, 3), origlen=1500),  # snapped: caplen < origlen
    Rec(0, 0, b""),  # zero-length record is legal
    Rec(0xFFFFFFFF, 1, packet(7, 4)),  # unsigned seconds: year 2106
]


def _expected_pcap(records: list[Rec], nano: bool, linktype: int) -> list[Frame]:
    frames, offset = [], 24
    for i, rec in enumerate(records, 1):
        ts = rec.ts_sec * 1_000_000_000 + rec.ts_frac * (1 if nano else 1000)
        origlen = len(rec.data) if rec.origlen is None else rec.origlen
        frames.append(Frame(i, ts, offset + 16, len(rec.data), origlen, 0, linktype, rec.data))
        offset += 16 + len(rec.data)
    return frames


@pytest.mark.parametrize("order", ["<", ">"], ids=["le", "be"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize(
    ("linktype_field", "link_type"),
    [
        (LINKTYPE_ETHERNET, LINKTYPE_ETHERNET),
        (LINKTYPE_RAW, LINKTYPE_RAW),
        (LINKTYPE_LINUX_SLL2, LINKTYPE_LINUX_SLL2),
        # FCS bits (F bit + 2 sixteen-bit words of FCS) in the upper bits are masked off.
        (LINKTYPE_ETHERNET | 0x04000000 | (2 << 28), LINKTYPE_ETHERNET),
    ],
    ids=["ether", "raw", "sll2", "ether+fcs"],
)
def test_pcap_every_field(
    tmp_path: Path, order: str, nano: bool, linktype_field: int, link_type: int
) -> None:
    data = pcap_bytes(PCAP_RECORDS, order=order, nano=nano, linktype=linktype_field)
    items, cap = read_every_way(data, tmp_path)
    assert items == _expected_pcap(PCAP_RECORDS, nano, link_type)
    assert cap.format == "pcap"
    assert cap.compression == "none"
    assert cap.status == "ok"
    assert cap.frames_read == len(PCAP_RECORDS)


@pytest.mark.parametrize(
    ("version", "swapped"),
    [((2, 4), False), ((2, 2), True), ((2, 0), True)],
    ids=["2.4", "2.2-swapped", "2.0-swapped"],
)
def test_pcap_before_2_3_has_swapped_lengths(
    tmp_path: Path, version: tuple[int, int], swapped: bool
) -> None:
    """libpcap < 2.3 wrote origlen before caplen; libpcap and tshark swap them back."""
    rec = Rec(10, 20, packet(40), origlen=1500)
    if swapped:  # write the header fields the old way round
        rec = Rec(10, 20, packet(40), caplen=1500, origlen=40)
    items, _ = read_every_way(pcap_bytes([rec], version=version), tmp_path)
    assert items == [Frame(1, 10_000_020_000, 40, 40, 1500, 0, 1, packet(40))]


def test_pcap_2_3_lengths_swapped_only_when_caplen_exceeds_origlen(tmp_path: Path) -> None:
    recs = [Rec(1, 0, packet(40), origlen=1500), Rec(2, 0, packet(40), caplen=1500, origlen=40)]
    items, _ = read_every_way(pcap_bytes(recs, version=(2, 3)), tmp_path)
    assert [(f.caplen, f.origlen) for f in items] == [(40, 1500), (40, 1500)]


def test_pcap_header_only_is_an_empty_capture(tmp_path: Path) -> None:
    items, cap = read_every_way(pcap_bytes([]), tmp_path)
    assert items == []
    assert cap.status == "ok"


# ---------------------------------------------------------------------------------- pcapng

S = 1_000_000_000  # ns per second


def _multi_section_pcapng() -> tuple[bytes, list[Frame]]:
    """Two sections (LE then BE), five interfaces, every packet block type, skipped blocks."""
    parts: list[bytes] = []
    expected: list[Frame] = []
    offset = 0

    def add(block: bytes, frame: tuple[int, int, int, int, int, int, bytes] | None = None) -> None:
        nonlocal offset
        if frame is not None:
            ts, data_off, caplen, origlen, iface, link, data = frame
            expected.append(
                Frame(len(expected) + 1, ts, offset + data_off, caplen, origlen, iface, link, data)
            )
        parts.append(block)
        offset += len(block)

    # Section 1, little-endian.
    add(shb(order="<"))
    add(idb(LINKTYPE_ETHERNET, tsresol=9, tsoffset=100))  # global 0: ns, +100 s
    add(nrb())
    add(idb(LINKTYPE_RAW, tsresol=0x80 | 20, snaplen=64))  # global 1: 2^-20 s
    add(idb(LINKTYPE_NULL))  # global 2: default µs
    p = packet(61, 1)
    add(epb(0, 1_700_000_000 * S + 123, p), (1_700_000_100 * S + 123, 28, 61, 61, 0, 1, p))
    p = packet(64, 2)
    ts_units = 1_700_000_000 * (1 << 20) + 3  # 3/2^20 s = 2861.02... µs -> floored ns
    add(epb(1, ts_units, p, origlen=1500), (1_700_000_000 * S + 2861, 28, 64, 1500, 1, 101, p))
    add(isb(0))
    p = packet(10, 3)
    add(epb(2, 1_700_000_000_000_001, p), (1_700_000_000 * S + 1000, 28, 10, 10, 2, 0, p))
    add(custom_block())
    add(custom_block(copyable=False))
    add(dsb())
    p = packet(30, 4)
    # SPB: interface 0 (global 0), timestamp of the previous packet (just above).
    add(spb(p), (1_700_000_000 * S + 1000, 12, 30, 30, 0, 1, p))
    p = packet(20, 5)
    add(pb(1, 5 << 20, p, drops=3), (5 * S, 28, 20, 20, 1, 101, p))
    # Section 2, big-endian: its interface 0 is global interface 3.
    add(shb(order=">"))
    add(idb(LINKTYPE_LINUX_SLL, order=">", snaplen=16))  # global 3: µs, snaplen 16
    add(idb(LINKTYPE_ETHERNET, order=">", tsresol=3, tsoffset=-10))  # global 4: ms, -10 s
    p = packet(33, 6)
    add(epb(1, 2_000, p, order=">"), (-8 * S, 28, 33, 33, 4, 1, p))
    p = packet(40, 7)
    add(epb(0, 7, p, order=">"), (7_000, 28, 40, 40, 3, 113, p))
    p = packet(40, 8)
    # SPB: snaplen 16 of interface 0 bounds the caplen below origlen and block space.
    add(spb(p, order=">"), (7_000, 12, 16, 40, 3, 113, p[:16]))
    add(nrb(order=">"))
    return b"".join(parts), expected


def test_pcapng_sections_interfaces_and_block_types(tmp_path: Path) -> None:
    data, expected = _multi_section_pcapng()
    items, cap = read_every_way(data, tmp_path)
    assert items == expected
    assert cap.format == "pcapng"
    assert cap.status == "ok"
    assert cap.notes == []


def test_pcapng_spb_first_packet_gets_timestamp_zero(tmp_path: Path) -> None:
    data = shb() + idb(LINKTYPE_ETHERNET, snaplen=0) + spb(packet(50), origlen=60)
    items, _ = read_every_way(data, tmp_path)
    # caplen = min(origlen 60, snaplen 0 = unlimited, 52 bytes of block space) = 52: the
    # SPB's padding is part of the block space, so the caplen takes padding bytes too.
    assert items == [Frame(1, 0, 60, 52, 60, 0, 1, packet(50) + b"\x00\x00")]


@pytest.mark.parametrize(
    ("tsresol", "units", "expected_ns"),
    [
        (None, 1_500_000, 1_500_000_000),  # default: µs
        (6, 1_500_000, 1_500_000_000),
        (9, 1_500_000, 1_500_000),
        (0, 3, 3 * S),  # seconds
        (3, 7, 7_000_000),  # ms
        (12, 1_999, 1),  # ps: floored to whole ns
        (19, 10**19, S),  # the finest power of 10 accepted
        (0x80 | 0, 5, 5 * S),  # 2^0 = seconds
        (0x80 | 10, 1024, S),  # 1/1024 s
        (0x80 | 20, (1 << 20) + 1, S + 953),  # 1/2^20 s, 953.67 ns floored
        (0x80 | 63, 1 << 63, S),  # the finest power of 2 accepted
    ],
)
def test_pcapng_tsresol_exact(
    tmp_path: Path, tsresol: int | None, units: int, expected_ns: int
) -> None:
    data = shb() + idb(tsresol=tsresol) + epb(0, units, packet(4))
    items, cap = read_every_way(data, tmp_path)
    assert [f.ts_ns for f in items] == [expected_ns]
    assert cap.notes == []


def test_tsresol_scale_is_integer_exact_for_every_valid_value() -> None:
    for value in range(256):
        scale = tsresol_scale(value)
        exp = value & 0x7F
        if (value & 0x80 and exp > 63) or (not value & 0x80 and exp > 19):
            assert scale is None
            continue
        assert scale is not None
        mul, div = scale
        base = 2 if value & 0x80 else 10
        # one full second of units must map to exactly 10^9 ns
        assert (base**exp) * mul // div == S


# --------------------------------------------------------------------------------- streams


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "gzip-multimember":  # what `cat a.gz b.gz` makes
        return gzip.compress(data[:100]) + gzip.compress(data[100:])
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if kind == "zstd-multiframe":
        c = zstandard.ZstdCompressor()
        return c.compress(data[:100]) + c.compress(data[100:])
    if kind == "xz":
        return lzma.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    raise AssertionError(kind)


def _sample_captures() -> dict[str, bytes]:
    recs = [Rec(1_600_000_000 + i, i, packet(60 + 37 * i, i)) for i in range(50)]
    return {"pcap": pcap_bytes(recs, nano=True), "pcapng": _multi_section_pcapng()[0]}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize(
    "kind", ["gzip", "gzip-multimember", "zstd", "zstd-multiframe", "xz", "bz2"]
)
def test_compressed_gives_the_same_frames(tmp_path: Path, fmt: str, kind: str) -> None:
    plain = _sample_captures()[fmt]
    path = tmp_path / "capture.bin"  # no telling extension: detection is by magic
    path.write_bytes(plain)
    with open_capture(str(path)) as cap:
        expected = list(cap)
    path.write_bytes(_compress(kind, plain))
    with open_capture(str(path), with_data=False) as cap:
        assert cap.compression == kind.split("-")[0]
        assert cap.format == fmt
        assert cap.mapping is None
        assert cap.with_data  # streams always carry data
        assert list(cap) == expected
        assert cap.status == "ok"
    # and in one-byte reads of compressed input
    with open(path, "rb") as f, open_stream(f, "x", chunk_size=1) as cap:
        assert list(cap) == expected


def test_stream_memory_is_chunked_not_whole(tmp_path: Path) -> None:
    """A stream is consumed chunk by chunk: the receive buffer stays near one chunk."""
    recs = [Rec(1, i, packet(1000, i)) for i in range(3000)]  # ~3 MB
    path = tmp_path / "big.pcap.gz"
    path.write_bytes(gzip.compress(pcap_bytes(recs)))
    with open_capture(str(path)) as cap:
        largest = 0
        for _ in cap.batches(64):
            largest = max(largest, len(cap._buf))
    assert largest <= 2 * 1024 * 1024


def test_stdin_in_a_subprocess(tmp_path: Path) -> None:
    plain = _sample_captures()["pcapng"]
    path = tmp_path / "in.zst"
    path.write_bytes(_compress("zstd", plain))
    code = (
        "from pipeline.capture import open_capture, Frame\n"
        "with open_capture('-') as cap:\n"
        "    items = list(cap)\n"
        "    print(cap.name, cap.format, cap.compression, len(items), cap.status)\n"
        "    print(sum(len(f.data) for f in items if type(f) is Frame))\n"
    )
    with open(path, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-c", code],
            stdin=stdin,
            capture_output=True,
            cwd=REPO,
            check=True,
            text=True,
            timeout=60,
        )
    _, expected = _multi_section_pcapng()
    assert done.stdout.split("\n")[0] == f"- pcapng zstd {len(expected)} ok"
    assert int(done.stdout.split("\n")[1]) == sum(len(f.data or b"") for f in expected)


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_stdin_pipe_monkeypatched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """stdin as a real pipe, written slowly by a thread: nothing may seek or wait for EOF."""
    plain = _sample_captures()["pcap"]
    payload = plain if kind == "plain" else _compress("gzip", plain)
    path = tmp_path / "x.pcap"
    path.write_bytes(plain)
    with open_capture(str(path)) as cap:
        expected = list(cap)
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as w:
            for i in range(0, len(payload), 333):
                w.write(payload[i : i + 333])

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb") as r:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(r))
        with open_capture("-") as cap:
            assert cap.name == "-"
            assert cap.compression == ("none" if kind == "plain" else "gzip")
            assert list(cap) == expected
    thread.join()


def test_named_pipe_is_streamed(tmp_path: Path) -> None:
    plain = _sample_captures()["pcap"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as w:
            w.write(plain)

    thread = threading.Thread(target=writer)
    thread.start()
    with open_capture(str(fifo)) as cap:
        assert cap.mapping is None
        assert len(list(cap)) == 50
    thread.join()


# ------------------------------------------------------------------------------ the API


def test_capture_attributes_and_close(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(PCAP_RECORDS))
    with open_capture(str(path), with_data=False) as cap:
        assert isinstance(cap, Capture)
        assert cap.name == str(path)
        assert isinstance(cap.mapping, mmap.mmap)
        assert not cap.with_data
        assert cap.frames_read == 0
        frames = list(cap)
        assert all(f.data is None for f in frames)
        assert cap.frames_read == len(PCAP_RECORDS)
        # refs point into the mapping, which is what worker processes get
        assert cap.mapping[frames[1].offset : frames[1].offset + frames[1].caplen] == packet(
            1514, 2
        )
    assert cap.mapping is None
    assert list(cap) == []  # a closed capture yields nothing (and does not crash)
    cap.close()  # idempotent


@pytest.mark.parametrize("max_items", [1, 2, 3, 1024])
def test_batches_sizes_and_resume(tmp_path: Path, max_items: int) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(PCAP_RECORDS))
    with open_capture(str(path)) as cap:
        batches = list(cap.batches(max_items))
    assert all(len(b) <= max_items for b in batches)
    assert all(len(b) == max_items for b in batches[:-1])
    assert [f for b in batches for f in b] == _expected_pcap(PCAP_RECORDS, False, 1)
    # iteration can stop and resume where it left off
    with open_capture(str(path)) as cap:
        it = iter(cap.batches(2))
        first = next(it)
        rest = [f for b in cap.batches(2) for f in b]
    assert first + rest == _expected_pcap(PCAP_RECORDS, False, 1)


def test_status_becomes_partial_with_a_framing_error(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(PCAP_RECORDS)[:-3])  # cut inside the last record
    with open_capture(str(path)) as cap:
        items = list(cap)
        assert cap.status == "partial"
        assert cap.frames_read == len(PCAP_RECORDS)
    assert isinstance(items[-1], FramingError)
    assert items[-1].reason == REASON_TRUNCATED


def test_exports() -> None:
    import pipeline.capture as capture

    for name in ("open_capture", "Capture", "Frame", "FramingError", "CaptureOpenError"):
        assert hasattr(capture, name)
    assert (REASON_LENGTH, REASON_TRUNCATED, REASON_MALFORMED) == (
        "length_error",
        "truncated",
        "malformed",
    )


# ------------------------------------------------------------------------ open errors


def _unreadable(tmp_path: Path) -> str:
    path = tmp_path / "secret.pcap"
    path.write_bytes(pcap_bytes(PCAP_RECORDS))
    path.chmod(0)
    return str(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: str(d / "missing.pcap"), "capture not found: {}"),
        (lambda d: str(d), "not a regular file: {}"),
        (lambda d: _write(d / "x.txt", b"\x12\x34\x56\x78 hello"), None),
        (lambda d: _write(d / "x.pcap", b""), "empty file: {}"),
        (lambda d: _write(d / "x.pcap", b"\xd4\xc3"), None),
        (lambda d: _write(d / "x.gz", gzip.compress(b"")), None),
        (lambda d: _write(d / "x.gz", gzip.compress(b"hello world")), None),
        (lambda d: _write(d / "x.gz", b"\x1f\x8b\x08\x00garbage!!"), None),
    ],
    ids=[
        "missing",
        "directory",
        "unknown-magic",
        "empty",
        "short",
        "empty-gz",
        "text-gz",
        "corrupt-gz",
    ],
)
def test_open_errors_are_one_line(
    tmp_path: Path, make: Callable[[Path], str], message: str | None
) -> None:
    path = make(tmp_path)
    with pytest.raises(CaptureOpenError) as info:
        open_capture(path)
    text = str(info.value)
    assert "\n" not in text
    assert path in text
    if message is not None:
        assert text == message.format(path)


def test_open_error_texts() -> None:
    assert "unknown capture format (magic 0x12345678)" in _open_error(b"\x12\x34\x56\x78 hi")


def _open_error(content: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(content)
        f.flush()
        with pytest.raises(CaptureOpenError) as info:
            open_capture(f.name)
        return str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file with mode 000")
def test_permission_denied(tmp_path: Path) -> None:
    path = _unreadable(tmp_path)
    with pytest.raises(CaptureOpenError, match="permission denied: "):
        open_capture(path)


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same as above, for root too: the open itself is made to fail as for a normal user."""
    import pipeline.capture.source as source

    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(PCAP_RECORDS))

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(source, "open", deny, raising=False)
    with pytest.raises(CaptureOpenError) as info:
        open_capture(str(path))
    assert str(info.value) == f"permission denied: {path}"


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bz2"])
def test_cut_short_compressed_input_is_never_silent(tmp_path: Path, kind: str) -> None:
    """Even when the decompressed data happens to end on a record boundary (the second
    member/frame/stream is cut before it yields anything), the cut is a fatal error."""
    recs = [Rec(1_600_000_000 + i, i, packet(80 + i, i)) for i in range(20)]
    first = _compress(kind, pcap_bytes(recs[:10]))
    second = _compress(kind, pcap_bytes(recs[10:])[24:])  # records only, no file header
    for cut in (6, len(second) // 2, len(second) - 1):
        path = tmp_path / f"cut-{cut}.bin"
        path.write_bytes(first + second[:cut])
        with open_capture(str(path)) as cap:
            items = list(cap)
            assert cap.status == "partial"
        assert [i.data for i in items[:10]] == [r.data for r in recs[:10]]
        err = items[-1]
        assert type(err) is FramingError
        assert (err.reason, err.fatal) == (REASON_TRUNCATED, True)
        assert f"{kind} stream cut short" in err.detail


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bz2"])
def test_corrupt_compressed_input_never_raises_past_open(tmp_path: Path, kind: str) -> None:
    plain = _sample_captures()["pcapng"]
    packed = _compress(kind, plain)
    for at in range(0, len(packed), max(1, len(packed) // 40)):
        damaged = bytearray(packed)
        damaged[at] ^= 0x5A
        path = tmp_path / "damaged.bin"
        path.write_bytes(bytes(damaged))
        try:
            cap = open_capture(str(path))
        except CaptureOpenError as exc:  # e.g. the damage hides the magic: a one-line error
            assert "\n" not in str(exc)
            continue
        with cap:
            items = list(cap)
        assert all(type(i) in (Frame, FramingError) for i in items)
