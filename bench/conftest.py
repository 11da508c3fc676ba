"""Benchmark workloads: deterministic generated captures, cached between runs.

Sizes: ``PCAP_INGEST_BENCH_PACKETS`` (default 1,000,000, the figure RESULTS.md quotes), or
``PCAP_INGEST_BENCH_QUICK=1`` for the CI smoke run (20,000 packets, one round each), which
checks that every benchmark still runs and reports, and asserts nothing about time.
Captures are written once by scripts/gen_capture.py's generator into bench/.cache/.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import pytest

from pipeline.gen.capture_mix import write_capture

CACHE = Path(__file__).resolve().parent / ".cache"
QUICK = os.environ.get("PCAP_INGEST_BENCH_QUICK") == "1"
PACKETS = 20_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_PACKETS", "1000000"))
SEED = 1
# Rounds per benchmark: a noisy 2-core machine wants a median of several.
ROUNDS = 1 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_ROUNDS", "3"))


def workload(packets: int, seed: int = SEED, fmt: str = "pcap") -> Path:
    """The generated 'mix' capture of `packets` packets, made once and cached."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"mix-{packets}-s{seed}.{fmt}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write_capture(str(tmp), packets, seed, fmt=fmt)
        tmp.replace(path)
    return path


@pytest.fixture(scope="session")
def mix_capture() -> Path:
    return workload(PACKETS)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}"


def run_pedantic(benchmark: Any, fn: Any, packets: int) -> None:
    """Run `fn` ROUNDS times and record packets/s of the median round in extra_info."""
    benchmark.extra_info["packets"] = packets
    benchmark.extra_info["machine"] = machine_line()
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["packets_per_second"] = round(packets / stats.stats.median)
