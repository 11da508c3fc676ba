"""Opening a capture: path or stdin, compression and format by magic, and the two drivers.

This is the I/O edge of capture framing. It decides how the bytes arrive and hands them to
the format walker (`pcap.PcapWalker`, `pcapng.PcapngWalker`), which does all the parsing:

* A regular, uncompressed file is memory-mapped read-only and walked in place: record headers
  are read with ``struct.unpack_from`` straight from the mapping, and the only copy is each
  packet's data slice (none at all with ``with_data=False``). The mapping is exposed as
  `Capture.mapping` so that worker processes can be handed frame offsets instead of bytes.
* Anything else (gzip, zstd, xz, bz2, stdin, a named pipe, a file too large to map) is
  streamed: chunks of at most `CHUNK_SIZE` decompressed bytes are appended to a receive
  buffer, the walker consumes what it can and says how many bytes it needs next. Memory stays
  bounded by the largest record the walker accepts (plus its resync window), never by the
  size of the capture; a compressed stream is also held to `DecompressionLimits` (bombs).

Formats and compressions are recognised by their magic numbers, never by file extension
(real captures come named ``.pcapng`` when they are classic pcap, and vice versa).
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import lzma
import mmap
import os
import stat
import sys
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np
import zstandard

from pipeline.capture.columns import FrameColumns, columns_from_records
from pipeline.capture.frame import REASON_MALFORMED, REASON_TRUNCATED, Frame, FramingError
from pipeline.capture.pcap import PCAP_MAGICS, PcapWalker
from pipeline.capture.pcapng import SHB_MAGIC, PcapngWalker
from pipeline.capture.walker import BaseWalker, Buffer, Item
from pipeline.capture.zstd_frames import ZstdFrameTracker

# Bytes asked of the (decompressing) reader per read. Large enough that per-read overhead is
# negligible, small enough that a stream never holds much more than one chunk besides the
# record in progress.
CHUNK_SIZE = 1 << 20

# Bytes needed to recognise every compression and capture magic below.
MAGIC_LEN = 8

# Leading bytes -> compression name. Checked before the capture formats.
COMPRESSION_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
)

# Errors a decompressor raises on corrupt or cut-short input. They end the stream; the capture
# then reports a FramingError instead of letting them escape the iterator.
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes gzip.BadGzipFile, bz2's "Invalid data stream"
    EOFError,  # "Compressed file ended before the end-of-stream marker was reached"
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
)


# Decompression bombs. A pcap compresses 2-10:1, the same 100 packets replayed (timestamps
# moving) ~270:1 at zstd -19 or xz -9; a stream of zeros compresses past 1000:1 in zstd, xz
# and bz2 (gzip tops out near 1032:1) and, read as pcap records, becomes millions of empty
# frames. (Records repeated byte for byte, timestamps too, reach ~2000:1: only synthetic
# files do that; `--max-decompression-ratio 0` reads them.) Past the first
# `RATIO_FREE_BYTES` of output, a stream whose output/input ratio exceeds this is stopped
# (what was read is converted; the rest is one fatal `limit_exceeded` framing error).
MAX_DECOMPRESSION_RATIO = 1000
RATIO_FREE_BYTES = 64 << 20
# The framing error's reason when a decompression limit stops a stream (the same name as
# the decoders' "a named cap was hit").
REASON_LIMIT = "limit_exceeded"


@dataclass(frozen=True)
class DecompressionLimits:
    """How much a compressed input may expand: `max_ratio` (output/input bytes, checked past
    `ratio_free_bytes` of output; 0: no check) and an absolute cap, `max_bytes` of output
    (None: none)."""

    max_ratio: float = MAX_DECOMPRESSION_RATIO
    ratio_free_bytes: int = RATIO_FREE_BYTES
    max_bytes: int | None = None


# The limits open_capture/open_stream apply when not given any: set for a run with
# `decompression_limits` (forked engine processes inherit them).
_current_limits = DecompressionLimits()


@contextlib.contextmanager
def decompression_limits(limits: DecompressionLimits) -> Iterator[None]:
    """Within the block, compressed captures opened without explicit limits get these."""
    global _current_limits
    saved, _current_limits = _current_limits, limits
    try:
        yield
    finally:
        _current_limits = saved


class CaptureOpenError(Exception):
    """The capture cannot be opened at all: a user error, printed by the CLI as one line."""


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def detect_compression(head: bytes) -> str:
    """Compression name for a stream starting with `head`, or "none"."""
    for magic, name in COMPRESSION_MAGICS:
        if head.startswith(magic):
            return name
    return "none"


def detect_format(head: bytes, name: str) -> str:
    """Name the capture format of a (decompressed) stream from its first bytes, or raise."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == SHB_MAGIC:
        return "pcapng"
    if len(head) < 4:
        raise CaptureOpenError(
            f"unknown capture format (only {len(head)} bytes, too short for a header): {name}"
        )
    magic = int.from_bytes(head[:4], "big")
    raise CaptureOpenError(f"unknown capture format (magic 0x{magic:08x}): {name}")


_WALKERS: dict[str, type[BaseWalker]] = {"pcap": PcapWalker, "pcapng": PcapngWalker}


class Capture:
    """An open capture: iterate it for `Frame | FramingError` items in file order.

    Attributes:
        name: the path as given ("-" for stdin).
        format: "pcap" or "pcapng" (from the magic number).
        compression: "none", "gzip", "zstd", "xz" or "bz2".
        mapping: the read-only mmap of a regular uncompressed file, else None.
        with_data: whether frames carry their bytes (always true for streams: their buffer
            is gone once consumed, so a reference would point at nothing).
        frames_read: frames + framing errors handed out so far, counted per batch (while
            iterating item by item it already includes the rest of the current batch).
        status: "ok", or "partial" once any FramingError was handed out.
        notes: things worth telling the user that are not frames (bad interface options,
            a decompressor's complaint after a truncation already reported, ...).
    """

    def __init__(
        self,
        name: str,
        fmt: str,
        compression: str,
        *,
        mapping: mmap.mmap | None = None,
        reader: _Readable | None = None,
        end_check: Callable[[], str] | None = None,
        owned: tuple[object, ...] = (),
        with_data: bool = True,
        chunk_size: int = CHUNK_SIZE,
        compressed_read: Callable[[], int] | None = None,
        limits: DecompressionLimits | None = None,
    ) -> None:
        self.name = name
        self.format = fmt
        self.compression = compression
        self.mapping = mapping
        self.with_data = with_data or mapping is None
        self.frames_read = 0
        self.status = "ok"
        self._walker = _WALKERS[fmt]()
        self._reader = reader
        self._end_check = end_check  # at end of input: "" or why the input was cut short
        self._owned = owned  # things to close with the capture (file, decompressor, mapping)
        self._chunk_size = chunk_size
        self._closed = False
        # Driver state, kept here so batches() can be resumed after a break.
        self._buf: Buffer = mapping if mapping is not None else b""
        self._pos = 0
        self._base = 0  # stream offset of self._buf[0]
        self._eof = mapping is not None
        self._stream_error = ""  # what the decompressor/reader said when it failed
        self._stream_reason = ""  # the framing error's reason for it, when not the default
        # Decompression bomb guard: compressed bytes consumed so far, and the bytes they gave.
        self._compressed_read = compressed_read
        self._limits = limits if limits is not None else _current_limits
        self._decompressed = 0

    @property
    def notes(self) -> list[str]:
        return self._walker.notes

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mapping and the files opened for this capture (never stdin)."""
        if self._closed:
            return
        self._closed = True
        self._buf = b""
        self._reader = None
        for obj in reversed(self._owned):
            close = getattr(obj, "close", None)
            if close is not None:
                with contextlib.suppress(OSError, ValueError, BufferError):
                    close()  # closing must not fail a run
        self.mapping = None

    def __iter__(self) -> Iterator[Frame | FramingError]:
        for batch in self.batches():
            yield from batch

    def batches(self, max_items: int = 1024) -> Iterator[list[Frame | FramingError]]:
        """Items in lists of at most `max_items`: the fast way to consume a capture.

        A mapped file fills every list but the last. A stream hands over what it has parsed
        before it blocks for more input, so live input (``tcpdump -w - | ...``) flows.
        """
        max_items = max(1, max_items)
        if self._eof:
            yield from self._mapped_batches(max_items)
        else:
            yield from self._stream_batches(max_items)

    def column_batches(self, max_items: int = 4096) -> Iterator[FrameColumns]:
        """Batches as columns (see columns.py): the multiprocess reader's way to consume."""
        max_items = max(1, max_items)
        if self._eof and isinstance(self._walker, PcapWalker):
            yield from self._mapped_pcap_columns(max_items)
            return
        last_ts_ns = 0
        for batch in self.batches(max_items):
            columns, last_ts_ns = columns_from_records(batch, last_ts_ns, self.with_data)
            yield columns

    def _mapped_pcap_columns(self, max_items: int) -> Iterator[FrameColumns]:
        walker = self._walker
        assert isinstance(walker, PcapWalker)
        view = np.frombuffer(self._buf, dtype=np.uint8) if len(self._buf) else None
        try:
            last_ts_ns = 0
            while not walker.done and not self._closed:
                columns, last_ts_ns = self._mapped_pcap_batch(walker, view, max_items, last_ts_ns)
                if columns is not None:
                    yield columns
        finally:
            del view  # release the buffer export, so the mapping can be closed

    def _mapped_pcap_batch(
        self, walker: PcapWalker, view: Any, max_items: int, last_ts_ns: int
    ) -> tuple[FrameColumns | None, int]:
        """One batch: the fast offset walk, with the full walker for whatever it stops at."""
        buf = self._buf
        end = len(buf)
        offsets = array("q")
        runs: list[tuple[int, int]] = []  # (first frame number, count) of the column records
        errors: list[FramingError] = []
        stepped: list[tuple[int, Frame]] = []  # frames the full walker took, by column position
        taken = 0
        errors_before = walker.errors
        while taken < max_items and not walker.done:
            first = walker.index
            self._pos, count = walker.run_offsets(buf, self._pos, end, offsets, max_items - taken)
            if count:
                runs.append((first, count))
                taken += count
            if taken >= max_items:
                break
            # One step of the full walker: the file header, a bad record (resync), the end.
            out: list[Item] = []
            self._pos = walker.walk(buf, self._pos, end, True, 0, out, 1, False)
            if not out and not walker.done:
                self._stalled(out)
            for item in out:
                taken += 1
                if isinstance(item, Frame):
                    runs.append((item.index, 1))
                    stepped.append((len(offsets), item))
                    offsets.append(item.offset)
                else:
                    if len(offsets):
                        last_ts_ns = self._record_ts(len(offsets) - 1, offsets, stepped)
                    errors.append(item._replace(ts_ns=last_ts_ns))
            if not out and walker.done:
                break
        self.frames_read += taken
        if walker.errors != errors_before:
            self.status = "partial"
        if not taken:
            return None, last_ts_ns
        # Gather the header fields of every record at once (the headers sit at offset - 16).
        starts = np.frombuffer(offsets, dtype=np.int64)
        dtype = np.dtype(walker.byte_order + "u4")
        fields = view[(starts - 16)[:, None] + np.arange(16)].copy().view(dtype)  # type: ignore[index]
        ts_ns = (
            fields[:, 0].astype(np.int64) * 1_000_000_000
            + fields[:, 1].astype(np.int64) * walker.frac_ns
        )
        caplens = fields[:, 2].astype(np.int64)
        origlens = fields[:, 3].astype(np.int64)
        for position, frame in stepped:  # the full walker's reading wins (pre-2.3 lengths)
            ts_ns[position] = frame.ts_ns
            caplens[position] = frame.caplen
            origlens[position] = frame.origlen
        if len(starts):
            last_ts_ns = int(ts_ns[-1])
        count = len(starts)
        index = np.concatenate(
            [np.arange(a, a + n, dtype=np.int64) for a, n in runs] or [np.zeros(0, np.int64)]
        )
        columns = FrameColumns(
            index,
            ts_ns,
            starts.copy(),
            caplens,
            origlens,
            np.zeros(count, dtype=np.int64),
            np.full(count, walker.link_type, dtype=np.int64),
            None,
            errors,
        )
        return columns, last_ts_ns

    def _record_ts(
        self, position: int, offsets: array[int], stepped: list[tuple[int, Frame]]
    ) -> int:
        """The timestamp of the column record at `position` (for a framing error after it)."""
        if stepped and stepped[-1][0] == position:
            return stepped[-1][1].ts_ns
        walker = self._walker
        assert isinstance(walker, PcapWalker)
        sec, frac, _, _ = walker._unpack_record(self._buf, offsets[position] - 16)
        return sec * 1_000_000_000 + frac * walker.frac_ns

    def _account(self, out: list[Item], errors_before: int) -> None:
        self.frames_read += len(out)
        if self._walker.errors != errors_before:
            self.status = "partial"

    def _mapped_batches(self, max_items: int) -> Iterator[list[Item]]:
        walker = self._walker
        with_data = self.with_data
        while not walker.done and not self._closed:
            buf = self._buf
            out: list[Item] = []
            errors = walker.errors
            self._pos = walker.walk(buf, self._pos, len(buf), True, 0, out, max_items, with_data)
            if not out and not walker.done:
                self._stalled(out)
            self._account(out, errors)
            if out:
                yield out

    def _stream_batches(self, max_items: int) -> Iterator[list[Item]]:
        walker = self._walker
        while not walker.done and not self._closed:
            buf = self._buf
            out: list[Item] = []
            errors = walker.errors
            self._pos = walker.walk(
                buf, self._pos, len(buf), self._eof, self._base, out, max_items, True
            )
            needs_input = not walker.done and len(out) < max_items
            if needs_input and self._eof:  # the walker must not ask for input past its end
                self._stalled(out)
                needs_input = False
            if walker.done and self._stream_error:
                self._report_stream_error(out, len(buf))
            self._account(out, errors)
            if out:  # full, finished, or about to block on input: hand over what is parsed
                yield out
            if needs_input:
                self._fill(walker.need)

    def _fill(self, need: int) -> None:
        """Read until `need` bytes are buffered from the current position, or input ends.

        The unconsumed tail and the new chunks are joined once per refill, so each byte is
        copied a bounded number of times however many reads a large record takes.
        """
        if self._reader is None or self._closed:
            self._eof = True
            return
        chunks = [self._buf[self._pos :]]
        have = len(chunks[0])
        read = self._reader.read
        while True:  # at least one read, so a refill always makes progress
            try:
                chunk = read(self._chunk_size)
            except DECOMPRESSION_ERRORS as exc:
                what = "input" if self.compression == "none" else f"{self.compression} stream"
                cut = " cut short" if isinstance(exc, EOFError) else ""
                self._stream_error = f"{what}{cut}: {exc}"
                chunk = b""
            if not chunk:
                self._eof = True
                if not self._stream_error and self._end_check is not None:
                    self._stream_error = self._end_check()
                break
            chunks.append(chunk)
            have += len(chunk)
            if self._compressed_read is not None:
                self._decompressed += len(chunk)
                limit = self._over_limit()
                if limit:  # keep what came, read no more
                    self._stream_error, self._stream_reason = limit, REASON_LIMIT
                    self._eof = True
                    break
            if have >= need:
                break
        self._base += self._pos
        self._buf = b"".join(chunks)
        self._pos = 0

    def _over_limit(self) -> str:
        """Why the decompressed output is past a `DecompressionLimits` bound, or ""."""
        assert self._compressed_read is not None
        limits = self._limits
        out = self._decompressed
        what = f"{self.compression} stream"
        if limits.max_bytes is not None and out > limits.max_bytes:
            return (
                f"{what}: {out:,} bytes decompressed, over the limit of {limits.max_bytes:,} "
                "(--max-decompressed); stopped reading"
            )
        if limits.max_ratio > 0 and out > limits.ratio_free_bytes:
            consumed = max(self._compressed_read(), 1)
            if out > limits.max_ratio * consumed:
                return (
                    f"{what}: {out:,} bytes decompressed from {consumed:,}, a ratio over "
                    f"{limits.max_ratio:g}:1 (a decompression bomb? --max-decompression-ratio); "
                    "stopped reading"
                )
        return ""

    def _report_stream_error(self, out: list[Item], end: int) -> None:
        """The input failed (corrupt or cut-short compressed data, a read error).

        If the walker already ended on a fatal error (usually "truncated", because the data
        stopped inside a record), that error gets the reader's message appended; otherwise the
        capture would look complete, so a fatal error is added where the readable data ended.
        """
        message, self._stream_error = self._stream_error, ""
        last = out[-1] if out else None
        if self._walker.fatal and type(last) is FramingError and last.fatal:
            reason = self._stream_reason or last.reason  # a limit says why the data stopped
            out[-1] = last._replace(reason=reason, detail=f"{last.detail} ({message})")
            return
        if self._walker.fatal:  # the fatal error went out in an earlier batch
            self._walker.notes.append(message)
            return
        reason = self._stream_reason or (
            REASON_TRUNCATED if "cut short" in message else REASON_MALFORMED
        )
        self._walker.error(out, self._base + end, reason, message, True)

    def _stalled(self, out: list[Item]) -> None:
        """Defensive: a walker that neither progresses nor ends would loop forever."""
        detail = "capture reader made no progress (internal error); stopped"
        self._walker.error(out, self._base + self._pos, REASON_MALFORMED, detail, True)


class _Prefixed:
    """A reader that first returns bytes already peeked from `raw`, then reads `raw`.

    Lets a pipe be sniffed for its magic without seeking.
    """

    def __init__(self, head: bytes, raw: _Readable) -> None:
        self._head = head
        self._raw = raw
        self._read = getattr(raw, "read1", raw.read)  # read1: return what a pipe has now
        self.consumed = 0  # bytes handed out: a decompressor's input, for the ratio limit

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0 or size >= len(self._head):
                head, self._head = self._head, b""
            else:
                head, self._head = self._head[:size], self._head[size:]
            self.consumed += len(head)
            return head
        data = self._read(size)
        self.consumed += len(data)
        return data

    def consumed_bytes(self) -> int:
        return self.consumed


def _read_head(reader: _Readable, n: int) -> bytes:
    """Up to `n` bytes (fewer only at end of input): pipes may return less per read."""
    parts: list[bytes] = []
    have = 0
    while have < n:
        part = reader.read(n - have)
        if not part:
            break
        parts.append(part)
        have += len(part)
    return b"".join(parts)


class _ZstdInput:
    """Compressed zstd input on its way to the decompressor, watched by a frame tracker.

    gzip, bz2 and xz readers raise EOFError when their input stops mid-stream; zstandard's
    reader just ends, so this wrapper tells the capture when that happened.
    """

    def __init__(self, raw: _Readable) -> None:
        self._raw = raw
        self.tracker = ZstdFrameTracker()

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.tracker.feed(data)
        return data

    def end_check(self) -> str:
        if self.tracker.cut_short():
            return "zstd stream cut short: input ends inside a frame"
        return ""


def _decompressor(compression: str, raw: _Readable) -> tuple[_Readable, Callable[[], str] | None]:
    """A reader of decompressed bytes (each read(n) returns at most n: bounded memory), and
    for formats whose reader ends silently on cut-short input, a check to run at the end."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), None  # type: ignore[arg-type]
    if compression == "bz2":
        return bz2.BZ2File(raw), None  # type: ignore[arg-type]
    if compression == "xz":
        return lzma.LZMAFile(raw), None  # type: ignore[arg-type]
    watched = _ZstdInput(raw)
    reader = zstandard.ZstdDecompressor().stream_reader(watched, read_across_frames=True)
    return reader, watched.end_check


def open_stream(
    fileobj: BinaryIO,
    name: str = "<stream>",
    *,
    chunk_size: int = CHUNK_SIZE,
    owned: tuple[object, ...] = (),
    limits: DecompressionLimits | None = None,
) -> Capture:
    """Open a capture arriving on a binary stream (stdin, a pipe, a socket file, a file).

    Compression and format are sniffed from the first bytes; nothing is seeked. `owned`
    objects are closed with the capture. Compressed input is held to `limits` (default: the
    ones `decompression_limits` set, else `DecompressionLimits()`).
    """
    try:
        head = _read_head(fileobj, MAGIC_LEN)
    except OSError as exc:
        raise CaptureOpenError(f"cannot read capture: {name}: {exc}") from exc
    if not head:
        raise CaptureOpenError(f"empty file: {name}")
    compression = detect_compression(head)
    raw = _Prefixed(head, fileobj)
    reader: _Readable = raw
    end_check = None
    compressed_read = None
    if compression != "none":
        compressed_read = raw.consumed_bytes
        reader, end_check = _decompressor(compression, reader)
        owned = (*owned, reader)
        try:
            head = _read_head(reader, MAGIC_LEN)
        except DECOMPRESSION_ERRORS as exc:
            raise CaptureOpenError(f"corrupt {compression} data: {name}: {exc}") from exc
        if not head:
            problem = end_check() if end_check is not None else ""
            if problem:
                raise CaptureOpenError(f"corrupt {compression} data: {name}: {problem}")
            raise CaptureOpenError(f"empty file (no data after {compression}): {name}")
        reader = _Prefixed(head, reader)
    fmt = detect_format(head, name)
    return Capture(
        name,
        fmt,
        compression,
        reader=reader,
        end_check=end_check,
        owned=owned,
        with_data=True,
        chunk_size=chunk_size,
        compressed_read=compressed_read,
        limits=limits,
    )


def open_capture(path: str, *, with_data: bool = True) -> Capture:
    """Open a capture file ("-" for stdin) for framing.

    Raises CaptureOpenError, with one human line, when the capture cannot be opened: missing,
    not a file, unreadable, empty, or of an unknown format. Problems *inside* a capture that
    could be opened are never raised: they come out of the iterator as FramingErrors.
    `with_data=False` yields frames without their bytes (Frame.data is None) for mapped
    files; streams always carry data.
    """
    if path == "-":
        return open_stream(sys.stdin.buffer, "-")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CaptureOpenError(f"capture not found: {path}") from None
    except PermissionError:
        raise CaptureOpenError(f"permission denied: {path}") from None
    except OSError as exc:
        raise CaptureOpenError(f"cannot open capture: {path}: {exc.strerror}") from None
    streamable = stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)  # pipes, /dev/stdin
    if not stat.S_ISREG(st.st_mode) and not streamable:
        raise CaptureOpenError(f"not a regular file: {path}")
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by Capture.close)
    except PermissionError:
        raise CaptureOpenError(f"permission denied: {path}") from None
    except OSError as exc:
        raise CaptureOpenError(f"cannot open capture: {path}: {exc.strerror}") from None
    try:
        if streamable:
            return open_stream(f, path, owned=(f,))
        head = f.read(MAGIC_LEN)
        if not head:
            raise CaptureOpenError(f"empty file: {path}")
        if detect_compression(head) != "none":
            f.seek(0)
            return open_stream(f, path, owned=(f,))
        fmt = detect_format(head, path)
        try:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
            # No address space for the whole file (a ulimit -v, a 32-bit process): stream
            # it instead, in bounded memory (frames then carry their bytes).
            f.seek(0)
            return open_stream(f, path, owned=(f,))
    except CaptureOpenError:
        f.close()
        raise
    except (OSError, ValueError) as exc:
        f.close()
        raise CaptureOpenError(f"cannot read capture: {path}: {exc}") from None
    if hasattr(mapping, "madvise"):
        mapping.madvise(mmap.MADV_SEQUENTIAL)  # one pass, front to back: read ahead harder
    return Capture(path, fmt, "none", mapping=mapping, owned=(mapping, f), with_data=with_data)
