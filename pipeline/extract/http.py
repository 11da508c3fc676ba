"""HTTP/1.x on reassembled TCP streams: messages, and requests paired with responses. Pure.

Two layers, no I/O:

* `HttpStream` — one direction of one TCP connection (the client's requests, or the server's
  responses). Feed it the in-order bytes the flow table's reassembly delivers, in whatever
  pieces they come; it returns `HttpMessage`s as their heads complete (`HEAD_DONE`) and as their
  bodies end (`MESSAGE_DONE`). Body framing follows RFC 9112 6.3: no body for responses to
  HEAD, for 1xx, 204 and 304; chunked when the last transfer coding is chunked (trailers read
  and skipped); else Content-Length; else, for a response, until the connection closes; for a
  request, no body. CONNECT answered 2xx and 101 Switching Protocols end the HTTP part of the
  connection (`STOP_TUNNEL`). Bytes that are not HTTP stop the stream at once (`STOP_NOT_HTTP`)
  so a non-HTTP connection costs a few bytes of sniffing; a malformed head or framing, or a
  head past `MAX_HEAD_BYTES` / `MAX_HEADERS`, stops it with a typed `HttpError`. It never
  raises: a bug costs the stream (`decoder_bug`), never the run.
* `HttpExtractor` — the flow table's stream subscriber: per flow a request stream and a
  response stream, requests paired with responses in order (HTTP/1.1 pipelining answers in
  request order), interim 1xx responses (100-continue) kept with their request, responses
  with no request seen reported alone, requests with no response reported when the flow ends.
  Each pair lands in `ended` as an `HttpTransaction`.

Lenient where real servers are: bare LF line ends, leading empty lines before a request line,
obsolete line folding, an empty request target (``GET  HTTP/1.1``).

Buffer discipline: one bytearray per direction holds only an unfinished head or chunk-size line
(bounded by `MAX_HEAD_BYTES`); body bytes are counted and dropped, except the first
`BODY_PREFIX_BYTES` kept to sniff the body's media type.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from pipeline.extract import ExtractorAnomaly, flow_endpoints

# Request/status line plus headers. Real heads are under 8 KiB (common server limits are
# 8-16 KiB per line, 64-100 headers); past these, the stream is not read on.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 256
MAX_METHOD_LENGTH = 32
# Transactions open on one connection (requests waiting for responses): a client pipelining
# more than this is hostile or the responses are not in the capture; older ones end unanswered.
MAX_OPEN_TRANSACTIONS = 256
# Body bytes kept per message to sniff its media type (`sniff_mime_type`).
BODY_PREFIX_BYTES = 64
# A chunk-size line (hex size and extensions) longer than this is not HTTP.
MAX_CHUNK_LINE = 1024
# Bytes a response stream may skip looking for the next status line after bytes that are not
# HTTP (the capture lost the start of a response); past it the stream stops as not HTTP.
MAX_RESYNC_BYTES = 256 * 1024

# What `HttpStream.feed` returns about a message.
HEAD_DONE = 1
MESSAGE_DONE = 2
RESYNCED = 3  # a response stream skipped bytes that were not HTTP (a capture gap) to a status line

# Why a stream stopped reading (None while it reads).
STOP_NOT_HTTP = "not_http"
STOP_TUNNEL = "tunnel"  # CONNECT 2xx or 101 Switching Protocols: no longer HTTP/1.x
STOP_ERROR = "error"
STOP_CLOSED = "closed"  # the connection ended

# Error kinds (the project's taxonomy, as in extract/tls.py).
ERROR_MALFORMED = "malformed"
ERROR_LIMIT = "limit"
ERROR_DECODER_BUG = "decoder_bug"

# Body framing of the message being read.
_NO_BODY = 0
_LENGTH = 1
_CHUNKED = 2
_UNTIL_CLOSE = 3
_TUNNEL = 4  # the message has no body and the connection stops being HTTP/1.x after it

# Parser states.
_HEAD = 0
_BODY_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_END = 4  # the CRLF after a chunk's data
_TRAILERS = 5
_BODY_CLOSE = 6
_STOPPED = 7

# RFC 9110 5.6.2 token characters: a request method is one.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpError(NamedTuple):
    kind: str
    detail: str


class HttpMessage:
    """A request or a response: its head, and what is known of its body so far."""

    __slots__ = (
        "body_bytes",
        "body_prefix",
        "complete",
        "end_index",
        "end_ns",
        "head_bytes",
        "headers",
        "method",
        "reason",
        "start_index",
        "start_ns",
        "status",
        "target",
        "version",
    )

    def __init__(self, start_ns: int, start_index: int) -> None:
        self.start_ns = start_ns
        self.start_index = start_index
        self.end_ns = start_ns
        self.end_index = start_index
        self.method = b""  # requests
        self.target = b""
        self.status = 0  # responses
        self.reason = b""
        self.version = b""  # "1.1"
        self.headers: list[tuple[bytes, bytes]] = []  # names lower-cased, values stripped
        self.head_bytes = 0
        self.body_bytes = 0  # as sent (chunked: the data, without the chunk framing)
        self.body_prefix = b""
        self.complete = False  # the body ended where its framing said (or at close)

    @property
    def is_request(self) -> bool:
        return self.status == 0

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (`name` lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class HttpStream:
    """One direction of an HTTP/1.x connection: a sans-IO parser (see the module docstring).

    A response stream must know which request each response answers (a response to HEAD has
    no body whatever its headers say): the extractor appends each request's method to
    `request_methods` as the request's head completes, and the stream takes one per final
    response.
    """

    __slots__ = (
        "_buf",
        "_framing_left",
        "_message",
        "_scan_from",
        "_start_checked",
        "_state",
        "errors",
        "ignored_bytes",
        "limit_hit",
        "messages",
        "request_methods",
        "requests",
        "resyncs",
        "skipped_bytes",
        "stopped",
    )

    def __init__(self, requests: bool) -> None:
        self.requests = requests
        self.request_methods: deque[bytes] = deque()
        self._buf = bytearray()
        self._state = _HEAD
        self._scan_from = 0  # where to look for the end of the head in `_buf`
        self._start_checked = False  # the request line was found plausible
        self._framing_left = 0  # body or chunk bytes still to come
        self._message: HttpMessage | None = None
        self.messages = 0
        self.ignored_bytes = 0
        self.skipped_bytes = 0  # skipped by `_resync`
        self.resyncs = 0
        self.limit_hit = False
        self.stopped: str | None = None
        self.errors: list[HttpError] = []

    def feed(self, data: bytes, ts_ns: int = 0, index: int = 0) -> list[tuple[int, HttpMessage]]:
        """Feed the next in-order bytes (carried by the frame `index` at `ts_ns`); return
        ``(HEAD_DONE | MESSAGE_DONE, message)`` for what they complete, in order."""
        if self.stopped is not None:
            self.ignored_bytes += len(data)
            return []
        out: list[tuple[int, HttpMessage]] = []
        try:
            self._feed(memoryview(data), ts_ns, index, out)
        except Exception as exc:  # a bug here must cost one stream, never the run
            self._stop_with(ERROR_DECODER_BUG, "http stream: %r" % (exc,))
        return out

    def close(self, ts_ns: int = 0, index: int = 0) -> list[tuple[int, HttpMessage]]:
        """The connection ended: a body read until close is complete now; any other message
        under way is returned unfinished (``complete`` False)."""
        message = self._message
        if message is None or (self.stopped is not None and self._state != _BODY_CLOSE):
            return []
        self._message = None
        if self._state == _BODY_CLOSE:
            message.complete = True
            message.end_ns, message.end_index = ts_ns or message.end_ns, index or message.end_index
        self._state = _STOPPED
        self.stopped = self.stopped or STOP_CLOSED
        if message.head_bytes == 0:
            return []  # only part of a head: nothing to report
        return [(MESSAGE_DONE, message)]

    # -- the state machine -------------------------------------------------------------------

    def _feed(
        self, data: memoryview, ts_ns: int, index: int, out: list[tuple[int, HttpMessage]]
    ) -> None:
        pos, end = 0, len(data)
        while pos < end and self.stopped is None:
            state = self._state
            if state == _HEAD:
                if self._message is None:
                    if not self._buf:
                        # Between messages: empty lines are skipped (RFC 9112 2.2), and so are
                        # NULs (a keep-alive probe's one garbage byte, seen as stream data
                        # when the capture began after the handshake).
                        while pos < end and data[pos] in (13, 10, 0):
                            pos += 1
                        if pos == end:
                            return
                    self._message = HttpMessage(ts_ns, index)
                    self._start_checked = False
                pos = self._take_head(data, pos, ts_ns, index, out)
            elif state == _BODY_LENGTH:
                take = min(self._framing_left, end - pos)
                self._body(data[pos : pos + take])
                pos += take
                self._framing_left -= take
                if self._framing_left == 0:
                    self._done(ts_ns, index, out)
            elif state == _CHUNK_DATA:
                take = min(self._framing_left, end - pos)
                self._body(data[pos : pos + take])
                pos += take
                self._framing_left -= take
                if self._framing_left == 0:
                    self._state = _CHUNK_END
            elif state == _BODY_CLOSE:
                self._body(data[pos:end])
                pos = end
            else:  # chunk-size line, the CRLF after a chunk, trailers: line by line
                pos = self._take_line(data, pos, ts_ns, index, out)

    def _take_head(
        self,
        data: memoryview,
        pos: int,
        ts_ns: int,
        index: int,
        out: list[tuple[int, HttpMessage]],
    ) -> int:
        buf = self._buf
        was = len(buf)
        buf += data[pos:]
        if was < 16 and not self._looks_like_http(buf):
            skipped = self._resync(buf, out) if self.request_methods else None
            if skipped is None:
                self._stop(STOP_NOT_HTTP)
                return len(data)
            was -= skipped  # `buf` lost its first `skipped` bytes
            if not buf.startswith(b"HTTP/1."):
                return len(data)  # no status line yet: the next bytes may hold it
        if self.requests and not self._start_checked:
            line_end = buf.find(b"\n")
            if line_end >= 0:
                self._start_checked = True
                if not _request_line_plausible(bytes(buf[:line_end])):
                    self._stop(STOP_NOT_HTTP)
                    return len(data)
        # The head ends at the first empty line: LF LF or LF CR LF.
        scan = max(self._scan_from - 2, 0)
        lf_lf = buf.find(b"\n\n", scan)
        lf_crlf = buf.find(b"\n\r\n", scan)
        if lf_lf < 0 and lf_crlf < 0:
            self._scan_from = len(buf)
            if len(buf) > MAX_HEAD_BYTES:
                self.limit_hit = True
                self._stop_with(ERROR_LIMIT, "head longer than %d bytes" % MAX_HEAD_BYTES)
            return len(data)
        head_end = lf_lf + 2 if lf_lf >= 0 and (lf_crlf < 0 or lf_lf < lf_crlf) else lf_crlf + 3
        if head_end > MAX_HEAD_BYTES:
            self.limit_hit = True
            self._stop_with(ERROR_LIMIT, "head longer than %d bytes" % MAX_HEAD_BYTES)
            return len(data)
        head = bytes(buf[:head_end])
        used = head_end - was  # bytes of `data` that belonged to the head
        self._buf = bytearray()
        self._scan_from = 0
        self._head_done(head, ts_ns, index, out)
        return pos + used

    def _resync(self, buf: bytearray, out: list[tuple[int, HttpMessage]]) -> int | None:
        """Skip to the next ``HTTP/1.`` in `buf` (a response after a capture gap, as tshark and
        Zeek recover); how many bytes went, or None once past `MAX_RESYNC_BYTES`. Only a
        response stream with requests waiting does this (so another protocol costs no scan).
        The response lost in the gap answered the oldest request waiting: its method goes."""
        found = buf.find(b"HTTP/1.")
        skip = found if found >= 0 else max(0, len(buf) - 6)
        self.skipped_bytes += skip
        if self.skipped_bytes > MAX_RESYNC_BYTES:
            return None
        del buf[:skip]
        if found >= 0:
            self.resyncs += 1
            if self.request_methods:
                self.request_methods.popleft()
            assert self._message is not None
            out.append((RESYNCED, self._message))
        return skip

    def _looks_like_http(self, buf: bytearray) -> bool:
        """Whether the first bytes of a message can start an HTTP/1.x request (a method token
        and a space) or response (``HTTP/``): the cheap test that drops other protocols."""
        if not self.requests:
            n = min(len(buf), 5)
            return buf[:n] == b"HTTP/"[:n]
        for i, byte in enumerate(buf[: MAX_METHOD_LENGTH + 1]):
            if byte == 32 or byte == 13 or byte == 10:  # a bare method line too ("OPTIONS")
                return i > 0
            if byte not in _TCHAR:
                return False
        return len(buf) <= MAX_METHOD_LENGTH

    def _head_done(
        self, head: bytes, ts_ns: int, index: int, out: list[tuple[int, HttpMessage]]
    ) -> None:
        message = self._message
        assert message is not None
        lines = head.split(b"\n")
        start_line = lines[0].rstrip(b"\r")
        problem = self._start_line(message, start_line)
        if problem is not None:
            self._stop_with(ERROR_MALFORMED, problem)
            return
        headers = message.headers
        for raw in lines[1:]:
            line = raw.rstrip(b"\r")
            if not line:
                continue
            if line[0] in (32, 9) and headers:  # obsolete line folding: continues the value
                name, value = headers[-1]
                headers[-1] = (name, value + b" " + line.strip())
                continue
            colon = line.find(b":")
            if colon <= 0:
                continue  # not a header line: skipped, as browsers and servers do
            headers.append((line[:colon].strip().lower(), line[colon + 1 :].strip()))
            if len(headers) > MAX_HEADERS:
                self.limit_hit = True
                self._stop_with(ERROR_LIMIT, "more than %d headers" % MAX_HEADERS)
                return
        message.head_bytes = len(head)
        message.end_ns, message.end_index = ts_ns, index
        self.messages += 1
        out.append((HEAD_DONE, message))
        framing = self._framing(message)
        if framing is None:
            return  # stopped
        kind, length = framing
        if kind == _NO_BODY or (kind == _LENGTH and length == 0):
            self._done(ts_ns, index, out)
        elif kind == _TUNNEL:
            self._done(ts_ns, index, out)
            self._stop(STOP_TUNNEL)
        elif kind == _LENGTH:
            self._state, self._framing_left = _BODY_LENGTH, length
        elif kind == _CHUNKED:
            self._state = _CHUNK_SIZE
        else:
            self._state = _BODY_CLOSE

    def _start_line(self, message: HttpMessage, line: bytes) -> str | None:
        """Fill the method/target/version or version/status/reason; a problem, or None."""
        if self.requests:
            method, _, rest = line.partition(b" ")
            target, _, version = rest.strip(b" ").rpartition(b" ")
            if not version.startswith(b"HTTP/") or not target.strip(b" "):
                # One word after the method ("GET /path", "GET /HTTP/1.1", "GET HTTP/1.1"):
                # read as a request all the same, as servers answer it (often 400), the word
                # as its target and no version — what tshark shows too.
                target, version = rest.strip(b" "), b""
            if not method:
                return "request line without a method: %r" % line[:64]
            message.method, message.target = method, target.strip(b" ")
            message.version = version[5:]
            return None
        version, _, rest = line.partition(b" ")
        status, _, reason = rest.partition(b" ")
        if len(status) != 3 or not status.isdigit():
            return "status line without a status code: %r" % line[:64]
        message.version, message.status, message.reason = version[5:], int(status), reason
        return None

    def _framing(self, message: HttpMessage) -> tuple[int, int] | None:
        """How the body of `message` is delimited (RFC 9112 6.3), or None if the stream
        stopped (framing headers that contradict each other)."""
        if not self.requests:
            status = message.status
            if 100 <= status < 200:
                return (
                    _TUNNEL if status == 101 else _NO_BODY
                ), 0  # interim: the final response follows
            method = self.request_methods.popleft() if self.request_methods else b""
            if method == b"CONNECT" and 200 <= status < 300:
                return _TUNNEL, 0
            if method == b"HEAD" or status in (204, 304):
                return _NO_BODY, 0
        codings = [v for k, v in message.headers if k == b"transfer-encoding"]
        if codings:
            last = b",".join(codings).split(b",")[-1].strip().lower()
            if last == b"chunked":
                return _CHUNKED, 0
            if self.requests:
                self._stop_with(ERROR_MALFORMED, "request transfer coding %r not chunked" % last)
                return None
            return _UNTIL_CLOSE, 0
        lengths = {v for k, v in message.headers if k == b"content-length"}
        if lengths:
            values = {v.strip() for value in lengths for v in value.split(b",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                self._stop_with(ERROR_MALFORMED, "content-length %r" % sorted(values)[:4])
                return None
            return _LENGTH, int(next(iter(values)))
        return (_NO_BODY, 0) if self.requests else (_UNTIL_CLOSE, 0)

    def _take_line(
        self,
        data: memoryview,
        pos: int,
        ts_ns: int,
        index: int,
        out: list[tuple[int, HttpMessage]],
    ) -> int:
        """One line of chunked framing: a chunk size, the CRLF ending a chunk, or a trailer."""
        newline = bytes(data[pos : pos + MAX_CHUNK_LINE + 2]).find(b"\n")
        if newline < 0:
            self._buf += data[pos:]
            if len(self._buf) > MAX_CHUNK_LINE:
                self._stop_with(ERROR_MALFORMED, "chunk line longer than %d" % MAX_CHUNK_LINE)
            return len(data)
        line = bytes(self._buf + data[pos : pos + newline]).rstrip(b"\r")
        self._buf = bytearray()
        pos += newline + 1
        state = self._state
        if state == _CHUNK_END:
            if line:
                self._stop_with(ERROR_MALFORMED, "chunk data longer than its size")
                return pos
            self._state = _CHUNK_SIZE
        elif state == _CHUNK_SIZE:
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or not all(c in _HEX for c in size_text) or len(size_text) > 15:
                self._stop_with(ERROR_MALFORMED, "chunk size %r" % size_text[:32])
                return pos
            size = int(size_text, 16)
            if size == 0:
                self._state = _TRAILERS
            else:
                self._state, self._framing_left = _CHUNK_DATA, size
        elif not line:  # the empty line after the trailers ends the message
            self._done(ts_ns, index, out)
        return pos

    def _body(self, piece: memoryview) -> None:
        message = self._message
        assert message is not None
        if len(message.body_prefix) < BODY_PREFIX_BYTES:
            message.body_prefix += bytes(piece[: BODY_PREFIX_BYTES - len(message.body_prefix)])
        message.body_bytes += len(piece)

    def _done(self, ts_ns: int, index: int, out: list[tuple[int, HttpMessage]]) -> None:
        message = self._message
        assert message is not None
        message.complete = True
        message.end_ns, message.end_index = ts_ns, index
        out.append((MESSAGE_DONE, message))
        self._message = None
        self._state = _HEAD

    def _stop_with(self, kind: str, detail: str) -> None:
        self.errors.append(HttpError(kind, detail))
        self._stop(STOP_ERROR)

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        if self._state != _BODY_CLOSE:
            self._state = _STOPPED
        self.ignored_bytes += len(self._buf)
        self._buf = bytearray()


# Methods a request line may carry without an HTTP version and still be read as HTTP (RFC 9110,
# WebDAV, UPnP, caches): a line-based protocol whose first word is none of these ("EHLO x",
# "USER x") and that names no HTTP version is not HTTP, and is dropped at its first line instead
# of being buffered up to `MAX_HEAD_BYTES` looking for an empty line.
KNOWN_METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE "
    b"LOCK UNLOCK SEARCH REPORT MKACTIVITY CHECKOUT MERGE ACL BIND UNBIND REBIND MKCALENDAR "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PURGE LINK UNLINK CHECKIN UNCHECKOUT UPDATE LABEL "
    b"VERSION-CONTROL BASELINE-CONTROL MKWORKSPACE ORDERPATCH BCOPY BDELETE BMOVE BPROPFIND "
    b"BPROPPATCH POLL RPC_IN_DATA RPC_OUT_DATA CCM_POST".split()
)


def _request_line_plausible(line: bytes) -> bool:
    """Whether a first line can be an HTTP/1.x request line: a version, or a known method."""
    if b" HTTP/" in line:
        return True
    method = line.rstrip(b"\r").split(b" ", 1)[0]
    return method in KNOWN_METHODS


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\x28\xb5\x2f\xfd", "application/zstd"),
    (b"MZ", "application/x-dosexec"),
    (b"\x7fELF", "application/x-executable"),
    (b"OggS", "application/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"RIFF", "application/octet-stream"),  # refined below (WebP, WAV, AVI)
    (b"<?xml", "text/xml"),
)


def sniff_mime_type(prefix: bytes) -> str | None:
    """The media type of a body from its first bytes, as ECS's ``http.*.mime_type`` asks
    ("based on the content of the body, not on the Content-Type header"); None if unknown.

    A small magic-number table in the spirit of the WHATWG MIME Sniffing Standard (its image,
    archive and markup patterns) — enough for the types an analyst looks for; a body encoded
    for transfer (gzip) is sniffed as what it is on the wire."""
    if not prefix:
        return None
    for magic, mime in _MAGIC:
        if prefix.startswith(magic):
            if magic == b"RIFF" and len(prefix) >= 12:
                return {
                    b"WEBP": "image/webp",
                    b"WAVE": "audio/wav",
                    b"AVI ": "video/x-msvideo",
                }.get(prefix[8:12], mime)
            return mime
    text = prefix.lstrip(b" \t\r\n\xef\xbb\xbf").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<!--")):
        return "text/html"
    if text.startswith((b"{", b"[")):
        return "application/json"
    if text.startswith(b"<svg"):
        return "image/svg+xml"
    if all(32 <= c < 127 or c in (9, 10, 13) for c in prefix):
        return "text/plain"
    return "application/octet-stream"


class HttpTransaction:
    """A request and the response that answered it, either of which may be missing."""

    __slots__ = (
        "client_is_originator",
        "errors",
        "flow",
        "interim",
        "number",
        "request",
        "response",
        "response_lost",
    )

    def __init__(self, flow: Any, number: int, client_is_originator: bool) -> None:
        self.flow = flow
        self.number = number  # 1 for the connection's first transaction
        self.client_is_originator = client_is_originator
        self.request: HttpMessage | None = None
        self.response: HttpMessage | None = None
        self.interim: list[int] = []  # 1xx status codes before the final response
        self.response_lost = False  # its response fell in a capture gap
        self.errors: tuple[HttpError, ...] = ()

    @property
    def start_ns(self) -> int:
        first = self.request or self.response
        assert first is not None
        return first.start_ns

    @property
    def first_index(self) -> int:
        first = self.request or self.response
        assert first is not None
        return first.start_index


class _Connection:
    __slots__ = ("anomalies", "client_is_originator", "number", "open", "streams")

    def __init__(self) -> None:
        self.anomalies = 0  # reported so far, numbering the next
        self.streams: dict[bool, HttpStream] = {}  # keyed by "from the originator"
        self.client_is_originator = True
        self.open: deque[HttpTransaction] = deque()  # oldest first
        self.number = 0


class HttpExtractor:
    """A `StreamSubscriber` for the flow table: the HTTP/1.x transactions of TCP flows.

    The client is the side whose first bytes are a request (normally the originator; a capture
    that starts mid-connection may have the server's response first). A connection whose
    first bytes are neither is released at once; so is one whose streams have both stopped.
    """

    def __init__(self) -> None:
        self._connections: dict[Any, _Connection] = {}
        self.ended: list[HttpTransaction] = []
        self.anomalies: list[ExtractorAnomaly] = []
        self.counters: dict[str, int] = {
            "http_errors": 0,
            "http_limits": 0,
            "http_unanswered": 0,
            "http_unsolicited": 0,
        }

    def wants(self, flow: Any) -> bool:
        return True

    def data(self, flow: Any, from_originator: bool, data: bytes) -> bool:
        conn = self._connections.get(flow)
        if conn is None:
            # Whoever sends the first request is the client; first bytes that are a response
            # (the capture began mid-connection) make the other side the client.
            client_is_originator = from_originator ^ data.startswith(b"HTTP/")
            conn = self._connections[flow] = _Connection()
            conn.client_is_originator = client_is_originator
            conn.streams[client_is_originator] = HttpStream(requests=True)
            conn.streams[not client_is_originator] = HttpStream(requests=False)
        stream = conn.streams[from_originator]
        errors_before = len(stream.errors)
        for what, message in stream.feed(data, flow.last_ns, flow.last_index):
            self._message(flow, conn, stream.requests, what, message)
        if len(stream.errors) > errors_before:
            for error in stream.errors[errors_before:]:
                self._anomaly(flow, conn, error.kind, error.detail)
        requests = conn.streams[conn.client_is_originator]
        responses = conn.streams[not conn.client_is_originator]
        # Both sides are read until both stop: a server may answer requests we could not read.
        if requests.stopped is not None and responses.stopped is not None:
            return self._release(flow, conn)
        if stream.stopped == STOP_TUNNEL:
            return self._release(flow, conn)
        return True

    def closed(self, flow: Any) -> None:
        conn = self._connections.get(flow)
        if conn is not None:
            self._release(flow, conn)

    def take_ended(self) -> list[HttpTransaction]:
        ended, self.ended = self.ended, []
        return ended

    def _message(
        self, flow: Any, conn: _Connection, is_request: bool, what: int, message: HttpMessage
    ) -> None:
        if is_request:
            if what == HEAD_DONE:
                conn.streams[not conn.client_is_originator].request_methods.append(message.method)
                if len(conn.open) >= MAX_OPEN_TRANSACTIONS:
                    self.counters["http_limits"] += 1
                    self._anomaly(
                        flow, conn, ERROR_LIMIT, "more than %d requests waiting" % len(conn.open)
                    )
                    self._end(conn, conn.open.popleft())
                tx = self._new(flow, conn)
                tx.request = message
                conn.open.append(tx)
            else:
                self._settle(conn)
            return
        if what == RESYNCED:
            # The response lost in the capture gap answered the oldest request waiting.
            for tx in conn.open:
                if tx.response is None:
                    conn.open.remove(tx)
                    tx.response_lost = True
                    self._end(conn, tx)
                    break
            return
        if what == HEAD_DONE:
            if 100 <= message.status < 200 and message.status != 101:
                for tx in conn.open:
                    if tx.response is None:
                        tx.interim.append(message.status)
                        break
                return
            for tx in conn.open:
                if tx.response is None:
                    tx.response = message
                    break
            else:
                tx = self._new(flow, conn)
                tx.response = message
                conn.open.append(tx)
        else:
            self._settle(conn)

    def _anomaly(self, flow: Any, conn: _Connection, kind: str, detail: str) -> None:
        conn.anomalies += 1
        self.anomalies.append(
            ExtractorAnomaly(
                "http",
                kind,
                detail,
                flow.last_index,
                flow.last_ns,
                flow_endpoints(flow, conn.client_is_originator),
                conn.anomalies,
            )
        )

    def _new(self, flow: Any, conn: _Connection) -> HttpTransaction:
        conn.number += 1
        return HttpTransaction(flow, conn.number, conn.client_is_originator)

    def _settle(self, conn: _Connection) -> None:
        """End the transactions at the front whose messages are both complete."""
        while conn.open:
            tx = conn.open[0]
            request, response = tx.request, tx.response
            if response is None or not response.complete:
                return
            if request is not None and not request.complete:
                return
            self._end(conn, conn.open.popleft())

    def _end(self, conn: _Connection, tx: HttpTransaction) -> None:
        if tx.request is None:
            self.counters["http_unsolicited"] += 1
        elif tx.response is None:
            self.counters["http_unanswered"] += 1
        self.ended.append(tx)

    def _release(self, flow: Any, conn: _Connection) -> bool:
        del self._connections[flow]
        for stream in conn.streams.values():
            for _what, _message in stream.close(flow.last_ns, flow.last_index):
                pass  # the message objects are already in their transactions
        errors = tuple(e for s in conn.streams.values() for e in s.errors)
        self.counters["http_errors"] += len(errors)
        self.counters["http_limits"] += sum(s.limit_hit for s in conn.streams.values())
        while conn.open:
            tx = conn.open.popleft()
            tx.errors = errors
            self._end(conn, tx)
        return False
