"""File and stdout sinks for NDJSON, zstd-compressed or plain.

A sink receives chunks of already-serialised NDJSON (whole lines) and writes them. Files are
written under ``NAME.partial`` and renamed to ``NAME`` only when complete, so a shipper that
picks up ``*.ndjson.zst`` never reads half a file, and a crashed run leaves no output under a
final name. Nothing is written through a symlink: a ``.partial`` is always created anew, and
the rename replaces a link at ``NAME`` (allowed with ``--force`` only) instead of its target.
With ``rotate_bytes`` a new numbered file is started once the current one holds that many
bytes on disk (checked per chunk, so a file may exceed it by one chunk).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import BinaryIO, Protocol

import zstandard

COMPRESSIONS = ("zstd", "none")
DEFAULT_ZSTD_LEVEL = 3  # ~390 MB/s on one core here (NOTES.md): cheap next to decoding
PARTIAL_SUFFIX = ".partial"


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def output_suffix(compression: str) -> str:
    return ".ndjson.zst" if compression == "zstd" else ".ndjson"


class _Writer:
    """One output stream: optional zstd framing over a binary file object.

    ``precompressed`` chunks are written as they are: the multiprocess runtime's workers
    compress their own output into whole zstd frames, and concatenated frames are one valid
    zstd stream.
    """

    def __init__(self, raw: BinaryIO, compression: str, level: int, precompressed: bool) -> None:
        self.raw = raw
        self._zstd = None
        if compression == "zstd" and not precompressed:
            # closefd=False: we close (or keep, for stdout) the raw stream ourselves.
            self._zstd = zstandard.ZstdCompressor(level=level).stream_writer(
                raw, closefd=False, write_return_read=True
            )

    def write(self, chunk: bytes) -> None:
        if self._zstd is not None:
            self._zstd.write(chunk)
        else:
            self.raw.write(chunk)

    def finish(self) -> None:
        if self._zstd is not None:
            self._zstd.flush(zstandard.FLUSH_FRAME)
            self._zstd.close()
            self._zstd = None
        self.raw.flush()


def _create_partial(path: str) -> BinaryIO:
    """A new, empty file at `path` (a ``.partial`` name: ours to replace), never written
    through a link: whatever is there (the leftover of an interrupted run, or a symlink
    planted to make us overwrite another file) is removed, and the file is created anew
    (O_EXCL: a link that reappears meanwhile makes this fail rather than be followed)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a link is removed, never its target
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
    return os.fdopen(fd, "wb")


class FileSink:
    """NDJSON into ``directory/stem(.NNNNN).ndjson[.zst]``, atomically renamed when complete."""

    def __init__(
        self,
        directory: str,
        stem: str,
        compression: str = "zstd",
        level: int = DEFAULT_ZSTD_LEVEL,
        rotate_bytes: int | None = None,
        precompressed: bool = False,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        self.precompressed = precompressed
        self.directory = directory
        self.stem = stem
        self.compression = compression
        self.level = level
        self.rotate_bytes = rotate_bytes
        self.paths: list[str] = []  # final paths of the completed files
        self.bytes_written = 0  # uncompressed NDJSON bytes
        self._part = 0
        self._path: str | None = None
        self._file: BinaryIO | None = None
        self._writer: _Writer | None = None

    def _open_next(self) -> None:
        suffix = output_suffix(self.compression)
        if self.rotate_bytes is None:
            name = f"{self.stem}{suffix}"
        else:
            name = f"{self.stem}.{self._part:05d}{suffix}"
        self._part += 1
        self._path = os.path.join(self.directory, name)
        self._file = _create_partial(self._path + PARTIAL_SUFFIX)
        self._writer = _Writer(self._file, self.compression, self.level, self.precompressed)

    def _finish(self) -> None:
        if self._writer is None or self._file is None or self._path is None:
            return
        try:
            self._writer.finish()
            self._file.close()
        except OSError as exc:
            raise self._named(exc) from exc
        os.replace(self._path + PARTIAL_SUFFIX, self._path)
        self.paths.append(self._path)
        self._writer = self._file = self._path = None

    def _named(self, exc: OSError) -> OSError:
        """`exc` (a full disk, an I/O error) naming the output it hit, for the one line."""
        if exc.filename is not None or self._path is None:
            return exc
        return OSError(exc.errno, exc.strerror or str(exc), self._path)

    def write(self, chunk: bytes) -> None:
        if self._writer is None:
            self._open_next()
        assert self._writer is not None and self._file is not None
        try:
            self._writer.write(chunk)
        except OSError as exc:
            raise self._named(exc) from exc
        self.bytes_written += len(chunk)
        if self.rotate_bytes is not None and self._file.tell() >= self.rotate_bytes:
            self._finish()

    def close(self) -> None:
        """Complete the current file; a run that wrote nothing still leaves one empty file."""
        if self._writer is None and not self.paths:
            self._open_next()
        self._finish()

    def close_incomplete(self) -> None:
        """Finish the current file as a valid stream but keep its ``.partial`` name: what an
        interrupted run wrote stays readable, and is never taken for a complete output."""
        if self._writer is None or self._file is None or self._path is None:
            return
        self._writer.finish()
        self._file.close()
        self.paths.append(self._path + PARTIAL_SUFFIX)
        self._writer = self._file = self._path = None

    def abort(self) -> None:
        """Drop the file being written (its .partial is removed); completed parts stay."""
        if self._file is not None and self._path is not None:
            with contextlib.suppress(OSError):  # flushing may fail again (a full disk)
                self._file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path + PARTIAL_SUFFIX)
        self._writer = self._file = self._path = None


class StdoutSink:
    """NDJSON on standard output (``-o -``). A closed pipe ends the run quietly (see cli)."""

    def __init__(
        self,
        compression: str = "none",
        level: int = DEFAULT_ZSTD_LEVEL,
        precompressed: bool = False,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown compression {compression!r}")
        self.paths: list[str] = []
        self.bytes_written = 0
        self._writer = _Writer(sys.stdout.buffer, compression, level, precompressed)

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)
        self.bytes_written += len(chunk)

    def close(self) -> None:
        self._writer.finish()

    def abort(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._writer.finish()
