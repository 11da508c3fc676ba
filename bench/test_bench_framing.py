"""Capture framing alone, in packets per second: the ceiling for everything downstream.

Workload "synthetic-200k": one classic pcap (little-endian, µs, Ethernet) of 200,000 records,
written once per session, with a realistic size mix: ~45% small (60-100 bytes: ACKs, DNS),
~35% full-size 1514-byte segments, the rest uniform in 60-1514 (~147 MB in all). Each
benchmark frames the whole file; `extra_info["packets_per_second"]` is computed from the
median round (and `packets_per_cpu_second` from the median CPU time, which other load on
the machine disturbs less), `mb_per_second` from the file's bytes (compressed bytes for the
zstd input). Nothing is asserted about time.

Run: .venv/bin/pytest bench/test_bench_framing.py --benchmark-only
"""

from __future__ import annotations

import os
import random
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pipeline.capture import Frame, open_capture, open_stream

N_PACKETS = 20_000 if os.environ.get("PCAP_INGEST_BENCH_QUICK") == "1" else 200_000
SEED = 20240601


def _packet_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.45:
        return rng.randint(60, 100)
    if roll < 0.80:
        return 1514
    return rng.randint(60, 1514)


@pytest.fixture(scope="session")
def synthetic_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic-200k workload, written once per session."""
    rng = random.Random(SEED)
    payload = bytes(range(256)) * 6
    path = tmp_path_factory.mktemp("bench") / "synthetic-200k.pcap"
    record = struct.Struct("<IIII")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(N_PACKETS):
            size = _packet_size(rng)
            f.write(record.pack(1_700_000_000 + i // 1000, (i * 997) % 1_000_000, size, size))
            f.write(payload[:size])
    return path


@pytest.fixture(scope="session")
def synthetic_pcap_zst(synthetic_pcap: Path) -> Path:
    """The same workload, zstd level 3 (what our own outputs use), for the streamed path."""
    path = synthetic_pcap.with_suffix(".pcap.zst")
    with open(synthetic_pcap, "rb") as src, open(path, "wb") as dst:
        zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    return path


def _count_batches(open_it: Callable[[], Any]) -> int:
    with open_it() as cap:
        n = 0
        for batch in cap.batches():
            n += len(batch)
    return n


def _count_items(open_it: Callable[[], Any]) -> int:
    with open_it() as cap:
        n = 0
        for item in cap:
            n += type(item) is Frame
    return n


def _run(benchmark: Any, fn: Callable[[], int], path: Path, rounds: int = 7) -> None:
    cpu_seconds: list[float] = []

    def timed() -> int:  # CPU time too: wall time on a shared 2-core machine is noisy
        start = time.process_time()
        n = fn()
        cpu_seconds.append(time.process_time() - start)
        return n

    n = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
    assert n == N_PACKETS  # correctness, not time
    benchmark.extra_info["workload"] = "synthetic-200k"
    benchmark.extra_info["packets"] = N_PACKETS
    if benchmark.stats is not None:  # None with --benchmark-disable (the CI smoke run)
        median = benchmark.stats.stats.median
        benchmark.extra_info["packets_per_second"] = round(N_PACKETS / median)
        benchmark.extra_info["bytes"] = path.stat().st_size
        benchmark.extra_info["bytes_of"] = "capture file"
        benchmark.extra_info["mb_per_second"] = round(path.stat().st_size / 1e6 / median, 1)
    benchmark.extra_info["packets_per_cpu_second"] = round(
        N_PACKETS / statistics.median(cpu_seconds)
    )


@pytest.mark.parametrize("with_data", [False, True], ids=["refs-only", "with-data"])
def test_framing_mmap_batches(benchmark: Any, synthetic_pcap: Path, with_data: bool) -> None:
    """The fast path: mapped file, batches; refs-only is what the multiprocess runtime uses."""
    _run(
        benchmark,
        lambda: _count_batches(lambda: open_capture(str(synthetic_pcap), with_data=with_data)),
        synthetic_pcap,
    )


def test_framing_mmap_iter(benchmark: Any, synthetic_pcap: Path) -> None:
    """Item-by-item iteration (chained batches) with data: the convenience path's cost."""
    _run(benchmark, lambda: _count_items(lambda: open_capture(str(synthetic_pcap))), synthetic_pcap)


def test_framing_stream_plain(benchmark: Any, synthetic_pcap: Path) -> None:
    """The streamed driver on uncompressed input (as from a pipe): receive-buffer overhead."""

    def frame_stream() -> int:
        with open(synthetic_pcap, "rb") as f:
            return _count_batches(lambda: open_stream(f, "pipe"))

    _run(benchmark, frame_stream, synthetic_pcap)


def test_framing_stream_zstd(benchmark: Any, synthetic_pcap_zst: Path) -> None:
    """zstd-compressed file: decompression plus the streamed driver."""
    _run(
        benchmark,
        lambda: _count_batches(lambda: open_capture(str(synthetic_pcap_zst))),
        synthetic_pcap_zst,
        5,
    )
