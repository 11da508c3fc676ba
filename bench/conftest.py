"""Benchmark workloads: deterministic generated captures, cached between runs.

Sizes: ``PCAP_INGEST_BENCH_PACKETS`` (default 1,000,000, the figure RESULTS.md quotes), or
``PCAP_INGEST_BENCH_QUICK=1`` for the CI smoke run (20,000 packets, one round each), which
checks that every benchmark still runs and reports, and asserts nothing about time.
Captures are written once by scripts/gen_capture.py's generator into bench/.cache/, one
file per (profile, packets, seed, flows, format).

Also here, for every benchmark file:

- `record_throughput`: packets/s, MB/s (and events/s) of the median round into `extra_info`,
  the figures scripts/bench_report.py and scripts/bench_compare.py read.
- ``PCAP_INGEST_BENCH_PEERS=1`` (scripts/bench.sh --peers) runs the external peers (tcpdump,
  tshark), which are slow or absent; the naive dpkt converters always run, being the
  reference every ratio is taken against.
- ``PCAP_INGEST_BENCH_INJECT="SUBSTRING:FACTOR[,...]"``: a test hook, never set in a real
  run. Every benchmark whose node id contains SUBSTRING has its timed function slowed down
  to FACTOR times its own duration (it sleeps the difference after each call), so that a
  regression check can be shown to catch a real slowdown (tests/test_bench_tools.py).
- `pytest_benchmark_update_json`: the saved JSON names its commit, machine and Python at
  the top level (``"pcap_ingest"``), beside pytest-benchmark's own machine_info/commit_info.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pipeline.flows
from pipeline.gen.capture_mix import write_capture
from pipeline.runtime.memory import tree_private_memory_bytes

CACHE = Path(__file__).resolve().parent / ".cache"
QUICK = os.environ.get("PCAP_INGEST_BENCH_QUICK") == "1"
# A real capture to measure instead of the generated mix (scripts/bench.sh --capture FILE):
# the single-process and stage benchmarks read it; the engine and flow files keep theirs.
USER_CAPTURE = os.environ.get("PCAP_INGEST_BENCH_CAPTURE") or None


def _frames_in(path: str) -> int:
    """Records in a capture (frames and framing errors): what a conversion of it counts."""
    from pipeline.capture import open_capture

    with open_capture(path) as capture:
        return sum(len(batch) for batch in capture.batches(4096))


PACKETS = (
    _frames_in(USER_CAPTURE)
    if USER_CAPTURE
    else 20_000
    if QUICK
    else int(os.environ.get("PCAP_INGEST_BENCH_PACKETS", "1000000"))
)
SEED = 1
# Rounds per benchmark: a noisy 2-core machine wants a median of several. Quick mode takes
# one unless told otherwise (the regression-check test asks for a few, for a stable median).
ROUNDS = int(os.environ.get("PCAP_INGEST_BENCH_ROUNDS", "1" if QUICK else "3"))
PEERS = os.environ.get("PCAP_INGEST_BENCH_PEERS") == "1"
# Skips the external peers unless asked: tshark -T ek runs at ~10k packets/s.
needs_peers = pytest.mark.skipif(
    not PEERS, reason="external peers run with scripts/bench.sh --peers (PCAP_INGEST_BENCH_PEERS=1)"
)
INJECT_ENV = "PCAP_INGEST_BENCH_INJECT"
MB = 1_000_000  # MB/s in decimal megabytes, as disk and network figures are quoted
# The datasets the end-to-end figures in RESULTS.md were first measured with. The default
# --extract gained "flow" with issue #4; the packet benchmarks pin this so they keep measuring
# the same work (bench/test_bench_flows.py measures what flows add).
PACKET_EXTRACT = ("packet", "anomaly")


def workload(
    packets: int,
    seed: int = SEED,
    fmt: str = "pcap",
    profile: str = "mixed",
    flows: int | None = None,
    stretch: float = 1.0,
) -> Path:
    """The generated capture of `packets` packets of `profile` (pipeline.gen.profiles; `flows`
    for the profiles that take a flow count; `stretch` of capture time), made once and
    cached."""
    CACHE.mkdir(exist_ok=True)
    # The mix keeps its original name so captures cached before profiles existed are reused.
    stem = "mix" if profile == "mixed" else profile
    suffix = "" if flows is None else f"-f{flows}"
    suffix += "" if stretch == 1.0 else f"-x{stretch:g}"
    path = CACHE / f"{stem}-{packets}-s{seed}{suffix}.{fmt}"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write_capture(
            str(tmp), packets, seed, fmt=fmt, profile=profile, flows=flows, stretch=stretch
        )
        tmp.replace(path)
    return path


@pytest.fixture(scope="session")
def mix_capture() -> Path:
    """The generated mix of PACKETS packets, or the capture named by --capture."""
    return Path(USER_CAPTURE) if USER_CAPTURE else workload(PACKETS)


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


def record_throughput(
    benchmark: Any,
    packets: int,
    nbytes: int | None = None,
    bytes_of: str | None = None,
    events: int | None = None,
) -> float | None:
    """packets/s, MB/s of `nbytes` (what they are: `bytes_of`) and events/s of the median
    round into extra_info; returns the median in seconds (None when nothing was timed, as
    with --benchmark-disable). Counts go in even then, so the quick run checks they exist."""
    info = benchmark.extra_info
    info["packets"] = packets
    info["machine"] = machine_line()
    info["flow_table"] = "compiled" if pipeline.flows.COMPILED_TABLE else "python"
    if nbytes is not None:
        info["bytes"] = nbytes
        info["bytes_of"] = bytes_of or "capture file"
    if events is not None:
        info["events"] = events
    stats = getattr(benchmark, "stats", None)
    if stats is None or not stats.stats.median:
        return None
    median: float = stats.stats.median
    info["packets_per_second"] = round(packets / median)
    if nbytes is not None:
        info["mb_per_second"] = round(nbytes / MB / median, 1)
    if events is not None:
        info["events_per_second"] = round(events / median)
    return median


def run_pedantic(
    benchmark: Any, fn: Any, packets: int, nbytes: int | None = None, bytes_of: str | None = None
) -> None:
    """Run `fn` ROUNDS times and record packets/s (and MB/s) of the median round."""
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    record_throughput(benchmark, packets, nbytes, bytes_of)


def file_bytes(path: Path | str) -> int:
    return os.path.getsize(path)


# -- the slowdown hook (see the module doc) ---------------------------------------------------


def injected_factor(nodeid: str, spec: str | None = None) -> float | None:
    """The slowdown factor PCAP_INGEST_BENCH_INJECT asks for this test, if any."""
    spec = os.environ.get(INJECT_ENV, "") if spec is None else spec
    for part in filter(None, (p.strip() for p in spec.split(","))):
        substring, _, factor = part.rpartition(":")
        if substring and substring in nodeid:
            return float(factor)
    return None


def _slowed(target: Callable[..., Any], factor: float) -> Callable[..., Any]:
    @functools.wraps(target)
    def slowed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            # Sleeping (not spinning) keeps the other core free for the rest of the run.
            time.sleep((factor - 1) * (time.perf_counter() - start))

    return slowed


@pytest.fixture(autouse=True)
def _inject_slowdown(request: pytest.FixtureRequest) -> Iterator[None]:
    """Wraps `benchmark.pedantic`'s target when the hook names this test. Every benchmark
    here times through `pedantic`, so that is the one place to wrap."""
    factor = injected_factor(request.node.nodeid)
    if factor is not None and "benchmark" in request.fixturenames:
        benchmark = request.getfixturevalue("benchmark")
        pedantic = benchmark.pedantic
        benchmark.pedantic = lambda target, *args, **kwargs: pedantic(
            _slowed(target, factor), *args, **kwargs
        )
        benchmark.extra_info["injected_slowdown"] = factor
    yield


# -- what the saved JSON says about the run ---------------------------------------------------


def _git(*args: str) -> str:
    if shutil.which("git") is None:
        return ""
    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run_description() -> dict[str, Any]:
    """Commit, machine, Python and the workload sizes of this run."""
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine_line(),
        "python": sys.version.split()[0],
        "quick": QUICK,
        "peers": PEERS,
        "rounds": ROUNDS,
        "packets": PACKETS,
        "injected": os.environ.get(INJECT_ENV) or None,
        "sizes": {k: v for k, v in os.environ.items() if k.startswith("PCAP_INGEST_BENCH_")},
    }


def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: dict[str, Any]) -> None:
    output_json["pcap_ingest"] = run_description()


class TreeMemorySampler:
    """Peak private memory (anonymous resident memory, summed over a process and all its
    children), sampled every `interval` seconds on a thread while a run goes on."""

    def __init__(self, pid: int | None = None, interval: float = 0.1) -> None:
        import threading

        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import contextlib

        import psutil

        pids = [self._root.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            pids += [child.pid for child in self._root.children(recursive=True)]
        return tree_private_memory_bytes(pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The engine's capture: larger than the single-process one (bench.sh sets 1M).
ENGINE_PACKETS = (
    20_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_ENGINE_PACKETS", "2000000"))
)


@pytest.fixture(scope="module")
def engine_capture() -> Path:
    return workload(ENGINE_PACKETS)


def record_run(
    benchmark: Any, packets: int, peak: int | None = None, capture: Path | None = None
) -> float | None:
    """packets/s and MB/s (of `capture`'s bytes) of the median round, and the peak private
    memory, into extra_info; the median, or None under --benchmark-disable."""
    if peak is not None:
        benchmark.extra_info["peak_private_mib"] = round(peak / (1 << 20), 1)
    return record_throughput(benchmark, packets, file_bytes(capture) if capture else None)
