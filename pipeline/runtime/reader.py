"""The reader process: frame each capture, route every packet to its worker, send batches.

It does framing and routing only (routing reads a few header bytes, vectorised over the
batch: `routing.route_batch`), so one reader can feed many workers. Queues to the workers
are bounded: when they are full the reader waits, which is the pipeline's backpressure.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np

from pipeline.capture import CaptureOpenError, Frame, open_capture, open_stream
from pipeline.capture.columns import FrameColumns
from pipeline.events.ecs import capture_key
from pipeline.flows.tracker import sweep_points_numpy
from pipeline.runtime.messages import (
    FileEnd,
    FileStart,
    ReaderDone,
    ReaderFile,
    ReaderProgress,
    Stop,
    WorkBatch,
)
from pipeline.runtime.routing import FragmentRoutes, packet_hash, route_batch

# How often the reader tells the coordinator how far it is.
PROGRESS_SECONDS = 0.25


def _first_key(columns: FrameColumns, mapping: Any) -> str:
    """The capture key (event id prefix) from the capture's first record."""
    first_error = columns.errors[0] if columns.errors else None
    if len(columns.index) and (first_error is None or columns.index[0] < first_error.index):
        offset, caplen = int(columns.offset[0]), int(columns.caplen[0])
        data = mapping[offset : offset + caplen] if mapping is not None else columns.data[0]  # type: ignore[index]
        first = Frame(int(columns.index[0]), int(columns.ts_ns[0]), offset, caplen, 0, 0, 0, data)
        return capture_key(first)
    return capture_key(first_error)


class BatchRouter:
    """Splits column batches of one capture into per-worker `WorkBatch` messages."""

    def __init__(self, file_no: int, workers: int, mapping: Any) -> None:
        self.file_no = file_no
        self.workers = workers
        self.mapping = mapping
        # A numpy view of the mapping for the vectorised header reads (no copy).
        self.view = np.frombuffer(mapping, dtype=np.uint8) if mapping is not None else None
        self.fragments: FragmentRoutes = {}  # where each recent datagram's pieces go

    def close(self) -> None:
        self.view = None  # release the buffer export so the mapping can be closed

    def owners(self, columns: FrameColumns, buf: Any, buf_offsets: Any) -> Any:
        """The worker of each frame in the batch."""
        hashes = np.empty(len(columns.index), dtype=np.uint64)
        link_types = columns.link_type
        for link in np.unique(link_types).tolist():
            select = np.nonzero(link_types == link)[0]
            link_hashes, scalar = route_batch(
                buf, buf_offsets[select], columns.caplen[select], int(link)
            )
            for i in np.nonzero(scalar)[0].tolist():
                j = int(select[i])
                start = int(buf_offsets[j])
                packet = bytes(buf[start : start + int(columns.caplen[j])])
                link_hashes[i] = packet_hash(
                    int(link), packet, int(columns.offset[j]), self.fragments
                )
            hashes[select] = link_hashes
        return (hashes % np.uint64(self.workers)).astype(np.int64)

    def split(
        self, batch_no: int, columns: FrameColumns, sweeps: list[tuple[int, int]] | None = None
    ) -> list[WorkBatch]:
        if self.view is not None:
            buf, buf_offsets = self.view, columns.offset
        else:
            blob = b"".join(columns.data or ())
            buf = np.frombuffer(blob, dtype=np.uint8)
            buf_offsets = np.zeros(len(columns.index), dtype=np.int64)
            np.cumsum(columns.caplen[:-1], out=buf_offsets[1:])
        owner = self.owners(columns, buf, buf_offsets)
        workers = self.workers
        values: list[Any] = list(columns[:7])
        for uniform in (5, 6):  # interface and link type: one value for most captures
            column = values[uniform]
            if len(column) and (column == column[0]).all():
                values[uniform] = int(column[0])
        messages = []
        for worker in range(workers):
            select = np.nonzero(owner == worker)[0] if workers > 1 else None
            sub = [
                column[select] if select is not None and not isinstance(column, int) else column
                for column in values
            ]
            blob_out: bytes | None = None
            blob_offsets = None
            if columns.data is not None:
                chosen = (
                    [columns.data[i] for i in select.tolist()]
                    if select is not None
                    else list(columns.data)
                )
                blob_out = b"".join(chosen)
                blob_offsets = np.zeros(len(chosen), dtype=np.int64)
                np.cumsum(sub[3][:-1], out=blob_offsets[1:])
            mine = [e for e in columns.errors if e.index % workers == worker]
            messages.append(
                WorkBatch(self.file_no, batch_no, *sub, blob_out, blob_offsets, mine, sweeps or [])
            )
        return messages


def reader_main(
    paths: list[str],
    inboxes: list[Queue[Any]],
    coordinator: Connection,
    batch_frames: int,
    stop: Event,
    stdin_fd: int | None = None,
) -> None:
    """Read every input in turn; end by sending each worker a Stop.

    `stdin_fd` is a duplicate of the coordinator's standard input (multiprocessing gives
    children /dev/null as stdin), read when an input is ``-``.
    """
    workers = len(inboxes)
    try:
        for file_no, path in enumerate(paths):
            if stop.is_set():
                break
            _read_one(file_no, path, inboxes, coordinator, batch_frames, stop, workers, stdin_fd)
    finally:
        for inbox in inboxes:
            inbox.put(Stop("end of input"))


def _read_one(
    file_no: int,
    path: str,
    inboxes: list[Queue[Any]],
    coordinator: Connection,
    batch_frames: int,
    stop: Event,
    workers: int,
    stdin_fd: int | None,
) -> None:
    try:
        if path == "-" and stdin_fd is not None:
            capture = open_stream(os.fdopen(stdin_fd, "rb", closefd=False), name="-")
        else:
            capture = open_capture(path, with_data=False)
    except CaptureOpenError as exc:
        coordinator.send(ReaderFile(file_no, path, "", "", 0, str(exc)))
        coordinator.send(ReaderDone(file_no, 0, 0, "failed", str(exc), False))
        return
    with capture:
        size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else 0
        coordinator.send(ReaderFile(file_no, path, capture.format, capture.compression, size, None))
        router = BatchRouter(file_no, workers, capture.mapping)
        batches = frames = 0
        error: str | None = None
        position = 0
        next_progress = 0.0
        interrupted = False
        started = False
        next_sweep_ns: int | None = None
        try:
            for columns in capture.column_batches(batch_frames):
                # Every worker gets every sweep point, with the capture's clock (tracker.py).
                sweeps, next_sweep_ns = sweep_points_numpy(
                    columns.index, columns.ts_ns, next_sweep_ns
                )
                if not started:
                    key = _first_key(columns, capture.mapping)
                    for inbox in inboxes:
                        inbox.put(FileStart(file_no, path, capture.mapping is not None, key))
                    started = True
                messages = router.split(batches, columns, sweeps)
                for inbox, message in zip(inboxes, messages, strict=True):
                    inbox.put(message)
                batches += 1
                frames += len(columns)
                if len(columns.offset):
                    position = int(columns.offset[-1] + columns.caplen[-1])
                now = time.monotonic()
                if now >= next_progress:  # a few notes a second, not one per batch
                    coordinator.send(ReaderProgress(file_no, batches, frames, position))
                    next_progress = now + PROGRESS_SECONDS
                if stop.is_set():
                    interrupted = True
                    break
        except Exception as exc:  # a decompressor failing half-way: keep what was read
            error = f"read error: {exc!r}"
        finally:
            router.close()
        if not started:  # an empty capture: workers still need the file opened and closed
            for inbox in inboxes:
                inbox.put(FileStart(file_no, path, capture.mapping is not None, capture_key(None)))
        for inbox in inboxes:
            inbox.put(FileEnd(file_no))
        coordinator.send(ReaderProgress(file_no, batches, frames, position))
        status = "partial" if error or capture.status != "ok" else "ok"
        coordinator.send(ReaderDone(file_no, batches, frames, status, error, interrupted))
