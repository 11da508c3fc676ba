"""Property tests (hypothesis) for the decoder and extractor entry points, issue #9 item 2.

Each entry point is fed random bytes, and structured inputs then mutated (where a random blob
would be rejected at its first byte): it must never raise, return only its documented typed
results, finish (a walker is driven with a step bound; hypothesis fails a slow example only
when it is flaky, so the step bound is what catches a loop), and keep its invariants.

Entry points and where their properties live:

===========================================  ==========================================
``decode.packet.decode_packet``              here (offsets inside the frame, per link
                                             type); never-raises in test_decode.py
``capture.pcap/pcapng`` walkers              here (sans-IO: whole vs chunked, records
                                             cover the input); file drivers in
                                             test_capture_errors.py
``decode.tunnel.decapsulate``                here (inner offsets); never-raises in
                                             test_tunnel.py
``extract.dns.parse_message``                test_extract_dns.py
``extract.dns.tcp_messages``                 here
``extract.tls.TlsStream.feed``, hellos       here (mutated hellos, records); random bytes
                                             in test_extract_tls.py
``extract.http.HttpStream.feed``             here (random and mutated streams)
``decode.icmp.quoted_flow``                  test_icmp_quoted.py
``flows.defrag.Defragmenter``                test_defrag.py (garbage, caps)
``flows.reassembly.StreamReassembler``       test_reassembly.py (garbage, caps)
===========================================  ==========================================

About 10 s on two cores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.capture.frame import (
    REASON_LENGTH,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    Frame,
    FramingError,
)
from pipeline.capture.pcap import PcapWalker
from pipeline.capture.pcapng import PcapngWalker
from pipeline.capture.walker import BaseWalker, Item
from pipeline.decode import errors
from pipeline.decode.link import LINK_DECODERS
from pipeline.decode.packet import Packet, decode_packet
from pipeline.decode.tunnel import MAX_TUNNEL_DEPTH, decapsulate
from pipeline.extract.dns import tcp_messages
from pipeline.extract.http import ERROR_DECODER_BUG as HTTP_DECODER_BUG
from pipeline.extract.http import (
    HEAD_DONE,
    MESSAGE_DONE,
    RESYNCED,
    STOP_CLOSED,
    STOP_ERROR,
    STOP_NOT_HTTP,
    STOP_TUNNEL,
    HttpMessage,
    HttpStream,
)
from pipeline.extract.tls import ERROR_DECODER_BUG as TLS_DECODER_BUG
from pipeline.extract.tls import (
    ClientHello,
    Handshake,
    ServerHello,
    TlsError,
    TlsStream,
    ja3,
    ja4,
    parse_client_hello,
    parse_server_hello,
)
from tests import capture_writers as w
from tests.test_decode import DECODED
from tests.test_extract_http import REQUESTS, RESPONSES
from tests.test_extract_tls import (
    MODERN_BODY,
    MODERN_STREAM,
    ext,
    handshake,
    records,
    server_hello_body,
)
from tests.test_fuzz import time_bound
from tests.test_tunnel import DECAPSULATED

# A loop never returns, so no hypothesis deadline can see it: every test runs under an alarm
# (test_fuzz.time_bound), and the walkers are driven with a step bound besides. The deadline
# catches an example gone quadratic; it is loose because two busy CI cores are slow.
TEST_SECONDS = 120
DEADLINE = timedelta(seconds=5)


@pytest.fixture(autouse=True)
def bounded_in_time() -> Iterator[None]:
    with time_bound(TEST_SECONDS):
        yield


DECODE_REASONS = {
    errors.REASON_TRUNCATED,
    errors.REASON_MALFORMED,
    errors.REASON_UNSUPPORTED_LINK,
    errors.REASON_LIMIT,
}
# Every link type we decode, and two we do not (the unsupported-link anomaly path).
LINK_TYPES = [*sorted(LINK_DECODERS), 147, 65_000]

# Positions and values of a few byte edits: the mutation every structured test uses.
Edits = list[tuple[int, int]]
edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8)
cuts = st.lists(st.integers(0, 1 << 16), max_size=6)


def mutated(data: bytes, changes: Edits, keep: int = 0) -> bytes:
    """`data` with each (position, value) written (positions wrap; the first `keep` bytes
    stay, so a magic number or a record type survives)."""
    out = bytearray(data)
    span = len(out) - keep
    for pos, value in changes:
        if span > 0:
            out[keep + pos % span] = value
    return bytes(out)


def pieces(data: bytes, points: list[int]) -> list[bytes]:
    """`data` split at the given points (wrapped into range)."""
    bounds = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ------------------------------------------------------------------------ decode_packet


def check_packet(pkt: Packet, link_type: int, frame: bytes) -> None:
    """What any decoded packet promises, whatever the frame held."""
    assert isinstance(pkt, Packet)
    assert pkt.link_type == link_type
    assert pkt.error is None or pkt.error in DECODE_REASONS, (pkt.error, pkt.error_detail)
    if pkt.error is not None:
        assert pkt.error_detail and "\n" not in pkt.error_detail, pkt.error_detail
    if pkt.payload_offset is not None:
        assert 0 <= pkt.payload_offset <= len(frame), pkt
    if pkt.payload_end is not None:
        start = pkt.payload_offset if pkt.payload_offset is not None else 0
        assert start <= pkt.payload_end <= len(frame), pkt
    if pkt.ip_version is not None:
        assert pkt.ip_version in (4, 6), pkt
        size = 4 if pkt.ip_version == 4 else 16
        for addr in (pkt.src_ip, pkt.dst_ip):
            assert addr is None or len(addr) == size, pkt
    for port in (pkt.src_port, pkt.dst_port):
        assert port is None or 0 <= port <= 0xFFFF, pkt
    if pkt.fragment_offset is not None:
        assert pkt.fragment_offset >= 0


@settings(max_examples=2000, deadline=DEADLINE)
@given(link_type=st.sampled_from(LINK_TYPES), frame=st.binary(max_size=300))
def test_decode_packet_random_bytes_keep_offsets_inside_the_frame(
    link_type: int, frame: bytes
) -> None:
    check_packet(decode_packet(link_type, frame), link_type, frame)


@settings(max_examples=2000, deadline=DEADLINE)
@given(
    case=st.sampled_from(DECODED),
    changes=edits,
    cut=st.integers(0, 400),
    tail=st.binary(max_size=40),
)
def test_decode_packet_mutated_frames_keep_offsets_inside_the_frame(
    case: tuple, changes: Edits, cut: int, tail: bytes
) -> None:
    _, link_type, frame, _ = case
    frame = mutated(frame, changes)
    frame = frame[:cut] if cut < len(frame) else frame + tail
    check_packet(decode_packet(link_type, frame), link_type, frame)


@settings(max_examples=1000, deadline=DEADLINE)
@given(case=st.sampled_from(DECAPSULATED), changes=edits, cut=st.integers(0, 500))
def test_decapsulate_inner_packet_lies_inside_the_frame(
    case: tuple, changes: Edits, cut: int
) -> None:
    frame = mutated(case[1], changes, keep=14)[: max(cut, 14)]
    result = decapsulate(decode_packet(1, frame), frame)
    if result is None:
        return
    inner, tunnels = result
    assert 1 <= len(tunnels) <= MAX_TUNNEL_DEPTH
    check_packet(inner, inner.link_type, frame)


# ----------------------------------------------------------------------- capture walkers

# One small valid capture per container kind: the structure the mutations start from.
RECORDS = [w.Rec(1_600_000_000 + n, n * 7, w.packet(20 + 13 * n, seed=n)) for n in range(5)]


def pcapng_base(order: str) -> bytes:
    out = w.shb(
        order=order, options=w.option(4, b"props", order=order) + w.end_of_options(order=order)
    )
    out += w.idb(w.LINKTYPE_ETHERNET, order=order, tsresol=6)
    out += w.epb(0, 1_600_000_000_000_000, w.packet(40), order=order)
    out += w.spb(w.packet(30), order=order)
    out += w.pb(0, 9, w.packet(12), order=order)
    out += w.nrb(order=order) + w.isb(order=order)
    out += w.epb(0, 1_600_000_000_000_001, w.packet(60, seed=3), order=order)
    return out


BASES: dict[str, bytes] = {
    "pcap-le-us": w.pcap_bytes(RECORDS),
    "pcap-be-ns": w.pcap_bytes(RECORDS, order=">", nano=True),
    "pcapng-le": pcapng_base("<"),
    "pcapng-be": pcapng_base(">"),
}
WALKERS: dict[str, type[BaseWalker]] = {
    "pcap-le-us": PcapWalker,
    "pcap-be-ns": PcapWalker,
    "pcapng-le": PcapngWalker,
    "pcapng-be": PcapngWalker,
}


def walk_whole(walker: BaseWalker, content: bytes, max_items: int) -> list[Item]:
    """Drive a walker over the whole input at once (the mapped-file path)."""
    out: list[Item] = []
    pos = 0
    for _ in range(len(content) + 100):  # each step takes an item or ends: a loop is a bug
        if walker.done:
            return out
        taken = len(out)
        pos = walker.walk(content, pos, len(content), True, 0, out, taken + max_items, True)
        assert 0 <= pos <= len(content)
        if len(out) == taken and not walker.done:
            raise AssertionError(f"walker made no progress at {pos} with the whole input")
    raise AssertionError("walker did not finish")


def walk_chunked(walker: BaseWalker, content: bytes, chunk: int, max_items: int) -> list[Item]:
    """Drive a walker as the stream reader does: the input arrives `chunk` bytes at a time,
    and the walker says how many bytes it needs when it stops for more."""
    out: list[Item] = []
    pos = 0
    end = min(chunk, len(content))
    for _ in range(2 * len(content) + 200):
        if walker.done:
            return out
        at_eof = end == len(content)
        taken = len(out)
        pos = walker.walk(content, pos, end, at_eof, 0, out, taken + max_items, True)
        assert 0 <= pos <= end
        if len(out) == taken and not walker.done:
            assert not at_eof, f"walker stopped at {pos} at the end of input without finishing"
            assert walker.need > end - pos, (walker.need, end - pos)  # always more than it has
            end = min(len(content), max(end + chunk, pos + walker.need))
    raise AssertionError("walker did not finish")


def check_items(items: list[Item], content: bytes) -> None:
    """Frames are the input's bytes, in order, not overlapping; errors typed; one fatal, last."""
    assert [i.index for i in items] == list(range(1, len(items) + 1))
    covered = 0
    for n, item in enumerate(items):
        if type(item) is Frame:
            assert item.data is not None
            assert item.caplen == len(item.data)
            assert item.offset >= covered, (item, covered)
            assert item.data == content[item.offset : item.offset + item.caplen]
            covered = item.offset + item.caplen
        else:
            assert type(item) is FramingError
            assert item.reason in (REASON_LENGTH, REASON_TRUNCATED, REASON_MALFORMED), item
            assert 0 <= item.offset <= len(content), item
            assert item.detail and "\n" not in item.detail, item
            assert not item.fatal or n == len(items) - 1, "items after a fatal error"


def check_walk(kind: str, content: bytes, chunk: int) -> None:
    whole = walk_whole(WALKERS[kind](), content, 3)
    check_items(whole, content)
    assert walk_chunked(WALKERS[kind](), content, chunk, 3) == whole


WALK_SETTINGS = settings(
    max_examples=400, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow]
)


def first_block_end(data: bytes) -> int:
    """Where the first pcapng block (the section header) ends."""
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    return int.from_bytes(data[4:8], "little" if order == "<" else "big")


def test_walker_bases_read_cleanly() -> None:
    for kind, content in BASES.items():
        items = walk_whole(WALKERS[kind](), content, 100)
        assert items and all(type(i) is Frame for i in items), (kind, items)


@WALK_SETTINGS
@given(kind=st.sampled_from(sorted(BASES)), blob=st.binary(max_size=400), chunk=st.integers(1, 64))
def test_walker_random_bytes(kind: str, blob: bytes, chunk: int) -> None:
    check_walk(kind, blob, chunk)


@WALK_SETTINGS
@given(kind=st.sampled_from(sorted(BASES)), blob=st.binary(max_size=400), chunk=st.integers(1, 64))
def test_walker_random_bytes_behind_a_valid_file_header(kind: str, blob: bytes, chunk: int) -> None:
    base = BASES[kind]
    header = base[:24] if kind.startswith("pcap-") else base[: first_block_end(base)]
    check_walk(kind, header + blob, chunk)


@WALK_SETTINGS
@given(
    kind=st.sampled_from(sorted(BASES)),
    changes=edits,
    cut=st.integers(0, 1000),
    chunk=st.integers(1, 64),
)
def test_walker_mutated_captures(kind: str, changes: Edits, cut: int, chunk: int) -> None:
    content = mutated(BASES[kind], changes, keep=4)
    check_walk(kind, content[: len(content) - cut % (len(content) + 1)], chunk)


# --------------------------------------------------------------------- DNS over TCP framing


@settings(max_examples=500, deadline=DEADLINE)
@given(stream=st.binary(max_size=600), points=cuts)
def test_tcp_messages_account_for_every_byte(stream: bytes, points: list[int]) -> None:
    messages, rest = tcp_messages(stream)
    framed = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    assert framed + rest == stream
    if len(rest) >= 2:  # what is left is a message still arriving
        assert int.from_bytes(rest[:2], "big") > len(rest) - 2
    # Fed in pieces, keeping the rest each time as callers do: the same messages.
    got: list[bytes] = []
    held = b""
    for piece in pieces(stream, points):
        more, held = tcp_messages(held + piece)
        got += more
    assert (got, held) == (messages, rest)


# ----------------------------------------------------------------------------------- HTTP

HTTP_KINDS = {HEAD_DONE, MESSAGE_DONE, RESYNCED}
HTTP_STOPS = {None, STOP_NOT_HTTP, STOP_TUNNEL, STOP_ERROR, STOP_CLOSED}


def feed_http(requests: bool, data: bytes, points: list[int]) -> list[tuple[int, object]]:
    stream = HttpStream(requests=requests)
    if not requests:
        stream.request_methods.extend([b"GET", b"HEAD", b"POST"] * 4)
    out: list[tuple[int, object]] = []
    for n, piece in enumerate(pieces(data, points)):
        for what, msg in stream.feed(piece, ts_ns=n, index=n + 1):
            assert what in HTTP_KINDS and isinstance(msg, HttpMessage)
            out.append((what, msg.method, msg.target, msg.status, msg.body_bytes))
    assert stream.stopped in HTTP_STOPS, stream.stopped
    for error in stream.errors:
        assert error.kind != HTTP_DECODER_BUG, error  # a bug, not bad input
        assert "\n" not in error.detail, error
    return out


@settings(max_examples=500, deadline=DEADLINE)
@given(requests=st.booleans(), data=st.binary(max_size=600), points=cuts)
def test_http_random_bytes(requests: bool, data: bytes, points: list[int]) -> None:
    feed_http(requests, data, points)


@settings(max_examples=800, deadline=DEADLINE)
@given(requests=st.booleans(), changes=edits, points=cuts, cut=st.integers(0, 400))
def test_http_mutated_streams(requests: bool, changes: Edits, points: list[int], cut: int) -> None:
    data = mutated(REQUESTS if requests else RESPONSES, changes)
    data = data[: len(data) - cut % (len(data) + 1)]
    feed_http(requests, data, points)


# ------------------------------------------------------------------------------------ TLS

SERVER_BODY = server_hello_body(0x1301, [ext(0x2B, b"\x03\x04")])


def check_tls_result(result: object, kinds: tuple[type, ...]) -> None:
    assert isinstance(result, (TlsError, *kinds)), result
    if isinstance(result, TlsError):
        assert result.kind != TLS_DECODER_BUG, result
    if isinstance(result, ClientHello):
        ja3(result), ja4(result)


@settings(max_examples=800, deadline=DEADLINE)
@given(changes=edits, cut=st.integers(0, 600))
def test_tls_mutated_hellos(changes: Edits, cut: int) -> None:
    client = mutated(MODERN_BODY, changes)
    server = mutated(SERVER_BODY, changes)
    check_tls_result(parse_client_hello(client[: max(len(client) - cut, 0)]), (ClientHello,))
    check_tls_result(parse_server_hello(server[: max(len(server) - cut, 0)]), (ServerHello,))


@settings(max_examples=500, deadline=DEADLINE)
@given(changes=edits, points=cuts, cap=st.sampled_from([0, 64, 4096, 1 << 20]))
def test_tls_stream_mutated_records(changes: Edits, points: list[int], cap: int) -> None:
    data = mutated(MODERN_STREAM + records(22, handshake(2, SERVER_BODY)), changes)
    stream = TlsStream(max_buffered_bytes=cap)
    for piece in pieces(data, points):
        for hs in stream.feed(piece):
            assert isinstance(hs, Handshake)
            parse = parse_client_hello if hs.msg_type == 1 else parse_server_hello
            check_tls_result(parse(hs.body), (ClientHello, ServerHello))
