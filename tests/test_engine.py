"""The multiprocess engine: deterministic output, faults, signals, pipes, no stray processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from pipeline import convert
from pipeline.gen.capture_mix import iter_frames, write_capture
from pipeline.runtime.memory import private_memory_bytes
from tests.capture_writers import Rec, pcap_bytes
from tests.conftest import HAVE_SHARED, REFERENCE_CAPTURES, needs_shared
from tests.test_truth_packets import read_ndjson_zst

WORKER_COUNTS = (1, 2, 3, 4, 8)


def outputs(directory: Path) -> dict[str, bytes]:
    """The event files (manifests carry times: they differ run to run)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if not p.name.endswith(".manifest.json")
    }


@needs_shared
def test_ordered_output_is_byte_identical_for_any_worker_count(tmp_path: Path) -> None:
    """Every reference capture, in one run per worker count: the same bytes, file by file,
    as the single-process converter writes."""
    inputs = [str(p) for p in REFERENCE_CAPTURES]
    reference = convert(inputs, str(tmp_path / "w0"), workers=0)
    expected = outputs(tmp_path / "w0")
    assert len(expected) == len(inputs)
    for workers in WORKER_COUNTS:
        run = convert(inputs, str(tmp_path / f"w{workers}"), workers=workers, ordered=True)
        assert outputs(tmp_path / f"w{workers}") == expected, workers
        assert [f.to_json() | {"seconds": 0, "outputs": []} for f in run.files] == [
            f.to_json() | {"seconds": 0, "outputs": []} for f in reference.files
        ]


@needs_shared
def test_unordered_output_is_the_same_multiset(tmp_path: Path) -> None:
    inputs = [str(p) for p in REFERENCE_CAPTURES]
    convert(inputs, str(tmp_path / "ordered"), workers=2, ordered=True)
    convert(inputs, str(tmp_path / "free"), workers=3)
    for name in outputs(tmp_path / "ordered"):
        ordered = read_ndjson_zst(tmp_path / "ordered" / name)
        free = read_ndjson_zst(tmp_path / "free" / name)
        key = [e["event"]["id"] for e in free]
        assert Counter(key) == Counter(e["event"]["id"] for e in ordered), name
        assert sorted(free, key=lambda e: e["event"]["id"]) == sorted(
            ordered, key=lambda e: e["event"]["id"]
        ), name


def test_flows_and_stats_are_the_same_for_any_worker_count(tmp_path: Path) -> None:
    """Flow records and merged traffic statistics (with intervals and short timeouts, so
    sweeps end flows mid-capture) are byte-identical across worker counts, ordered."""
    # The generated mix, slowed down 100 times: 20 s of capture time, 20 sweep points.
    frames = list(iter_frames(20_000, seed=21))
    start = frames[0][0]
    records = [
        Rec(ts // 10**9, ts % 10**9 // 1000, frame)
        for ts, frame in ((start + (t - start) * 100, f) for t, f in frames)
    ]
    path = tmp_path / "mix.pcap"
    path.write_bytes(pcap_bytes(records))
    options = {
        "extract": ("packet", "anomaly", "flow", "stats", "dns", "tls", "http"),
        "stats_interval": 2.0,
        "tcp_timeout": 3.0,
        "udp_timeout": 2.0,
    }
    convert([str(path)], str(tmp_path / "w0"), workers=0, **options)  # type: ignore[arg-type]
    expected = outputs(tmp_path / "w0")
    events = read_ndjson_zst(tmp_path / "w0" / "mix.pcap.ndjson.zst")
    datasets = Counter(e["event"]["dataset"] for e in events)
    assert datasets["pcap_ingest.packet"] == 20_000
    assert datasets["pcap_ingest.flow"] > 100 and datasets["pcap_ingest.stats"] > 2
    assert datasets["pcap_ingest.dns"] > 20 and datasets["pcap_ingest.tls"] > 20
    assert datasets["pcap_ingest.http"] > 20
    reasons = Counter(e["event"]["reason"] for e in events if "reason" in e["event"])
    assert reasons["idle_timeout"] > 0 and reasons["end_of_input"] > 0
    whole = [e for e in events if e["event"]["id"].endswith("-stats")]
    assert len(whole) == 1 and whole[0]["network"]["packets"] == 20_000
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}"
        convert([str(path)], str(out), workers=workers, ordered=True, **options)  # type: ignore[arg-type]
        assert outputs(out) == expected, workers
    convert([str(path)], str(tmp_path / "free"), workers=2, **options)  # type: ignore[arg-type]
    free = read_ndjson_zst(tmp_path / "free" / "mix.pcap.ndjson.zst")
    assert sorted(e["event"]["id"] for e in free) == sorted(e["event"]["id"] for e in events)


def test_every_frame_accounted_for_across_workers(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 30_000, seed=11)
    run = convert([str(path)], str(tmp_path / "out"), workers=3)
    (stats,) = run.files
    assert stats.frames == 30_000 and stats.accounted and stats.status == "ok"
    events = read_ndjson_zst(tmp_path / "out" / "mix.pcap.ndjson.zst")
    frames = [e["pcap"]["frame"] for e in events if e["event"]["dataset"] != "pcap_ingest.flow"]
    assert sorted(frames) == list(range(1, 30_001))


# -- faults: run the CLI, hurt it, and check what is left --------------------------------


@pytest.fixture(scope="module")
def long_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough (~3 s with two workers) to act on the run while it goes."""
    path = tmp_path_factory.mktemp("engine") / "long.pcap"
    write_capture(str(path), 400_000, seed=12)
    return path


def start(capture: Path, out: str, *extra: str) -> tuple[subprocess.Popen, psutil.Process]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipeline", "convert", str(capture), "-o", out, "-w", "2"),
            *("--progress", "json", "--batch-size", "1024", *extra),
        ],
        stdout=subprocess.PIPE if out == "-" else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    first = json.loads(proc.stderr.readline())  # the first progress line: the children are up
    proc.first_progress = first  # type: ignore[attr-defined]
    return proc, psutil.Process(proc.pid)


def children_of(parent: psutil.Process) -> list[psutil.Process]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        kids = parent.children(recursive=True)
        if len(kids) >= 3:  # reader + two workers (queue feeders are threads)
            return kids
        time.sleep(0.05)
    raise AssertionError("the engine's processes did not start")


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and _not_zombie(p)]
        time.sleep(0.05)
    assert not alive, f"processes left behind: {alive}"
    for pid in pids:  # and none is a zombie waiting to be reaped
        if psutil.pid_exists(pid):
            assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killed_worker_fails_the_run_quickly(long_capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc, parent = start(long_capture, str(out))
    kids = children_of(parent)
    # Worker 0 by the pid the engine reports (sorting pids breaks when they wrap around).
    worker = psutil.Process(proc.first_progress["worker_pids"][0])  # type: ignore[attr-defined]
    assert worker.pid in {k.pid for k in kids}
    pids = [k.pid for k in kids]
    time.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(worker.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - killed_at < 5
    assert proc.returncode == 3, err
    message = err.decode().splitlines()[-1]
    assert "worker 0" in message and "died (signal SIGKILL)" in message, message
    assert str(long_capture) in message, message
    assert "Traceback" not in err.decode()
    assert not out.exists() or os.listdir(out) == []  # nothing left, not even a .partial
    assert_all_gone(pids)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_reading_and_close_cleanly(
    long_capture: Path, tmp_path: Path, signum: int, code: int
) -> None:
    out = tmp_path / "out"
    proc, parent = start(long_capture, str(out))
    pids = [k.pid for k in children_of(parent)]
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err.decode()
    names = os.listdir(out)
    assert names == ["long.pcap.ndjson.zst.partial"], names  # closed, never a final name
    events = read_ndjson_zst(out / names[0])  # a whole, valid zstd stream
    assert 0 < len(events) < 400_000
    assert_all_gone(pids)


def test_closed_pipe_ends_quietly_and_reaps_everything(long_capture: Path) -> None:
    proc, parent = start(long_capture, "-")
    pids = [k.pid for k in children_of(parent)]
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"Error" not in err
    assert_all_gone(pids)


@pytest.mark.skipif(not HAVE_SHARED, reason="reference captures not found")
def test_engine_keeps_truth_accounting_on_malformed_inputs(tmp_path: Path) -> None:
    inputs = [str(p) for p in REFERENCE_CAPTURES if "malformed" in p.parts]
    run = convert(inputs, str(tmp_path / "o"), workers=2)
    single = convert(inputs, str(tmp_path / "s"), workers=0)
    for multi, one in zip(run.files, single.files, strict=True):
        assert multi.accounted, multi.to_json()
        assert (multi.frames, multi.status, dict(multi.anomalies)) == (
            one.frames,
            one.status,
            dict(one.anomalies),
        ), multi.path


def test_progress_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 20_000, seed=13)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pipeline", "convert", str(path)),
            *("-o", str(tmp_path / "o"), "-w", "3", "--progress", "json"),
            *("--extract", "packet,anomaly"),
        ],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    final = records[-1]
    assert final["final"] and final["frames"] == 20_000 and final["events"] == 20_000
    assert final["bytes_total"] == path.stat().st_size == final["bytes_read"]
    assert len(final["queue_depth"]) == 3
    assert {"elapsed_s", "packets_per_second", "files_done", "files"} <= set(final)
    assert 0 < final["private_memory_mib"] < 1000


def test_slow_sink_slows_the_reader_not_memory(long_capture: Path) -> None:
    """A consumer that reads slowly: the reader waits (bounded queues), memory stays flat."""
    proc, parent = start(long_capture, "-", "--compress", "none")
    pids = [k.pid for k in children_of(parent)]
    assert proc.stdout is not None and proc.stderr is not None
    peak = 0
    for _ in range(40):  # ~2.5 MB read in 40 small sips
        proc.stdout.read(64 * 1024)
        time.sleep(0.02)
        tree = [parent.pid, *pids]
        peak = max(peak, sum(private_memory_bytes(pid) for pid in tree))
    frames_read = 0
    os.set_blocking(proc.stderr.fileno(), False)
    for line in (proc.stderr.read() or b"").splitlines():
        if line.startswith(b"{"):
            frames_read = max(frames_read, json.loads(line)["frames"])
    proc.kill()
    proc.wait(timeout=10)
    # ~2.5 MB of output is ~3,500 events: the reader may be a few batches ahead, no more.
    assert frames_read < 100_000, frames_read
    assert peak < 600 * (1 << 20), peak


def test_exception_in_a_worker_fails_the_run_with_its_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that raises inside a worker: reported (not a hang), named, nothing left behind.

    Workers are forked, so a patch made here reaches them."""
    from pipeline.runtime import worker
    from pipeline.runtime.engine import EngineFailed

    def broken(*args: object) -> None:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(worker, "_frames", broken)
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 5_000, seed=14)
    with pytest.raises(EngineFailed, match=r"worker \d failed while converting .*decoder exploded"):
        convert([str(path)], str(tmp_path / "out"), workers=2)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
