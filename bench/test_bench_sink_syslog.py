"""The syslog sink's throughput, in events/s, against a local rsyslogd over TCP and over TLS.

Workload: the first ``SINK_EVENTS`` events (20k; ``PCAP_INGEST_BENCH_SINK_EVENTS``; 5k in
quick mode) of the generated mix (packet, flow and anomaly events), converted outside the
timing and handed to the sink in chunks of 4096 lines, as the converter does. Each round
times ``write`` of every chunk and ``close`` (every message confirmed by the server closing
the connection after reading it; see pipeline/sinks/syslog.py) with the default options:
RFC 5424 framing of each event, one confirmation per 8 MiB. rsyslogd (imtcp; gtls with a
client certificate for TLS) writes each MSG to a file; after the rounds the files are checked
to hold every event. Server and client share this machine's cores, so it is a floor for a
remote server, not a network figure.

Run: .venv/bin/pytest bench/test_bench_sink_syslog.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import QUICK, ROUNDS, record_throughput, workload
from pipeline.convert import ConvertOptions, convert_file
from pipeline.sinks.delivery import split_lines
from pipeline.sinks.syslog import SyslogSink
from tests.sink_support import CollectingSink
from tests.test_sink_syslog import (
    HAVE_GTLS,
    OPENSSL,
    RSYSLOGD,
    Certificates,
    Rsyslog,
    make_certificates,
)

SINK_EVENTS = 5_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_SINK_EVENTS", "20000"))
SINK_PACKETS = 20_000  # the mix capture the events come from (cached by bench/conftest.py)
CHUNK_LINES = 4096  # lines per sink write, as pipeline.convert.ChunkWriter joins them


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rsyslog, Certificates]]:
    if RSYSLOGD is None or OPENSSL is None or not HAVE_GTLS:
        pytest.skip("needs rsyslogd, rsyslog-gnutls and the openssl CLI")
    certificates = make_certificates(tmp_path_factory.mktemp("bench-certs"))
    server = Rsyslog(tmp_path_factory.mktemp("bench-rsyslog"), certificates)
    server.start()
    yield server, certificates
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


_ROUND_NAMES = itertools.count()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_sink_syslog(
    benchmark: Any,
    rsyslog: tuple[Rsyslog, Certificates],
    sink_chunks: list[bytes],
    transport: str,
) -> None:
    server, certificates = rsyslog
    events = sum(chunk.count(b"\n") for chunk in sink_chunks)
    hostnames: list[str] = []
    delivered: list[int] = []

    def setup() -> tuple[tuple[SyslogSink], dict[str, Any]]:
        # Each round under its own HOSTNAME: its own file on the server, checked below.
        hostname = f"bench-{transport}-{next(_ROUND_NAMES)}"
        hostnames.append(hostname)
        if transport == "tls":
            port, tls = server.tls_port or 0, certificates.client()
        else:
            port, tls = server.port, None
        return (SyslogSink("127.0.0.1", port, tls=tls, hostname=hostname),), {}

    def send_all(sink: SyslogSink) -> None:
        for chunk in sink_chunks:
            sink.write(chunk)
        sink.close()
        delivered.append(sink.delivered)

    benchmark.pedantic(send_all, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert delivered and all(count == events for count in delivered)
    for hostname in hostnames:
        assert len(server.wait_lines(hostname, events)) == events
    record_throughput(
        benchmark, events, sum(map(len, sink_chunks)), "NDJSON in, uncompressed", events=events
    )
    benchmark.extra_info["transport"] = transport
    benchmark.extra_info["server"] = Path(RSYSLOGD or "rsyslogd").name + " (imtcp, omfile)"
