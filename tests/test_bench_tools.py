"""The benchmark tooling: --compare's verdicts, the RESULTS.md rewrite, and scripts/bench.sh.

Crafted runs check the comparison's arithmetic (identical runs pass, noise passes, one slowed
stage fails and is named, a machine-wide slowdown cancels out in ratio mode). Then a real one:
scripts/bench.sh runs one stage (5,000 packets) beside the reference peer three times — as a
baseline, again unchanged, and with PCAP_INGEST_BENCH_INJECT making the stage 3x slower — and
--compare must pass the second and fail the third, naming the stage.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_compare  # noqa: E402 - scripts/ is not a package
import bench_report  # noqa: E402

REF = "test_peer_naive_dpkt_ndjson_zstd"
STAGES = {
    "test_bench_convert.py::test_framing": 1_100_000,
    "test_bench_stages.py::test_stage_decode": 800_000,
    "test_bench_stages.py::test_stage_serialisation": 350_000,
    "test_bench_stages.py::test_stage_compression": 1_200_000,
    "test_bench_convert.py::test_end_to_end_single_process": 170_000,
    "test_bench_engine.py::test_end_to_end_workers[1]": 120_000,
    "test_bench_engine.py::test_end_to_end_workers[2]": 200_000,
}
PACKETS = 1_000_000


def _bench(name: str, pps: float, packets: int = PACKETS, **info: Any) -> dict[str, Any]:
    file, test = name.split("::")
    median = packets / pps
    return {
        "name": test,
        "fullname": f"bench/{file}::{test}",
        "stats": {"median": median, "rounds": 3},
        "extra_info": {"packets": packets, "packets_per_second": round(pps), **info},
    }


def make_run(
    speeds: dict[str, float] | None = None,
    ref_pps: float | None = 70_000,
    commit: str = "a" * 40,
) -> dict[str, Any]:
    benches = [_bench(name, pps) for name, pps in (speeds or STAGES).items()]
    if ref_pps is not None:
        benches.insert(0, _bench(f"test_bench_convert.py::{REF}", ref_pps))
    return {
        "datetime": "2026-11-26T12:00:00",
        "commit_info": {"id": commit, "dirty": False},
        "machine_info": {"python_version": "3.11.7"},
        "pcap_ingest": {"commit": commit, "machine": "2 CPUs, test", "python": "3.11.7"},
        "benchmarks": benches,
    }


def scaled(factors: dict[str, float], ref_factor: float = 1.0) -> dict[str, Any]:
    """A run whose benchmarks' packets/s are the baseline's times a factor each."""
    speeds = {name: pps * factors.get(name, 1.0) for name, pps in STAGES.items()}
    return make_run(speeds, 70_000 * ref_factor)


# -- compare on crafted runs -----------------------------------------------------------------


def test_identical_runs_pass() -> None:
    base = make_run()
    result = bench_compare.compare(base, copy.deepcopy(base))
    assert result.mode == "ratio" and not result.regressed
    assert all(row.change_pct == 0 for row in result.rows if row.change_pct is not None)


def test_small_noise_passes() -> None:
    rng = random.Random(7)
    noisy = {name: 1 + rng.uniform(-0.05, 0.05) for name in STAGES}
    result = bench_compare.compare(make_run(), scaled(noisy, ref_factor=1.03))
    assert not result.regressed


def test_one_slow_stage_fails_and_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    slow = "test_bench_stages.py::test_stage_serialisation"
    base, current = make_run(), scaled({slow: 1 / 3})
    result = bench_compare.compare(base, current)
    assert [row.name for row in result.regressed] == [slow]
    (row,) = result.regressed
    assert row.change_pct == pytest.approx(-66.7, abs=0.1)
    # Through the command line: exit 1 and a table naming the stage.
    paths = []
    for name, run in (("base", base), ("current", current)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(run))
    assert bench_compare.main([str(p) for p in paths]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "FAIL: 1 of 7 benchmarks" in out and slow in out
    stage_line = next(line for line in out.splitlines() if line.startswith(slow))
    assert "-66.7%" in stage_line


def test_threshold_decides() -> None:
    slower = scaled({"test_bench_stages.py::test_stage_decode": 0.88})  # -12%
    assert bench_compare.compare(make_run(), slower, threshold_pct=10).regressed
    assert not bench_compare.compare(make_run(), slower, threshold_pct=15).regressed


def test_machine_slowdown_cancels_in_ratio_mode_only() -> None:
    """Everything 30% slower, the reference too: a slower machine, not a regression."""
    slower_machine = scaled(dict.fromkeys(STAGES, 0.7), ref_factor=0.7)
    assert not bench_compare.compare(make_run(), slower_machine).regressed
    absolute = bench_compare.compare(make_run(), slower_machine, absolute=True)
    assert absolute.mode == "absolute" and len(absolute.regressed) == len(STAGES)


def test_absolute_mode_without_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    base, current = make_run(ref_pps=None), make_run(ref_pps=None)
    result = bench_compare.compare(base, current)
    assert result.mode == "absolute" and not result.regressed
    assert "absolute median packets/s" in bench_compare.render(result, base, current)


def test_peers_and_size_changes_are_not_gated() -> None:
    base = make_run()
    current = scaled({}, ref_factor=0.5)  # the reference itself halves: every ratio doubles
    current["benchmarks"].append(_bench("test_bench_convert.py::test_peer_tcpdump", 1))
    base["benchmarks"].append(_bench("test_bench_convert.py::test_peer_tcpdump", 3_000_000))
    current["benchmarks"].append(_bench("test_bench_stages.py::test_stage_mapping", 1, 5_000))
    base["benchmarks"].append(_bench("test_bench_stages.py::test_stage_mapping", 9e5))
    result = bench_compare.compare(base, current)
    assert not result.regressed
    verdicts = {row.name: row.verdict for row in result.rows}
    assert verdicts["test_bench_convert.py::test_peer_tcpdump"].startswith("not gated")
    assert verdicts[f"test_bench_convert.py::{REF}"].startswith("reference")
    assert verdicts["test_bench_stages.py::test_stage_mapping"].startswith("not comparable")


def test_nothing_to_compare_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(make_run({"test_bench_stages.py::test_stage_decode": 1e6}, None)))
    b.write_text(json.dumps(make_run({"test_bench_stages.py::test_stage_mapping": 1e6}, None)))
    assert bench_compare.main([str(a), str(b)]) == 2


# -- the RESULTS.md rewrite ------------------------------------------------------------------

NARRATIVE_TOP = "# Benchmark results\n\nHand-written intro.\n\n## Latest run (scripts/bench.sh)\n\n"
NARRATIVE_BOTTOM = "\n\n## Flows (issue #4)\n\nHand-written analysis, | a table |, ![fig](x.png)\n"


def test_rewrite_between_markers_keeps_the_narrative() -> None:
    text = f"{NARRATIVE_TOP}{bench_report.BEGIN}\nold tables\n{bench_report.END}{NARRATIVE_BOTTOM}"
    new = bench_report.rewrite_results(text, "new tables\n")
    assert (
        new
        == f"{NARRATIVE_TOP}{bench_report.BEGIN}\nnew tables\n{bench_report.END}{NARRATIVE_BOTTOM}"
    )
    # Twice gives the same file: nothing accumulates.
    assert bench_report.rewrite_results(new, "new tables") == new


def test_rewrite_without_markers_appends_the_section() -> None:
    text = "# Benchmark results\n\nnarrative\n"
    new = bench_report.rewrite_results(text, "tables")
    assert new.startswith(text.rstrip())
    assert new.endswith(
        f"{bench_report.SECTION}\n\n{bench_report.BEGIN}\ntables\n{bench_report.END}\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        f"a {bench_report.BEGIN} b",
        f"a {bench_report.END} b {bench_report.BEGIN}",
        f"{bench_report.BEGIN} {bench_report.END} {bench_report.BEGIN} {bench_report.END}",
    ],
)
def test_broken_markers_refuse(text: str) -> None:
    with pytest.raises(ValueError, match="markers"):
        bench_report.rewrite_results(text, "tables")


def test_the_real_results_file_survives_a_rewrite() -> None:
    """bench/RESULTS.md has its markers, and everything outside them is kept byte for byte."""
    text = (REPO / "bench" / "RESULTS.md").read_text()
    start, end = text.index(bench_report.BEGIN), text.index(bench_report.END)
    new = bench_report.rewrite_results(text, "GENERATED")
    assert new[:start] == text[:start]
    assert new.endswith(text[end + len(bench_report.END) :])
    assert "GENERATED" in new
    for heading in ("## Single process (issue #2)", "## Flows (issue #4)", "(profile)"):
        assert heading in new


def test_report_writes_tables_and_section(tmp_path: Path) -> None:
    run = make_run()
    run["benchmarks"][-1]["extra_info"]["peak_private_mib"] = 300.0
    result = tmp_path / "run.json"
    result.write_text(json.dumps(run))
    md = tmp_path / "RESULTS.md"
    md.write_text(f"{NARRATIVE_TOP}{bench_report.BEGIN}\nold\n{bench_report.END}{NARRATIVE_BOTTOM}")
    assert bench_report.main([str(result), "--results-md", str(md)]) == 0
    text = md.read_text()
    assert text.startswith(NARRATIVE_TOP) and text.endswith(NARRATIVE_BOTTOM)
    assert "| L2–L4 decode | `decode_packet` | 800,000 |" in text
    assert "| HTTP extraction | not in this run |" in text  # a stage the run lacks
    assert "| 2 | 200,000 | 1.67 | 2.86 | 300 MiB |" in text


# -- a real injected slowdown through scripts/bench.sh ---------------------------------------

ONE_STAGE = "test_stage_serialisation or (test_peer_naive_dpkt_ndjson_zstd and not 2m)"


def _bench_sh(
    tmp_path: Path, name: str, *extra: str, inject: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCAP_INGEST_BENCH_")}
    # 5 rounds of 5,000 packets: a stable median in about a second.
    env.update(PCAP_INGEST_BENCH_ROUNDS="5", PCAP_INGEST_BENCH_STAGE_PACKETS="5000")
    if inject:
        env["PCAP_INGEST_BENCH_INJECT"] = inject
    out = tmp_path / f"{name}.json"
    args = ["bash", str(REPO / "scripts" / "bench.sh"), "--quick", "-k", ONE_STAGE]
    args += ["--out", str(out), *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_bench_sh_compare_catches_an_injected_slowdown(tmp_path: Path) -> None:
    base = _bench_sh(tmp_path, "base")
    assert base.returncode == 0, base.stdout + base.stderr
    saved = json.loads((tmp_path / "base.json").read_text())
    assert saved["pcap_ingest"]["commit"] and saved["pcap_ingest"]["machine"]
    assert saved["machine_info"]["python_version"] and saved["commit_info"]
    baseline = str(tmp_path / "base.json")
    # A threshold far above this machine's noise on second-long runs (a busy CI box can slow
    # one run by half), far below the injected 10x (-90%).
    compare = ("--compare", baseline, "--threshold", "70")

    same = _bench_sh(tmp_path, "same", *compare)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "PASS" in same.stdout and "(ratio)" in same.stdout

    slow = _bench_sh(tmp_path, "slow", *compare, inject="test_stage_serialisation:10")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    line = next(x for x in slow.stdout.splitlines() if "::test_stage_serialisation" in x)
    assert "REGRESSED" in line
    assert "FAIL: 1 of 1 benchmarks" in slow.stdout
    injected = json.loads((tmp_path / "slow.json").read_text())
    (stage,) = [b for b in injected["benchmarks"] if b["name"] == "test_stage_serialisation"]
    assert stage["extra_info"]["injected_slowdown"] == 10.0


def test_bench_sh_measures_a_capture_the_user_names(tmp_path: Path) -> None:
    """--capture: the single-process benchmarks run on the user's file, counted as it is."""
    from pipeline.gen.capture_mix import write_capture

    capture = tmp_path / "mine.pcapng"
    write_capture(str(capture), 777, seed=4, fmt="pcapng")
    out = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCAP_INGEST_BENCH_")}
    args = ["bash", str(REPO / "scripts" / "bench.sh"), "--quick", "-k", "test_framing"]
    args += ["--capture", str(capture), "--out", str(out)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (framing,) = [
        b for b in json.loads(out.read_text())["benchmarks"] if b["name"] == "test_framing"
    ]
    assert framing["extra_info"]["packets"] == 777
    missing = subprocess.run(
        [*args[:-4], "--capture", str(tmp_path / "nope.pcap")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "no capture file" in missing.stderr


# --- scripts/cpu_per_process.py ------------------------------------------------------------
def test_cpu_per_process_counts_each_process_of_the_tree() -> None:
    """A parent that starts a busy child: a line for each, the child's CPU counted, the
    command's exit code passed on."""
    busy = (
        "import subprocess, sys; "
        "subprocess.run([sys.executable, '-c', 'sum(range(30_000_000))']); sys.exit(3)"
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cpu_per_process.py"), "--", sys.executable,
         "-c", busy],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    per_process = [line for line in lines if " s CPU  pid " in line]
    assert len(per_process) == 2 and "coordinator" in per_process[0], lines
    child_cpu = float(per_process[1].split()[0])
    assert child_cpu > 0.1, lines  # the child summed 30M numbers: it was sampled busy
    assert lines[-1].endswith("exit 3") and "s CPU in all" in lines[-1]


def test_cpu_per_process_without_a_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cpu_per_process.py")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("usage:")
