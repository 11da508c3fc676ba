"""`convert --quarantine` (issue #8): every frame that became an anomaly, written to
``<stem>.quarantine.pcap`` beside the events, with its original bytes, time and link type.

One capture holds clean packets, truncated IP headers (decode anomalies), the hostile
extractor inputs of test_extract_hostile (extractor anomalies) and, last, a record the reader
cannot frame. It is converted in this process and with two workers; the quarantine pcap is
read back with our reader and with dpkt's, and must hold exactly the frames the anomaly
events name (the unframed record aside: it has no frame), in frame order, byte for byte and
to the nanosecond.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import dpkt
import orjson
import pytest

from pipeline.capture import Frame, open_capture
from pipeline.convert import convert
from pipeline.inputs import InputError
from tests.capture_writers import Rec, pcap_bytes
from tests.test_extract_hostile import ether, hostile_frames, ipv4, udp

EXTRACT = ("packet", "anomaly", "flow", "dns", "tls", "http")
BASE_SECONDS = 1_700_000_000
NS = 1_000_000_000


def truncated_ip() -> bytes:
    """An Ethernet frame whose IPv4 header is cut off after 10 of its 20 bytes."""
    return ether(ipv4(b"payload", 17)[:10])


def clean_frames(n: int) -> list[bytes]:
    return [udp(20000 + i, 9999, b"clean %d" % i) for i in range(n)]


def capture_records(frames: list[bytes]) -> list[Rec]:
    """Nanosecond times that are not whole microseconds: the quarantine must keep them."""
    return [Rec(BASE_SECONDS + i, 123_456_789 + i, frame) for i, frame in enumerate(frames)]


@pytest.fixture(scope="module")
def anomalous_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The capture, and the frame numbers (1-based) of its truncated IP headers."""
    frames = [*clean_frames(3), truncated_ip(), *hostile_frames(), *clean_frames(2)]
    frames += [truncated_ip(), *clean_frames(1)]
    truncated = [i + 1 for i, frame in enumerate(frames) if frame == truncated_ip()]
    records = capture_records(frames)
    # Last, a record claiming 4,000 bytes with 10 in the file: a framing error, not a frame.
    records.append(Rec(BASE_SECONDS + 999, 0, b"\x00" * 10, caplen=4000, origlen=4000))
    path = tmp_path_factory.mktemp("quarantine") / "bad.pcap"
    path.write_bytes(pcap_bytes(records, nano=True))
    return path, truncated


def input_frames(path: Path) -> dict[int, Frame]:
    with open_capture(str(path)) as capture:
        return {r.index: r for batch in capture.batches() for r in batch if isinstance(r, Frame)}


def anomaly_frames(events_path: Path, frames: int) -> list[int]:
    """The frames the anomaly events name, in frame order, those with a frame only."""
    named = set()
    for line in events_path.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["event"]["dataset"] == "pcap_ingest.anomaly":
            named.add(event["pcap"]["frame"])
    return sorted(index for index in named if index <= frames)


def read_with_dpkt(path: Path) -> tuple[int, list[tuple[float, bytes]]]:
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink(), [(ts, bytes(buf)) for ts, buf in reader]


@pytest.mark.parametrize("workers", [0, 2])
def test_quarantine_holds_exactly_the_anomalous_frames(
    anomalous_capture: tuple[Path, list[int]], tmp_path: Path, workers: int
) -> None:
    path, truncated = anomalous_capture
    out = tmp_path / "out"
    run = convert(
        [str(path)], str(out), workers=workers, extract=EXTRACT, compression="none",
        quarantine=True,
    )  # fmt: skip
    (stats,) = run.files
    assert stats.status == "partial" and stats.accounted  # the unframed record at the end
    originals = input_frames(path)
    expected = anomaly_frames(out / "bad.pcap.ndjson", max(originals))
    # Decode anomalies (the truncated IP headers) and extractor anomalies (hostile HTTP, TLS,
    # DNS: frames the decoder read fine) are both there.
    assert set(truncated) <= set(expected)
    assert len(expected) > len(truncated) + 5
    quarantine = out / "bad.pcap.quarantine.pcap"
    assert stats.quarantine_path == str(quarantine)
    assert stats.quarantined == len(expected)
    assert str(quarantine) in stats.outputs

    # Our reader: the frames, in order, as they were in the input.
    with open_capture(str(quarantine)) as capture:
        written = [r for batch in capture.batches() for r in batch]
    assert all(isinstance(r, Frame) for r in written)
    assert len(written) == len(expected)
    for frame, index in zip(written, expected, strict=True):
        original = originals[index]
        assert frame.data == original.data
        assert frame.ts_ns == original.ts_ns  # to the nanosecond
        assert frame.origlen == original.origlen
        assert frame.link_type == original.link_type

    # dpkt's reader agrees: link type, bytes, times (a nanosecond pcap: exact Decimal seconds).
    link_type, packets = read_with_dpkt(quarantine)
    assert link_type == dpkt.pcap.DLT_EN10MB
    assert [buf for _, buf in packets] == [originals[i].data for i in expected]
    assert [ts for ts, _ in packets] == [Decimal(originals[i].ts_ns) / NS for i in expected]

    # --stats-json's account: written, and the framing error that had no frame to write.
    report = stats.to_json()["quarantine"]
    assert report == {
        "path": str(quarantine),
        "frames": len(expected),
        "not_quarantined": {"unframed": 1, "over_limit": 0},
        "error": None,
    }


def test_clean_capture_gives_no_quarantine_file(tmp_path: Path) -> None:
    path = tmp_path / "clean.pcap"
    path.write_bytes(pcap_bytes(capture_records(clean_frames(20)), nano=True))
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        run = convert([str(path)], str(out), workers=workers, compression="none", quarantine=True)
        (stats,) = run.files
        assert stats.status == "ok" and stats.anomaly_count == 0
        assert sorted(os.listdir(out)) == ["clean.pcap.manifest.json", "clean.pcap.ndjson"]
        assert stats.to_json()["quarantine"]["path"] is None
        assert stats.quarantined == 0


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_cli_writes_quarantine_lists_it_in_the_manifest_and_stats_json(
    anomalous_capture: tuple[Path, list[int]], tmp_path: Path
) -> None:
    path, truncated = anomalous_capture
    out = tmp_path / "out"
    stats_json = tmp_path / "stats.json"
    proc = run_cli(
        "convert", str(path), "-o", str(out), "--quarantine", "--stats-json", str(stats_json),
        "--extract", ",".join(EXTRACT),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # partial: the unframed record
    quarantine = out / "bad.pcap.quarantine.pcap"
    (file_report,) = orjson.loads(stats_json.read_bytes())["files"]
    assert file_report["quarantine"]["path"] == str(quarantine)
    assert file_report["quarantine"]["frames"] >= len(truncated)
    manifest = orjson.loads((out / "bad.pcap.manifest.json").read_bytes())
    names = [o["name"] for o in manifest["outputs"]]
    assert "bad.pcap.quarantine.pcap" in names
    assert b"quarantine:" in proc.stderr
    # Without --quarantine: no pcap, and no quarantine account.
    plain = tmp_path / "plain"
    proc = run_cli("convert", str(path), "-o", str(plain), "--stats-json", str(stats_json))
    assert proc.returncode == 2, proc.stderr
    assert not any(name.endswith(".pcap") for name in os.listdir(plain))
    assert "quarantine" not in orjson.loads(stats_json.read_bytes())["files"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "-"], b"--quarantine needs an output directory"),
        (["-o", "syslog://127.0.0.1:9"], b"--quarantine needs an output directory"),
        (["--one-capture"], b"--quarantine is not supported with --one-capture"),
        (
            ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
            b"--quarantine is not supported with --executor dask",
        ),
    ],
)
def test_quarantine_usage_errors(
    anomalous_capture: tuple[Path, list[int]], tmp_path: Path, args: list[str], message: bytes
) -> None:
    path, _ = anomalous_capture
    out_args: list[Any] = [] if "-o" in args else ["-o", str(tmp_path / "out")]
    # In tmp_path: a -o the run took for a directory would be made there, not in the tree.
    proc = run_cli("convert", str(path), "--quarantine", *out_args, *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == b""
    assert os.listdir(tmp_path) == []


def test_quarantine_refuses_stdin(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not standard input"):
        convert(["-"], str(tmp_path / "out"), quarantine=True)


def test_resume_keeps_a_listed_quarantine_and_redoes_a_missing_one(
    anomalous_capture: tuple[Path, list[int]], tmp_path: Path
) -> None:
    path, _ = anomalous_capture
    out = tmp_path / "out"
    quarantine = out / "bad.pcap.quarantine.pcap"
    first = convert([str(path)], str(out), extract=EXTRACT, quarantine=True, resume=True)
    written = quarantine.read_bytes()
    assert first.files[0].quarantined > 0
    again = convert([str(path)], str(out), extract=EXTRACT, quarantine=True, resume=True)
    assert again.files == [] and len(again.skipped) == 1
    assert str(quarantine) in again.skipped[0].outputs
    # The manifest vouches for the quarantine pcap too: without it, the input is redone.
    quarantine.unlink()
    redone = convert([str(path)], str(out), extract=EXTRACT, quarantine=True, resume=True)
    assert len(redone.files) == 1 and quarantine.read_bytes() == written


def test_frames_past_the_limit_are_counted_not_written(
    anomalous_capture: tuple[Path, list[int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = anomalous_capture
    unlimited = convert([str(path)], str(tmp_path / "all"), extract=EXTRACT, quarantine=True)
    kept = unlimited.files[0].quarantine_frames  # emptied once written
    assert kept == []
    monkeypatch.setattr("pipeline.stats.QUARANTINE_MAX_FRAMES", 3)
    run = convert([str(path)], str(tmp_path / "out"), extract=EXTRACT, quarantine=True)
    (stats,) = run.files
    report = stats.to_json()["quarantine"]
    assert report["frames"] == 3
    # Every anomaly with a frame was either kept or counted past the limit.
    extractor_anomalies = sum(v for k, v in stats.extractors.items() if k.endswith("_anomalies"))
    assert report["not_quarantined"]["over_limit"] == (
        stats.anomaly_count - 1 + extractor_anomalies - 3
    )
    assert unlimited.files[0].quarantined > 3
