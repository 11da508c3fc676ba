"""Coverage-guided fuzzing (atheris) of capture framing: the input is a whole capture file.

Each input is read the ways the converter reads a capture — streamed (`open_stream`, small
chunks, so every "need more input" path runs; compressed inputs are sniffed and decompressed
too), and, when it is not compressed, as a mapped file (`open_capture`) both item by item and
as the multiprocess reader's column batches — and the readings must agree: the same frames
and framing errors, frame numbers 1..n, frame bytes equal to the file's bytes at their
offsets, typed one-line errors, at most one fatal error and nothing after it. An input that
cannot be opened must be refused with `CaptureOpenError`. Anything else raised, or a broken
invariant (an AssertionError), is a crash.

    python tests/fuzz_atheris/fuzz_framing.py [libFuzzer flags] CORPUS_DIR
    python tests/fuzz_atheris/fuzz_framing.py --seed-corpus DIR   # small captures to start from

A crasher is itself a capture file: tests/test_fuzz.py::test_fuzz_case replays it as it is
(scripts/fuzz.sh copies every crasher there). Not run by CI (atheris is not a project
dependency); scripts/fuzz.sh runs it.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pipeline"]):
    from pipeline.capture import (
        REASON_LENGTH,
        REASON_MALFORMED,
        REASON_TRUNCATED,
        CaptureOpenError,
        Frame,
        FramingError,
        open_capture,
        open_stream,
    )

STREAM_CHUNK = 61  # odd and small: records straddle chunk boundaries
COLUMN_BATCH = 3  # small: the mapped column reader crosses batch boundaries
# One scratch file, rewritten per input (tmpfs when there is one): the mapped path needs a file.
SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
SCRATCH = os.path.join(SCRATCH_DIR, f"pcap-ingest-fuzz-framing-{os.getpid()}.cap")
PLAIN_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def read_stream(data: bytes) -> tuple[str, list[Frame | FramingError]] | None:
    """(compression, items) read from a stream, or None when the input is refused."""
    try:
        capture = open_stream(io.BytesIO(data), chunk_size=STREAM_CHUNK)
    except CaptureOpenError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return None
    with capture:
        return capture.compression, list(capture)


def check_items(items: list[Frame | FramingError], content: bytes | None) -> None:
    assert [i.index for i in items] == list(range(1, len(items) + 1))
    for n, item in enumerate(items):
        if type(item) is Frame:
            assert item.data is not None and len(item.data) == item.caplen, item
            if content is not None:  # offsets are into the decompressed stream otherwise
                assert item.data == content[item.offset : item.offset + item.caplen], item
        else:
            assert type(item) is FramingError, item
            assert item.reason in (REASON_LENGTH, REASON_TRUNCATED, REASON_MALFORMED), item
            assert item.detail and "\n" not in item.detail, item
            assert not item.fatal or n == len(items) - 1, "items after a fatal framing error"


def read_mapped(data: bytes) -> list[Frame | FramingError]:
    with open(SCRATCH, "wb") as f:
        f.write(data)
    with open_capture(SCRATCH) as capture:
        items = list(capture)
    with open_capture(SCRATCH) as capture:
        columns = list(capture.column_batches(COLUMN_BATCH))
    frames = [i for i in items if type(i) is Frame]
    rows = [
        (int(index), int(offset), int(caplen))
        for c in columns
        for index, offset, caplen in zip(c.index, c.offset, c.caplen, strict=True)
    ]
    assert rows == [(f.index, f.offset, f.caplen) for f in frames], "column batches differ"
    # The column reader fills in each error's last-good-frame time; the items leave it -1.
    column_errors = [e._replace(ts_ns=-1) for c in columns for e in c.errors]
    assert column_errors == [i for i in items if type(i) is FramingError], column_errors
    return items


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    streamed = read_stream(data)
    if streamed is None:
        return
    compression, items = streamed
    check_items(items, data if compression == "none" else None)
    if compression == "none":
        mapped = read_mapped(data)
        assert mapped == items, "mapped and streamed readings differ"


def write_seed_corpus(out_dir: Path) -> int:
    """A few small captures: generated ones (pcap; pcapng written by hand) and, when they are
    there, the smallest reference captures."""
    from pipeline.gen import write_capture

    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for n, packets in enumerate((3, 12)):
        path = out_dir / f"gen-{n}.pcap"
        write_capture(str(path), packets, seed=n)
        written += 1
    shared = Path(os.environ.get("PCAP_INGEST_SHARED", Path(__file__).parents[3] / "shared"))
    captures = sorted((shared / "captures").glob("*.pcap*"), key=lambda p: p.stat().st_size)
    for path in [p for p in captures if p.stat().st_size <= 4096][:40]:
        (out_dir / path.name).write_bytes(path.read_bytes())
        written += 1
    return written


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--seed-corpus":
        print(f"{write_seed_corpus(Path(argv[2]))} seed captures written to {argv[2]}")
        return
    try:
        atheris.Setup(argv, TestOneInput)
        atheris.Fuzz()
    finally:
        if os.path.exists(SCRATCH):
            os.unlink(SCRATCH)


if __name__ == "__main__":
    main(sys.argv)
