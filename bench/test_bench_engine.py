"""The multiprocess engine: scaling with workers, the reader's own ceiling, peak memory.

Workload: the generated 'mix' capture of 2M packets (bench/conftest.py; quick mode: 20k).
`extra_info` carries packets/s and the peak private memory (anonymous resident memory, not
USS: see pipeline/runtime/memory.py) of the whole process tree. The naive dpkt converter runs
in the same session for a ratio (bench/test_bench_convert.py has the single-process figures).
Every engine run converts packet and anomaly events only (`PACKET_EXTRACT`), as when these
figures were first recorded; the default --extract now includes flow records, whose cost
bench/test_bench_flows.py measures.

Run: .venv/bin/pytest bench/test_bench_engine.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import (
    ENGINE_PACKETS,
    PACKET_EXTRACT,
    QUICK,
    ROUNDS,
    TreeMemorySampler,
    record_run,
    workload,
)
from bench.peers import naive_dpkt_fields, naive_dpkt_ndjson_zstd
from pipeline.capture import open_capture
from pipeline.convert import DEFAULT_EXTRACT, convert
from pipeline.runtime.engine import DEFAULT_BATCH_FRAMES
from pipeline.runtime.reader import BatchRouter

# The memory-bound check runs on a 4x larger capture too (opt in: it takes ~3 minutes to make).
LARGE_PACKETS = int(os.environ.get("PCAP_INGEST_BENCH_LARGE_PACKETS", "0"))


def test_peer_naive_dpkt_fields_2m(benchmark: Any, engine_capture: Path) -> None:
    """Issue #5's yardstick, "the plain single-process dpkt loop that writes nothing": dpkt's
    Reader, Ethernet and a field dict per packet (its 300k target is ~3.5x this)."""
    benchmark.pedantic(lambda: naive_dpkt_fields(str(engine_capture)), rounds=ROUNDS, iterations=1)
    record_run(benchmark, ENGINE_PACKETS, capture=engine_capture)


def test_peer_naive_dpkt_ndjson_zstd_2m(
    benchmark: Any, engine_capture: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "naive.ndjson.zst")
    benchmark.pedantic(
        lambda: naive_dpkt_ndjson_zstd(str(engine_capture), out), rounds=ROUNDS, iterations=1
    )
    record_run(benchmark, ENGINE_PACKETS, capture=engine_capture)


def test_reader_ceiling(benchmark: Any, engine_capture: Path) -> None:
    """Framing and routing alone: what one reader can feed (column batches + flow hash +
    the per-worker split, no queues), for 8 workers."""

    def read_and_route() -> int:
        n = 0
        with open_capture(str(engine_capture), with_data=False) as capture:
            router = BatchRouter(0, 8, capture.mapping)
            for batch_no, columns in enumerate(capture.column_batches(DEFAULT_BATCH_FRAMES)):
                router.split(batch_no, columns)
                n += len(columns)
            router.close()
        return n

    benchmark.pedantic(read_and_route, rounds=ROUNDS, iterations=1)
    record_run(benchmark, ENGINE_PACKETS, capture=engine_capture)


@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_end_to_end_workers(
    benchmark: Any, engine_capture: Path, tmp_path: Path, workers: int
) -> None:
    """`pcap-ingest convert -w N --extract packet,anomaly`: reader + N workers + coordinator,
    zstd files, unordered; no flow records (pinned: see the module docstring).
    Timed rounds run unobserved; one more run, sampled, gives the peak private memory."""

    def run() -> None:
        result = convert(
            [str(engine_capture)],
            str(tmp_path),
            force=True,
            workers=workers,
            extract=PACKET_EXTRACT,
        )
        assert result.files[0].frames == ENGINE_PACKETS and result.files[0].accounted

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    with TreeMemorySampler() as sampler:
        run()
    record_run(benchmark, ENGINE_PACKETS, sampler.peak_bytes, engine_capture)


# Issue #5's figure: the extractors SIEM users run (flows, DNS, HTTP, TLS, anomalies, stats),
# no per-packet records, on the 2M-packet mix with 2 workers.
APPLICATION_EXTRACT = ("anomaly", "flow", "dns", "http", "tls", "stats")


def test_end_to_end_extractors_2_workers(
    benchmark: Any, engine_capture: Path, tmp_path: Path
) -> None:
    """`-w 2 --extract anomaly,flow,dns,http,tls,stats`: every extractor, unordered, zstd."""

    def run() -> None:
        result = convert(
            [str(engine_capture)],
            str(tmp_path),
            force=True,
            workers=2,
            extract=APPLICATION_EXTRACT,
        )
        (stats,) = result.files
        assert stats.frames == ENGINE_PACKETS and stats.accounted
        assert stats.events["http"] and stats.events["tls"] and stats.events["dns"]

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    with TreeMemorySampler() as sampler:
        run()
    record_run(benchmark, ENGINE_PACKETS, sampler.peak_bytes, engine_capture)


def test_end_to_end_floor_2_workers(benchmark: Any, engine_capture: Path, tmp_path: Path) -> None:
    """`-w 2 --extract anomaly`: framing, routing, decoding and the anomaly check, no
    extractor and (on this capture) nearly no events: what every extractor set pays first,
    so the ceiling of `test_end_to_end_extractors_2_workers`."""

    def run() -> None:
        result = convert(
            [str(engine_capture)], str(tmp_path), force=True, workers=2, extract=("anomaly",)
        )
        (stats,) = result.files
        assert stats.frames == ENGINE_PACKETS and stats.accounted

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    record_run(benchmark, ENGINE_PACKETS, capture=engine_capture)


def test_end_to_end_ordered_2_workers(benchmark: Any, engine_capture: Path, tmp_path: Path) -> None:
    """`-w 2 --ordered --extract packet,anomaly`: byte-identical output for any worker
    count; no flow records (pinned: see the module docstring)."""

    def run() -> None:
        convert(
            [str(engine_capture)],
            str(tmp_path),
            force=True,
            workers=2,
            ordered=True,
            extract=PACKET_EXTRACT,
        )

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    with TreeMemorySampler() as sampler:
        run()
    record_run(benchmark, ENGINE_PACKETS, sampler.peak_bytes, engine_capture)


@pytest.mark.skipif(LARGE_PACKETS == 0, reason="set PCAP_INGEST_BENCH_LARGE_PACKETS (e.g. 8000000)")
def test_memory_bound_on_a_larger_capture(benchmark: Any, tmp_path: Path) -> None:
    """Peak private memory must not grow with the input: the same run on a 4x larger file
    (packet and anomaly events only, pinned: see the module docstring)."""
    large = workload(LARGE_PACKETS)

    def run() -> None:
        convert([str(large)], str(tmp_path), force=True, workers=2, extract=PACKET_EXTRACT)

    with TreeMemorySampler() as sampler:
        benchmark.pedantic(run, rounds=1, iterations=1)
    record_run(benchmark, LARGE_PACKETS, sampler.peak_bytes, large)


# Issue #9: memory must not grow with the input. ~1 GB of the mix against LARGE_PACKETS
# (8M packets = 6.7 GB), default datasets (packets, anomalies, flows), 2 workers.
ONE_GB_PACKETS = 1_200_000


# The mix at ~2k packets/s of capture time instead of ~100k: 1.2M packets span ~10 minutes,
# longer than every flow timeout, so the flow table reaches its steady state in both sizes.
SLOW_LINK_STRETCH = 50


@pytest.mark.skipif(LARGE_PACKETS == 0, reason="set PCAP_INGEST_BENCH_LARGE_PACKETS (e.g. 8000000)")
@pytest.mark.parametrize("datasets", ["default", "packets", "default-slow-link"])
@pytest.mark.parametrize("size", ["1gb", "large"])
def test_constant_memory(benchmark: Any, tmp_path: Path, size: str, datasets: str) -> None:
    """`convert -w 2` on ~1 GB and on the large capture: peak private memory of the process
    tree. Three cases: packet events only (the streaming path alone); the default datasets
    on the mix (flow state grows with the flows open at once, and at ~100k packets/s every
    finished flow outlives the capture's span — 80 s for 8M packets, under the 60–300 s
    timeouts — so all stay to the end, bounded by --max-flows); and the default datasets on
    the mix stretched to a slower link (`SLOW_LINK_STRETCH`), where flows time out within
    the capture as on a long real one."""
    packets = ONE_GB_PACKETS if size == "1gb" else LARGE_PACKETS
    slow = datasets == "default-slow-link"
    capture = workload(packets, stretch=SLOW_LINK_STRETCH) if slow else workload(packets)
    extract = PACKET_EXTRACT if datasets == "packets" else DEFAULT_EXTRACT

    def run() -> None:
        result = convert([str(capture)], str(tmp_path), force=True, workers=2, extract=extract)
        assert result.files[0].frames == packets and result.files[0].accounted

    with TreeMemorySampler() as sampler:
        benchmark.pedantic(run, rounds=1, iterations=1)
    record_run(benchmark, packets, sampler.peak_bytes, capture)


def _spin(iterations: int = 20_000_000) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


@pytest.mark.parametrize("processes", [1, 2])
def test_machine_parallel_ceiling(benchmark: Any, processes: int) -> None:
    """The same pure-Python CPU work in 1 and in 2 independent processes, no data shared.

    The speedup of 2 over 1 is what this machine gives any CPU-bound pair at that moment
    (a shared VM: measured anywhere from 1.3x to 1.9x): the ceiling for the engine's
    2-worker scaling, measured in the same run. Reported as "packets" = spin rounds.
    """
    import multiprocessing

    iterations = 200_000 if QUICK else 20_000_000

    def run() -> None:
        children = [
            multiprocessing.get_context("fork").Process(target=_spin, args=(iterations,))
            for _ in range(processes)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    record_run(benchmark, processes)
