"""The ``_bulk`` sink (pipeline.sinks.bulk) in events/s, against a local osmem-server.

Workload: the events a conversion of the first ``SINK_PACKETS`` packets of the generated mix
writes (default datasets; 20k packets → ~20k events, quick mode 2k), held in memory and
written in chunks of 4096 lines as the converter does; each round sends them into new
indices, so every round creates documents rather than overwriting them.

- `test_sink_bulk`: the sink end to end (encode, HTTP, the server's answer) into indices
  whose template stores documents without indexing their fields (``dynamic: false``): the
  sink's own ceiling on this machine, the server doing the least it can.
- `test_sink_bulk_dynamic_mapping`: the same into indices with osmem's default dynamic
  mapping (``SINK_DYNAMIC_PACKETS``, 5k; quick 1k): osmem maps ~1 ms an event, so this
  measures the test server more than the sink — a real cluster's figure lies elsewhere.
- `test_sink_bulk_encoding`: `BulkEncoder.entry` alone (no I/O): what the sink costs the
  producer's thread per event.

osmem-server runs as a subprocess on a free loopback port for the module; the benchmarks
skip when it is not installed. Run:
.venv/bin/pytest bench/test_bench_sink_bulk.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bench.conftest import QUICK, ROUNDS, record_throughput, workload
from pipeline.convert import ConvertOptions, convert_file
from pipeline.sinks.bulk import BulkEncoder, BulkSink
from pipeline.sinks.delivery import split_lines

try:
    from osmem_server import OsmemServer, resolve_binary

    OSMEM_BINARY: str | None = resolve_binary()
except (ImportError, RuntimeError):
    OSMEM_BINARY = None

pytestmark = pytest.mark.skipif(
    OSMEM_BINARY is None, reason="osmem-server (pip install osmem-server) is not installed"
)

SINK_PACKETS = 2_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_SINK_PACKETS", "20000"))
SINK_DYNAMIC_PACKETS = (
    1_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_SINK_DYNAMIC_PACKETS", "5000"))
)
CHUNK_LINES = 4096  # lines per sink write, as pipeline.convert.ChunkWriter joins them
STORED_TEMPLATE = {"index_patterns": ["stored-*"], "template": {"mappings": {"dynamic": False}}}


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = OsmemServer.start(japanese=False, binary=OSMEM_BINARY)
    try:
        server.request("PUT", "/_index_template/stored", STORED_TEMPLATE)
        yield server.url
    finally:
        server.close()


def mix_events(packets: int) -> list[bytes]:
    """The NDJSON lines a conversion of the first `packets` packets of the mix writes."""
    lines: list[bytes] = []

    class Collect:
        def write(self, chunk: bytes) -> None:
            lines.extend(split_lines(chunk))

        def close(self) -> None: ...

        def abort(self) -> None: ...

    convert_file(str(workload(packets)), Collect(), ConvertOptions())
    return lines


def as_chunks(lines: list[bytes]) -> list[bytes]:
    return [
        b"".join(line + b"\n" for line in lines[start : start + CHUNK_LINES])
        for start in range(0, len(lines), CHUNK_LINES)
    ]


def bench_sink(benchmark: Any, url: str, packets: int, template: str) -> None:
    lines = mix_events(packets)
    chunks = as_chunks(lines)
    rounds = itertools.count()
    sinks: list[BulkSink] = []

    def send_all() -> None:
        sink = BulkSink(url, index_template=template.format(round=next(rounds)))
        for chunk in chunks:
            sink.write(chunk)
        sink.close()
        sinks.append(sink)

    benchmark.pedantic(send_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert all(s.delivered == len(lines) and s.rejected == 0 for s in sinks)
    benchmark.extra_info["requests"] = sinks[-1].requests
    record_throughput(benchmark, packets, sum(map(len, chunks)), "NDJSON events", events=len(lines))


def test_sink_bulk(benchmark: Any, server_url: str) -> None:
    bench_sink(benchmark, server_url, SINK_PACKETS, "stored-r{round}-{{dataset}}-{{date}}")


def test_sink_bulk_dynamic_mapping(benchmark: Any, server_url: str) -> None:
    bench_sink(benchmark, server_url, SINK_DYNAMIC_PACKETS, "dynamic-r{round}-{{dataset}}")


def test_sink_bulk_encoding(benchmark: Any) -> None:
    lines = mix_events(SINK_PACKETS)

    def encode_all() -> None:
        encoder = BulkEncoder()
        for line in lines:
            encoder.entry(line)

    benchmark.pedantic(encode_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    record_throughput(
        benchmark, SINK_PACKETS, sum(map(len, lines)), "NDJSON events", events=len(lines)
    )
