"""Events as RFC 5424 syslog messages over TCP or TLS, framed by RFC 6587 octet counting.

Each NDJSON event becomes one message, ``LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
MSGID SD MSG``, with the event's JSON, unchanged, as MSG::

    705 <134>1 2013-05-30T22:45:17.270862Z sensor1 pcap-ingest - pcap_ingest.flow - {"@time...

- PRI: ``facility * 8 + severity``. Facility local0 (16) unless told; severity warning (4) for
  anomaly events, informational (6) for the rest, or one fixed severity if told.
- TIMESTAMP: the event's ``@timestamp`` (capture time, not the time of sending), its
  nanoseconds truncated to the 6 fractional digits RFC 5424 allows; ``-`` if it has none, or
  a year from 2100 on, which rsyslog refuses (``RSYSLOG_YEAR_LIMIT``).
- HOSTNAME: the machine's name unless told; APP-NAME ``pcap-ingest``; PROCID ``-``;
  MSGID the event's dataset (``pcap_ingest.flow``); STRUCTURED-DATA ``-``.
- No BOM before MSG. RFC 5424 allows a plain octet MSG, and rsyslog does not strip a BOM: it
  stays in ``%msg%`` (checked with rsyslog 8.2302), where it would break every JSON parser
  downstream (mmjsonparse, Logstash, an ingest pipeline). The JSON is UTF-8 all the same.
- The server must accept messages as large as the largest event: rsyslog's default
  ``maxMessageSize`` is 8 KiB and it truncates beyond it; events here reach a few KiB (the
  largest in the reference captures is 4.4 KiB), so set ``global(maxMessageSize="64k")`` or
  more. ``counters()["largest_message_bytes"]`` says what a run needed.

What at-least-once means over syslog/TCP. The protocol has no acknowledgements, and a TCP ACK
only says the server's kernel has the bytes, not that the server read them (rsyslog killed
with bytes in its socket buffer loses them). The one signal a syslog server gives is the end
of a connection: we close our side (TLS: ``close_notify`` via ``unwrap()``, then TCP FIN) and
wait for the server to close its own. A server closes after reading our end of stream, so it
has read, parsed and queued every message before it. If it had closed for another reason
(shutting down), the bytes we sent after that are answered with a reset, not acknowledged, so
"the server closed and our send queue is empty (SIOCOUTQ == 0) with no socket error" is the
proof that it read everything. That is a *confirmation*; messages are *delivered* when one
covers them.

So the sink keeps a window of messages sent since the last confirmation, and confirms (closes
and reopens the connection) once the window holds ``confirm_bytes`` (a quarter of
``Delivery.max_buffered_bytes`` by default: 8 MiB, one reconnect per ~12k events), after
``idle_confirm_seconds`` without new events, and at ``close()``. A broken connection, a
failed confirmation or a stalled send (``io_timeout``) drops the connection and, once
reconnected, sends the whole window again: messages the server had already read arrive twice
(``counters()["resent"]`` says how many were sent again). Every event carries ``event.id``,
so a consumer can drop the duplicates. Past the last confirmation the server's own queue
holds the events: that they survive a crash of the server is its configuration (rsyslog:
disk-assisted queues), not something a client can see.

The window and the events not yet sent together stay under ``Delivery.max_buffered_bytes``
(counted in framed message bytes); ``write`` blocks beyond it. A sender thread does the I/O,
so the pipeline keeps converting while a confirmation or a reconnection is under way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import re
import socket
import ssl
import struct
import termios
import threading
from collections import deque
from dataclasses import dataclass

import orjson

from pipeline.sinks.delivery import Backoff, Delivery, DeliveryError, split_lines

SINK_NAME = "syslog"
DEFAULT_PORT = 514  # RFC 6587's customary port; 6514 for TLS (RFC 5425)
DEFAULT_TLS_PORT = 6514
FACILITY_LOCAL0 = 16
SEVERITY_WARNING = 4
SEVERITY_NOTICE = 5
SEVERITY_INFORMATIONAL = 6
APP_NAME = b"pcap-ingest"
ANOMALY_DATASET = b"pcap_ingest.anomaly"
NILVALUE = b"-"
# RFC 5424 field limits, in PRINTUSASCII characters (33..126).
MAX_HOSTNAME = 255
MAX_MSGID = 32
# rsyslog (8.2302, runtime/datetime.c) refuses a year from 2100 on, and then takes the whole
# header for the MSG, so the JSON no longer starts it. Such timestamps (a capture clock gone
# wrong: the 32-bit 2106 overflow) go as NILVALUE; the event keeps its @timestamp. Compared
# as bytes: "2099-..." < "2100" <= "2106-...".
RSYSLOG_YEAR_LIMIT = b"2100"
# Header prefixes cached per dataset; a handful of datasets exist, this only bounds a hostile
# input that would make every event its own dataset.
MAX_CACHED_HEADERS = 256
# Bytes taken from the not-yet-sent queue per send: large enough that a sendall amortises the
# lock and the syscall, small enough to keep the sender moving while write() refills.
SEND_BATCH_BYTES = 256 * 1024
DEFAULT_IDLE_CONFIRM_SECONDS = 1.0
# A send, a TLS handshake or a confirmation stalled this long counts as a broken connection.
DEFAULT_IO_TIMEOUT = 10.0
# A syslog server sends nothing; reading more than this while waiting for its close is a bug.
MAX_DRAIN_BYTES = 64 * 1024

_PRINTUSASCII = re.compile(rb"[!-~]+")
# An RFC 3339 date-time, its fraction cut to 6 digits: (date-time[.ffffff], zone).
_RFC3339_PATTERN = rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)\d*(Z|[+-]\d\d:\d\d)"
_RFC3339 = re.compile(_RFC3339_PATTERN)
_LEADING_TIMESTAMP = re.compile(rb'\{"@timestamp":"' + _RFC3339_PATTERN + rb'"')
_EVENT_KEY = b'"event":{'
_DATASET_KEY = b'"dataset":"'


# -- the message format: pure, no I/O -----------------------------------------------------------


def printable_field(value: bytes, limit: int) -> bytes:
    """A header field as RFC 5424 allows it: PRINTUSASCII, at most `limit` characters, else
    NILVALUE. Other bytes become '_' so a strange name stays recognisable."""
    if not value:
        return NILVALUE
    if not _PRINTUSASCII.fullmatch(value):
        value = bytes(b if 33 <= b <= 126 else 0x5F for b in value)
    return value[:limit]


def syslog_timestamp(ecs_timestamp: bytes) -> bytes:
    """``2013-05-30T22:45:17.270862000Z`` → ``2013-05-30T22:45:17.270862Z``: RFC 5424 allows
    at most 6 fractional digits, so the rest are cut (truncated, not rounded: rounding could
    carry into the next second and reorder events). Not an RFC 3339 date-time, or a year
    rsyslog refuses (RSYSLOG_YEAR_LIMIT) → NILVALUE."""
    match = _RFC3339.fullmatch(ecs_timestamp)
    if match is None or match[1] >= RSYSLOG_YEAR_LIMIT:
        return NILVALUE
    return match[1] + match[2]


def event_header_fields(line: bytes) -> tuple[bytes, bytes]:
    """(TIMESTAMP, MSGID source) of an NDJSON event: its ``@timestamp`` as RFC 5424 wants it
    (NILVALUE if none, or from 2100 on) and its ``event.dataset`` (b"" if none).

    The pipeline's encoders write ``@timestamp`` first and ``event`` as a flat object, so both
    are found by one anchored match and a few finds: ~1.6 µs an event here, against ~3.4 µs
    to parse it and check its timestamp (a whole message is framed in ~2.4 µs). A JSON string
    cannot fake the keys searched for: its quotes are escaped. Anything else (another writer's
    key order, an escaped character in the dataset) falls back to parsing the whole event.
    """
    stamp = _LEADING_TIMESTAMP.match(line)
    if stamp is not None:
        event = line.find(_EVENT_KEY)
        if event >= 0:
            event_end = line.find(b"}", event)
            key = line.find(_DATASET_KEY, event, event_end)
            if key >= 0:
                start = key + len(_DATASET_KEY)
                end = line.find(b'"', start, event_end)
                if end >= 0:
                    dataset = line[start:end]
                    if b"\\" not in dataset:
                        if stamp[1] >= RSYSLOG_YEAR_LIMIT:
                            return NILVALUE, dataset
                        return stamp[1] + stamp[2], dataset
    timestamp, dataset = _parsed_header_fields(line)
    return syslog_timestamp(timestamp), dataset


def _parsed_header_fields(line: bytes) -> tuple[bytes, bytes]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return b"", b""
    if not isinstance(doc, dict):
        return b"", b""
    timestamp = doc.get("@timestamp")
    event = doc.get("event")
    dataset = event.get("dataset") if isinstance(event, dict) else None
    return (
        timestamp.encode() if isinstance(timestamp, str) else b"",
        dataset.encode() if isinstance(dataset, str) else b"",
    )


class Rfc5424Framer:
    """NDJSON events → octet-counted RFC 5424 messages (``LEN SP MSG``), one per event."""

    def __init__(
        self,
        hostname: str | None = None,
        facility: int = FACILITY_LOCAL0,
        severity: int | None = None,
    ) -> None:
        if not 0 <= facility <= 23:
            raise ValueError(f"syslog facility must be 0..23, not {facility}")
        if severity is not None and not 0 <= severity <= 7:
            raise ValueError(f"syslog severity must be 0..7, not {severity}")
        self.facility = facility
        self.severity = severity
        name = socket.gethostname() if hostname is None else hostname
        self.hostname = printable_field(name.encode(), MAX_HOSTNAME)
        # dataset → (b"<PRI>1 ", b" HOSTNAME APP-NAME - MSGID - "): all but the timestamp.
        self._headers: dict[bytes, tuple[bytes, bytes]] = {}

    def severity_of(self, dataset: bytes) -> int:
        if self.severity is not None:
            return self.severity
        return SEVERITY_WARNING if dataset == ANOMALY_DATASET else SEVERITY_INFORMATIONAL

    def _header(self, dataset: bytes) -> tuple[bytes, bytes]:
        header = self._headers.get(dataset)
        if header is None:
            pri = self.facility * 8 + self.severity_of(dataset)
            msgid = printable_field(dataset, MAX_MSGID)
            header = (
                b"<%d>1 " % pri,
                b" %s %s - %s - " % (self.hostname, APP_NAME, msgid),
            )
            if len(self._headers) < MAX_CACHED_HEADERS:
                self._headers[dataset] = header
        return header

    def message(self, line: bytes) -> bytes:
        """The RFC 5424 message (no framing) carrying `line` as its MSG."""
        timestamp, dataset = event_header_fields(line)
        pri, rest = self._header(dataset)
        return b"".join((pri, timestamp, rest, line))

    def frame(self, line: bytes) -> bytes:
        """``LEN SP MSG`` (RFC 6587 octet counting: no trailer, so a newline inside an event
        could never split it)."""
        message = self.message(line)
        return b"%d %s" % (len(message), message)


def parse_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """Octet-counted messages in `data`, and the incomplete rest: the reader's side of
    ``Rfc5424Framer.frame``, for tests and tools. Raises ValueError on a malformed length."""
    messages: list[bytes] = []
    pos = 0
    while True:
        space = data.find(b" ", pos, pos + 11)
        if space < 0:
            if len(data) - pos > 10:
                raise ValueError(f"no octet count at offset {pos}")
            return messages, data[pos:]
        digits = data[pos:space]
        if not digits.isdigit() or digits.startswith(b"0"):
            raise ValueError(f"bad octet count {digits!r} at offset {pos}")
        end = space + 1 + int(digits)
        if end > len(data):
            return messages, data[pos:]
        messages.append(data[space + 1 : end])
        pos = end


# -- the connection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyslogTls:
    """TLS to the syslog server (RFC 5425). The server's certificate is verified against
    `ca_file` (the system's CAs if None) and its name against `server_name` (the host if
    None) unless `verify` is False. `cert_file`/`key_file`: a client certificate, for servers
    that require one (rsyslog ``StreamDriver.AuthMode="x509/certvalid"``)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class _Unconfirmed(OSError):
    """The server closed the connection without having read everything we sent."""


def _unacknowledged_bytes(sock: socket.socket) -> int:
    """Bytes (and FIN) sent on `sock` that the peer has not acknowledged (Linux SIOCOUTQ);
    0 where the ioctl does not exist, which weakens the confirmation to "the server closed"."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


def _confirm_and_close(sock: socket.socket, tls: bool) -> None:
    """Close our side and wait for the server to close its own; raise _Unconfirmed (or the
    socket's error) unless that proves it read everything (see the module doc)."""
    try:
        server_closed = False
        if tls:
            assert isinstance(sock, ssl.SSLSocket)
            try:
                # Sends close_notify, then waits for the server's. rsyslog sends none: it
                # closes the TCP connection, which unwrap reports as an unexpected EOF.
                sock = sock.unwrap()
            except ssl.SSLEOFError:
                server_closed = True
        if not server_closed:
            sock.shutdown(socket.SHUT_WR)
            drained = 0
            while chunk := sock.recv(4096):
                drained += len(chunk)
                if drained > MAX_DRAIN_BYTES:
                    raise _Unconfirmed("the server sends data instead of closing")
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, errno.errorcode.get(error, str(error)))
        unacknowledged = _unacknowledged_bytes(sock)
        if unacknowledged:
            raise _Unconfirmed(f"the server closed with {unacknowledged} bytes unacknowledged")
    finally:
        sock.close()


def _hard_close(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket's: it only calls shutdown(2) on the descriptor, so
    # it is safe while the sender thread is blocked in a send on the same socket (and wakes it).
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, _Unconfirmed) else text


# -- the sink ------------------------------------------------------------------------------------

_SEND, _CONFIRM, _STOP = "send", "confirm", "stop"


class SyslogSink:
    """Events to a syslog server over TCP (``tls=None``) or TLS, at least once (module doc).

    ``write(chunk)`` takes whole NDJSON lines and returns once they are queued (blocking while
    ``Delivery.max_buffered_bytes`` of messages are undelivered); ``close()`` returns once the
    server has confirmed every message; ``abort()`` drops everything. Counters: ``delivered``
    (events the server confirmed), ``retries`` (failed attempts retried) and ``counters()``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: SyslogTls | None = None,
        facility: int = FACILITY_LOCAL0,
        severity: int | None = None,
        hostname: str | None = None,
        delivery: Delivery | None = None,
        confirm_bytes: int | None = None,
        idle_confirm_seconds: float = DEFAULT_IDLE_CONFIRM_SECONDS,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.delivery = delivery or Delivery()
        self.framer = Rfc5424Framer(hostname=hostname, facility=facility, severity=severity)
        self.confirm_bytes = max(1, confirm_bytes or self.delivery.max_buffered_bytes // 4)
        self.idle_confirm_seconds = idle_confirm_seconds
        # A stall shorter than the outage allowance: the retries then get their turn.
        self.io_timeout = min(io_timeout, max(self.delivery.timeout, 0.1))
        self._context = tls.context() if tls is not None else None  # bad files fail here
        self.paths: list[str] = []  # the file sinks' attribute; a network sink writes none

        self.accepted = 0  # events given to write()
        self.delivered = 0  # events covered by a confirmation
        self.sent = 0  # messages written to a connection, resends included
        self.resent = 0  # messages sent again after a broken connection
        self.connections = 0
        self.confirmations = 0
        self.largest_message_bytes = 0
        self._backoff = Backoff(self.delivery)

        self._cond = threading.Condition()
        # Framed messages not yet sent, and the window: sent since the last confirmation.
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._window: list[bytes] = []
        self._window_bytes = 0
        self._window_sent = 0  # messages of the window sent on the current connection
        self._window_ever_sent = 0  # ... on any connection since the last confirmation
        self._sock: socket.socket | None = None
        self._closing = False
        self._aborted = False
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="syslog-sender", daemon=True)
        self._thread.start()

    @property
    def retries(self) -> int:
        return self._backoff.retries

    def counters(self) -> dict[str, int]:
        with self._cond:
            return {
                "accepted": self.accepted,
                "delivered": self.delivered,
                "undelivered": self.accepted - self.delivered,
                "buffered_bytes": self._pending_bytes + self._window_bytes,
                "sent": self.sent,
                "resent": self.resent,
                "retries": self.retries,
                "connections": self.connections,
                "confirmations": self.confirmations,
                "largest_message_bytes": self.largest_message_bytes,
            }

    def _error(self) -> DeliveryError:
        assert self._failure is not None
        return DeliveryError(SINK_NAME, self.accepted - self.delivered, self._failure)

    # -- the producer's side

    def write(self, chunk: bytes) -> None:
        frame = self.framer.frame
        frames = [frame(line) for line in split_lines(chunk) if line]
        if not frames:
            return
        largest = max(map(len, frames))
        limit = self.delivery.max_buffered_bytes
        with self._cond:
            if self._aborted:
                return
            if self._closing:
                raise ValueError("write to a closed syslog sink")
            self.accepted += len(frames)
            self.largest_message_bytes = max(self.largest_message_bytes, largest)
            i = 0
            while i < len(frames):
                if self._failure is not None:
                    raise self._error()
                if self._aborted:
                    return
                used = self._pending_bytes + self._window_bytes
                added = i
                # One message always fits into an empty buffer, however large it is.
                while i < len(frames) and (used + len(frames[i]) <= limit or used == 0):
                    used += len(frames[i])
                    i += 1
                if i > added:
                    self._pending.extend(frames[added:i])
                    self._pending_bytes += sum(map(len, frames[added:i]))
                    self._cond.notify_all()
                else:
                    self._cond.wait()  # backpressure: until a confirmation frees room

    def close(self) -> None:
        """Send everything and return once the server has confirmed it all; DeliveryError if
        it could not within ``Delivery.timeout`` of outage."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            if self._failure is not None:
                raise self._error()

    def abort(self) -> None:
        """Drop every undelivered message and the connection, now, without raising."""
        with self._cond:
            self._aborted = self._closing = True
            self._pending.clear()
            self._pending_bytes = 0
            sock = self._sock
            self._cond.notify_all()
        if sock is not None:
            _hard_close(sock)
        # The sender may be sleeping a backoff delay (at most backoff_max): it is a daemon
        # thread and stops at its next look at _aborted, so abort does not wait for it.
        self._thread.join(timeout=0.2)

    # -- the sender thread

    def _next_step(self) -> str:
        """What the sender does next (called with the lock held; waits for work)."""
        while True:
            if self._aborted:
                return _STOP
            if self._window_sent < len(self._window):
                return _SEND  # the window again, on a new connection
            if self._pending and self._window_bytes < self.confirm_bytes:
                taken = 0
                while self._pending and taken < SEND_BATCH_BYTES:
                    if self._window_bytes + taken >= self.confirm_bytes and taken:
                        break
                    message = self._pending.popleft()
                    self._window.append(message)
                    taken += len(message)
                self._pending_bytes -= taken
                self._window_bytes += taken
                return _SEND
            if self._window and (self._pending or self._closing):
                return _CONFIRM  # the window is full, or this is the end
            if self._closing:
                return _STOP
            if self._window:
                if not self._cond.wait(self.idle_confirm_seconds):
                    return _CONFIRM  # idle: confirm what is out there now, not at close
            else:
                self._cond.wait()

    def _connect(self) -> socket.socket:
        sock: socket.socket = socket.create_connection(
            (self.host, self.port), timeout=self.io_timeout
        )
        try:
            if self._context is not None:
                assert self.tls is not None
                sock = self._context.wrap_socket(
                    sock, server_hostname=self.tls.server_name or self.host
                )
        except BaseException:
            sock.close()
            raise
        with self._cond:
            if self._aborted:
                sock.close()
                raise OSError(errno.ECONNABORTED, "sink aborted")
            self._sock = sock
            self.connections += 1
            self._window_sent = 0
        return sock

    def _send(self) -> None:
        sock = self._sock or self._connect()
        start, end = self._window_sent, len(self._window)
        sock.sendall(b"".join(self._window[start:end]))
        with self._cond:
            self._window_sent = end
            self.resent += max(0, min(end, self._window_ever_sent) - start)
            self._window_ever_sent = max(self._window_ever_sent, end)
            self.sent += end - start

    def _confirm(self) -> None:
        sock = self._sock
        if sock is None:  # the connection broke after the window was sent: send it again
            self._send()
            sock = self._sock
            assert sock is not None
        with self._cond:
            self._sock = None
        _confirm_and_close(sock, tls=self._context is not None)
        with self._cond:
            self.delivered += len(self._window)
            self.confirmations += 1
            self._window.clear()
            self._window_bytes = self._window_sent = self._window_ever_sent = 0
            self._cond.notify_all()  # room for blocked writers
        self._backoff.succeeded()

    def _drop_connection(self) -> None:
        with self._cond:
            sock, self._sock = self._sock, None
            self._window_sent = 0
        if sock is not None:
            _hard_close(sock)
            sock.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                step = self._next_step()
            if step is _STOP:
                self._drop_connection()
                return
            try:
                if step is _SEND:
                    self._send()
                else:
                    self._confirm()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._drop_connection()
                if self._aborted:
                    return
                # A certificate the server will present again is not an outage: give up now.
                fatal = isinstance(exc, ssl.SSLCertVerificationError)
                if fatal or not self._backoff.failed():
                    with self._cond:
                        self._failure = (
                            f"{_reason(exc)} ({self.host}:{self.port}, "
                            f"{'certificate refused' if fatal else 'outage beyond timeout'})"
                        )
                        self._cond.notify_all()
                    return
