"""Frames as columns: the multiprocess reader's form of a batch.

A batch of `Frame` tuples costs a tuple per packet to make and to pickle; the reader only
needs numbers (and, for streams, the bytes), so it takes them as numpy columns. For a
memory-mapped classic pcap the walker's fast loop fills the columns directly
(`PcapWalker.run_columns`, ~2x faster than making Frames); every other input is converted
from ordinary batches by `columns_from_records`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from pipeline.capture.frame import Frame, FramingError

Int64s = npt.NDArray[np.int64]


class FrameColumns(NamedTuple):
    index: Int64s  # frame numbers
    ts_ns: Int64s
    offset: Int64s  # in the (decompressed) stream; for a mapped file, into the mapping
    caplen: Int64s
    origlen: Int64s
    interface: Int64s
    link_type: Int64s
    data: tuple[bytes, ...] | None  # the packet bytes, when the source is not a mapping
    errors: list[FramingError]  # framing errors of the batch, in order, ts_ns filled in

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.index) + len(self.errors)


def _int_column(values: tuple[int, ...]) -> Int64s:
    """int64, or Python ints when a value does not fit (a pcapng timestamp past 2262)."""
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array(values, dtype=object)


def columns_from_records(
    records: list[Frame | FramingError], last_ts_ns: int, with_data: bool
) -> tuple[FrameColumns, int]:
    """Columns of an ordinary batch; returns them and the last frame's timestamp."""
    frames = [r for r in records if r.__class__ is Frame]
    errors: list[FramingError] = []
    if len(frames) != len(records):
        for record in records:
            if isinstance(record, Frame):
                last_ts_ns = record.ts_ns
            else:
                errors.append(record._replace(ts_ns=last_ts_ns))
    elif frames:
        last_ts_ns = frames[-1].ts_ns
    if frames:
        index, ts_ns, offset, caplen, origlen, interface, link_type, data = zip(
            *frames, strict=True
        )
        arrays = [
            _int_column(column)
            for column in (index, ts_ns, offset, caplen, origlen, interface, link_type)
        ]
    else:
        arrays = [np.zeros(0, dtype=np.int64) for _ in range(7)]
        data = ()
    return FrameColumns(*arrays, data if with_data else None, errors), last_ts_ns  # type: ignore[arg-type]
