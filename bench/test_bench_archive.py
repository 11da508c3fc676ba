"""An archive of 20 captures: converted on this machine, through a Dask cluster, and resumed.

Workload: 20 generated mix captures (bench/conftest.py `workload`, seeds 1..20) of
``PCAP_INGEST_BENCH_ARCHIVE_PACKETS`` packets each (50,000: 1M packets in all; quick mode:
1,000 each), default datasets (packet, anomaly, flow), zstd files.

- local, ``-w 0``: one process, the files one after another;
- local, ``-w 2``: the engine (a reader and two workers) on each file in turn;
- dask: a `distributed.LocalCluster` of two single-threaded worker processes, one task per
  file (`pipeline.executors.dask`), the client in this process;
- resume: ``--resume`` over the converted archive, every manifest matching: the cost of the
  checks (inputs and outputs hashed), in packets/s of the archive skipped.

Run: .venv/bin/pytest bench/test_bench_archive.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import QUICK, ROUNDS, record_throughput, workload
from pipeline.convert import convert

ARCHIVE_FILES = 20
ARCHIVE_PACKETS = (
    1_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_ARCHIVE_PACKETS", "50000"))
)


@pytest.fixture(scope="module")
def archive() -> list[str]:
    return [str(workload(ARCHIVE_PACKETS, seed=seed)) for seed in range(1, ARCHIVE_FILES + 1)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as running:
        yield running


def _record(benchmark: Any, archive: list[str], run: Any) -> None:
    total = ARCHIVE_FILES * ARCHIVE_PACKETS
    assert run.frames == total or len(run.skipped) == ARCHIVE_FILES
    nbytes = sum(os.path.getsize(path) for path in archive)
    events = run.events if run.files else None
    record_throughput(benchmark, total, nbytes, "capture files", events)
    benchmark.extra_info["files"] = ARCHIVE_FILES


@pytest.mark.parametrize("workers", [0, 2])
def test_archive_local(benchmark: Any, archive: list[str], tmp_path: Path, workers: int) -> None:
    runs: list[Any] = []
    benchmark.pedantic(
        lambda: runs.append(convert(archive, str(tmp_path), workers=workers, force=True)),
        rounds=ROUNDS,
        iterations=1,
    )
    _record(benchmark, archive, runs[-1])


def test_archive_dask(benchmark: Any, archive: list[str], tmp_path: Path, cluster: Any) -> None:
    runs: list[Any] = []
    benchmark.pedantic(
        lambda: runs.append(
            convert(
                archive,
                str(tmp_path),
                force=True,
                executor="dask",
                scheduler=cluster.scheduler_address,
            )
        ),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=0 if QUICK else 1,  # the workers import the pipeline on their first task
    )
    assert all(f.status == "ok" for f in runs[-1].files)
    _record(benchmark, archive, runs[-1])
    benchmark.extra_info["dask_workers"] = 2


def test_archive_resume_all_matching(benchmark: Any, archive: list[str], tmp_path: Path) -> None:
    convert(archive, str(tmp_path), workers=0)
    runs: list[Any] = []
    benchmark.pedantic(
        lambda: runs.append(convert(archive, str(tmp_path), workers=0, resume=True)),
        rounds=ROUNDS,
        iterations=1,
    )
    assert len(runs[-1].skipped) == ARCHIVE_FILES and not runs[-1].files
    _record(benchmark, archive, runs[-1])
