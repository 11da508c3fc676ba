"""The DNS extractor (pipeline/extract/dns.py): hand-built messages, hostile input, the TCP
length-prefix splitter, the transaction pairer, dpkt as an oracle, and tshark truth on every
reference capture (each difference named per file with its reason).

The truth test feeds the extractor as the converter will once it is wired: tunnels opened,
UDP fragments through the flow layer's `Defragmenter`, DNS over TCP through a
`StreamReassembler` per direction and `tcp_messages`. Names are compared in tshark's
rendering (`tshark_name`): ours escape bytes as ECS asks, tshark shows UTF-8 and octal.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.capture import Frame, open_capture
from pipeline.decode.packet import decode_packet
from pipeline.decode.tunnel import decapsulate
from pipeline.extract import dns as dns_module
from pipeline.extract.dns import (
    DATASET_DNS,
    FLAG_BAD_RDATA,
    LIMIT_ANSWERS,
    LIMIT_NAME,
    LIMIT_QUESTIONS,
    LIMIT_RDATA,
    MAX_ANSWERS,
    MAX_NAME_OCTETS,
    MAX_PENDING,
    MAX_POINTERS,
    MAX_QUESTIONS,
    MAX_RDATA_ITEMS,
    OPCODE_NAMES,
    REASON_DECODER_ERROR,
    REASON_LIMIT,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    STATUS_ANSWERED,
    STATUS_EVICTED,
    STATUS_UNANSWERED,
    STATUS_UNSOLICITED,
    TRANSACTION_TIMEOUT_NS,
    DnsAnswer,
    DnsError,
    DnsMessage,
    DnsQuestion,
    DnsTransactions,
    parse_message,
    tcp_messages,
    transaction_event,
    type_code,
)
from pipeline.flows.defrag import Defragmenter
from pipeline.flows.reassembly import StreamReassembler
from tests.conftest import CAPTURE_PARAMS, REFERENCE_CAPTURES, SHARED, needs_shared, truth_for


# --- Message builders ---------------------------------------------------------------------
def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def header(
    msg_id: int = 0x1234, bits: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", msg_id, bits, qd, an, ns, ar)


def question(name: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


WWW = wire_name(b"www", b"example", b"com")
AT_QNAME = pointer(12)  # the question name in a one-question message


def response(*records: bytes, qtype: int = 1, bits: int = 0x8180, ar: bytes = b"") -> bytes:
    n_ar = 1 if ar else 0
    return (
        header(bits=bits, an=len(records), ar=n_ar) + question(WWW, qtype) + b"".join(records) + ar
    )


def parsed(payload: bytes) -> DnsMessage:
    msg = parse_message(payload)
    assert isinstance(msg, DnsMessage), msg
    return msg


def svc_param(key: int, value: bytes) -> bytes:
    return struct.pack("!HH", key, len(value)) + value


# (type, rdata, expected data): every renderer, and the generic form.
RDATA_CASES = [
    (1, bytes([192, 0, 2, 1]), "192.0.2.1"),
    (28, bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1"),
    (5, wire_name(b"cdn", b"example", b"net"), "cdn.example.net"),
    (5, b"\x03cdn" + AT_QNAME, "cdn.www.example.com"),  # a pointer inside rdata
    (2, wire_name(b"ns1", b"example", b"com"), "ns1.example.com"),
    (12, wire_name(b"host", b"example"), "host.example"),
    (15, b"\x00\x0a" + wire_name(b"mail", b"example", b"com"), "10 mail.example.com"),
    (16, b'\x0bhello world\x03a"b', '"hello world" "a\\"b"'),
    (16, b"\x02\x00\xff", '"\\000\\255"'),
    (
        6,
        wire_name(b"ns1", b"example")
        + wire_name(b"hostmaster", b"example")
        + struct.pack("!IIIII", 2024010101, 7200, 3600, 1209600, 300),
        "ns1.example hostmaster.example 2024010101 7200 3600 1209600 300",
    ),
    (33, struct.pack("!HHH", 0, 5, 5060) + wire_name(b"sip", b"example"), "0 5 5060 sip.example"),
    (257, b"\x00\x05issueletsencrypt.org", '0 issue "letsencrypt.org"'),
    (
        65,
        b"\x00\x01\x00"
        + svc_param(1, b"\x02h2\x02h3")
        + svc_param(3, b"\x01\xbb")
        + svc_param(4, bytes([192, 0, 2, 1, 192, 0, 2, 2])),
        "1 . alpn=h2,h3 port=443 ipv4hint=192.0.2.1,192.0.2.2",
    ),
    (
        64,
        b"\x00\x02"
        + wire_name(b"svc", b"example")
        + svc_param(0, b"\x00\x01")
        + svc_param(2, b"")
        + svc_param(5, b"\x01\x02\x03")
        + svc_param(6, bytes(16))
        + svc_param(9, b"x"),
        '2 svc.example mandatory=alpn no-default-alpn ech=AQID ipv6hint=:: key9="x"',
    ),
    (65280, b"\x01\x02\x03", "\\# 3 010203"),
    (10, b"", "\\# 0"),
]


@pytest.mark.parametrize(("rtype", "rdata", "expected"), RDATA_CASES)
def test_rdata_rendering(rtype: int, rdata: bytes, expected: str) -> None:
    msg = parsed(response(rr(AT_QNAME, rtype, rdata)))
    assert msg.error is None and msg.limits == ()
    [answer] = msg.answers
    assert answer == DnsAnswer("www.example.com", answer.type, "IN", 300, expected)
    assert type_code(answer.type) == rtype
    assert msg.resolved_ips == ((expected,) if rtype in (1, 28) else ())


def test_bad_rdata_is_generic_and_flagged() -> None:
    msg = parsed(response(rr(AT_QNAME, 1, b"\x01\x02\x03"), rr(AT_QNAME, 15, b"\x00")))
    assert [a.data for a in msg.answers] == ["\\# 3 010203", "\\# 1 00"]
    assert msg.limits == (FLAG_BAD_RDATA,) and msg.error is None and msg.resolved_ips == ()


def test_header_fields_and_edns() -> None:
    # QR AA TC RD RA AD CD, opcode NOTIFY, rcode 7 + EDNS extended rcode 1 → 23 (BADCOOKIE).
    bits = 0x8000 | 4 << 11 | 0x0400 | 0x0200 | 0x0100 | 0x0080 | 0x0020 | 0x0010 | 7
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 1 << 24 | 0x8000, 0)
    msg = parsed(response(bits=bits, ar=opt))
    assert (msg.id, msg.opcode, msg.rcode, msg.is_response) == (0x1234, "NOTIFY", "BADCOOKIE", True)
    assert msg.flags == ("AA", "TC", "RD", "RA", "AD", "CD", "DO")
    assert msg.questions == (DnsQuestion("www.example.com", "A", "IN"),)
    query = parsed(header() + question(WWW, 28, 3))
    assert (query.opcode, query.rcode, query.flags, query.is_response) == (
        "QUERY",
        "NOERROR",
        ("RD",),
        False,
    )
    assert query.questions == (DnsQuestion("www.example.com", "AAAA", "CH"),)
    odd = parsed(header(bits=0x8000 | 9 << 11 | 12) + question(WWW, 4242, 77))
    assert (odd.opcode, odd.rcode) == ("9", "12")
    assert odd.questions == (DnsQuestion("www.example.com", "TYPE4242", "CLASS77"),)


# --- Names --------------------------------------------------------------------------------
NAME_CASES = [
    (wire_name(b"a\xff\x00 b", b"x.y\\z"), "a\\255\\000\\032b.x\\.y\\\\z"),  # non-printable
    (wire_name("bücher".encode(), b"de"), "b\\195\\188cher.de"),  # UTF-8 is bytes too
    (b"\x00", "."),  # the root
    (wire_name(b"\x7f\x80\x1f"), "\\127\\128\\031"),
]


@pytest.mark.parametrize(("wire", "rendered"), NAME_CASES)
def test_names_render_non_printable_as_ddd(wire: bytes, rendered: str) -> None:
    msg = parsed(header() + question(wire))
    assert msg.questions == (DnsQuestion(rendered, "A", "IN"),) and msg.error is None


def test_non_utf8_names_where_dpkt_raises() -> None:
    payload = header() + question(wire_name(b"\xc3\x28bad", b"example"))
    with pytest.raises(UnicodeDecodeError):
        dpkt.dns.DNS(payload)  # NOTES.md: dpkt's failure mode this parser avoids
    assert parsed(payload).questions[0].name == "\\195(bad.example"


def test_compression_pointers() -> None:
    # An answer name as a pointer, a name that ends in a pointer, a pointer to a pointer.
    answers = [rr(AT_QNAME, 1, bytes(4)), rr(b"\x02cd" + pointer(16), 1, bytes(4))]
    payload = response(*answers)
    chain_at = len(payload)
    payload = bytearray(payload + rr(pointer(chain_at + 16), 1, bytes(4)) + pointer(12))
    struct.pack_into("!H", payload, 6, 3)
    msg = parsed(bytes(payload))
    assert [a.name for a in msg.answers] == ["www.example.com", "cd.example.com", "www.example.com"]
    assert msg.error is None  # bytes after the last record are not read


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (AT_QNAME, REASON_MALFORMED),  # a pointer to itself
        (b"\x03abc" + AT_QNAME, REASON_MALFORMED),  # a label, then back to it
        (pointer(14) + pointer(12), REASON_MALFORMED),  # two pointers to each other
        (pointer(200), REASON_MALFORMED),  # past the end: reads truncated or malformed
        (b"\x40abc\x00", REASON_MALFORMED),  # extended label type
    ],
)
def test_pointer_loops_and_bad_labels_stop_with_an_error(name: bytes, reason: str) -> None:
    msg = parsed(header() + question(name))
    assert msg.questions == ()
    assert msg.error is not None and msg.error.reason in (reason, REASON_TRUNCATED)


def test_pointer_chain_limit() -> None:
    # MAX_POINTERS + 1 pointers, each to the next (all forward, no loop): a limit error.
    hops = MAX_POINTERS + 1
    chain = b"".join(pointer(12 + 2 * (i + 1)) for i in range(hops)) + b"\x00"
    msg = parsed(header() + chain + struct.pack("!HH", 1, 1))
    assert msg.error is not None and msg.error.reason == REASON_LIMIT
    shorter = header() + b"".join(pointer(12 + 2 * (i + 1)) for i in range(MAX_POINTERS - 1))
    assert parsed(shorter + b"\x00" + struct.pack("!HH", 1, 1)).questions[0].name == "."


def test_long_names_are_capped_and_flagged_and_the_walk_goes_on() -> None:
    many_labels = wire_name(*[b"a"] * 200)  # 400 octets
    long_labels = wire_name(*[b"b" * 63] * 6)  # 384 octets
    payload = header(qd=2) + question(many_labels, 16) + question(long_labels, 28)
    msg = parsed(payload)
    assert msg.error is None and msg.limits == (LIMIT_NAME,)
    assert [q.type for q in msg.questions] == ["TXT", "AAAA"]
    for q in msg.questions:
        octets = sum(len(label) + 1 for label in q.name.split("."))
        assert octets <= MAX_NAME_OCTETS
    # Capped via a pointer (the end is known at the pointer): the next record still parses.
    capped = parsed(response(rr(AT_QNAME, 1, bytes(4)), qtype=28))
    assert capped.error is None


def test_answer_cap() -> None:
    n = MAX_ANSWERS + 5
    msg = parsed(response(*[rr(AT_QNAME, 1, bytes([10, 0, i // 256, i % 256])) for i in range(n)]))
    assert len(msg.answers) == MAX_ANSWERS and msg.answer_count == n
    assert msg.limits == (LIMIT_ANSWERS,) and msg.error is None
    assert len(msg.resolved_ips) == MAX_ANSWERS


def test_question_and_rdata_caps() -> None:
    many = header(qd=MAX_QUESTIONS + 2) + question(WWW) * (MAX_QUESTIONS + 2)
    msg = parsed(many)
    assert len(msg.questions) == MAX_QUESTIONS and msg.limits == (LIMIT_QUESTIONS,)
    txt = parsed(response(rr(AT_QNAME, 16, b"\x01x" * (MAX_RDATA_ITEMS + 1))))
    assert txt.answers[0].data == " ".join(['"x"'] * MAX_RDATA_ITEMS)
    assert txt.limits == (LIMIT_RDATA,) and txt.error is None
    hints = svc_param(4, bytes(4 * (MAX_RDATA_ITEMS + 1)))
    svcb = parsed(response(rr(AT_QNAME, 65, b"\x00\x01\x00" + hints)))
    assert svcb.answers[0].data.count("0.0.0.0") == MAX_RDATA_ITEMS
    assert svcb.limits == (LIMIT_RDATA,)


def test_rdata_names_stay_inside_their_record() -> None:
    # A CNAME whose name runs past its rdata length: bad rdata, the next record still parses.
    cname = rr(AT_QNAME, 5, b"\x03abc")  # no terminating label inside the rdata
    msg = parsed(response(cname, rr(AT_QNAME, 1, bytes(4))))
    assert [a.data for a in msg.answers] == ["\\# 4 03616263", "0.0.0.0"]
    assert msg.limits == (FLAG_BAD_RDATA,) and msg.error is None


# --- Truncation and hostile input ---------------------------------------------------------
RICH = response(*[rr(AT_QNAME, rtype, rdata) for rtype, rdata, _ in RDATA_CASES[:-2]])


def test_rich_message_parses_whole() -> None:
    msg = parsed(RICH)
    assert msg.error is None and msg.limits == ()
    assert [a.data for a in msg.answers] == [expected for *_, expected in RDATA_CASES[:-2]]


def test_truncation_at_every_offset_never_raises() -> None:
    whole = parsed(RICH)
    for cut in range(len(RICH)):
        msg = parse_message(RICH[:cut])
        if cut < 12:
            assert isinstance(msg, DnsError) and msg.reason == REASON_TRUNCATED
            continue
        assert isinstance(msg, DnsMessage), cut
        assert msg.error is not None and msg.error.reason == REASON_TRUNCATED, cut
        # What was read before the cut is kept, and is what the whole message says.
        assert msg.answers == whole.answers[: len(msg.answers)], cut
        assert msg.questions == whole.questions[: len(msg.questions)], cut


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, (DnsMessage, DnsError))
    if isinstance(msg, DnsError):
        assert msg.reason != REASON_DECODER_ERROR, msg  # a bug, not bad input
    else:
        assert len(msg.answers) <= MAX_ANSWERS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(RICH) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_messages_never_raise(edits: list[tuple[int, int]]) -> None:
    data = bytearray(RICH)
    for pos, value in edits:
        data[pos] = value
    msg = parse_message(bytes(data))
    assert isinstance(msg, DnsMessage), msg  # the header is whole: never a DnsError


# --- The quick name path (`_common_name`) -------------------------------------------------
def walked_only(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> DnsMessage | DnsError:
    """`payload` parsed with every name read by `unpack_name`'s full walk."""
    with monkeypatch.context() as patch:
        patch.setattr(dns_module, "_common_name", lambda buf, off, names: None)
        return parse_message(payload)


QUICK_CASES = [
    RICH,
    # Labels then a pointer to a name read before; a pointer to a pointer's name; the root.
    response(rr(wire_name(b"www")[:-1] + AT_QNAME, 1, b"\x01\x02\x03\x04")),
    header(qd=2, an=1)
    + question(wire_name(b"a", b"example", b"com"))
    + question(wire_name(b"b")[:-1] + pointer(12))
    + rr(pointer(29), 1, b"\x01\x02\x03\x04"),
    header(qd=1, an=1) + question(b"\x00") + rr(pointer(12), 1, b"\x01\x02\x03\x04"),
    # Names the quick path leaves to the walk: a dot, a backslash and a space inside labels,
    # a pointer forwards, one past the end, long names, many labels.
    header(qd=1) + question(wire_name(b"a.b", b"c")),
    header(qd=1) + question(wire_name(b"a\\b", b"c d")),
    header(qd=1, an=1) + question(pointer(40)) + rr(wire_name(b"x"), 1, b"\x01\x02\x03\x04"),
    header(qd=1) + question(wire_name(b"a")[:-1] + pointer(200)),
    header(qd=1) + question(wire_name(*[b"x" * 63] * 4)),
    header(qd=1) + question(wire_name(*[b"y"] * 120)),
]


@pytest.mark.parametrize("payload", QUICK_CASES)
def test_quick_names_equal_the_full_walk(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_message(payload) == walked_only(payload, monkeypatch)


def test_quick_path_reads_the_common_names() -> None:
    """It does take the common shapes (or the equality tests above would prove nothing)."""
    names: dict = {}
    plain = wire_name(b"www", b"example", b"com")
    assert dns_module._common_name(plain, 0, names) == ("www.example.com", len(plain))
    buf = plain + wire_name(b"cdn")[:-1] + pointer(0)  # "cdn", then the name read before
    assert dns_module._common_name(buf, len(plain), names) == ("cdn.www.example.com", len(buf))
    # Left to the walk: a pointer to a place it has not read a name at (here, a domain part).
    assert dns_module._common_name(plain + pointer(4), len(plain), names) is None
    assert dns_module._common_name(wire_name(b"a.b"), 0, {}) is None  # a dot to escape


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(RICH) - 1), st.integers(0, 255)), max_size=8))
def test_quick_names_equal_the_full_walk_on_mutated_messages(
    edits: list[tuple[int, int]],
) -> None:
    data = bytearray(RICH)
    for pos, value in edits:
        data[pos] = value
    payload = bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dns_module, "_common_name", lambda buf, off, names: None)
        walked = parse_message(payload)
    assert parse_message(payload) == walked


# --- DNS over TCP -------------------------------------------------------------------------
def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


TCP_MESSAGES = [header() + question(WWW), RICH, b"", header(msg_id=7)]


def test_tcp_messages_whole_and_with_trailing_bytes() -> None:
    stream = framed(*TCP_MESSAGES)
    assert tcp_messages(stream) == (TCP_MESSAGES, b"")
    partial = framed(RICH)[:40]
    assert tcp_messages(stream + partial) == (TCP_MESSAGES, partial)
    assert tcp_messages(b"\x00") == ([], b"\x00")
    assert isinstance(parse_message(b""), DnsError)


def test_tcp_messages_byte_by_byte() -> None:
    stream = framed(*TCP_MESSAGES)
    got: list[bytes] = []
    rest = b""
    for i in range(len(stream)):
        messages, rest = tcp_messages(rest + stream[i : i + 1])
        got.extend(messages)
    assert got == TCP_MESSAGES and rest == b""


# --- Transactions -------------------------------------------------------------------------
Q = parsed(header() + question(WWW))
R = parsed(response(rr(AT_QNAME, 1, bytes([192, 0, 2, 1]))))
FLOW = ("10.0.0.1", 5353, "10.0.0.53", 53, 17)


def test_pairing_duration_and_event() -> None:
    table = DnsTransactions()
    assert table.query(1_000, FLOW, Q) == []
    tx = table.response(5_000, FLOW, R)
    assert (tx.status, tx.query, tx.response, tx.duration_ns) == (STATUS_ANSWERED, Q, R, 4_000)
    assert len(table) == 0
    event = transaction_event(tx, {"@timestamp": "t", "event": {"id": "x"}})
    assert event["event"]["dataset"] == DATASET_DNS and event["event"]["duration"] == 4_000
    assert event["event"]["id"] == "x" and event["@timestamp"] == "t"
    assert event["dns"] == {
        "id": "4660",
        "op_code": "QUERY",
        "header_flags": ["RD", "RA"],
        "type": "answer",
        "response_code": "NOERROR",
        "question": {"name": "www.example.com", "type": "A", "class": "IN"},
        "answers": [
            {"name": "www.example.com", "type": "A", "class": "IN", "ttl": 300, "data": "192.0.2.1"}
        ],
        "resolved_ip": ["192.0.2.1"],
    }
    assert event["network"]["protocol"] == "dns" and event["pcap"]["dns"] == {"status": "answered"}


def test_pairing_needs_flow_id_and_question() -> None:
    table = DnsTransactions()
    table.query(0, FLOW, Q)
    other_id = parsed(header(msg_id=1, bits=0x8180) + question(WWW))
    assert table.response(1, FLOW, other_id).status == STATUS_UNSOLICITED
    other_q = parsed(header(bits=0x8180) + question(WWW, 28))
    assert table.response(1, FLOW, other_q).status == STATUS_UNSOLICITED
    assert table.response(1, ("elsewhere",), R).status == STATUS_UNSOLICITED
    assert table.unsolicited == 3 and len(table) == 1
    unsolicited = transaction_event(table.response(2, ("elsewhere",), R))
    assert unsolicited["dns"]["type"] == "answer" and "duration" not in unsolicited["event"]
    assert unsolicited["pcap"]["dns"]["status"] == STATUS_UNSOLICITED


def test_duplicates_then_a_second_response() -> None:
    table = DnsTransactions()
    table.query(0, FLOW, Q)
    table.query(1_000, FLOW, Q)  # a retransmission: same flow, id and question
    tx = table.response(2_000, FLOW, R)
    assert (tx.retransmits, tx.duration_ns, table.duplicates) == (1, 2_000, 1)
    assert transaction_event(tx)["pcap"]["dns"]["retransmits"] == 1
    assert table.response(3_000, FLOW, R).status == STATUS_UNSOLICITED


def test_unanswered_at_expiry_and_flush() -> None:
    table = DnsTransactions()
    table.query(0, FLOW, Q)
    q2 = parsed(header(msg_id=2) + question(WWW))
    table.query(5, FLOW, q2)
    assert list(table.expire(TRANSACTION_TIMEOUT_NS - 1)) == []
    [tx] = list(table.expire(TRANSACTION_TIMEOUT_NS))
    assert (tx.status, tx.query, tx.response, tx.duration_ns) == (STATUS_UNANSWERED, Q, None, None)
    event = transaction_event(tx)
    assert event["dns"]["type"] == "query" and "response_code" not in event["dns"]
    assert [t.query for t in table.flush()] == [q2] and len(table) == 0


def test_table_cap_evicts_oldest() -> None:
    assert MAX_PENDING >= 1024
    table = DnsTransactions(max_pending=3)
    for i in range(3):
        assert table.query(i, (i,), Q) == []
    [evicted] = table.query(10, (9,), Q)
    assert (evicted.status, evicted.flow_key, table.evictions, len(table)) == (
        STATUS_EVICTED,
        (0,),
        1,
        3,
    )


def test_limits_and_errors_reach_the_event() -> None:
    cut = parsed(RICH[:-3])
    capped = parsed(response(*[rr(AT_QNAME, 1, bytes(4))] * (MAX_ANSWERS + 1)))
    table = DnsTransactions()
    table.query(0, FLOW, Q)
    custom = transaction_event(table.response(1, FLOW, capped))["pcap"]["dns"]
    assert custom["limits"] == [LIMIT_ANSWERS]
    custom = transaction_event(table.response(1, FLOW, cut))["pcap"]["dns"]
    assert custom["error"]["reason"] == REASON_TRUNCATED


# --- The reference captures ---------------------------------------------------------------
DNS_PORT = 53
TCP_SYN, TCP_FIN = 0x02, 0x01


def dns_payloads(capture: Path) -> list[tuple[int, bytes]]:
    """(frame number, message) of every DNS message to or from port 53, in capture order.

    Tunnels are opened (pipeline.decode.tunnel). UDP datagrams split into IP fragments are
    put back together with the flow layer's `Defragmenter`, and DNS over TCP goes through one
    `StreamReassembler` per direction and `tcp_messages`: the extractor's input as it will be
    once wired. A UDP message ends where the UDP length says (clipped to the captured
    bytes), as tshark reads it: a fuzzed datagram can claim less than its IP packet carries.
    """
    found: list[tuple[int, bytes]] = []
    defrag = Defragmenter()
    streams: dict[tuple[bytes | None, int | None, bytes | None, int | None], list] = {}
    with open_capture(str(capture)) as cap:
        for frame in cap:
            if not isinstance(frame, Frame) or frame.data is None:
                continue
            buf = frame.data
            pkt = decode_packet(frame.link_type, buf)
            inner = decapsulate(pkt, buf)
            if inner is not None:
                pkt = inner[0]
            if pkt.payload_offset is None or pkt.payload_end is None:
                continue
            if pkt.is_fragment:
                if pkt.protocol != 17 or pkt.ip_id is None:
                    continue
                key = (pkt.ip_version, pkt.src_ip, pkt.dst_ip, pkt.protocol, pkt.ip_id)
                # A first fragment is decoded through its UDP header: feed the IP payload.
                start = pkt.payload_offset - (0 if pkt.fragment_offset else 8)
                datagram = defrag.fragment(
                    frame.ts_ns,
                    key,
                    pkt.fragment_offset or 0,
                    bool(pkt.more_fragments),
                    buf[start : pkt.payload_end],
                )
                if datagram is not None and len(datagram) >= 8:
                    src_port, dst_port, udp_length = struct.unpack_from("!HHH", datagram)
                    if DNS_PORT in (src_port, dst_port):
                        found.append((frame.index, datagram[8 : max(udp_length, 8)]))
                continue
            if DNS_PORT not in (pkt.src_port, pkt.dst_port):
                continue
            payload = buf[pkt.payload_offset : pkt.payload_end]
            if pkt.protocol == 17:
                udp_length = struct.unpack_from("!H", buf, pkt.payload_offset - 4)[0]
                found.append((frame.index, payload[: max(udp_length, 8) - 8]))
            elif pkt.protocol == 6 and pkt.tcp_seq is not None and pkt.tcp_flags is not None:
                direction = (pkt.src_ip, pkt.src_port, pkt.dst_ip, pkt.dst_port)
                stream = streams.setdefault(direction, [StreamReassembler(), b""])
                if pkt.tcp_flags & TCP_SYN:
                    stream[0].syn(pkt.tcp_seq)
                if payload:
                    data = stream[0].segment(pkt.tcp_seq, payload, bool(pkt.tcp_flags & TCP_FIN))
                    messages, stream[1] = tcp_messages(stream[1] + data)
                    found.extend((frame.index, m) for m in messages)
    return found


_CONTROL_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}


def name_labels(rendered: str) -> list[bytes]:
    """Our rendering back to the wire labels (undoing \\DDD, \\. and \\\\)."""
    labels, label, i = [], bytearray(), 0
    while i < len(rendered):
        c = rendered[i]
        if c == "\\" and rendered[i + 1 : i + 4].isdigit():
            label.append(int(rendered[i + 1 : i + 4]))
            i += 4
            continue
        if c == "\\":
            label.append(ord(rendered[i + 1]))
            i += 2
            continue
        if c == ".":
            labels.append(bytes(label))
            label = bytearray()
        else:
            label.append(ord(c))
        i += 1
    labels.append(bytes(label))
    return labels


def tshark_name(rendered: str) -> str:
    """How tshark 4.0 shows a name we render: ``<Root>``; labels decoded as UTF-8 with each
    invalid byte as U+FFFD; control bytes as C escapes or octal ``\\ooo``; ``\\`` and ``.``
    inside a label as themselves."""
    if rendered == ".":
        return "<Root>"
    out = []
    for label in name_labels(rendered):
        text = label.decode("utf-8", "replace")
        out.append(
            "".join(
                _CONTROL_ESCAPES.get(ord(c))
                or ("\\%03o" % ord(c) if ord(c) < 32 or c == "\x7f" else c)
                for c in text
            )
        )
    return ".".join(out)


@dataclass(frozen=True)
class Difference:
    """Where our view of a capture differs from truth: our counts, and the multiset
    differences (truth entries we do not have / entries only we have)."""

    reason: str
    query_msgs: int | None = None  # None: the same as truth
    response_msgs: int | None = None
    queries_missing: int = 0
    queries_extra: int = 0
    answers_missing: int = 0


DIFFERENCES: dict[str, Difference] = {
    "zeek__gre-sample.pcap": Difference(
        "two of the four queries are quoted inside ICMP errors (GRE/IP/ICMP/IP/UDP/DNS); "
        "tshark dissects quoted packets, we only take DNS that is itself carried",
        query_msgs=2,
        queries_missing=2,
    ),
    "zeek__icmp-destunreach-udp.pcap": Difference(
        "the only response is quoted inside an ICMP destination-unreachable error",
        response_msgs=0,
        answers_missing=1,
    ),
    "zeek__dynamic-update.pcap": Difference(
        "UPDATE messages (opcode 5): the first section is the Zone, which we read as the "
        "question (ECS dns.question); tshark files it as 'Zone', not 'Queries'",
        queries_extra=2,
    ),
    "malformed/tcpdump__LINKTYPE_IPV4_invalid.pcap": Difference(
        "link type 228 (IPv4) but the frame holds IPv6: decode_packet stops with 'malformed: "
        "ipv4 version 6 in an IPv4 header', tshark follows the version nibble",
        query_msgs=0,
        queries_missing=1,
    ),
    "malformed/ndpi__fuzz-2006-06-26-2594.pcap": Difference(
        "fuzzed: 9 query names use the reserved extended label type 0x40 (tshark shows "
        "'<Unknown extended label>' and reads on, we stop as malformed and keep no question); "
        "2 queries (frames 269, 311) are 9 bytes, shorter than the 12-byte header (tshark "
        "counts a message, we return DnsError truncated); 4 queries (frames 8, 109, 352, 571, "
        "4 questions) and 2 responses (frames 29, 355) have fuzzed ports, neither of them 53 "
        "(e.g. 2712 -> 49973 right after 2712 -> 53): tshark still dissects them as DNS (which "
        "of its UDP port/conversation rules picks them was not checked); we select port 53",
        query_msgs=249,
        response_msgs=47,
        queries_missing=13,
    ),
}


def ours_for(capture: Path) -> tuple[int, int, Counter, Counter]:
    queries: Counter = Counter()
    answers: Counter = Counter()
    n_queries = n_responses = 0
    for _, payload in dns_payloads(capture):
        msg = parse_message(payload)
        if isinstance(msg, DnsError):
            continue
        if msg.is_response:
            n_responses += 1
            for a in msg.answers:
                if a.type in ("A", "AAAA"):
                    answers[(tshark_name(a.name), a.data)] += 1
        else:
            n_queries += 1
            for q in msg.questions:
                queries[(tshark_name(q.name), type_code(q.type))] += 1
    return n_queries, n_responses, queries, answers


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_dns_matches_tshark_truth(capture: Path) -> None:
    truth = truth_for(capture)
    name = str(capture.relative_to(SHARED))
    n_queries, n_responses, queries, answers = ours_for(capture)
    want = DIFFERENCES.get(name, Difference(""))
    truth_q = Counter(tuple(q) for q in truth["dns_queries"])
    truth_a = Counter(tuple(a) for a in truth["dns_answers_a"])
    got = Difference(
        want.reason,
        query_msgs=None if n_queries == truth["dns_query_msgs"] else n_queries,
        response_msgs=None if n_responses == truth["dns_response_msgs"] else n_responses,
        queries_missing=sum((truth_q - queries).values()),
        queries_extra=sum((queries - truth_q).values()),
        answers_missing=sum((truth_a - answers).values()),
    )
    assert got == want, f"{name}: {want.reason or 'expected equal to truth'}"
    assert not answers - truth_a, f"{name}: answers only we have: {answers - truth_a}"


@needs_shared
def test_every_named_difference_is_a_reference_capture() -> None:
    names = {str(p.relative_to(SHARED)) for p in REFERENCE_CAPTURES}
    assert set(DIFFERENCES) <= names


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_quick_names_equal_the_full_walk_on_real_messages(
    capture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index, payload in dns_payloads(capture):
        assert parse_message(payload) == walked_only(payload, monkeypatch), f"frame {index}"


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_agrees_with_dpkt_where_dpkt_parses(capture: Path) -> None:
    """dpkt.dns.DNS as the oracle: on every payload it parses, the header and the section
    sizes agree, and so do the question names dpkt can render (printable ASCII)."""
    for index, payload in dns_payloads(capture):
        try:
            theirs = dpkt.dns.DNS(payload)
        except Exception:  # dpkt's failure modes (NOTES.md): nothing to compare
            continue
        ours = parse_message(payload)
        where = f"frame {index}"
        assert isinstance(ours, DnsMessage), where
        assert (ours.id, ours.is_response) == (theirs.id, bool(theirs.qr)), where
        assert ours.opcode == OPCODE_NAMES.get(theirs.opcode, str(theirs.opcode)), where
        if ours.error is not None:
            continue  # dpkt fills what it could not read with defaults
        assert len(ours.questions) == len(theirs.qd), where
        assert len(ours.answers) == len(theirs.an), where
        for q, tq in zip(ours.questions, theirs.qd, strict=True):
            if tq.name.isascii() and tq.name.isprintable() and "\\" not in q.name:
                assert q.name == (tq.name or "."), where
            assert type_code(q.type) == tq.type, where
