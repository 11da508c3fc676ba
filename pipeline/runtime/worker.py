"""A decoder worker process: batches of packet references in, finished NDJSON out.

Each worker maps every input file itself (the page cache is shared, nothing is copied
between processes), rebuilds `Frame` records from the columns it is sent, runs the same
`FrameConverter` the single-process path runs, and sends back either one compressed zstd
frame per batch (unordered output: the coordinator only appends bytes) or the lines with
their frame numbers (ordered output: the coordinator merges them).
"""

from __future__ import annotations

import gc
import mmap
import os
import traceback
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import zstandard

from pipeline.capture.frame import Frame, FramingError
from pipeline.convert import GC_THRESHOLDS, ChunkWriter, ConvertOptions, FrameConverter
from pipeline.runtime.messages import (
    BatchOutput,
    FileEnd,
    FileStart,
    Stop,
    WorkBatch,
    WorkerFailed,
    WorkerFileDone,
)
from pipeline.stats import FileStats


class _OpenFile:
    def __init__(self, start: FileStart, options: ConvertOptions, workers: int) -> None:
        self.start = start
        self.stats = FileStats(path=start.path)
        self.converter = FrameConverter(
            start.path, self.stats, options, serialise=True, workers=workers
        )
        self.converter.start_with_key(start.capture_key)
        self.mapping: mmap.mmap | None = None
        if start.mapped:
            with open(start.path, "rb") as f:
                self.mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self) -> None:
        if self.mapping is not None:
            self.mapping.close()


def _values(column: Any, n: int) -> Any:
    """A column as a list, or one value repeated (the reader sends uniform columns as ints)."""
    return [column] * n if isinstance(column, int) else column.tolist()


def _frames(batch: WorkBatch, mapping: mmap.mmap | None) -> list[Frame | FramingError]:
    """Rebuild the batch's records, in frame order."""
    new = tuple.__new__
    if mapping is not None:
        source: Any = mapping
        starts = batch.offset.tolist()
    else:
        source = batch.blob
        starts = batch.blob_offset.tolist()  # type: ignore[union-attr]
    records: list[Frame | FramingError] = [
        new(Frame, (i, ts, off, cap, orig, iface, link, source[start : start + cap]))
        for i, ts, off, cap, orig, iface, link, start in zip(
            batch.index.tolist(),
            batch.ts_ns.tolist(),
            batch.offset.tolist(),
            batch.caplen.tolist(),
            batch.origlen.tolist(),
            _values(batch.interface, len(batch.index)),
            _values(batch.link_type, len(batch.index)),
            starts,
            strict=True,
        )
    ]
    if batch.errors:
        records.extend(batch.errors)
        records.sort(key=lambda r: r.index)
    return records


def _send_chunk(
    outbox: Connection,
    worker: int,
    file_no: int,
    compressor: zstandard.ZstdCompressor | None,
    joined: bytes,
) -> None:
    """Events made after the file's last batch (the flows open at its end), unordered."""
    outbox.send(BatchOutput(worker, file_no, -1, _compress(joined, compressor), None, None, 0))


def _payload(lines: list[bytes], compressor: zstandard.ZstdCompressor | None) -> bytes:
    return _compress(b"".join(lines), compressor)


def _compress(joined: bytes, compressor: zstandard.ZstdCompressor | None) -> bytes:
    return compressor.compress(joined) if compressor and joined else joined


def worker_main(
    worker: int,
    inbox: Queue[Any],
    outbox: Connection,
    options: ConvertOptions,
    ordered: bool,
    workers: int = 1,
) -> None:
    """Run until a Stop arrives. Any exception is reported (never raised past here)."""
    gc.set_threshold(*GC_THRESHOLDS)  # a process of its own: see convert.GC_THRESHOLDS
    files: dict[int, _OpenFile] = {}
    compressor = (
        zstandard.ZstdCompressor(level=options.level) if options.compression == "zstd" else None
    )
    try:
        while True:
            message = inbox.get()
            if isinstance(message, WorkBatch):
                open_file = files[message.file_no]
                records = _frames(message, open_file.mapping)
                lines: list[bytes] = []
                indices: list[Any] | None = [] if ordered else None
                open_file.converter.run(records, lines.append, indices, message.sweeps)
                payload = b"" if ordered else _payload(lines, compressor)
                outbox.send(
                    BatchOutput(
                        worker,
                        message.file_no,
                        message.batch_no,
                        payload,
                        indices,
                        lines if ordered else None,
                        len(records),
                    )
                )
            elif isinstance(message, FileStart):
                files[message.file_no] = _OpenFile(message, options, workers)
            elif isinstance(message, FileEnd):
                open_file = files.pop(message.file_no)
                open_file.close()
                lines = []
                indices = [] if ordered else None
                if ordered:  # the coordinator merges every worker's, by first frame
                    open_file.converter.finish(lines.append, indices, with_stats=False)
                else:  # sent as they are made: there can be millions
                    chunks = ChunkWriter(
                        partial(_send_chunk, outbox, worker, message.file_no, compressor)
                    )
                    open_file.converter.finish(chunks.append, None, with_stats=False)
                    chunks.flush()
                stats = open_file.stats
                outbox.send(
                    WorkerFileDone(
                        worker,
                        message.file_no,
                        {
                            "frames": stats.frames,
                            "decoded": stats.decoded,
                            "anomalies": dict(stats.anomalies),
                            "events": dict(stats.events),
                            "flows": dict(stats.flows),
                            "extractors": dict(stats.extractors),
                            "traffic": open_file.converter.traffic,
                            "capture_key": open_file.start.capture_key,
                            # --quarantine: this worker's anomalous frames (empty without)
                            "quarantine_frames": stats.quarantine_frames,
                            "quarantine_dropped": stats.quarantine_dropped,
                            "quarantine_unframed": stats.quarantine_unframed,
                        },
                        b"" if ordered else _payload(lines, compressor),
                        indices,
                        lines if ordered else None,
                    )
                )
            elif isinstance(message, Stop):
                return
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        outbox.send(
            WorkerFailed(
                worker,
                f"{type(exc).__name__}: {exc} (at {os.path.basename(where.filename)}:"
                f"{where.lineno})",
            )
        )
