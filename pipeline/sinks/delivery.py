"""The delivery contract every network sink keeps: bounded, retried, at least once.

A network sink (Kafka, the ``_bulk`` API, syslog) receives chunks of whole NDJSON lines through
``write(chunk)``, like the file sinks. It keeps at most ``Delivery.max_buffered_bytes`` of
undelivered events: past that, ``write`` blocks until the server has taken some, so a slow or
unreachable server slows the pipeline down (backpressure) instead of growing memory.

A failed send is retried with exponential backoff (``Backoff``). An outage shorter than
``Delivery.timeout`` seconds (``--sink-timeout``) costs only time; a longer one makes ``write``
or ``close`` raise ``DeliveryError`` carrying how many events were not delivered, and the run
exits non-zero saying so. ``close`` returns only once every event is acknowledged by the server.
Events may be delivered twice after a retry (at-least-once); the sinks key them by
``event.id`` or ``network.community_id`` where the server can use that to drop duplicates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULT_SINK_TIMEOUT = 60.0
DEFAULT_MAX_BUFFERED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """How hard a network sink tries, and how much it may hold while it does."""

    timeout: float = DEFAULT_SINK_TIMEOUT
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    backoff_initial: float = 0.05
    backoff_max: float = 2.0


class DeliveryError(RuntimeError):
    """A sink gave up: the server was unreachable or refused events for longer than allowed."""

    def __init__(self, sink: str, undelivered: int, reason: str) -> None:
        super().__init__(f"{sink}: {undelivered} events not delivered: {reason}")
        self.sink = sink
        self.undelivered = undelivered
        self.reason = reason


class Backoff:
    """Exponential backoff between retries, bounded by a deadline from the first failure.

    ``failed()`` sleeps the next delay, or returns False once the outage has lasted longer than
    ``delivery.timeout`` (the caller then raises ``DeliveryError``). ``succeeded()`` resets it.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self._delay = delivery.backoff_initial
        self._first_failure: float | None = None
        self.retries = 0

    def failed(self) -> bool:
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        remaining = self._first_failure + self.delivery.timeout - now
        if remaining <= 0:
            return False
        time.sleep(min(self._delay, remaining))
        self._delay = min(self._delay * 2, self.delivery.backoff_max)
        self.retries += 1
        return True

    def succeeded(self) -> None:
        self._delay = self.delivery.backoff_initial
        self._first_failure = None


def split_lines(chunk: bytes) -> list[bytes]:
    """The events of a chunk of NDJSON, each without its newline."""
    lines = chunk.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines
