"""Events into Kafka topics, one message per event, with the delivery contract of delivery.py.

Each NDJSON line becomes one message. Its topic comes from ``topic``: a template in which
``{dataset}`` is replaced by the event's ``event.dataset`` (``pcap-ingest.{dataset}`` gives
``pcap-ingest.pcap_ingest.packet``, ``pcap-ingest.pcap_ingest.flow``, ...), or a fixed name
when the template has no ``{dataset}``. Its key is ``network.community_id``, so all events of
one connection land in one partition in order, or ``event.id`` for events without one (stats,
anomalies); both are stable across re-runs, so a consumer can drop the duplicates a retry makes.

How the contract maps onto librdkafka, which does the sending, batching and retrying:

- Bounded: the producer's own queue is the buffer. ``queue.buffering.max.kbytes`` is
  ``Delivery.max_buffered_bytes``; when it is full ``produce`` raises ``BufferError`` and
  ``write`` waits in ``poll`` (serving delivery reports, which is what frees the queue) until
  there is room: backpressure. It gives up after ``Delivery.timeout`` without room.
- Retries: librdkafka retries failed requests and reconnects with exponential backoff from
  ``Delivery.backoff_initial`` to ``Delivery.backoff_max`` (``retry.backoff.ms``,
  ``retry.backoff.max.ms``, ``reconnect.backoff*``). It retries until the message is
  ``Delivery.timeout`` old (``message.timeout.ms``), so an outage shorter than that costs only
  time, and a longer one fails delivery reports; the first failure makes ``write`` or ``close``
  raise ``DeliveryError`` with every event not acknowledged. (The timeout runs from when the
  event was handed over, so an event that already waited in a full queue has less of it left.)
- At least once: ``acks=all`` with the idempotent producer (``enable.idempotence``): the
  broker drops the copies a retry sends of a batch it already has, and each partition keeps
  its order through retries. Without it (``idempotent=False``) a retried batch whose ack was
  lost is stored twice; ``event.id`` tells the copies apart.
- ``delivered`` counts delivery reports without error, ``failed`` those with one; ``retries``
  (request retries) and ``disconnects`` (connections lost) come from librdkafka's statistics,
  refreshed every ``STATS_INTERVAL_MS``, so they may lag by that much. An outage with no
  connection at all retries no request: ``disconnects`` and ``buffer_waits`` show it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from pipeline.sinks.delivery import Delivery, DeliveryError, split_lines

try:
    from confluent_kafka import KafkaError, KafkaException, Message, Producer
except ImportError:  # the `kafka` extra is not installed: KafkaSink says so when built
    Producer = None  # type: ignore[assignment,misc]

SINK_NAME = "kafka"
DEFAULT_TOPIC_TEMPLATE = "pcap-ingest.{dataset}"
DATASET_FIELD = "{dataset}"
# The dataset of a line that has none (or is not a JSON object): it still goes somewhere.
UNKNOWN_DATASET = "unknown"
# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-] (others become "_").
MAX_TOPIC_LEN = 249
_TOPIC_ILLEGAL = re.compile(r"[^a-zA-Z0-9._-]")
# Messages wait this long for more to batch with; a few ms costs no latency worth the name
# and makes batches (and zstd frames) large enough to be cheap per event.
DEFAULT_LINGER_MS = 20
# How often librdkafka reports statistics (where `retries` comes from).
STATS_INTERVAL_MS = 1000
# The longest a blocked write waits in one poll before checking its deadline again.
MAX_POLL_WAIT = 0.5

log = logging.getLogger(__name__)
# librdkafka's own log lines ("Connect to ... failed") go here; a library does not print them
# unless the application configures logging. The failures themselves reach DeliveryError.
log.addHandler(logging.NullHandler())


def topic_name(template: str, dataset: str) -> str:
    """The topic for events of `dataset`: the template filled in, illegal characters as "_"."""
    name = template.replace(DATASET_FIELD, dataset)
    return _TOPIC_ILLEGAL.sub("_", name)[:MAX_TOPIC_LEN]


def route_fields(line: bytes) -> tuple[str, bytes | None] | None:
    """``(event.dataset, key)`` of one NDJSON line, or None if it is not a JSON object. The key
    is ``network.community_id``, else ``event.id``, else None; the dataset UNKNOWN_DATASET
    when the event names none."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    event = doc.get("event")
    if not isinstance(event, dict):
        event = {}
    dataset = event.get("dataset")
    network = doc.get("network")
    key = network.get("community_id") if isinstance(network, dict) else None
    if not isinstance(key, str) or not key:
        key = event.get("id")
    return (
        dataset if isinstance(dataset, str) and dataset else UNKNOWN_DATASET,
        key.encode() if isinstance(key, str) else None,
    )


class KafkaSink:
    """NDJSON events as Kafka messages (see the module doc).

    `bootstrap_servers` is librdkafka's ``host:port[,host:port...]``; `topic` a template with
    ``{dataset}`` (one topic per dataset) or a fixed topic name; `config` extra librdkafka
    properties (security, client.id, ...); those the delivery contract sets (acks,
    idempotence, timeouts, buffer, compression, callbacks) cannot be overridden.
    `idempotent=False` is for servers without idempotent producers: a broker that lost its
    producer state (an in-memory test broker restarted) rejects an idempotent producer's
    retries until they time out.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = DEFAULT_TOPIC_TEMPLATE,
        delivery: Delivery | None = None,
        linger_ms: int = DEFAULT_LINGER_MS,
        idempotent: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if Producer is None:
            raise RuntimeError(
                "the Kafka sink needs confluent-kafka: pip install 'pcap-ingest[kafka]'"
            )
        self.delivery = delivery or Delivery()
        self.topic = topic
        self.accepted = 0  # events handed to the producer
        self.delivered = 0  # events the broker acknowledged (acks=all)
        self.failed = 0  # events whose delivery report was an error (timeout, purge, ...)
        self.retries = 0  # request retries, from librdkafka's statistics
        self.disconnects = 0  # connections to brokers lost (outages), from the same
        self.buffer_waits = 0  # times write() blocked on a full buffer (backpressure)
        self.unparsed = 0  # lines that were not JSON objects (sent to the unknown dataset)
        self._topics: dict[str, str] = {}
        self._first_failure: str | None = None  # reason of the first failed delivery report
        self._last_error: str | None = None  # the latest client error (broker down, ...)
        self._fatal: str | None = None
        self._gave_up: DeliveryError | None = None
        timeout_ms = max(2, round(self.delivery.timeout * 1000))
        settings: dict[str, Any] = {"client.id": "pcap-ingest", **(config or {})}
        settings.update(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": idempotent,
                "acks": "all",
                "compression.type": "zstd",
                "linger.ms": min(linger_ms, timeout_ms - 1),  # librdkafka wants it below
                "message.timeout.ms": timeout_ms,
                "queue.buffering.max.kbytes": max(1, self.delivery.max_buffered_bytes // 1024),
                "retry.backoff.ms": max(1, round(self.delivery.backoff_initial * 1000)),
                "retry.backoff.max.ms": max(1, round(self.delivery.backoff_max * 1000)),
                "reconnect.backoff.ms": max(1, round(self.delivery.backoff_initial * 1000)),
                "reconnect.backoff.max.ms": max(1, round(self.delivery.backoff_max * 1000)),
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "on_delivery": self._on_delivery,  # one callback for all: cheaper than per message
                "error_cb": self._on_error,
                "stats_cb": self._on_stats,
                "logger": log,
            }
        )
        self._producer: Producer | None = Producer(settings)

    # -- callbacks (run inside poll/flush, on this thread) ------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if self._first_failure is None:
            self._first_failure = err.str()

    def _on_error(self, err: KafkaError) -> None:
        self._last_error = err.str()
        if err.fatal():
            self._fatal = err.str()

    def _on_stats(self, stats_json: str) -> None:
        brokers = orjson.loads(stats_json).get("brokers", {}).values()
        self.retries = sum(broker.get("txretries", 0) for broker in brokers)
        self.disconnects = sum(broker.get("disconnects", 0) for broker in brokers)

    # -- writing ------------------------------------------------------------------------------

    def _topic_for(self, dataset: str) -> str:
        topic = self._topics.get(dataset)
        if topic is None:
            topic = self._topics[dataset] = topic_name(self.topic, dataset)
        return topic

    def write(self, chunk: bytes) -> None:
        producer = self._live_producer()
        lines = split_lines(chunk)
        for index, line in enumerate(lines):
            fields = route_fields(line)
            if fields is None:
                self.unparsed += 1
                fields = (UNKNOWN_DATASET, None)
            dataset, key = fields
            topic = self._topic_for(dataset)
            try:
                producer.produce(topic, line, key)
            except BufferError:
                self._wait_for_room(topic, line, key, unsent=len(lines) - index)
            except KafkaException as exc:  # refused outright (an event over message.max.bytes)
                self._give_up(len(lines) - index, f"event refused: {exc.args[0].str()}")
            self.accepted += 1
        producer.poll(0)  # serve delivery reports: counters, and failures noticed early
        self._check(unsent=0)

    def _wait_for_room(self, topic: str, line: bytes, key: bytes | None, unsent: int) -> None:
        """Backpressure: poll until the queue takes `line`. Polling, not sleeping (Backoff),
        because the queue only frees as delivery reports are served."""
        assert self._producer is not None
        self.buffer_waits += 1
        deadline = time.monotonic() + self.delivery.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._give_up(unsent, f"buffer full for {self.delivery.timeout:g}s")
            self._producer.poll(min(remaining, MAX_POLL_WAIT))
            self._check(unsent)
            try:
                self._producer.produce(topic, line, key)
                return
            except BufferError:
                if len(self._producer) == 0:  # an empty queue that cannot take it never will
                    self._give_up(unsent, f"event of {len(line)} bytes exceeds the buffer")

    def _check(self, unsent: int) -> None:
        """Give up at the first failed delivery report (it had Delivery.timeout to succeed)."""
        if self.failed:
            self._give_up(unsent, self._first_failure or "delivery failed")
        if self._fatal is not None:
            self._give_up(unsent, f"fatal producer error: {self._fatal}")

    def _give_up(self, unsent: int, reason: str) -> None:
        """Drop what is queued, and raise DeliveryError counting every event not acknowledged
        (`unsent`: those of the current chunk not handed to the producer yet)."""
        self._purge()
        if self._last_error and self._last_error not in reason:
            reason = f"{reason} (last error: {self._last_error})"
        undelivered = self.accepted + unsent - self.delivered
        self._gave_up = DeliveryError(SINK_NAME, undelivered, reason)
        self._producer = None
        raise self._gave_up

    def _purge(self) -> None:
        if self._producer is None:
            return
        # Purged messages report failures (served by poll); in-flight ones might still have
        # arrived, but unacknowledged is what we can count.
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.poll(0)

    def _live_producer(self) -> Producer:
        if self._gave_up is not None:
            raise self._gave_up
        if self._producer is None:
            raise ValueError("write to a closed KafkaSink")
        return self._producer

    def close(self) -> None:
        """Wait (up to Delivery.timeout) until every event is acknowledged, or raise."""
        producer = self._live_producer()
        with contextlib.suppress(KafkaException):
            # Each message gives up by itself after message.timeout.ms; the margin lets its
            # failed report arrive rather than this flush run out first.
            producer.flush(self.delivery.timeout + 1.0)
        self._check(unsent=0)
        if len(producer):
            self._give_up(0, f"not acknowledged within {self.delivery.timeout:g}s")
        self._producer = None

    def abort(self) -> None:
        """Drop every queued event now, without raising."""
        with contextlib.suppress(Exception):
            self._purge()
        self._producer = None

    def counters(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "delivered": self.delivered,
            "failed": self.failed,
            "retries": self.retries,
            "disconnects": self.disconnects,
            "buffer_waits": self.buffer_waits,
            "unparsed": self.unparsed,
            "topics": len(self._topics),
        }
