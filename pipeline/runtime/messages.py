"""What the runtime's processes send each other (all picklable, all small or columnar).

    reader ──FileStart/WorkBatch/FileEnd/Stop──▶ worker i   (one bounded queue per worker)
    reader ──ReaderFile/ReaderProgress/ReaderDone──▶ coordinator   (a pipe of its own)
    worker ──BatchOutput/WorkerFileDone/WorkerFailed──▶ coordinator (a pipe per worker)

Each process has its own pipe to the coordinator, so a process killed in the middle of a
message corrupts only its own channel, and the coordinator, which holds no write end, sees
end-of-file there instead of waiting forever for the rest.

Packets travel as columns (numpy arrays): for a memory-mapped capture only references —
frame number, timestamp, offset, lengths — since every worker maps the same file; for
compressed input and stdin, the packet bytes too, as one blob per batch with offsets into it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from pipeline.capture.frame import FramingError

Int64s = npt.NDArray[np.int64]


class FileStart(NamedTuple):
    file_no: int
    path: str  # the input as named; workers map it when `mapped`
    mapped: bool  # True: packet bytes are in the file at the offsets; False: in the blobs
    capture_key: str  # event id prefix, from the capture's first record


class WorkBatch(NamedTuple):
    file_no: int
    batch_no: int
    index: Int64s  # frame numbers
    ts_ns: Int64s
    offset: Int64s  # in the (decompressed) capture: into the file when it is mapped
    caplen: Int64s
    origlen: Int64s
    interface: Int64s | int  # an int when every frame of the batch has the same
    link_type: Int64s | int
    blob: bytes | None  # the packet bytes, for unmapped inputs
    blob_offset: Int64s | None  # where each packet starts in `blob`
    errors: list[FramingError]  # framing errors routed here, their ts_ns filled in
    sweeps: list[tuple[int, int]]  # the batch's flow sweep points: (frame number, clock ns)


class FileEnd(NamedTuple):
    file_no: int


class Stop(NamedTuple):
    reason: str


class ReaderFile(NamedTuple):
    """The reader opened an input (or could not: `error` set, `format` empty)."""

    file_no: int
    path: str
    format: str
    compression: str
    size: int  # bytes of the input file, 0 when unknown (stdin, pipes)
    error: str | None


class ReaderProgress(NamedTuple):
    file_no: int
    batches: int  # batches sent so far for this file
    frames: int
    position: int  # bytes of the (decompressed) capture read so far


class ReaderDone(NamedTuple):
    """The reader finished an input: every batch for it has been queued."""

    file_no: int
    batches: int
    frames: int
    status: str  # capture status: "ok" or "partial"
    error: str | None
    interrupted: bool


class BatchOutput(NamedTuple):
    worker: int
    file_no: int
    batch_no: int
    payload: bytes  # NDJSON, compressed when the run compresses and output is unordered
    indices: list[Any] | None  # order key of each line, for ordered output (convert.order_key)
    lines: list[bytes] | None  # the lines themselves, for ordered output
    frames: int


class WorkerFileDone(NamedTuple):
    """A worker finished a file: its counters, and the events of the flows still open then."""

    worker: int
    file_no: int
    stats: dict[str, Any]  # decoded, anomalies, events, flows
    payload: bytes  # the flows' events, as BatchOutput.payload
    indices: list[Any] | None  # ordered output: their order keys
    lines: list[bytes] | None  # ordered output: the lines


class WorkerFailed(NamedTuple):
    worker: int
    error: str  # one line: what went wrong, and where
