"""The syslog sink against a real rsyslogd (Debian rsyslog + rsyslog-gnutls), started here.

rsyslogd runs in the foreground (``-n``) with a config written by the test: no system socket
(imuxsock is not loaded), its own work directory and pid file under tmp, ``imtcp`` on a free
loopback port and a second one with the ``gtls`` stream driver that requires a client
certificate signed by the test's CA (certificates made with the openssl CLI). Every message's
raw MSG goes to ``out/<HOSTNAME>.log``: each test sends under its own HOSTNAME, so tests
sharing a server read only their own events, and compare them with what they sent.

The format itself (header fields, truncation, framing) is tested without a server first.
"""

from __future__ import annotations

import contextlib
import glob
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from pipeline.convert import DATASETS, ConvertOptions, convert_file
from pipeline.sinks.delivery import Delivery, DeliveryError
from pipeline.sinks.syslog import (
    NILVALUE,
    Rfc5424Framer,
    SyslogSink,
    SyslogTls,
    _parsed_header_fields,
    event_header_fields,
    parse_frames,
    printable_field,
    syslog_timestamp,
)
from tests.conftest import CAPTURE_PARAMS, REFERENCE_CAPTURES, SHARED, needs_shared
from tests.sink_support import CollectingSink, free_port

RSYSLOGD = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
OPENSSL = shutil.which("openssl")
HAVE_GTLS = bool(
    glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so") + glob.glob("/usr/lib/rsyslog/*gtls*")
)
needs_rsyslog = pytest.mark.skipif(
    RSYSLOGD is None, reason="rsyslogd not installed (Debian: apt-get install rsyslog)"
)
needs_tls = pytest.mark.skipif(
    RSYSLOGD is None or OPENSSL is None or not HAVE_GTLS,
    reason="TLS needs rsyslogd, its gtls driver (apt-get install rsyslog-gnutls) and openssl",
)
# rsyslog's default is 8 KiB and it truncates beyond: the events here need more.
MAX_MESSAGE_SIZE = "256k"
SERVER_START_SECONDS = 10.0
ARRIVAL_SECONDS = 15.0

SAMPLE_EVENT = (
    b'{"@timestamp":"2013-05-30T22:45:17.270862123Z","ecs":{"version":"8.11.0"},"event":{"id":'
    b'"990781560ba0-1","kind":"event","dataset":"pcap_ingest.packet","module":"pcap_ingest"},'
    b'"network":{"community_id":"1:kYPR"}}'
)


# -- the format, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ecs", "expected"),
    [
        (b"2013-05-30T22:45:17.270862000Z", b"2013-05-30T22:45:17.270862Z"),
        (b"2013-05-30T22:45:17.270862999Z", b"2013-05-30T22:45:17.270862Z"),  # cut, not rounded
        (b"2013-05-30T22:45:17.1Z", b"2013-05-30T22:45:17.1Z"),
        (b"2013-05-30T22:45:17Z", b"2013-05-30T22:45:17Z"),
        (b"2013-05-30T22:45:17.123456789+02:00", b"2013-05-30T22:45:17.123456+02:00"),
        (b"2013-05-30T22:45:17.Z", NILVALUE),
        (b"2099-12-31T23:59:59.999999999Z", b"2099-12-31T23:59:59.999999Z"),
        (b"2106-02-07T06:28:16.000000000Z", NILVALUE),  # rsyslog refuses years from 2100
        (b"2013-05-30 22:45:17Z", NILVALUE),
        (b"yesterday", NILVALUE),
        (b"", NILVALUE),
    ],
)
def test_timestamp_truncated_to_microseconds(ecs: bytes, expected: bytes) -> None:
    assert syslog_timestamp(ecs) == expected


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (b"pcap_ingest.flow", 32, b"pcap_ingest.flow"),
        (b"x" * 40, 32, b"x" * 32),
        (b"two words", 32, b"two_words"),
        ("h\u00f4te".encode(), 255, b"h__te"),
        (b"", 32, NILVALUE),
    ],
)
def test_header_fields_are_printable_ascii(value: bytes, limit: int, expected: bytes) -> None:
    assert printable_field(value, limit) == expected


def test_message_header() -> None:
    framer = Rfc5424Framer(hostname="sensor1")
    message = framer.message(SAMPLE_EVENT)
    # local0 (16) * 8 + informational (6) = 134; no BOM before the JSON.
    assert message == (
        b"<134>1 2013-05-30T22:45:17.270862Z sensor1 pcap-ingest - pcap_ingest.packet - "
        + SAMPLE_EVENT
    )
    anomaly = SAMPLE_EVENT.replace(b"pcap_ingest.packet", b"pcap_ingest.anomaly")
    assert framer.message(anomaly).startswith(b"<132>1 ")  # warning
    fixed = Rfc5424Framer(hostname="h", facility=1, severity=5)
    assert fixed.message(anomaly).startswith(b"<13>1 ")  # user.notice, whatever the event
    with pytest.raises(ValueError):
        Rfc5424Framer(facility=24)
    with pytest.raises(ValueError):
        Rfc5424Framer(severity=8)


def test_message_of_unusual_events() -> None:
    framer = Rfc5424Framer(hostname="h")
    # Keys in another order: found by parsing instead of scanning.
    reordered = b'{"event":{"dataset":"pcap_ingest.flow"},"@timestamp":"2020-01-01T00:00:00.5Z"}'
    assert framer.message(reordered).startswith(
        b"<134>1 2020-01-01T00:00:00.5Z h pcap-ingest - pcap_ingest.flow - {"
    )
    # No timestamp, no dataset (NILVALUE for both), a long dataset (MSGID cut to 32).
    assert framer.message(b'{"a":1}') == b'<134>1 - h pcap-ingest - - - {"a":1}'
    long_dataset = b'{"event":{"dataset":"' + b"d" * 50 + b'"}}'
    assert b" " + b"d" * 32 + b" - {" in framer.message(long_dataset)
    # Not JSON at all: sent as it is, with a NILVALUE header.
    assert framer.message(b"not json") == b"<134>1 - h pcap-ingest - - - not json"


def test_octet_counting_round_trip() -> None:
    framer = Rfc5424Framer(hostname="h")
    events = [SAMPLE_EVENT, b'{"a":"\xc3\xa9"}', b'{"big":"' + b"x" * 20_000 + b'"}']
    stream = b"".join(framer.frame(event) for event in events)
    messages, rest = parse_frames(stream)
    assert rest == b""
    assert messages == [framer.message(event) for event in events]
    assert all(m.endswith(e) for m, e in zip(messages, events, strict=True))
    assert messages[0].startswith(b"<134>1 ")
    # Fed in pieces: what is whole comes out, the rest waits.
    for cut in (1, 3, 100, len(stream) - 1):
        head, rest = parse_frames(stream[:cut])
        assert head == messages[: len(head)]
        assert rest + stream[cut:] == b"".join(framer.frame(e) for e in events[len(head) :])
    with pytest.raises(ValueError):
        parse_frames(b"x12 <134>1 ...")


@needs_shared
def test_scanned_header_fields_match_parsed_ones() -> None:
    """The scanning fast path agrees with parsing on every event of a few real captures."""
    lines = b"".join(_events_of(SHARED / name) for name in _SOME_CAPTURES).splitlines()
    assert lines
    for line in lines:
        timestamp, dataset = _parsed_header_fields(line)
        assert event_header_fields(line) == (syslog_timestamp(timestamp), dataset), line[:200]


# -- the server ----------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed neither

    def client(self, **overrides: object) -> SyslogTls:
        options: dict[str, object] = {
            "ca_file": str(self.ca),
            "cert_file": str(self.client_cert),
            "key_file": str(self.client_key),
        }
        options.update(overrides)
        return SyslogTls(**options)  # type: ignore[arg-type]


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN=pcap-ingest test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            cwd=directory,
        )  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=directory,
        )  # fmt: skip
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


class Rsyslog:
    """One rsyslogd in the foreground; `stop()` and `start()` again keep its ports."""

    def __init__(self, directory: Path, certificates: Certificates | None = None) -> None:
        self.directory = directory
        self.out = directory / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        (directory / "work").mkdir(exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if certificates is not None else None
        self.config = directory / "rsyslog.conf"
        self.config.write_text(self._config(certificates))
        self.log = directory / "rsyslogd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self, certificates: Certificates | None) -> str:
        tls_files = ""
        tls_input = ""
        if certificates is not None:
            tls_files = (
                f'defaultNetstreamDriverCAFile="{certificates.ca}"\n'
                f'defaultNetstreamDriverCertFile="{certificates.server_cert}"\n'
                f'defaultNetstreamDriverKeyFile="{certificates.server_key}"\n'
            )
            tls_input = (
                f'input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" '
                'ruleset="events" streamDriver.name="gtls" streamDriver.mode="1" '
                'streamDriver.authMode="x509/certvalid")\n'
            )
        # No imuxsock (no /dev/log), inputs bound to their own ruleset so rsyslog's own
        # messages never reach the files, one file per HOSTNAME holding only the MSG.
        return (
            f'global(workDirectory="{self.directory / "work"}" '
            f'maxMessageSize="{MAX_MESSAGE_SIZE}"\n{tls_files})\n'
            'module(load="imtcp" maxSessions="200")\n'
            'template(name="raw" type="string" string="%msg%\\n")\n'
            f'template(name="perhost" type="string" string="{self.out}/%hostname%.log")\n'
            'ruleset(name="events") {\n'
            '  action(type="omfile" dynaFile="perhost" template="raw" dynaFileCacheSize="500")\n'
            "}\n"
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}" ruleset="events")\n'
            + tls_input
        )

    def start(self) -> None:
        assert RSYSLOGD is not None
        pidfile = self.directory / "rsyslogd.pid"
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [RSYSLOGD, "-n", "-C", "-f", str(self.config), "-i", str(pidfile)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + SERVER_START_SECONDS
        for port in (self.port, self.tls_port):
            while port is not None:
                if self.process.poll() is not None:
                    raise RuntimeError(f"rsyslogd exited: {self.log.read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"rsyslogd not listening on {port}") from None
                    time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: rsyslog writes out what it has queued."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def lines(self, hostname: str) -> list[bytes]:
        """The whole lines written so far (a line being written is left for later)."""
        path = self.out / f"{hostname}.log"
        data = path.read_bytes() if path.exists() else b""
        return data[: data.rfind(b"\n") + 1].splitlines()

    def wait_lines(
        self, hostname: str, count: int, done: Callable[[list[bytes]], bool] | None = None
    ) -> list[bytes]:
        """The lines under `hostname` once there are at least `count` (and `done` says so:
        with duplicates, a count is reached before the last line arrives), or what there is
        at the deadline. omfile writes at the end of each batch rsyslog dequeues."""
        deadline = time.monotonic() + ARRIVAL_SECONDS
        while True:
            lines = self.lines(hostname)
            complete = len(lines) >= count and (done is None or done(lines))
            if complete or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    """A plain TCP rsyslogd shared by the tests that do not stop it."""
    if RSYSLOGD is None:
        pytest.skip("rsyslogd not installed (Debian: apt-get install rsyslog)")
    rsyslog = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    rsyslog.start()
    yield rsyslog
    rsyslog.stop()


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[Rsyslog]:
    if RSYSLOGD is None or not HAVE_GTLS:
        pytest.skip("TLS needs rsyslogd and its gtls driver (apt-get install rsyslog-gnutls)")
    rsyslog = Rsyslog(tmp_path_factory.mktemp("rsyslog-tls"), certificates)
    rsyslog.start()
    yield rsyslog
    rsyslog.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Rsyslog]:
    """An rsyslogd for one test, which it may stop and start."""
    if RSYSLOGD is None:
        pytest.skip("rsyslogd not installed (Debian: apt-get install rsyslog)")
    rsyslog = Rsyslog(tmp_path / "rsyslog")
    yield rsyslog
    rsyslog.stop()


# -- events --------------------------------------------------------------------------------------

_SOME_CAPTURES = ("ndpi__dns.pcap", "ndpi__1kxun.pcap", "ndpi__netflix.pcap")  # ~2.7 MB
_EVENTS_CACHE: dict[Path, bytes] = {}


def _events_of(capture: Path) -> bytes:
    """Every dataset's events of `capture`, as the converter writes them to a sink."""
    if capture not in _EVENTS_CACHE:
        collect = CollectingSink()
        convert_file(str(capture), collect, ConvertOptions(extract=DATASETS))
        _EVENTS_CACHE[capture] = b"".join(collect.chunks)
    return _EVENTS_CACHE[capture]


def _some_events() -> bytes:
    if not REFERENCE_CAPTURES:
        pytest.skip(f"reference captures not found at {SHARED}")
    return b"".join(_events_of(SHARED / name) for name in _SOME_CAPTURES)


def _chunks(events: bytes, lines_per_chunk: int = 512) -> list[bytes]:
    lines = events.splitlines(keepends=True)
    return [b"".join(lines[i : i + lines_per_chunk]) for i in range(0, len(lines), lines_per_chunk)]


def _ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["event"]["id"] for line in lines]


# -- delivery ------------------------------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_every_event_of_a_capture_arrives(server: Rsyslog, capture: Path) -> None:
    """Count in = count out, byte for byte, through the converter writing into the sink."""
    hostname = f"cap-{REFERENCE_CAPTURES.index(capture)}"
    collect = CollectingSink()
    sink = SyslogSink("127.0.0.1", server.port, hostname=hostname)

    class Both:
        def write(self, chunk: bytes) -> None:
            collect.write(chunk)
            sink.write(chunk)

    convert_file(str(capture), Both(), ConvertOptions(extract=DATASETS))  # type: ignore[arg-type]
    sink.close()
    sent = b"".join(collect.chunks).splitlines()
    assert sink.delivered == sink.accepted == len(sent)
    assert sink.counters()["buffered_bytes"] == 0
    assert server.wait_lines(hostname, len(sent)) == sent


def test_large_event_arrives_whole(server: Rsyslog) -> None:
    """An event past rsyslog's default 8 KiB limit, with the server configured for it."""
    event = orjson.loads(SAMPLE_EVENT)
    event["message"] = "x" * 100_000
    line = orjson.dumps(event)
    sink = SyslogSink("127.0.0.1", server.port, hostname="large")
    sink.write(line + b"\n" + SAMPLE_EVENT + b"\n")
    sink.close()
    assert sink.counters()["largest_message_bytes"] > 100_000
    assert server.wait_lines("large", 2) == [line, SAMPLE_EVENT]


@needs_tls
def test_tls_with_client_certificate(tls_server: Rsyslog, certificates: Certificates) -> None:
    events = _some_events()
    sink = SyslogSink(
        "127.0.0.1",
        tls_server.tls_port or 0,
        tls=certificates.client(),
        hostname="tls",
        confirm_bytes=256 * 1024,  # several confirmations: TLS closed and reopened
    )
    for chunk in _chunks(events):
        sink.write(chunk)
    sink.close()
    sent = events.splitlines()
    assert sink.delivered == len(sent)
    assert sink.counters()["confirmations"] > 1
    assert tls_server.wait_lines("tls", len(sent)) == sent


@needs_tls
def test_tls_certificate_verification(tls_server: Rsyslog, certificates: Certificates) -> None:
    # A CA that did not sign the server's certificate: refused at once, not retried.
    refused = SyslogSink(
        "127.0.0.1",
        tls_server.tls_port or 0,
        tls=certificates.client(ca_file=str(certificates.other_ca)),
        hostname="refused",
        delivery=Delivery(timeout=30),
    )
    started = time.monotonic()
    refused.write(SAMPLE_EVENT + b"\n")
    with pytest.raises(DeliveryError) as raised:
        refused.close()
    assert time.monotonic() - started < 5
    assert raised.value.undelivered == 1
    assert "certificate" in raised.value.reason
    # A name the certificate does not carry: refused too.
    wrong_name = SyslogSink(
        "127.0.0.1",
        tls_server.tls_port or 0,
        tls=certificates.client(server_name="syslog.example.org"),
        hostname="wrong-name",
    )
    wrong_name.write(SAMPLE_EVENT + b"\n")
    with pytest.raises(DeliveryError):
        wrong_name.close()
    # Verification off: the same untrusted CA is accepted.
    unverified = SyslogSink(
        "127.0.0.1",
        tls_server.tls_port or 0,
        tls=certificates.client(ca_file=str(certificates.other_ca), verify=False),
        hostname="unverified",
    )
    unverified.write(SAMPLE_EVENT + b"\n")
    unverified.close()
    assert tls_server.wait_lines("unverified", 1) == [SAMPLE_EVENT]
    assert tls_server.lines("refused") == tls_server.lines("wrong-name") == []
    # A missing CA file is a configuration error, raised by the constructor.
    with pytest.raises(OSError):
        SyslogSink("127.0.0.1", 1, tls=SyslogTls(ca_file=str(certificates.ca) + ".missing"))


def _wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_outage_then_restart_delivers_everything(own_server: Rsyslog) -> None:
    """rsyslog stopped mid-run with sent-but-unconfirmed messages, restarted on the same port:
    every event arrives, some twice (the resent window)."""
    events = _some_events()
    chunks = _chunks(events)
    own_server.start()
    sink = SyslogSink(
        "127.0.0.1",
        own_server.port,
        hostname="outage",
        delivery=Delivery(timeout=20),
        confirm_bytes=2 * 1024 * 1024,  # the window outlives the stop below
        idle_confirm_seconds=60,
    )
    third = len(chunks) // 3
    for chunk in chunks[:third]:
        sink.write(chunk)
    _wait_for(lambda: sink.counters()["sent"] == sink.accepted)
    own_server.stop()  # with the window unconfirmed
    for chunk in chunks[third : 2 * third]:
        sink.write(chunk)
    restart = threading.Timer(1.0, own_server.start)
    restart.start()
    for chunk in chunks[2 * third :]:
        sink.write(chunk)
    sink.close()
    restart.join()
    sent = events.splitlines()
    counters = sink.counters()
    assert sink.delivered == len(sent)
    assert sink.retries > 0 and counters["resent"] > 0
    expected_ids = set(_ids(sent))
    arrived = own_server.wait_lines(
        "outage", len(sent), lambda lines: set(_ids(lines)) == expected_ids
    )
    assert set(_ids(arrived)) == expected_ids
    # Duplicates only: every line that arrived is one that was sent, whole.
    assert set(arrived) <= set(sent)
    assert len(arrived) <= len(sent) + counters["resent"]


def test_outage_beyond_timeout_raises(own_server: Rsyslog) -> None:
    events = _some_events()
    chunks = _chunks(events)
    own_server.start()
    sink = SyslogSink(
        "127.0.0.1",
        own_server.port,
        hostname="timeout",
        delivery=Delivery(timeout=1.0),
        idle_confirm_seconds=0.05,
    )
    sink.write(chunks[0])
    confirmed = chunks[0].count(b"\n")
    _wait_for(lambda: sink.delivered == confirmed)
    own_server.stop()
    started = time.monotonic()
    given = confirmed
    with pytest.raises(DeliveryError) as raised:
        for chunk in chunks[1:]:
            given += chunk.count(b"\n")
            sink.write(chunk)
        sink.close()
    assert time.monotonic() - started < 6
    assert raised.value.sink == "syslog"
    assert raised.value.undelivered == given - confirmed
    assert sink.delivered == confirmed
    assert own_server.wait_lines("timeout", confirmed) == chunks[0].splitlines()


def test_backpressure_blocks_write_while_server_down(own_server: Rsyslog) -> None:
    """With the server down, write() blocks once max_buffered_bytes are held, and goes on
    once the server is back."""
    events = _some_events()
    limit = 64 * 1024
    sink = SyslogSink(
        "127.0.0.1",
        own_server.port,  # nothing listens yet
        hostname="backpressure",
        delivery=Delivery(timeout=30, max_buffered_bytes=limit),
    )
    writer_done = threading.Event()

    def write_all() -> None:
        for chunk in _chunks(events, 64):
            sink.write(chunk)
        writer_done.set()

    writer = threading.Thread(target=write_all, daemon=True)
    writer.start()
    time.sleep(1.0)
    assert not writer_done.is_set()  # blocked, not buffering everything
    counters = sink.counters()
    assert 0 < counters["buffered_bytes"] <= limit
    assert counters["delivered"] == 0 and counters["accepted"] < events.count(b"\n")
    own_server.start()
    assert writer_done.wait(20)
    sink.close()
    sent = events.splitlines()
    assert sink.delivered == len(sent)
    assert own_server.wait_lines("backpressure", len(sent)) == sent


def test_abort_is_fast_and_quiet(own_server: Rsyslog) -> None:
    sink = SyslogSink("127.0.0.1", own_server.port, hostname="abort", delivery=Delivery(timeout=30))
    sink.write(SAMPLE_EVENT + b"\n")
    time.sleep(0.2)  # the sender is retrying the refused connection
    started = time.monotonic()
    sink.abort()
    assert time.monotonic() - started < 1
    sink.write(SAMPLE_EVENT + b"\n")  # ignored after abort
    assert sink.delivered == 0
