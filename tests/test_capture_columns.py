"""Column batches (the multiprocess reader's view) hold exactly what Frame batches hold."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.capture import Frame, FramingError, open_capture
from pipeline.gen.capture_mix import write_capture
from tests import capture_writers as w
from tests.conftest import CAPTURE_PARAMS


def as_records(path: str, batch: int) -> tuple[list[tuple], list[FramingError]]:
    frames: list[tuple] = []
    errors: list[FramingError] = []
    with open_capture(path, with_data=False) as capture:
        for columns in capture.column_batches(batch):
            for row in zip(
                columns.index.tolist(),
                columns.ts_ns.tolist(),
                columns.offset.tolist(),
                columns.caplen.tolist(),
                columns.origlen.tolist(),
                columns.interface.tolist(),
                columns.link_type.tolist(),
                strict=True,
            ):
                frames.append(row)
            errors += columns.errors
        status = capture.status
    return frames, errors, status  # type: ignore[return-value]


def reference(path: str) -> tuple[list[tuple], list[FramingError]]:
    frames: list[tuple] = []
    errors: list[FramingError] = []
    last_ts = 0
    with open_capture(path, with_data=False) as capture:
        for record in capture:
            if isinstance(record, Frame):
                frames.append(tuple(record[:7]))
                last_ts = record.ts_ns
            else:
                errors.append(record._replace(ts_ns=last_ts))
        status = capture.status
    return frames, errors, status  # type: ignore[return-value]


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
@pytest.mark.parametrize("batch", [1, 7, 4096])
def test_columns_equal_frames_on_reference_captures(capture: Path, batch: int) -> None:
    assert as_records(str(capture), batch) == reference(str(capture))


def test_columns_on_the_mix_and_on_streams(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 3000, seed=8)
    assert as_records(str(path), 1000) == reference(str(path))
    gz = tmp_path / "mix.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    frames, _, _ = as_records(str(gz), 1000)
    assert [f[:2] + f[3:] for f in frames] == [f[:2] + f[3:] for f in reference(str(path))[0]]


def test_columns_across_bad_records(tmp_path: Path) -> None:
    """A bad length in the middle: the error keeps its place and its time, frames go on."""
    recs = [w.Rec(100 + i, 0, w.packet(60, seed=i)) for i in range(10)]
    data = bytearray(w.pcap_bytes(recs, nano=False))
    record = 16 + 60
    bad = 24 + 4 * record + 8  # caplen of the 5th record
    data[bad : bad + 4] = (0x7FFFFFFF).to_bytes(4, "little")
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(data))
    frames, errors, status = as_records(str(path), 4096)
    assert (frames, errors, status) == reference(str(path))
    assert status == "partial" and errors and errors[0].ts_ns == 103 * 1_000_000_000
