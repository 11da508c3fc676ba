"""The reader process: frame each capture, route every packet to its worker, send batches.

It does framing and routing only (routing reads a few header bytes, vectorised over the
batch: `routing.route_batch`), so one reader can feed many workers. Queues to the workers
are bounded: when they are full the reader waits, which is the pipeline's backpressure.
"""

from __future__ import annotations

import os
import signal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np

from pipeline.capture import CaptureOpenError, Frame, FramingError, open_capture
from pipeline.events.ecs import capture_key
from pipeline.runtime.messages import (
    FileEnd,
    FileStart,
    ReaderDone,
    ReaderFile,
    ReaderProgress,
    Stop,
    WorkBatch,
)
from pipeline.runtime.routing import packet_hash, route_batch

_EMPTY = np.zeros(0, dtype=np.int64)


def _key_of(first: Frame | FramingError, mapping: Any) -> str:
    if isinstance(first, Frame) and first.data is None and mapping is not None:
        first = first._replace(data=mapping[first.offset : first.offset + first.caplen])
    return capture_key(first)


class BatchRouter:
    """Splits batches of one capture into per-worker `WorkBatch` messages."""

    def __init__(self, file_no: int, workers: int, mapping: Any) -> None:
        self.file_no = file_no
        self.workers = workers
        self.mapping = mapping
        self.last_ts_ns = 0  # of the last frame routed, for framing errors that follow it
        # A numpy view of the mapping for the vectorised header reads (no copy).
        self.view = np.frombuffer(mapping, dtype=np.uint8) if mapping is not None else None

    def close(self) -> None:
        self.view = None  # release the buffer export so the mapping can be closed

    def split(self, batch_no: int, batch: list[Frame | FramingError]) -> list[WorkBatch]:
        frames = [r for r in batch if r.__class__ is Frame]
        errors: list[FramingError] = []
        if len(frames) != len(batch):
            # A bad record has no time of its own: it takes the last good frame's, stamped
            # here where the frames are still in order (workers see only their share).
            for record in batch:
                if isinstance(record, Frame):
                    self.last_ts_ns = record.ts_ns
                else:
                    errors.append(record._replace(ts_ns=self.last_ts_ns))
        elif frames:
            self.last_ts_ns = frames[-1].ts_ns
        workers = self.workers
        if frames:
            index, ts_ns, offset, caplen, origlen, interface, link_type, data = zip(
                *frames, strict=True
            )
            cols = [
                np.array(column, dtype=np.int64)
                for column in (index, ts_ns, offset, caplen, origlen, interface, link_type)
            ]
            offsets, caplens, link_types = cols[2], cols[3], cols[6]
            if self.view is not None:
                buf, buf_offsets = self.view, offsets
                packet_data = None
            else:
                blob = b"".join(data)  # type: ignore[arg-type]
                buf = np.frombuffer(blob, dtype=np.uint8)
                buf_offsets = np.zeros(len(frames), dtype=np.int64)
                np.cumsum(caplens[:-1], out=buf_offsets[1:])
                packet_data = data
            hashes = np.empty(len(frames), dtype=np.uint64)
            for link in np.unique(link_types).tolist():
                select = np.nonzero(link_types == link)[0]
                link_hashes, scalar = route_batch(
                    buf, buf_offsets[select], caplens[select], int(link)
                )
                for i in np.nonzero(scalar)[0].tolist():
                    j = int(select[i])
                    packet = (
                        packet_data[j]
                        if packet_data is not None
                        else self.mapping[int(offsets[j]) : int(offsets[j] + caplens[j])]
                    )
                    link_hashes[i] = packet_hash(int(link), packet, int(offsets[j]))
                hashes[select] = link_hashes
            owner = (hashes % np.uint64(workers)).astype(np.int64)
        else:
            cols = [_EMPTY] * 7
            owner = _EMPTY
            packet_data = None
        messages = []
        for worker in range(workers):
            select = np.nonzero(owner == worker)[0]
            sub = [column[select] for column in cols]
            blob_out: bytes | None = None
            if packet_data is not None:
                chosen = [packet_data[i] for i in select.tolist()]
                blob_out = b"".join(chosen)  # type: ignore[arg-type]
                sub[2] = np.zeros(len(chosen), dtype=np.int64)
                np.cumsum(sub[3][:-1], out=sub[2][1:])
            mine = [e for e in errors if e.index % workers == worker]
            messages.append(WorkBatch(self.file_no, batch_no, *sub, blob_out, mine))
        return messages


def reader_main(
    paths: list[str],
    inboxes: list[Queue[Any]],
    coordinator: Queue[Any],
    batch_frames: int,
    stop: Event,
) -> None:
    """Read every input in turn; end by sending each worker a Stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator sets `stop` instead
    workers = len(inboxes)
    try:
        for file_no, path in enumerate(paths):
            if stop.is_set():
                break
            _read_one(file_no, path, inboxes, coordinator, batch_frames, stop, workers)
    finally:
        for inbox in inboxes:
            inbox.put(Stop("end of input"))


def _read_one(
    file_no: int,
    path: str,
    inboxes: list[Queue[Any]],
    coordinator: Queue[Any],
    batch_frames: int,
    stop: Event,
    workers: int,
) -> None:
    try:
        capture = open_capture(path, with_data=False)
    except CaptureOpenError as exc:
        coordinator.put(ReaderFile(file_no, path, "", "", 0, str(exc)))
        coordinator.put(ReaderDone(file_no, 0, 0, "failed", str(exc), False))
        return
    with capture:
        size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else 0
        coordinator.put(ReaderFile(file_no, path, capture.format, capture.compression, size, None))
        router = BatchRouter(file_no, workers, capture.mapping)
        batches = frames = 0
        error: str | None = None
        interrupted = False
        started = False
        try:
            for batch in capture.batches(batch_frames):
                if not started:
                    key = _key_of(batch[0], capture.mapping)
                    for inbox in inboxes:
                        inbox.put(FileStart(file_no, path, capture.mapping is not None, key))
                    started = True
                for inbox, message in zip(inboxes, router.split(batches, batch), strict=True):
                    inbox.put(message)
                batches += 1
                frames += len(batch)
                last = batch[-1]
                position = last.offset + (last.caplen if isinstance(last, Frame) else 0)
                coordinator.put(ReaderProgress(file_no, batches, frames, position))
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
        status = "partial" if error or capture.status != "ok" else "ok"
        coordinator.put(ReaderDone(file_no, batches, frames, status, error, interrupted))
