"""What the sink tests and benchmarks share: a free loopback port for a server they start,
and a sink that keeps what it is given (to take a conversion's NDJSON chunks as a network
sink would receive them)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CollectingSink:
    """A sink that keeps the chunks it is given."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass
