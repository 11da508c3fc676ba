"""The compiled flow table (scripts/build_native.py, mypyc) against its own source.

The suite runs on whichever table `pipeline.flows` picked: in CI the compiled one
(scripts/test.sh insists). Here the pure Python one runs too, on the same inputs, and the
two must write the same bytes; the flow table's own tests run on the source; and a compiled
module older than its source must never be used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.flows
from pipeline.gen import write_capture
from tests.conftest import REFERENCE_CAPTURES, REPO

pytestmark = pytest.mark.skipif(
    not pipeline.flows.COMPILED_TABLE,
    reason="the compiled flow table is not built here (scripts/build_native.py)",
)

EVERY_EXTRACTOR = "packet,anomaly,flow,dns,http,tls,stats"


def _env(pure: bool) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PCAP_INGEST_PURE_PYTHON": "1" if pure else "0"}


def _convert(inputs: Path, out: Path, pure: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", str(inputs), "-o", str(out), "-w", "0",
         "--extract", EVERY_EXTRACTOR, "--flow-stats", "-q"],
        env=_env(pure), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 2), result.stderr  # 2: a malformed capture read partly
    assert "compiled flow table" not in result.stderr


def _outputs(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(directory.iterdir())
        if not p.name.endswith(".manifest.json")  # times and the tool's own state
    }


def test_compiled_and_pure_tables_write_the_same_events(tmp_path: Path) -> None:
    """Every extractor, flow statistics on, -w 0: generated workloads that exercise the
    table's paths (the mix; out-of-order holes and reassembly caps; a SYN flood) and every
    reference capture when ../shared is here."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_capture(str(inputs / "mix.pcap"), 20_000, seed=11)
    write_capture(str(inputs / "ooo.pcap"), 5_000, seed=12, profile="ooo-holes")
    write_capture(str(inputs / "syn.pcap"), 5_000, seed=13, profile="syn-flood")
    for capture in REFERENCE_CAPTURES:
        shutil.copy(capture, inputs / capture.name)
    outputs = {}
    for pure in (False, True):  # and each mode is the one asked for:
        probe = subprocess.run(
            [sys.executable, "-c", "import pipeline.flows as f; print(f.COMPILED_TABLE)"],
            env=_env(pure), capture_output=True, text=True,
        )  # fmt: skip
        assert probe.stdout.strip() == str(not pure)
        out = tmp_path / ("pure" if pure else "compiled")
        _convert(inputs, out, pure)
        outputs[pure] = _outputs(out)
    assert len(outputs[False]) >= 3
    assert outputs[True] == outputs[False]


def test_the_flow_table_tests_pass_on_the_source() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_flow_table.py", "tests/test_ecs_lines.py"],
        cwd=REPO, env=_env(pure=True), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:]


def test_a_compiled_table_older_than_its_source_is_not_used(tmp_path: Path) -> None:
    """A copy of the package with the compiled module beside an edited table.py: the edit
    is what runs (with a warning), not the stale extension."""
    copy = tmp_path / "pipeline"
    shutil.copytree(REPO / "pipeline", copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "import pipeline.flows as f, pipeline.flows.table as t; print(f.COMPILED_TABLE, t.__file__)"
    )

    def run() -> subprocess.CompletedProcess[str]:
        env = {**_env(pure=False), "PYTHONPATH": str(tmp_path)}
        return subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path
        )

    fresh = run()
    assert fresh.returncode == 0 and fresh.stdout.split()[0] == "True", fresh.stderr
    with (copy / "flows" / "table.py").open("a") as f:
        f.write("\n# an edit after the build\n")
    stale = run()
    assert stale.returncode == 0, stale.stderr
    used, path = stale.stdout.split()
    assert used == "False" and path.endswith("table.py")
    assert "older than pipeline/flows/table.py" in stale.stderr


def test_a_failed_build_says_so_and_leaves_the_package_working(tmp_path: Path) -> None:
    """No working C compiler (CC=false): build_native.py reports it in one line, exits 1,
    and the package it was building for still imports (on the source, in a copy)."""
    shutil.copytree(
        REPO / "pipeline",
        tmp_path / "pipeline",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "build_native.py", tmp_path / "scripts")
    env = {**_env(pure=False), "PYTHONPATH": str(tmp_path), "CC": "false"}
    build = subprocess.run(
        [sys.executable, str(tmp_path / "scripts" / "build_native.py"), "--force"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 1, build.stderr
    assert "could not compile the flow table" in build.stderr
    assert not list((tmp_path / "pipeline" / "flows").glob("*.so"))
    probe = subprocess.run(
        [sys.executable, "-c", "import pipeline.flows as f; print(f.COMPILED_TABLE)"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert probe.stdout.strip() == "False", probe.stderr
