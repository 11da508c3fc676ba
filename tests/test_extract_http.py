"""The HTTP/1.x parser and extractor (pipeline/extract/http.py), fed bytes directly.

As h11 tests its parser: every exchange is fed whole, in random pieces, and one byte at a
time, and must give the same messages. Then the framing rules (RFC 9112 6.3), pairing
(pipelining, HEAD, 100-continue, responses with no request), recovery after a capture gap,
and the hostile inputs dpkt.http raises on (NOTES.md): two Content-Length or
Transfer-Encoding headers, a non-numeric length, heads past the caps — each stops one stream
with a typed error, never an exception.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.extract.http import (
    ERROR_LIMIT,
    ERROR_MALFORMED,
    HEAD_DONE,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MESSAGE_DONE,
    STOP_NOT_HTTP,
    STOP_TUNNEL,
    HttpExtractor,
    HttpStream,
    HttpTransaction,
    sniff_mime_type,
)

REQUESTS = (
    b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
    b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
)
RESPONSES = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nbody"
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"2\r\n\x1f\x8b\r\n0\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
)


def summary(stream: HttpStream, pieces: list[bytes]) -> list[tuple[Any, ...]]:
    out = []
    for piece in pieces:
        for what, m in stream.feed(piece):
            # A message is filled in as its body arrives: at HEAD_DONE only the head is final.
            body = (m.body_bytes, m.complete) if what == MESSAGE_DONE else ()
            out.append((what, m.method, m.target, m.status, m.version, *body))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def test_requests_whole() -> None:
    got = summary(HttpStream(requests=True), [REQUESTS])
    assert [g for g in got if g[0] == MESSAGE_DONE] == [
        (MESSAGE_DONE, b"GET", b"/a?x=1", 0, b"1.1", 0, True),
        (MESSAGE_DONE, b"POST", b"/form", 0, b"1.1", 5, True),
        (MESSAGE_DONE, b"PUT", b"/up", 0, b"1.1", 19, True),  # 3 + 16 chunk bytes
    ]
    assert [g[0] for g in got] == [HEAD_DONE, MESSAGE_DONE] * 3


def test_responses_know_their_requests_methods() -> None:
    stream = HttpStream(requests=False)
    stream.request_methods.extend([b"GET", b"POST", b"PUT"])
    done = [g for g in summary(stream, [RESPONSES]) if g[0] == MESSAGE_DONE]
    assert [(g[3], g[5]) for g in done] == [(200, 4), (201, 2), (204, 0)]  # 204: no body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_segmentation_gives_the_same_messages(cuts: list[int]) -> None:
    whole = summary(HttpStream(requests=True), [REQUESTS])
    assert summary(HttpStream(requests=True), split_at(REQUESTS, cuts)) == whole
    responses = HttpStream(requests=False)
    responses.request_methods.extend([b"GET", b"POST", b"PUT"])
    reference = HttpStream(requests=False)
    reference.request_methods.extend([b"GET", b"POST", b"PUT"])
    assert summary(responses, split_at(RESPONSES, cuts)) == summary(reference, [RESPONSES])


def test_one_byte_at_a_time() -> None:
    whole = summary(HttpStream(requests=True), [REQUESTS])
    assert summary(HttpStream(requests=True), [bytes([b]) for b in REQUESTS]) == whole


def test_head_response_has_no_body_whatever_it_says() -> None:
    stream = HttpStream(requests=False)
    stream.request_methods.extend([b"HEAD", b"GET"])
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
    )
    done = [g for g in summary(stream, [data]) if g[0] == MESSAGE_DONE]
    assert [(g[3], g[5]) for g in done] == [(200, 0), (404, 2)]


def test_close_delimited_body_ends_at_close() -> None:
    stream = HttpStream(requests=False)
    stream.request_methods.append(b"GET")
    assert [w for w, _ in stream.feed(b"HTTP/1.0 200 OK\r\n\r\nsome bytes")] == [HEAD_DONE]
    stream.feed(b" and more")
    ((what, message),) = stream.close()
    assert what == MESSAGE_DONE and message.complete and message.body_bytes == 19


def test_bare_lf_folding_and_leading_empty_lines() -> None:
    stream = HttpStream(requests=True)
    data = b"\r\n\r\nGET / HTTP/1.1\nHost: a\nX-Long: one\n  two\n\n"
    (_, head), (_, done) = stream.feed(data)
    assert head is done and done.header(b"x-long") == b"one two" and done.header(b"host") == b"a"


def test_not_http_stops_at_once() -> None:
    tls = HttpStream(requests=True)
    tls.feed(bytes.fromhex("160301020001"))
    assert tls.stopped == STOP_NOT_HTTP
    smtp = HttpStream(requests=True)
    smtp.feed(b"EHLO mail.example.com\r\n")  # a token and a space, but no HTTP request line
    assert smtp.stopped == STOP_NOT_HTTP
    ssh = HttpStream(requests=False)
    ssh.feed(b"SSH-2.0-OpenSSH_9.6\r\n")
    assert ssh.stopped == STOP_NOT_HTTP


def test_upgrade_and_connect_end_the_http_part() -> None:
    stream = HttpStream(requests=False)
    stream.request_methods.append(b"GET")
    stream.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    assert stream.stopped == STOP_TUNNEL
    connect = HttpStream(requests=False)
    connect.request_methods.append(b"CONNECT")
    connect.feed(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01")
    assert connect.stopped == STOP_TUNNEL


def hostile(data: bytes, requests: bool = True) -> HttpStream:
    stream = HttpStream(requests=requests)
    if not requests:
        stream.request_methods.append(b"GET")
    stream.feed(data)
    return stream


def test_hostile_framing_headers_are_typed_errors() -> None:
    two_lengths = hostile(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
    assert [e.kind for e in two_lengths.errors] == [ERROR_MALFORMED]
    same_twice = hostile(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
    assert not same_twice.errors and same_twice.messages == 1  # RFC 9110 8.6: same value is fine
    non_numeric = hostile(b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n", requests=False)
    assert [e.kind for e in non_numeric.errors] == [ERROR_MALFORMED]
    two_codings = hostile(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n"
    )
    assert not two_codings.errors and two_codings.messages == 1  # joined: chunked is last
    bad_chunk = hostile(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert [e.kind for e in bad_chunk.errors] == [ERROR_MALFORMED]


def test_head_caps_are_flagged() -> None:
    huge = hostile(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10))
    assert huge.limit_hit and [e.kind for e in huge.errors] == [ERROR_LIMIT]
    many = hostile(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n")
    assert many.limit_hit and [e.kind for e in many.errors] == [ERROR_LIMIT]


class FakeFlow:
    """What the extractor reads of a flow table's Flow."""

    def __init__(self) -> None:
        self.last_ns = 0
        self.last_index = 0
        self.first_index = 1


def run(exchange: list[tuple[bool, bytes]]) -> list[HttpTransaction]:
    extractor = HttpExtractor()
    flow = FakeFlow()
    for i, (from_originator, data) in enumerate(exchange, 1):
        flow.last_index, flow.last_ns = i, i * 1000
        if extractor.data(flow, from_originator, data) is False:
            break
    extractor.closed(flow)
    return extractor.take_ended()


def test_pipelined_requests_pair_in_order() -> None:
    txs = run([(True, REQUESTS), (False, RESPONSES)])
    assert [(t.request.target, t.response.status) for t in txs] == [  # type: ignore[union-attr]
        (b"/a?x=1", 200),
        (b"/form", 201),
        (b"/up", 204),
    ]


def test_interim_response_stays_with_its_request() -> None:
    txs = run(
        [
            (True, b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
            (False, b"HTTP/1.1 100 Continue\r\n\r\n"),
            (True, b"abc"),
            (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]
    )
    assert len(txs) == 1 and txs[0].interim == [100] and txs[0].response.status == 200  # type: ignore[union-attr]
    assert txs[0].request.body_bytes == 3 and txs[0].request.end_index == 3  # type: ignore[union-attr]


def test_unanswered_and_unsolicited() -> None:
    mid_connection = run([(True, b"HTTP/1.1 304 Not Modified\r\n\r\n")])
    assert len(mid_connection) == 1 and mid_connection[0].request is None
    assert not mid_connection[0].client_is_originator  # the first bytes were a response
    unanswered = run([(True, b"GET / HTTP/1.1\r\n\r\n")])
    assert unanswered[0].response is None


def test_a_lost_response_is_skipped_and_the_rest_pair_right() -> None:
    """A capture gap swallowed the first response's start: its tail is not HTTP; the stream
    finds the next status line, and the lost one is charged to the first request."""
    txs = run(
        [
            (True, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
            (False, b"...tail of body one...HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
        ]
    )
    assert [(t.request.target, t.response_lost) for t in txs] == [  # type: ignore[union-attr]
        (b"/1", True),
        (b"/2", False),
    ]
    assert txs[1].response.status == 200  # type: ignore[union-attr]


def test_non_http_connection_is_released() -> None:
    extractor = HttpExtractor()
    flow = FakeFlow()
    assert extractor.data(flow, True, bytes.fromhex("1603010200010001fc0303")) is True
    assert extractor.data(flow, False, bytes.fromhex("160303007a020000760303")) is False
    assert not extractor.ended


def test_mime_sniffing() -> None:
    assert sniff_mime_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_mime_type(b"  <!DOCTYPE html><html>") == "text/html"
    assert sniff_mime_type(b'{"a": 1}') == "application/json"
    assert sniff_mime_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mime_type(b"plain words") == "text/plain"
    assert sniff_mime_type(b"\x00\x01\x02") == "application/octet-stream"
    assert sniff_mime_type(b"") is None
