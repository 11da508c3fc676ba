"""Manifests and `convert --resume` (issue #8): a run killed anywhere resumes into the outputs
an uninterrupted run writes, byte for byte.

Real runs of the command (subprocesses), real SIGKILLs of the main process, real files.
Runtime: ~40 s on 2 cores (32 s of it the kill-and-resume runs), measured under load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from pipeline.convert import ConvertOptions
from pipeline.gen import write_capture
from pipeline.manifest import (
    MANIFEST_SUFFIX,
    file_sha256,
    mismatch,
    read_manifest,
    stem_files,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
# Inputs of a kill test: enough packets that each input takes a good part of a second, so the
# polling below (every millisecond) catches the run between any two of its steps.
KILL_INPUTS = 4
KILL_PACKETS = 20_000
# Rotated outputs, so an input is several files and a kill can fall between them.
ROTATE = "150K"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def outputs_of(directory: Path) -> dict[str, bytes]:
    """Every file in `directory` with its bytes; manifests (times inside) by name only."""
    return {
        p.name: (b"" if p.name.endswith(MANIFEST_SUFFIX) else p.read_bytes())
        for p in sorted(directory.iterdir())
    }


@pytest.fixture(scope="module")
def kill_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("inputs")
    paths = []
    for i in range(KILL_INPUTS):
        path = base / f"part{i}.pcap"
        write_capture(str(path), KILL_PACKETS, seed=100 + i)
        paths.append(path)
    return paths


def test_every_output_gets_a_manifest_written_last(tmp_path: Path) -> None:
    inputs = []
    for i in range(2):
        inputs.append(tmp_path / f"in{i}.pcap")
        write_capture(str(inputs[-1]), 2000, seed=i)
    out = tmp_path / "out"
    result = run_cli(*map(str, inputs), "-o", str(out), "-w", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for path in inputs:
        manifest = read_manifest(str(out / f"{path.name}{MANIFEST_SUFFIX}"))
        assert manifest is not None
        (entry,) = manifest["inputs"]
        assert entry["path"] == str(path)
        assert entry["size"] == path.stat().st_size
        assert entry["mtime_ns"] == path.stat().st_mtime_ns
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert manifest["status"] == "ok"
        assert manifest["counts"]["frames"] == 2000
        assert manifest["counts"]["events"]["packet"] == 2000
        assert manifest["options"]["extract"] == ["packet", "anomaly", "flow"]
        assert "force" not in manifest["options"]
        (output,) = manifest["outputs"]
        written = out / output["name"]
        assert output["name"] == f"{path.name}.ndjson.zst"
        assert output["size"] == written.stat().st_size
        assert output["sha256"] == file_sha256(str(written))
        assert manifest["started"] <= manifest["finished"]
        # Written last: no file of the run is newer than its manifest.
        assert (
            written.stat().st_mtime_ns <= (out / f"{path.name}{MANIFEST_SUFFIX}").stat().st_mtime_ns
        )
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_mismatch_names_what_changed(tmp_path: Path) -> None:
    capture = tmp_path / "a.pcap"
    write_capture(str(capture), 500, seed=3)
    out = tmp_path / "out"
    assert run_cli(str(capture), "-o", str(out), "-w", "0", cwd=tmp_path).returncode == 0
    manifest_file = str(out / f"a.pcap{MANIFEST_SUFFIX}")
    manifest = read_manifest(manifest_file)
    options = ConvertOptions()
    assert mismatch(manifest, [str(capture)], options, str(out)) is None
    assert mismatch(None, [str(capture)], options, str(out)) == "no manifest"
    assert mismatch(manifest, [str(capture)], ConvertOptions(level=4), str(out)) == (
        "options changed"
    )
    assert mismatch(manifest, [str(capture)], ConvertOptions(force=True), str(out)) is None
    assert manifest is not None
    assert mismatch({**manifest, "status": "interrupted"}, [str(capture)], options, str(out))
    # The same size and mtime but other bytes: only the hash can tell.
    stat = capture.stat()
    original = capture.read_bytes()
    changed = bytearray(original)
    changed[-1] ^= 0xFF
    capture.write_bytes(bytes(changed))
    os.utime(capture, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert mismatch(manifest, [str(capture)], options, str(out)) == (
        f"input content changed: {capture}"
    )
    os.utime(capture, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert mismatch(manifest, [str(capture)], options, str(out)) == f"input changed: {capture}"
    capture.write_bytes(original)
    os.utime(capture, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert mismatch(manifest, [str(capture)], options, str(out)) is None
    # An output's bytes changed in place (same size), then the output gone.
    output = out / "a.pcap.ndjson.zst"
    data = bytearray(output.read_bytes())
    data[10] ^= 0xFF
    output.write_bytes(bytes(data))
    assert mismatch(manifest, [str(capture)], options, str(out)) == (
        "output content: a.pcap.ndjson.zst"
    )
    output.unlink()
    assert mismatch(manifest, [str(capture)], options, str(out)) == (
        "output missing: a.pcap.ndjson.zst"
    )


def test_atomic_write_and_stem_files(tmp_path: Path) -> None:
    target = str(tmp_path / f"x.pcap{MANIFEST_SUFFIX}")
    write_manifest(target, {"manifest": 1, "a": [1, 2]})
    assert read_manifest(target) == {"manifest": 1, "a": [1, 2]}
    assert os.listdir(tmp_path) == [f"x.pcap{MANIFEST_SUFFIX}"]
    (tmp_path / "broken.manifest.json").write_bytes(b'{"manifest": 1, "inp')
    assert read_manifest(str(tmp_path / "broken.manifest.json")) is None
    names = [
        "x.pcap.ndjson.zst",
        "x.pcap.ndjson.zst.partial",
        "x.pcap.00000.ndjson.zst",
        "x.pcap.00001.ndjson.zst.partial",
        f"x.pcap{MANIFEST_SUFFIX}",
        f".x.pcap{MANIFEST_SUFFIX}.1234.tmp",
        "x.pcap-2.ndjson.zst",
        "x.pcapng.ndjson.zst",
        "y.pcap.ndjson.zst",
    ]
    assert stem_files(names, "x.pcap", ".ndjson.zst") == sorted(names[:6])


def test_resume_skips_matching_and_redoes_the_rest(tmp_path: Path) -> None:
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"in{i}.pcap")
        write_capture(str(inputs[-1]), 3000, seed=10 + i)
    out = tmp_path / "out"
    args = [*map(str, inputs), "-o", str(out), "-w", "0", "--rotate-size", "40K"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    complete = outputs_of(out)
    assert len([n for n in complete if n.startswith("in1.pcap.0")]) >= 2  # rotated
    # Without --resume an existing output is refused, as before.
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 1 and "output exists" in refused.stderr
    # What a kill mid-input leaves: in1's manifest gone (killed before it was written), a
    # rotated part missing, a .partial; in2 converted with other options (stale, too).
    (out / f"in1.pcap{MANIFEST_SUFFIX}").unlink()
    (out / "in1.pcap.00001.ndjson.zst").unlink()
    (out / "in1.pcap.00002.ndjson.zst.partial").write_bytes(b"half")
    (out / f".in1.pcap{MANIFEST_SUFFIX}.99.tmp").write_bytes(b"{")
    manifest = read_manifest(str(out / f"in2.pcap{MANIFEST_SUFFIX}"))
    assert manifest is not None
    manifest["options"]["level"] = 9
    write_manifest(str(out / f"in2.pcap{MANIFEST_SUFFIX}"), manifest)
    stats_json = tmp_path / "stats.json"
    resumed = run_cli(*args, "--resume", "--stats-json", str(stats_json), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped 1 input already converted (manifests match)" in resumed.stderr
    stats = orjson.loads(stats_json.read_bytes())
    assert [f["path"] for f in stats["files"]] == [str(inputs[1]), str(inputs[2])]
    assert [f["path"] for f in stats["skipped"]] == [str(inputs[0])]
    assert stats["skipped"][0]["frames"] == 3000
    assert outputs_of(out) == complete
    # Everything matches now: nothing converted.
    again = run_cli(*args, "--resume", cwd=tmp_path)
    assert again.returncode == 0
    assert "skipped 3 inputs already converted (manifests match)" in again.stderr
    assert outputs_of(out) == complete


def test_resume_of_a_capture_set(tmp_path: Path) -> None:
    inputs = []
    for i in range(2):
        inputs.append(tmp_path / f"rot{i}.pcap")
        write_capture(str(inputs[-1]), 1500, seed=20 + i)
    out = tmp_path / "out"
    args = [*map(str, inputs), "-o", str(out), "--one-capture"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    manifest = read_manifest(str(out / f"rot0.pcap.set{MANIFEST_SUFFIX}"))
    assert manifest is not None
    assert [entry["path"] for entry in manifest["inputs"]] == [str(p) for p in inputs]
    complete = outputs_of(out)
    again = run_cli(*args, "--resume", cwd=tmp_path)
    assert "skipped 2 inputs already converted (manifests match)" in again.stderr
    os.utime(inputs[1])  # touched: the set is redone
    redone = run_cli(*args, "--resume", cwd=tmp_path)
    assert redone.returncode == 0 and "skipped" not in redone.stderr
    assert outputs_of(out) == complete


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["-o", "-"], "--resume needs an output directory"),
        (["-o", "kafka://127.0.0.1:9"], "--resume needs an output directory"),
        (["-o", "OUT", "--force"], "--resume and --force together"),
    ],
)
def test_resume_usage_errors(tmp_path: Path, extra: list[str], words: str) -> None:
    capture = tmp_path / "a.pcap"
    write_capture(str(capture), 10, seed=1)
    result = run_cli(str(capture), "--resume", *extra, cwd=tmp_path)
    assert result.returncode == 1
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "OUT").exists()


def test_standard_input_gets_no_manifest_and_cannot_resume(tmp_path: Path) -> None:
    capture = tmp_path / "a.pcap"
    write_capture(str(capture), 300, seed=2)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline", "convert", "-", "-o", str(out), "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with capture.open("rb") as stdin:
        done = subprocess.run(command, stdin=stdin, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert os.listdir(out) == ["stdin.ndjson.zst"]  # nothing to identify it by again
    with capture.open("rb") as stdin:
        again = subprocess.run(
            [*command, "--resume"], stdin=stdin, env=env, capture_output=True, timeout=60
        )
    assert again.returncode == 1 and b"--resume reads files" in again.stderr


def _files(out: Path) -> list[str]:
    return os.listdir(out) if out.is_dir() else []


def _count(suffix: str) -> Callable[[list[str]], int]:
    return lambda names: sum(name.endswith(suffix) for name in names)


# Where the main process is killed: a condition on the output directory's listing.
KILL_POINTS: dict[str, Callable[[list[str]], bool]] = {
    "first .partial": lambda names: _count(".partial")(names) >= 1,
    "first rotated part done": lambda names: _count(".ndjson.zst")(names) >= 1,
    "first manifest": lambda names: _count(MANIFEST_SUFFIX)(names) >= 1,
    "second input's second part": lambda names: "part1.pcap.00001.ndjson.zst.partial" in names,
    "two manifests": lambda names: _count(MANIFEST_SUFFIX)(names) >= 2,
}


def _killed_run(args: list[str], out: Path, at: Callable[[list[str]], bool], cwd: Path) -> bool:
    """Start the command, SIGKILL its main process once `at` holds for the output directory;
    check on the way that every manifest seen vouches only for files present. False if the
    run ended before the kill point was seen (a loaded machine starved this poller)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            names = _files(out)
            if at(names):
                break
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        killed = process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for name in _files(out):
        if name.endswith(MANIFEST_SUFFIX):
            manifest = read_manifest(str(out / name))
            assert manifest is not None  # whole: written atomically
            for output in manifest["outputs"]:
                assert (out / output["name"]).is_file(), f"{name} vouches for a missing file"
    return killed


@pytest.mark.parametrize("workers", [["-w", "0"], ["-w", "2", "--ordered"]], ids=["w0", "w2"])
def test_sigkill_of_the_main_process_then_resume_equals_a_whole_run(
    tmp_path: Path, kill_inputs: list[Path], workers: list[str]
) -> None:
    common = [*map(str, kill_inputs), *workers, "--rotate-size", ROTATE, "-q"]
    whole = tmp_path / "whole"
    assert run_cli(*common, "-o", str(whole), cwd=tmp_path).returncode == 0
    expected = outputs_of(whole)
    assert len(expected) > 3 * KILL_INPUTS  # rotated: several parts per input
    for point, at in KILL_POINTS.items():
        out = tmp_path / point.replace(" ", "_").replace("'", "")
        for _attempt in range(5):
            if _killed_run([*common, "-o", str(out)], out, at, tmp_path):
                break
            shutil.rmtree(out)
        else:
            pytest.fail(f"{point}: the run ended before the kill point, 5 times")
        left = outputs_of(out)
        assert left != expected, f"{point}: nothing was left to resume"
        resumed = run_cli(*common, "-o", str(out), "--resume", cwd=tmp_path)
        assert resumed.returncode == 0, f"{point}: {resumed.stderr}"
        assert outputs_of(out) == expected, f"killed at {point}, then resumed"
        shutil.rmtree(out)
