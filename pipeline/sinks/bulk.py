"""Events into OpenSearch or Elasticsearch through the ``_bulk`` API, at least once, no duplicates.

Every event becomes one bulk ``index`` action with ``_id`` = ``event.id`` into the index named
by a template (default ``pcap-ingest-{dataset}-{date}``: the event's dataset with dots made
dashes, and the UTC day of its ``@timestamp`` as ``YYYY.MM.DD``). Indexing under a stable id
is idempotent: an event sent twice (a retry whose first answer was lost, or a second run over
the same capture) overwrites itself, so the document count does not change. ``op_type="create"``
is the alternative for data streams or append-only indices (which accept only ``create``): the
first copy wins, and the server's 409 "already exists" for a later copy counts as delivered
(``already_present``). The default stays ``index`` because a re-run with a newer converter
then replaces the old documents instead of silently keeping them.

The delivery contract is `pipeline.sinks.delivery`'s: ``write`` encodes the chunk into bulk
entries and queues them; one sender thread posts batches (at most ``batch_events`` events
and ``batch_bytes`` bytes, whatever is queued when the previous request returns) over one
persistent ``http.client`` connection. At most ``Delivery.max_buffered_bytes`` of entries are
undelivered (queued or in flight); ``write`` blocks beyond that. What is retried, with
`Backoff`: connection errors and timeouts, a whole request answered 429 or 5xx, and the items
of a bulk answer whose status is 429 or 5xx (only those are sent again). A request too large
for the server (413) is split in halves. Items refused for good (a mapping conflict, a bad
index name) are counted in ``rejected`` with the first few reasons kept: never dropped
silently, and they do not stop the run. Other whole-request errors (401, 403, 404, 400) are a
configuration problem no retry fixes: the sink gives up at once with the server's reason.

The encoding of events into a bulk body and the reading of the bulk answer are pure functions
(`BulkEncoder`, `read_bulk_response`); only `BulkConnection` and `BulkSink` do I/O.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import orjson

from pipeline.sinks.delivery import Backoff, Delivery, DeliveryError, split_lines

SINK_NAME = "bulk"
DEFAULT_INDEX_TEMPLATE = "pcap-ingest-{dataset}-{date}"
# Elastic's guidance for bulk requests is "a few MB"; 5 MB and 5000 events keep one request
# well under the usual 100 MB http.max_content_length and its answer small to parse.
DEFAULT_BATCH_BYTES = 5 * 1024 * 1024
DEFAULT_BATCH_EVENTS = 5000
# Per request (connect, send, answer). A server that holds a request longer is treated as down.
DEFAULT_REQUEST_TIMEOUT = 30.0
OP_TYPES = ("index", "create")
# Enough reasons to see what is wrong without keeping one string per refused event.
MAX_REJECT_REASONS = 5
MAX_REASON_CHARS = 300
# Used when an event lacks the field its index name needs.
UNKNOWN_DATASET = "unknown"
UNDATED = "undated"
# Index names: lowercase, at most 255 bytes, none of these characters, not starting with these.
MAX_INDEX_NAME_BYTES = 255
INVALID_INDEX_CHARS = frozenset('\\/*?"<>| ,#:')
INVALID_INDEX_STARTS = ("-", "_", "+")
# Only the per-item status and error come back: a 5000-item answer shrinks from ~1.2 MB.
BULK_QUERY = "filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"
BULK_HEADERS = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
HTTP_TOO_LARGE = 413  # the body is over the server's http.max_content_length
GZIP_LEVEL = 1  # bulk NDJSON shrinks ~10x at level 1 already; higher levels cost CPU for little


# -- index names --------------------------------------------------------------------------------


def dataset_part(dataset: str) -> str:
    """`dataset` as an index name part: lowercase, dots (and invalid characters) made dashes."""
    part = dataset.lower().replace(".", "-")
    return "".join("-" if c in INVALID_INDEX_CHARS else c for c in part) or UNKNOWN_DATASET


def date_part(timestamp: object) -> str:
    """``YYYY.MM.DD`` of an ISO 8601 UTC ``@timestamp`` (as the pipeline writes them)."""
    if (
        isinstance(timestamp, str)
        and len(timestamp) >= 10
        and timestamp[4] == "-"
        and timestamp[7] == "-"
        and timestamp[:4].isdigit()
        and timestamp[5:7].isdigit()
        and timestamp[8:10].isdigit()
    ):
        return f"{timestamp[:4]}.{timestamp[5:7]}.{timestamp[8:10]}"
    return UNDATED


def check_index_name(name: str) -> str:
    """`name` if OpenSearch/Elasticsearch accept it as an index name, else ValueError."""
    problem = None
    if not name or name in (".", ".."):
        problem = "empty"
    elif name != name.lower():
        problem = "not lowercase"
    elif any(c in INVALID_INDEX_CHARS for c in name):
        problem = f"contains one of {''.join(sorted(INVALID_INDEX_CHARS))!r}"
    elif name.startswith(INVALID_INDEX_STARTS):
        problem = f"starts with one of {INVALID_INDEX_STARTS}"
    elif len(name.encode()) > MAX_INDEX_NAME_BYTES:
        problem = f"longer than {MAX_INDEX_NAME_BYTES} bytes"
    if problem:
        raise ValueError(f"invalid index name {name!r}: {problem}")
    return name


def check_index_template(template: str) -> str:
    """`template` if it uses only {dataset} and {date} and renders valid index names."""
    try:
        sample = template.format(dataset="pcap_ingest-packet", date="2024.01.31")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"index template {template!r}: only {{dataset}} and {{date}} may appear ({exc})"
        ) from None
    check_index_name(sample)
    return template


# -- encoding events into bulk entries (no I/O) ---------------------------------------------------


class BulkEncoder:
    """Turns NDJSON event lines into bulk entries (action line + document line).

    Index names are cached per (dataset, day): a capture spans few of either.
    """

    def __init__(self, index_template: str = DEFAULT_INDEX_TEMPLATE, op_type: str = "index"):
        if op_type not in OP_TYPES:
            raise ValueError(f"op_type must be one of {OP_TYPES}, not {op_type!r}")
        self.index_template = check_index_template(index_template)
        self.op_type = op_type
        self._index_names: dict[tuple[str, str], str] = {}
        self.without_id = 0  # events sent without _id: a retry of those may duplicate them

    def index_name(self, dataset: str, date: str) -> str:
        key = (dataset, date)
        name = self._index_names.get(key)
        if name is None:
            name = self.index_template.format(dataset=dataset_part(dataset), date=date)
            name = check_index_name(name[:MAX_INDEX_NAME_BYTES].lower())
            self._index_names[key] = name
        return name

    def entry(self, line: bytes) -> bytes:
        """The bulk entry for one event line; ValueError when the line is not a JSON object."""
        event = orjson.loads(line)  # orjson.JSONDecodeError is a ValueError
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
        meta = event.get("event")
        meta = meta if isinstance(meta, dict) else {}
        dataset = meta.get("dataset")
        index = self.index_name(
            dataset if isinstance(dataset, str) and dataset else UNKNOWN_DATASET,
            date_part(event.get("@timestamp")),
        )
        event_id = meta.get("id")
        action: dict[str, str] = {"_index": index}
        if isinstance(event_id, str) and event_id:
            action["_id"] = event_id
        else:
            self.without_id += 1
        return orjson.dumps({self.op_type: action}) + b"\n" + line.rstrip(b"\r") + b"\n"


# -- reading the bulk answer (no I/O) -------------------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """429 (the server is overloaded) and 5xx may succeed later; other errors will not."""
    return status == 429 or status >= 500


@dataclass
class BulkOutcome:
    """What a bulk answer says about the entries sent, by their position in the request."""

    delivered: int = 0
    already_present: int = 0  # op_type=create: 409, the document is there from an earlier send
    retry: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    retry_reason: str = ""


def _item_reason(item: dict[str, object], status: int) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        text = str(error) if error is not None else "no reason given"
    return f"{status} {text}"[:MAX_REASON_CHARS]


def read_bulk_response(body: bytes, sent: int, op_type: str = "index") -> BulkOutcome:
    """Sort the `sent` entries of a request answered 200 into delivered, retry and rejected.

    Raises ValueError when the answer is not a bulk answer for `sent` entries.
    """
    answer = orjson.loads(body)
    if not isinstance(answer, dict):
        raise ValueError("bulk answer is not a JSON object")
    items = answer.get("items")
    if answer.get("errors") is False and (items is None or len(items) == sent):
        return BulkOutcome(delivered=sent)
    if not isinstance(items, list) or len(items) != sent:
        count = len(items) if isinstance(items, list) else "no"
        raise ValueError(f"bulk answer has {count} items for {sent} sent")
    outcome = BulkOutcome()
    for position, wrapped in enumerate(items):
        item = next(iter(wrapped.values())) if isinstance(wrapped, dict) and wrapped else {}
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(status, int):
            raise ValueError(f"bulk answer item {position} has no status")
        if 200 <= status < 300:
            outcome.delivered += 1
        elif status == 409 and op_type == "create":
            outcome.already_present += 1
        elif is_retryable_status(status):
            outcome.retry.append(position)
            outcome.retry_reason = outcome.retry_reason or _item_reason(item, status)
        else:
            outcome.rejected.append((position, _item_reason(item, status)))
    return outcome


# -- the connection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkEndpoint:
    """Where ``_bulk`` is, from a URL like ``https://user:pass@host:9200/prefix``."""

    scheme: str
    host: str
    port: int
    path: str
    authorization: str | None

    @classmethod
    def from_url(cls, url: str) -> BulkEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"bulk sink URL must be http:// or https://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"bulk sink URL has no host: {url!r}")
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
        port = parts.port or (443 if parts.scheme == "https" else 9200)
        return cls(
            parts.scheme, parts.hostname, port, parts.path.rstrip("/") + "/_bulk", authorization
        )

    def display(self) -> str:
        """The endpoint without credentials, for messages."""
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


class BulkConnection:
    """One persistent HTTP/1.1 connection to the ``_bulk`` endpoint, reopened after an error."""

    def __init__(
        self,
        endpoint: BulkEndpoint,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        compress: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.compress = compress
        self._conn: http.client.HTTPConnection | None = None
        self._url = f"{endpoint.path}?{BULK_QUERY}"
        self._headers = dict(BULK_HEADERS)
        if endpoint.authorization:
            self._headers["Authorization"] = endpoint.authorization
        if compress:
            self._headers["Content-Encoding"] = "gzip"

    def _open(self) -> http.client.HTTPConnection:
        if self.endpoint.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=self.timeout, context=context
            )
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, self.timeout)

    def post(self, body: bytes) -> tuple[int, bytes]:
        """POST one bulk body; (status, answer). OSError/HTTPException when the exchange
        failed, after which the connection is closed (the next post opens a new one)."""
        if self.compress:
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        if self._conn is None:
            self._conn = self._open()
        try:
            self._conn.request("POST", self._url, body, self._headers)
            response = self._conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, answer

    def interrupt(self) -> None:
        """Break a request in progress from another thread (abort): its post raises OSError."""
        conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # socket.SHUT_RDWR

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None


def _answer_reason(status: int, answer: bytes) -> str:
    """The server's error for a whole request, short."""
    try:
        error = orjson.loads(answer).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        text = answer[:200].decode("utf-8", "replace") if error is None else str(error)
    return f"HTTP {status} {text}"[:MAX_REASON_CHARS]


# -- the sink -------------------------------------------------------------------------------------


class BulkSink:
    """NDJSON events into OpenSearch/Elasticsearch ``_bulk`` at `url`, at least once.

    A sender thread does the HTTP; `write` only encodes and queues (and blocks while
    ``delivery.max_buffered_bytes`` of entries are undelivered). `close` returns once every
    event is acknowledged (delivered, or rejected for good and counted); DeliveryError from
    `write` or `close` when the server stayed unreachable longer than ``delivery.timeout``.

    `url`: ``http(s)://[user:password@]host[:port][/prefix]`` (credentials percent-encoded;
    sent as basic auth). `index_template`: see the module doc. `batch_bytes`/`batch_events`:
    the most one request carries. `op_type`: ``index`` or ``create``. `compress`: gzip the
    request bodies (OpenSearch and Elasticsearch accept ``Content-Encoding: gzip``; a server
    that does not answers 4xx and the sink gives up saying so). `request_timeout`: seconds one
    request may take (capped at ``delivery.timeout``). `ssl_context`: for https, e.g. with a
    private CA (default: the system's CAs, certificates verified).
    """

    def __init__(
        self,
        url: str,
        delivery: Delivery | None = None,
        index_template: str = DEFAULT_INDEX_TEMPLATE,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        op_type: str = "index",
        compress: bool = False,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if batch_bytes <= 0 or batch_events <= 0:
            raise ValueError("batch_bytes and batch_events must be positive")
        self.delivery = delivery or Delivery()
        self.endpoint = BulkEndpoint.from_url(url)
        self.encoder = BulkEncoder(index_template, op_type)
        self.batch_bytes = batch_bytes
        self.batch_events = batch_events
        # A request that hangs counts as an outage: it may not outlast the delivery timeout.
        timeout = min(request_timeout, self.delivery.timeout)
        self._connection = BulkConnection(self.endpoint, timeout, ssl_context, compress)
        self._backoff = Backoff(self.delivery)
        self.paths: list[str] = []  # what the file sinks list; a network sink writes no file

        self.events_in = 0  # lines given to write
        self.delivered = 0  # acknowledged by the server (including already_present)
        self.already_present = 0  # op_type=create: the server had them (409)
        self.rejected = 0  # refused for good (by the server, or not JSON): counted, not sent again
        self.rejected_reasons: list[str] = []  # the first MAX_REJECT_REASONS
        self.requests = 0
        self.bytes_sent = 0  # bulk bodies, before compression

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._buffered_bytes = 0  # queued and in flight
        self._closing = False
        self._aborted = False
        self._failure: str | None = None
        self._sender = threading.Thread(target=self._send_loop, name="bulk-sender", daemon=True)
        self._sender.start()

    @property
    def retries(self) -> int:
        return self._backoff.retries

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "events_in": self.events_in,
                "delivered": self.delivered,
                "already_present": self.already_present,
                "rejected": self.rejected,
                "retries": self.retries,
                "requests": self.requests,
                "bytes_sent": self.bytes_sent,
                "without_id": self.encoder.without_id,
                "buffered_bytes": self._buffered_bytes,
            }

    # -- the producer's side --

    def write(self, chunk: bytes) -> None:
        entries: list[bytes] = []
        size = 0
        events = 0
        for line in split_lines(chunk):
            if not line.strip():
                continue
            events += 1
            try:
                entry = self.encoder.entry(line)
            except ValueError as exc:
                self._reject_locally(line, exc)
                continue
            entries.append(entry)
            size += len(entry)
        with self._changed:
            self.events_in += events
            # One chunk larger than the whole budget still goes in, alone, or it never would.
            while (
                self._failure is None
                and self._buffered_bytes
                and self._buffered_bytes + size > self.delivery.max_buffered_bytes
            ):
                self._changed.wait()
            if self._failure is not None:
                raise self._error()
            self._queue.extend(entries)
            self._buffered_bytes += size
            self._changed.notify_all()

    def close(self) -> None:
        """Wait until every event is acknowledged; DeliveryError if the server stayed away."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._sender.join()
        self._connection.close()
        if self._failure is not None:
            raise self._error()

    def abort(self) -> None:
        """Drop what is not delivered and stop, without waiting for the server or raising."""
        with self._changed:
            self._aborted = True
            self._queue.clear()
            self._changed.notify_all()
        self._connection.interrupt()
        # The sender may be inside a backoff sleep (at most backoff_max): it is a daemon and
        # stops after it, so abort does not wait for it.
        self._sender.join(timeout=0.1)

    def _reject_locally(self, line: bytes, exc: ValueError) -> None:
        with self._lock:
            self._count_rejected(f"not a JSON event ({exc}): {line[:80]!r}")

    def _count_rejected(self, reason: str) -> None:
        self.rejected += 1
        if len(self.rejected_reasons) < MAX_REJECT_REASONS:
            self.rejected_reasons.append(reason)

    def _error(self) -> DeliveryError:
        undelivered = self.events_in - self.delivered - self.rejected
        return DeliveryError(SINK_NAME, undelivered, self._failure or "")

    # -- the sender thread --

    def _send_loop(self) -> None:
        try:
            self._send_batches()
        except BaseException as exc:  # a bug here must not leave write() blocked for ever
            with self._changed:
                self._failure = f"bulk sender failed: {type(exc).__name__}: {exc}"
                self._changed.notify_all()

    def _send_batches(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closing and not self._aborted:
                    self._changed.wait()
                if self._aborted or not self._queue:
                    return
                batch = self._take_batch()
            failure = self._deliver(batch)
            with self._changed:
                self._buffered_bytes -= sum(len(entry) for entry in batch)
                if failure is not None and not self._aborted:
                    self._failure = f"{self.endpoint.display()}: {failure}"
                    self._queue.clear()  # never sent now: free the memory (counted undelivered)
                self._changed.notify_all()
                if self._failure is not None:
                    return

    def _take_batch(self) -> list[bytes]:
        """What is queued, up to the batch limits (at least one entry). Holds the lock."""
        batch = [self._queue.popleft()]
        size = len(batch[0])
        while self._queue and len(batch) < self.batch_events:
            entry_size = len(self._queue[0])
            if size + entry_size > self.batch_bytes:
                break
            batch.append(self._queue.popleft())
            size += entry_size
        return batch

    def _deliver(self, batch: list[bytes]) -> str | None:
        """Post `batch` until every entry is acknowledged; the reason if the sink gives up."""
        parts = [batch]
        while parts:
            pending = parts.pop()
            while pending:
                if self._aborted:
                    return None
                body = b"".join(pending)
                try:
                    status, answer = self._connection.post(body)
                except (OSError, http.client.HTTPException) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    if not self._backoff.failed():
                        return reason
                    continue
                with self._lock:
                    self.requests += 1
                    self.bytes_sent += len(body)
                if status == HTTP_TOO_LARGE:
                    if len(pending) > 1:  # in halves, each sent (and split) on its own
                        half = len(pending) // 2
                        parts += [pending[half:], pending[:half]]
                    else:  # one event larger than the server takes: refused for good
                        with self._lock:
                            self._count_rejected(_answer_reason(status, answer))
                    break
                if not 200 <= status < 300:
                    reason = _answer_reason(status, answer)
                    if not is_retryable_status(status):
                        return reason  # a configuration error (401, 403, 404...): no retry fixes it
                    if not self._backoff.failed():
                        return reason
                    continue
                try:
                    outcome = read_bulk_response(answer, len(pending), self.encoder.op_type)
                except ValueError as exc:
                    reason = f"unreadable bulk answer: {exc}"
                    if not self._backoff.failed():
                        return reason
                    continue
                with self._lock:
                    self.delivered += outcome.delivered + outcome.already_present
                    self.already_present += outcome.already_present
                    for _, reason in outcome.rejected:
                        self._count_rejected(reason)
                if outcome.delivered or outcome.already_present or outcome.rejected:
                    self._backoff.succeeded()  # progress: the server is not out
                pending = [pending[i] for i in outcome.retry]
                if pending and not self._backoff.failed():
                    return outcome.retry_reason
        return None
