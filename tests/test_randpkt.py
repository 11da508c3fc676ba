"""Fuzzing with Wireshark's `randpkt`: one capture of random packets per packet type it knows.

randpkt (Debian package ``tshark``) writes classic pcap files of random packets built on a
protocol's headers (``-t dns``: Ethernet/IPv4/UDP port 53 and random bytes behind it; ``-t
fddi``: a link type we do not decode). It has no seed option — it seeds from the clock — so
each run draws new captures: this is a sampling fuzzer, not a fixed corpus. When a file
breaks the promise the failure names it and keeps a copy (in ``PCAP_INGEST_FUZZ_SAVE`` when
set, else beside the test's temporary directory) to be added under ``tests/fuzz_cases/``,
which `tests/test_fuzz.py::test_fuzz_case` replays on every run.

The promise, checked through the CLI with ``-w 0`` and with ``-w 2``: exit code 0 or 2, no
traceback, and for every file ``frames == decoded + sum(anomalies)`` in ``--stats-json``,
within a time bound. About 3 s on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RANDPKT = shutil.which("randpkt")
needs_randpkt = pytest.mark.skipif(
    RANDPKT is None, reason="randpkt not installed (Debian package tshark; .ci/run installs it)"
)
SAVE_DIR = os.environ.get("PCAP_INGEST_FUZZ_SAVE")

PACKETS_PER_TYPE = 500
# Every dataset, so the DNS, TLS and HTTP extractors see the random payloads too.
EXTRACT = "packet,anomaly,flow,stats,dns,tls,http"
# A whole conversion of ~11,500 random packets takes about a second; the bound is generous.
CLI_SECONDS = 120


def randpkt_types() -> list[str]:
    """The packet types `randpkt -h` lists (its "Types:" section, one per line)."""
    if RANDPKT is None:
        return []
    proc = subprocess.run([RANDPKT, "-h"], capture_output=True, text=True, timeout=30)
    text = proc.stdout + proc.stderr
    lines = text.split("Types:", 1)[1].splitlines() if "Types:" in text else []
    return [line.split()[0] for line in lines if line.startswith("\t") and line.strip()]


TYPES = randpkt_types()


@pytest.fixture(scope="module")
def randpkt_captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One fresh capture of PACKETS_PER_TYPE random packets per randpkt type."""
    if RANDPKT is None:
        pytest.skip("randpkt not installed (Debian package tshark; .ci/run installs it)")
    work = tmp_path_factory.mktemp("randpkt")
    paths = []
    for kind in TYPES:
        path = work / f"randpkt-{kind}.pcap"
        proc = subprocess.run(
            [RANDPKT, "-c", str(PACKETS_PER_TYPE), "-t", kind, str(path)],
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, (kind, proc.stderr)
        paths.append(path)
    return paths


def keep(path: Path) -> Path:
    """A failing capture copied where it survives the run (see the module docstring)."""
    where = Path(SAVE_DIR) if SAVE_DIR else path.parent.parent / "randpkt-failures"
    where.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(path, where / path.name))


def file_problems(stats_json: Path, paths: list[Path]) -> dict[str, str]:
    """Input path → why its `--stats-json` entry breaks the promise."""
    files = {f["path"]: f for f in json.loads(stats_json.read_text())["files"]}
    problems = {}
    for path in paths:
        entry = files.get(str(path))
        if entry is None:
            problems[str(path)] = "missing from --stats-json"
        elif entry["status"] not in ("ok", "partial"):
            problems[str(path)] = f"status {entry['status']} ({entry['error']})"
        elif entry["frames"] != entry["decoded"] + sum(entry["anomalies"].values()):
            problems[str(path)] = (
                f"unaccounted: frames={entry['frames']} decoded={entry['decoded']} "
                f"anomalies={entry['anomalies']}"
            )
    return problems


@needs_randpkt
def test_randpkt_lists_types() -> None:
    """The help parser found the types (a changed help text must not skip everything)."""
    assert len(TYPES) >= 15, TYPES
    assert {"dns", "tcp", "ip", "ipv6", "eth"} <= set(TYPES)


@needs_randpkt
@pytest.mark.parametrize("workers", ["0", "2"])
def test_randpkt_captures_convert(
    randpkt_captures: list[Path], workers: str, tmp_path: Path
) -> None:
    stats_json = tmp_path / "stats.json"
    command = [sys.executable, "-m", "pipeline", "convert", *map(str, randpkt_captures)]
    command += ["-o", str(tmp_path / "out"), "-q", "-w", workers, "--extract", EXTRACT]
    proc = subprocess.run(
        [*command, "--stats-json", str(stats_json)], capture_output=True, timeout=CLI_SECONDS
    )
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode not in (0, 2) or "Traceback" in stderr:
        kept = [keep(p) for p in randpkt_captures]
        pytest.fail(f"exit {proc.returncode}, captures kept in {kept[0].parent}:\n{stderr[-3000:]}")
    problems = file_problems(stats_json, randpkt_captures)
    if problems:
        kept = {str(keep(Path(p))): why for p, why in problems.items()}
        pytest.fail(f"{len(problems)} randpkt captures broke (kept): {kept}")
    totals = json.loads(stats_json.read_text())["totals"]
    assert totals["files"] == len(TYPES)
    assert totals["frames"] == len(TYPES) * PACKETS_PER_TYPE
