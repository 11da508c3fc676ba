"""`convert --executor dask` on a real `distributed.LocalCluster` (two worker processes): the
outputs equal a local run's byte for byte; a corrupt input is reported per input while the
others convert; a task that raises is retried, then reported; resume through the cluster.

Runtime: ~8-10 s on 2 cores (the cluster starts in ~2 s and is shared by the module).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline import convert
from pipeline.gen import write_capture
from pipeline.manifest import MANIFEST_SUFFIX, read_manifest
from pipeline.stats import STATUS_FAILED, STATUS_OK, STATUS_PARTIAL

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

REPO = Path(__file__).resolve().parents[1]
INPUTS = 6
PACKETS = 4000


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as running:
        yield running


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("captures")
    paths = []
    for i in range(INPUTS):
        path = base / f"cap{i}.pcap"
        write_capture(str(path), PACKETS, seed=200 + i)
        paths.append(path)
    return paths


def data_files(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if not p.name.endswith(MANIFEST_SUFFIX)
    }


def test_dask_outputs_equal_the_local_run(
    tmp_path: Path, inputs: list[Path], cluster: object
) -> None:
    local = convert([str(p) for p in inputs], str(tmp_path / "local"), workers=0)
    remote = convert(
        [str(p) for p in inputs],
        str(tmp_path / "dask"),
        executor="dask",
        scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
    )
    expected = data_files(tmp_path / "local")
    assert len(expected) == INPUTS
    assert data_files(tmp_path / "dask") == expected
    assert [f.path for f in remote.files] == [str(p) for p in inputs]
    assert [f.frames for f in remote.files] == [f.frames for f in local.files]
    assert [dict(f.events) for f in remote.files] == [dict(f.events) for f in local.files]
    assert all(f.status == STATUS_OK for f in remote.files)
    # Each output has its manifest, returned by its task and written beside it.
    for path in inputs:
        manifest = read_manifest(str(tmp_path / "dask" / f"{path.name}{MANIFEST_SUFFIX}"))
        assert manifest is not None and manifest["counts"]["frames"] == PACKETS
    # Resume through the cluster: every task finds its manifest matching.
    again = convert(
        [str(p) for p in inputs],
        str(tmp_path / "dask"),
        executor="dask",
        scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
        resume=True,
    )
    assert again.files == [] and len(again.skipped) == INPUTS
    assert data_files(tmp_path / "dask") == expected


def test_the_command_line_reports_each_input_and_a_corrupt_one(
    tmp_path: Path, inputs: list[Path], cluster: object
) -> None:
    corrupt = tmp_path / "corrupt.pcap"
    whole = inputs[0].read_bytes()
    # Cut in the middle of a record, then garbage: read as far as it goes, reported partial.
    corrupt.write_bytes(whole[: len(whole) // 3] + b"\xff" * 5000)
    args = [*map(str, inputs[:3]), str(corrupt), "-o", str(tmp_path / "out")]
    stats_json = tmp_path / "stats.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", *args, "--executor", "dask",
         "--scheduler", cluster.scheduler_address,  # type: ignore[attr-defined]
         "--progress", "tty", "--stats-json", str(stats_json)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr  # some input not read whole
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all("/4]" in line for line in progress)
    assert any("corrupt.pcap: partial" in line for line in progress)
    files = {Path(f["path"]).name: f for f in orjson.loads(stats_json.read_bytes())["files"]}
    assert files["corrupt.pcap"]["status"] == STATUS_PARTIAL
    assert 0 < files["corrupt.pcap"]["frames"] < PACKETS
    assert [files[p.name]["status"] for p in inputs[:3]] == [STATUS_OK] * 3
    local = tmp_path / "local"
    assert convert([str(p) for p in inputs[:3]], str(local), workers=0).complete
    converted = data_files(tmp_path / "out")
    assert {k: v for k, v in converted.items() if not k.startswith("corrupt")} == data_files(local)
    # The same invocation without --resume refuses the existing outputs, as locally.
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", *args, "--executor", "dask",
         "--scheduler", cluster.scheduler_address],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert refused.returncode == 1 and "output exists" in refused.stderr


def test_a_task_that_raises_is_retried_then_reported_and_the_others_convert(
    tmp_path: Path, inputs: list[Path], cluster: object
) -> None:
    out = tmp_path / "out"
    # A directory where the output's .partial goes: every attempt of that task raises.
    (out / f"{inputs[1].name}.ndjson.zst.partial").mkdir(parents=True)
    run = convert(
        [str(p) for p in inputs[:3]],
        str(out),
        executor="dask",
        scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
    )
    statuses = [f.status for f in run.files]
    assert statuses == [STATUS_OK, STATUS_FAILED, STATUS_OK]
    assert "dask task failed after 3 attempts" in (run.files[1].error or "")
    assert "IsADirectoryError" in (run.files[1].error or "")
    assert not run.complete
    assert (out / f"{inputs[0].name}.ndjson.zst").is_file()
    assert (out / f"{inputs[2].name}.ndjson.zst").is_file()
    assert not (out / f"{inputs[1].name}{MANIFEST_SUFFIX}").exists()


def test_a_capture_set_is_one_task(tmp_path: Path, inputs: list[Path], cluster: object) -> None:
    paths = [str(p) for p in inputs[:3]]
    convert(paths, str(tmp_path / "local"), one_capture=True)
    run = convert(
        paths,
        str(tmp_path / "dask"),
        one_capture=True,
        executor="dask",
        scheduler=cluster.scheduler_address,  # type: ignore[attr-defined]
    )
    assert [f.path for f in run.files] == paths
    assert data_files(tmp_path / "dask") == data_files(tmp_path / "local")
    assert list(data_files(tmp_path / "dask")) == ["cap0.pcap.set.ndjson.zst"]


def test_tasks_keep_the_clients_decompression_limits(
    tmp_path: Path, inputs: list[Path], cluster: object
) -> None:
    """--max-decompressed and --max-decompression-ratio reach the tasks (they run in the
    cluster's processes, outside the client's limits block): a gzip input past the cap
    stops there, partial, on the cluster as locally."""
    import gzip

    compressed = tmp_path / "cap.pcap.gz"
    compressed.write_bytes(gzip.compress(inputs[0].read_bytes(), compresslevel=1))
    cap = inputs[0].stat().st_size // 4
    runs = {
        where: convert(
            [str(compressed)], str(tmp_path / where), max_decompressed=cap, **kwargs
        ).files[0]
        for where, kwargs in {
            "local": {"workers": 0},
            "dask": {"executor": "dask", "scheduler": cluster.scheduler_address},  # type: ignore[attr-defined]
        }.items()
    }
    assert runs["local"].status == runs["dask"].status == STATUS_PARTIAL
    assert 0 < runs["dask"].frames == runs["local"].frames < PACKETS
    assert data_files(tmp_path / "dask") == data_files(tmp_path / "local")
