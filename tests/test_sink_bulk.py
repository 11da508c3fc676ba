"""The ``_bulk`` sink against a real OpenSearch-compatible server (osmem-server, in memory).

The server runs as a subprocess this file starts on a free loopback port (not the osmem pytest
plugin's session fixture, which cannot be stopped and restarted on the same port). osmem keeps
its data in memory, so a restart empties it: the outage tests check what the first server
acknowledged before it died and what the second one holds after, and that the two together
cover every event. Its text analysis differs from Elasticsearch's, so the tests assert on
counts and ids only. Indexing is slow there (~1 ms per real event with dynamic mapping), so the
corpus test writes into indices whose template stores documents without indexing their fields
(``dynamic: false``), and one test keeps the default dynamic mapping to see real events map.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.convert import DATASETS, ConvertOptions, convert_file
from pipeline.sinks.bulk import (
    DEFAULT_INDEX_TEMPLATE,
    BulkEncoder,
    BulkEndpoint,
    BulkSink,
    dataset_part,
    date_part,
    read_bulk_response,
)
from pipeline.sinks.delivery import Delivery, DeliveryError, split_lines
from tests.conftest import HAVE_SHARED, REFERENCE_CAPTURES, SHARED, capture_id, needs_shared
from tests.sink_support import free_port

try:
    from osmem_server import OsmemError, OsmemServer, resolve_binary

    OSMEM_BINARY: str | None = resolve_binary()
except (ImportError, RuntimeError):
    OSMEM_BINARY = None

needs_osmem = pytest.mark.skipif(
    OSMEM_BINARY is None, reason="osmem-server (pip install osmem-server) is not installed"
)
pytestmark = needs_osmem

# Indices named "stored-*" keep documents but index no field (osmem's dynamic mapping is the
# slow part): count and ids still work, as _id and _count do not need field mappings.
STORED_TEMPLATE = {
    "index_patterns": ["stored-*"],
    "template": {"mappings": {"dynamic": False}},
}
PER_DATASET = 80  # events of each dataset the dynamic-mapping test sends
CHUNK_EVENTS = 200  # lines per write, as the converter's batches are (smaller, for more steps)


class Server:
    """One osmem-server process on a fixed port, which can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: OsmemServer | None = None

    def start(self) -> None:
        # --parent-pid (set by OsmemServer.start) ends it with the test process in any case.
        for _ in range(50):  # the port of a killed server can take a moment to be free
            try:
                self.process = OsmemServer.start(
                    addr=f"127.0.0.1:{self.port}", japanese=False, binary=OSMEM_BINARY
                )
                break
            except OsmemError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"osmem-server did not start on port {self.port}")
        self.request("PUT", "/_index_template/stored", STORED_TEMPLATE)

    def kill(self) -> None:
        """An outage: the process dies at once (open connections reset, data lost)."""
        if self.process is not None:
            self.process.process.kill()
            self.process.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data, {"Content-Type": "application/json"}, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def count(self, index: str) -> int:
        return int(self.request("GET", f"/{index}/_count")["count"])

    def present_ids(self, index: str, ids: list[str]) -> set[str]:
        """Which of `ids` have a document in `index` (a pattern)."""
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            query = {
                "query": {"ids": {"values": ids[start : start + 1000]}},
                "size": 1000,
                "_source": False,
            }
            hits = self.request("POST", f"/{index}/_search", query)["hits"]["hits"]
            found.update(hit["_id"] for hit in hits)
        return found


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The server the tests that do not stop it share."""
    with running_server() as shared:
        yield shared


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of the test's own, for the tests that kill and restart it."""
    with running_server() as own:
        yield own


def capture_events(path: Path, extract: tuple[str, ...] = DATASETS) -> list[bytes]:
    """The NDJSON lines a conversion of `path` writes, every dataset."""
    lines: list[bytes] = []

    class Collect:
        def write(self, chunk: bytes) -> None:
            lines.extend(split_lines(chunk))

        def close(self) -> None: ...

        def abort(self) -> None: ...

    convert_file(str(path), Collect(), ConvertOptions(extract=extract))
    return lines


@pytest.fixture(scope="module")
def corpus() -> dict[Path, list[bytes]]:
    """Every reference capture's events (~72k; about 1 s to make)."""
    return {path: capture_events(path) for path in REFERENCE_CAPTURES}


@pytest.fixture(scope="module")
def sample_events() -> list[bytes]:
    """A few thousand real events of several datasets, for the outage tests."""
    if not HAVE_SHARED:
        pytest.skip(f"reference captures not found at {SHARED}")
    lines = capture_events(SHARED / "ndpi__dns.pcap")
    lines += capture_events(SHARED / "dpkt__http.pcap")
    for path in REFERENCE_CAPTURES:
        if len(lines) >= 2400:
            break
        lines += capture_events(path, ("flow", "dns", "tls", "anomaly", "stats"))
    # Once each: a capture met twice (or two captures with the same content) repeats ids.
    unique = dict(zip(event_ids(lines), lines, strict=True))
    return list(unique.values())


def make_event(
    event_id: str, dataset: str, timestamp: str = "2020-01-01T00:00:00Z", **fields: Any
) -> bytes:
    """A small event line of the pipeline's shape."""
    event = {"@timestamp": timestamp, "event": {"id": event_id, "dataset": dataset}, **fields}
    return json.dumps(event, separators=(",", ":")).encode()


def event_ids(lines: list[bytes]) -> list[str]:
    return [json.loads(line)["event"]["id"] for line in lines]


def write_all(sink: BulkSink, lines: list[bytes], chunk_events: int = CHUNK_EVENTS) -> None:
    for start in range(0, len(lines), chunk_events):
        sink.write(b"".join(line + b"\n" for line in lines[start : start + chunk_events]))


def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- pure parts: index names, entries, bulk answers --------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "timestamp", "index"),
    [
        ("pcap_ingest.packet", "2013-05-30T22:45:17.270862000Z", "pcap_ingest-packet-2013.05.30"),
        ("pcap_ingest.flow", "1999-12-31T23:59:59Z", "pcap_ingest-flow-1999.12.31"),
        ("Pcap_Ingest.DNS", "2024-02-29T00:00:00.000000000Z", "pcap_ingest-dns-2024.02.29"),
        ("a/b*c d", "not a time", "a-b-c-d-undated"),
    ],
)
def test_index_name_per_dataset_and_day(dataset: str, timestamp: str, index: str) -> None:
    encoder = BulkEncoder()
    assert encoder.index_name(dataset, date_part(timestamp)) == "pcap-ingest-" + index


def test_dataset_part_makes_dots_dashes() -> None:
    assert dataset_part("pcap_ingest.tls") == "pcap_ingest-tls"
    assert dataset_part("") == "unknown"


@pytest.mark.parametrize(
    "template", ["Upper-{dataset}", "x-{dataset}-{nope}", "-x-{date}", "a,b-{date}", "{0}"]
)
def test_bad_index_template_refused_at_once(template: str) -> None:
    with pytest.raises(ValueError):
        BulkEncoder(template)


def test_entry_is_action_and_document_keyed_by_event_id() -> None:
    line = make_event("ab-1", "pcap_ingest.dns", "2005-03-30T08:50:54Z")
    action, document, end = BulkEncoder(op_type="create").entry(line).split(b"\n")
    assert json.loads(action) == {
        "create": {"_index": "pcap-ingest-pcap_ingest-dns-2005.03.30", "_id": "ab-1"}
    }
    assert document == line and end == b""


def test_entry_without_id_or_dataset_still_goes_and_is_counted() -> None:
    encoder = BulkEncoder()
    action = json.loads(encoder.entry(b'{"message":"x"}').split(b"\n")[0])
    assert action == {"index": {"_index": "pcap-ingest-unknown-undated"}}
    assert encoder.without_id == 1


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b'"text"'])
def test_entry_refuses_what_is_not_a_json_object(line: bytes) -> None:
    with pytest.raises(ValueError):
        BulkEncoder().entry(line)


def _answer(*statuses: int) -> bytes:
    error = {"type": "some_exception", "reason": "why"}
    items = [
        {"index": {"status": s} if s < 300 else {"status": s, "error": error}} for s in statuses
    ]
    return json.dumps({"errors": any(s >= 300 for s in statuses), "items": items}).encode()


@pytest.mark.parametrize(
    ("statuses", "op_type", "delivered", "present", "retry", "rejected"),
    [
        ((201, 200), "index", 2, 0, [], []),
        ((201, 429, 503, 400), "index", 1, 0, [1, 2], [3]),
        ((409, 201), "create", 1, 1, [], []),
        ((409,), "index", 0, 0, [], [0]),  # a version conflict on index is not "already there"
        ((500, 502, 404), "index", 0, 0, [0, 1], [2]),
    ],
)
def test_bulk_answer_sorted_by_item_status(
    statuses: tuple[int, ...],
    op_type: str,
    delivered: int,
    present: int,
    retry: list[int],
    rejected: list[int],
) -> None:
    outcome = read_bulk_response(_answer(*statuses), len(statuses), op_type)
    assert (outcome.delivered, outcome.already_present) == (delivered, present)
    assert outcome.retry == retry
    assert [position for position, _ in outcome.rejected] == rejected
    assert all(reason.startswith(str(statuses[i])) for i, reason in outcome.rejected)


@pytest.mark.parametrize(
    "answer", [b"[]", b'{"errors":true,"items":[]}', b'{"errors":true}', b"<html>", b""]
)
def test_bulk_answer_that_does_not_match_the_request_is_an_error(answer: bytes) -> None:
    with pytest.raises(ValueError):
        read_bulk_response(answer, 2)


def test_endpoint_from_url_with_credentials_and_prefix() -> None:
    endpoint = BulkEndpoint.from_url("https://el%40stic:p%3Ass@search.example:9243/base/")
    assert (endpoint.scheme, endpoint.host, endpoint.port) == ("https", "search.example", 9243)
    assert endpoint.path == "/base/_bulk"
    assert endpoint.authorization == "Basic ZWxAc3RpYzpwOnNz"  # el@stic:p:ss
    assert "p:ss" not in endpoint.display()
    assert BulkEndpoint.from_url("http://h").port == 9200
    with pytest.raises(ValueError):
        BulkEndpoint.from_url("ftp://h/")


# -- against the server -------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("capture", REFERENCE_CAPTURES, ids=capture_id)
def test_every_capture_count_in_equals_count_out(
    server: Server, corpus: dict[Path, list[bytes]], capture: Path
) -> None:
    lines = corpus[capture]
    prefix = f"stored-{REFERENCE_CAPTURES.index(capture)}"
    sink = BulkSink(server.url, index_template=prefix + "-{dataset}-{date}")
    write_all(sink, lines, 4096)
    sink.close()
    assert (sink.delivered, sink.rejected, sink.rejected_reasons) == (len(lines), 0, [])
    # event.id is unique within a capture, so documents = events.
    ids = event_ids(lines)
    assert len(set(ids)) == len(ids)
    assert (server.count(prefix + "-*") if lines else 0) == len(lines)


@needs_shared
def test_real_events_map_with_dynamic_mapping(server: Server, sample_events: list[bytes]) -> None:
    """Default mapping, as a server without an index template gives: no event is refused.
    Up to PER_DATASET events of each dataset (osmem maps ~1 ms an event); gzip bodies."""
    per_dataset: dict[str, list[bytes]] = {}
    for line in sample_events:
        events = per_dataset.setdefault(json.loads(line)["event"]["dataset"], [])
        if len(events) < PER_DATASET:
            events.append(line)
    lines = [line for events in per_dataset.values() for line in events]
    sink = BulkSink(server.url, index_template="dynamic-{dataset}-{date}", compress=True)
    write_all(sink, lines)
    sink.close()
    assert len(per_dataset) >= 4 and sink.rejected_reasons == []
    assert sink.delivered == server.count("dynamic-*") == len(lines)


@needs_shared
def test_rerun_of_the_same_capture_adds_no_document(server: Server) -> None:
    """The issue's acceptance test: converting the same capture into the sink again leaves
    the document count unchanged (index action, _id = event.id), with the default template."""
    capture = SHARED / "ndpi__dns.pcap"
    counts = []
    for _ in range(2):
        sink = BulkSink(server.url)
        stats = convert_file(str(capture), sink, ConvertOptions(extract=DATASETS))
        sink.close()
        events = sum(stats.events.values())
        assert sink.delivered == events > 0 and sink.rejected == 0
        counts.append(server.count("pcap-ingest-*"))
    assert counts[0] == counts[1] == events
    assert DEFAULT_INDEX_TEMPLATE == "pcap-ingest-{dataset}-{date}"


@needs_shared
def test_create_counts_documents_already_there_as_delivered(
    server: Server, sample_events: list[bytes]
) -> None:
    lines = sample_events[:300]
    for run in range(2):
        sink = BulkSink(server.url, index_template="stored-create-{dataset}", op_type="create")
        write_all(sink, lines)
        sink.close()
        assert sink.delivered == len(lines) and sink.rejected == 0
        assert sink.already_present == (len(lines) if run else 0)
    assert server.count("stored-create-*") == len(lines)


def test_refused_events_are_counted_with_reasons_not_dropped(server: Server) -> None:
    good = [make_event(f"g{i}", "t.x", n=i) for i in range(20)]
    # "n" is a long in this index from the first event on: a word there fails to map.
    bad = [make_event(f"b{i}", "t.x", n="word") for i in range(8)]
    sink = BulkSink(server.url, index_template="refuse-{dataset}")
    sink.write(good[0] + b"\n")
    sink.write(b"".join(line + b"\n" for line in good[1:] + bad) + b"{broken\n")
    sink.close()  # refused events do not make close fail: they are counted
    assert (sink.delivered, sink.rejected) == (20, 9)
    assert len(sink.rejected_reasons) == 5
    assert "mapper_parsing_exception" in " ".join(sink.rejected_reasons)
    assert sink.counters()["rejected"] == 9
    assert server.count("refuse-*") == 20


def test_whole_request_refusal_gives_up_at_once(server: Server) -> None:
    """A 4xx for the whole request (here 405: a wrong URL path) is a configuration error."""
    sink = BulkSink(server.url + "/_count/x", Delivery(timeout=30))
    sink.write(b'{"event":{"id":"1","dataset":"a"}}\n')
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        sink.close()
    assert time.monotonic() - started < 5
    assert raised.value.undelivered == 1 and "HTTP 4" in raised.value.reason


@needs_shared
def test_outage_then_restart_loses_nothing(own_server: Server, sample_events: list[bytes]) -> None:
    """Kill the server mid-run, keep writing, start it again on the same port.

    osmem forgets everything on restart, so: the sink delivers in order and one batch at a
    time, hence the events it had acknowledged when the server died are the first
    `acknowledged` ones; the first server is checked to hold a prefix of those before the
    kill, and the second server must hold every event after them.
    """
    lines = sample_events
    ids = event_ids(lines)
    delivery = Delivery(timeout=30, backoff_initial=0.02, backoff_max=0.3)
    template = "stored-outage-{dataset}"
    sink = BulkSink(own_server.url, delivery, index_template=template, batch_events=50)
    third = len(lines) // 3
    write_all(sink, lines[:third])
    wait_for(lambda: sink.delivered >= 100, what="a first delivery")
    checked = sink.delivered
    assert own_server.present_ids("stored-outage-*", ids[:checked]) == set(ids[:checked])
    own_server.kill()
    retries = sink.retries
    write_all(sink, lines[third : 2 * third])
    # Once the sender has failed, any answer the dead server sent has been read.
    wait_for(lambda: sink.retries > retries, what="a retry")
    acknowledged = sink.delivered
    assert checked <= acknowledged < len(lines)
    time.sleep(0.5)
    own_server.start()
    write_all(sink, lines[2 * third :])
    sink.close()
    assert sink.delivered == len(lines) and sink.rejected == 0 and sink.retries > retries
    after = own_server.present_ids("stored-outage-*", ids)
    assert after >= set(ids[acknowledged:])
    assert set(ids[:acknowledged]) | after == set(ids)
    assert own_server.count("stored-outage-*") == len(after)  # one document per id: no duplicates


def test_outage_longer_than_timeout_raises_with_undelivered_count(own_server: Server) -> None:
    lines = [make_event(f"e{i}", "t.o") for i in range(500)]
    timeout = 1.0
    sink = BulkSink(
        own_server.url,
        Delivery(timeout=timeout, backoff_initial=0.02, backoff_max=0.2),
        index_template="stored-timeout-{dataset}",
    )
    write_all(sink, lines[:100])
    wait_for(lambda: sink.delivered == 100, what="the first events")
    own_server.kill()
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        write_all(sink, lines[100:])  # may raise here, or else from close
        sink.close()
    assert time.monotonic() - started < timeout + 3
    error = raised.value
    assert error.sink == "bulk"
    # Every event handed to the sink is delivered, refused (none here) or reported undelivered.
    assert sink.delivered == 100
    assert error.undelivered == sink.events_in - 100 > 0
    assert f"{error.undelivered} events not delivered" in str(error)
    with pytest.raises(DeliveryError):
        sink.close()  # it stays failed: a later close does not pretend success


def test_backpressure_write_blocks_while_the_server_is_down(own_server: Server) -> None:
    budget = 64 * 1024
    event = b'{"event":{"id":"%d","dataset":"t.b"},"@timestamp":"2020-01-01T00:00:00Z","pad":"%s"}'
    chunks = [
        b"".join(event % (c * 50 + i, b"x" * 200) + b"\n" for i in range(50)) for c in range(60)
    ]  # 60 chunks of ~15 KB: ~0.9 MB in all, 14x the budget
    sink = BulkSink(
        own_server.url,
        Delivery(timeout=60, max_buffered_bytes=budget, backoff_max=0.2),
        index_template="stored-bp-{dataset}",
    )
    own_server.kill()
    written = []
    peak = 0

    def produce() -> None:
        for chunk in chunks:
            sink.write(chunk)
            written.append(len(chunk))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        peak = max(peak, sink.counters()["buffered_bytes"])
        time.sleep(0.01)
    assert producer.is_alive(), "write did not block with the server down"
    assert 0 < len(written) < len(chunks)
    assert peak <= budget
    own_server.start()
    producer.join(timeout=30)
    assert not producer.is_alive()
    sink.close()
    assert sink.delivered == 3000 and own_server.count("stored-bp-*") == 3000


def test_abort_is_fast_and_quiet_with_the_server_down(own_server: Server) -> None:
    sink = BulkSink(own_server.url, Delivery(timeout=60), index_template="stored-abort")
    own_server.kill()
    sink.write(b'{"event":{"id":"1","dataset":"a"}}\n' * 10)
    time.sleep(0.2)
    started = time.monotonic()
    sink.abort()
    assert time.monotonic() - started < 0.5


def test_hung_server_times_out_and_is_retried(own_server: Server) -> None:
    """The server stops answering (SIGSTOP) without closing connections: each request times
    out after request_timeout and is sent again; requests the frozen server still had queued
    are processed when it resumes, and index under the same ids: no duplicates."""
    lines = [make_event(f"h{i}", "t.h") for i in range(400)]
    sink = BulkSink(
        own_server.url,
        Delivery(timeout=30, backoff_initial=0.02, backoff_max=0.2),
        index_template="stored-hang-{dataset}",
        request_timeout=0.3,
    )
    write_all(sink, lines[:100])
    wait_for(lambda: sink.delivered == 100, what="the first events")
    assert own_server.process is not None
    own_server.process.process.send_signal(signal.SIGSTOP)
    try:
        write_all(sink, lines[100:])
        wait_for(lambda: sink.retries >= 2, what="timed-out requests")
    finally:
        own_server.process.process.send_signal(signal.SIGCONT)
    sink.close()
    assert sink.delivered == len(lines) and sink.rejected == 0
    assert own_server.count("stored-hang-*") == len(lines)


class TlsProxy:
    """TLS in front of the server: accepts TLS on its own port and pipes the plain bytes to
    the server, keeping what clients sent first (to see their request headers)."""

    def __init__(self, context: ssl.SSLContext, target_port: int) -> None:
        self.context = context
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.first_bytes: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                tls = self.context.wrap_socket(client, server_side=True)
            except OSError:
                if self.listener.fileno() < 0:
                    return
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(tls, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, tls, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record and len(self.first_bytes) < 4:
                    self.first_bytes.append(data)
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not found")
def test_https_with_basic_auth_from_the_url(server: Server, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    proxy = TlsProxy(server_context, server.port)
    try:
        lines = [make_event(f"s{i}", "t.s") for i in range(50)]
        sink = BulkSink(
            f"https://ingest:s%3Acret@127.0.0.1:{proxy.port}",
            index_template="stored-https-{dataset}",
            ssl_context=ssl.create_default_context(cafile=str(cert)),
            compress=True,
        )
        write_all(sink, lines)
        sink.close()
        assert sink.delivered == 50 and server.count("stored-https-*") == 50
        headers = b"".join(proxy.first_bytes).split(b"\r\n\r\n")[0].lower()
        credentials = base64.b64encode(b"ingest:s:cret").lower()
        assert b"authorization: basic " + credentials in headers
        assert b"content-encoding: gzip" in headers
    finally:
        proxy.close()


def test_https_refuses_a_certificate_it_cannot_verify(server: Server, tmp_path: Path) -> None:
    """The default context verifies: a self-signed server is an error, reported, not skipped."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    proxy = TlsProxy(server_context, server.port)
    try:
        sink = BulkSink(f"https://127.0.0.1:{proxy.port}", Delivery(timeout=0.5))
        sink.write(make_event("v1", "t.v") + b"\n")
        with pytest.raises(DeliveryError) as raised:
            sink.close()
        assert "CERTIFICATE_VERIFY_FAILED" in raised.value.reason
    finally:
        proxy.close()
