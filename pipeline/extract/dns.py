"""DNS: a pure message parser, a TCP length-prefix splitter, a transaction pairer and the ECS
mapping of a transaction. No I/O: bytes in, typed records out.

Why not dpkt's objects at run time: ``dpkt.dns.DNS`` decodes labels to ``str`` (raising
``UnicodeDecodeError`` on non-UTF-8 names, NOTES.md), joins them with ``.`` (so a label that
holds a dot cannot be told from two labels) and keeps no offsets, so the wire bytes of a name
cannot be re-read to render them as ECS asks (non-printable bytes as ``\\DDD``). The parser
here follows dpkt's shape instead — one ``unpack_x(buf, off) -> (x, off)`` walker per part,
truncated kept apart from malformed — and tests/test_extract_dns.py checks it against
``dpkt.dns.DNS`` on every DNS payload of the reference captures that dpkt can parse.

Errors are data: `parse_message` never raises. A payload too short for the 12-byte header is
a `DnsError`; anything that goes wrong later keeps what was read before it (header, the
questions and answers before the bad byte) in a `DnsMessage` whose ``error`` says why it
stopped, as Suricata keeps partial transactions and flags them. Named limits bound the work
and the output; hitting one is recorded in ``DnsMessage.limits``.

Name rendering (``render_label``): printable ASCII stays, ``.`` and ``\\`` inside a label are
escaped as ``\\.`` and ``\\\\`` (so label boundaries survive), every other byte — space,
control bytes, bytes >= 0x80 — is ``\\DDD`` with DDD the byte in decimal (RFC 1035 §5.1, the
ECS rule). The root name is ``.``; other names carry no trailing dot.
"""

from __future__ import annotations

import base64
import socket
import struct
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline.extract import ExtractorAnomaly, flow_endpoints

# --- Limits -------------------------------------------------------------------------------
# A name longer than this many wire octets (RFC 1035 §2.3.4: 255) is kept cut at the limit and
# flagged "name_capped"; reading it stops once its end in the message is known.
MAX_NAME_OCTETS = 255
# Labels kept per name: 127 one-byte labels already fill 255 octets.
MAX_LABELS = 127
# Compression pointers followed per name. Real names use one to three; a longer chain stops the
# walk with REASON_LIMIT (a pointer to a place already visited is a loop: REASON_MALFORMED).
MAX_POINTERS = 32
# Answer records kept per message (the rest are walked, counted and flagged "answers_capped"):
# ECS puts all answers in one event, and a hostile response can hold thousands.
MAX_ANSWERS = 100
# Questions kept per message; real messages have one (flagged "questions_capped").
MAX_QUESTIONS = 16
# Character-strings / SvcParams / hint addresses rendered per record; the rest are dropped
# (flagged "rdata_capped"): one TXT record can hold ~32k tiny strings.
MAX_RDATA_ITEMS = 64

# --- Error reasons (the same words as pipeline.decode.errors) -----------------------------
REASON_TRUNCATED = "truncated"  # the message ends inside a field
REASON_MALFORMED = "malformed"  # a field holds a value that cannot be right
REASON_LIMIT = "limit_exceeded"  # a named limit stopped the walk
REASON_DECODER_ERROR = "decoder_error"  # an exception we did not expect: a bug, kept as data

# Limit flags recorded on a message.
LIMIT_ANSWERS = "answers_capped"
LIMIT_QUESTIONS = "questions_capped"
LIMIT_NAME = "name_capped"
LIMIT_RDATA = "rdata_capped"
FLAG_BAD_RDATA = "bad_rdata"  # an answer's rdata did not parse as its type: rendered generic

HEADER_LEN = 12
TYPE_OPT = 41

# IANA DNS parameters: RR TYPEs (unknown ones render as "TYPE<n>", RFC 3597).
TYPE_NAMES: dict[int, str] = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP",
    18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 24: "SIG", 25: "KEY", 26: "PX",
    27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 33: "SRV", 35: "NAPTR", 36: "KX", 37: "CERT",
    39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG",
    47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA",
    53: "SMIMEA", 55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC",
    63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY",
    250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI",
    257: "CAA",
}  # fmt: skip
TYPE_CODES = {name: code for code, name in TYPE_NAMES.items()}
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
OPCODE_NAMES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI",
    16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG",
    22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip
# Header flag bits in ECS dns.header_flags order; DO comes from the OPT record's TTL.
HEADER_FLAG_BITS = (("AA", 0x0400), ("TC", 0x0200), ("RD", 0x0100), ("RA", 0x0080),
                    ("AD", 0x0020), ("CD", 0x0010))  # fmt: skip
OPT_DO_BIT = 0x8000
_HEADER_FLAG_MASK = sum(bit for _, bit in HEADER_FLAG_BITS)
# Every combination of the header flag bits → its dns.header_flags (made once, not per message).
_HEADER_FLAGS = {
    bits: tuple(name for name, bit in HEADER_FLAG_BITS if bits & bit)
    for bits in range(_HEADER_FLAG_MASK + 1)
    if not bits & ~_HEADER_FLAG_MASK
}
SVC_PARAM_KEYS = {0: "mandatory", 1: "alpn", 2: "no-default-alpn", 3: "port", 4: "ipv4hint",
                  5: "ech", 6: "ipv6hint", 7: "dohpath", 8: "ohttp"}  # fmt: skip


def type_name(code: int) -> str:
    return TYPE_NAMES.get(code) or "TYPE%d" % code


def type_code(name: str) -> int:
    """The inverse of `type_name` (``"TYPE65280"`` → 65280)."""
    code = TYPE_CODES.get(name)
    return code if code is not None else int(name[4:])


def class_name(code: int) -> str:
    return CLASS_NAMES.get(code) or "CLASS%d" % code


# --- Records ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DnsError:
    """Why a message could not be (fully) read: a REASON_* and one human line with offsets."""

    reason: str
    detail: str


class DnsQuestion(NamedTuple):
    name: str
    type: str  # TYPE_NAMES name, "TYPE<n>" when unknown
    class_: str


class DnsAnswer(NamedTuple):
    name: str
    type: str
    class_: str
    ttl: int  # seconds
    data: str  # rdata rendered as text (RDATA_RENDERERS, else RFC 3597 generic)


class DnsMessage(NamedTuple):
    """One DNS message. ``error`` is set when the walk stopped early: what came before stays.

    ``answer_count`` is the header's ANCOUNT (what the message claims); ``answers`` holds at
    most MAX_ANSWERS of the records actually read. ``rcode`` includes the EDNS extended bits.
    A named tuple, not a frozen dataclass: as immutable, and made ~5x quicker (one per DNS
    packet; a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``).
    """

    id: int
    opcode: str
    flags: tuple[str, ...]  # ECS dns.header_flags: AA, TC, RD, RA, AD, CD, DO
    rcode: str
    is_response: bool
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsAnswer, ...]
    resolved_ips: tuple[str, ...]
    answer_count: int
    limits: tuple[str, ...] = ()  # LIMIT_* / FLAG_* values hit while reading
    error: DnsError | None = None

    @property
    def question(self) -> DnsQuestion | None:
        return self.questions[0] if self.questions else None


class _Stop(Exception):
    """Raised by the walkers; `parse_message` turns it into a DnsError."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


# --- Names --------------------------------------------------------------------------------
_BYTE_TEXT = tuple(
    "\\" + chr(b) if b in (0x2E, 0x5C) else chr(b) if 0x21 <= b <= 0x7E else "\\%03d" % b
    for b in range(256)
)
# Bytes that render as themselves: a label made only of these is decoded in one call.
_PLAIN = bytes(b for b in range(0x21, 0x7F) if b not in (0x2E, 0x5C))
_PLAIN_OR_DOT = _PLAIN + b"."


def render_label(label: bytes) -> str:
    if not label.translate(None, _PLAIN):
        return label.decode("ascii")
    return "".join([_BYTE_TEXT[b] for b in label])


# A name read by `_common_name`: (text, wire octets, labels, pointers followed).
_Named = tuple[str, int, int, int]
# `_common_name` takes names this far inside the limits, so it never has to flag one.
_COMMON_OCTETS = MAX_NAME_OCTETS - 64
_COMMON_LABELS = MAX_LABELS - 32
_COMMON_POINTERS = MAX_POINTERS - 8


def _common_name(buf: bytes, off: int, names: dict[int, _Named]) -> tuple[str, int] | None:
    """The common name quickly, or None for `unpack_name` to read it.

    Common: printable labels (nothing to escape) ending in a zero byte, or in a compression
    pointer to the start of a name this message has already given (`names`, by offset: an
    answer's owner is usually a pointer to the question). What it reads it adds to `names`.
    Anything else — a byte to escape, a pointer elsewhere, a cut name, a name near a limit —
    is left to `unpack_name`, so both give the same result whenever this one gives one
    (tests/test_extract_dns.py compares them on every message of the reference captures).
    """
    start = off
    n = len(buf)
    labels: list[bytes] = []
    octets = 0
    while True:
        if off >= n:
            return None
        length = buf[off]
        if length == 0:
            end = off + 1
            suffix: _Named | None = None
            break
        if length >= 0xC0:
            if off + 1 >= n:
                return None
            suffix = names.get((length & 0x3F) << 8 | buf[off + 1])
            if suffix is None:
                return None
            end = off + 2
            break
        if length & 0xC0 or off + 1 + length > n:
            return None
        labels.append(buf[off + 1 : off + 1 + length])
        octets += length + 1
        off += 1 + length
    if labels:
        raw = b".".join(labels)
        # One label holding "." would join into two: such names take the slow path.
        if raw.translate(None, _PLAIN_OR_DOT) or raw.count(b".") != len(labels) - 1:
            return None
        text = raw.decode("ascii")
    else:
        text = "."
    count = len(labels)
    pointers = 0
    if suffix is not None:
        if suffix[2]:
            text = suffix[0] if not labels else text + "." + suffix[0]
        octets += suffix[1]
        count += suffix[2]
        pointers = suffix[3] + 1
    if octets > _COMMON_OCTETS or count > _COMMON_LABELS or pointers > _COMMON_POINTERS:
        return None
    names[start] = (text, octets, count, pointers)
    return text, end


def unpack_name(
    buf: bytes, off: int, limits: set[str], names: dict[int, _Named] | None = None
) -> tuple[str, int]:
    """The name at `off` (compression pointers followed) and the offset just past it.

    `names` (the message's names read so far, by offset) lets common names take the quick
    path; rdata names, read from a message cut at their record's end, go without it.
    """
    if names is not None:
        common = _common_name(buf, off, names)
        if common is not None:
            return common
    labels: list[str] = []
    end = -1  # offset after the name where it starts; known at the first pointer
    octets = 0
    seen: set[int] = set()
    n = len(buf)
    while True:
        if off >= n:
            raise _Stop(REASON_TRUNCATED, f"name ends at {off}, message has {n} bytes")
        length = buf[off]
        if length >= 0xC0:
            if off + 1 >= n:
                raise _Stop(REASON_TRUNCATED, f"compression pointer cut at {off}")
            target = (length & 0x3F) << 8 | buf[off + 1]
            if end < 0:
                end = off + 2
            if target in seen:
                raise _Stop(REASON_MALFORMED, f"compression pointer loop at {off} -> {target}")
            if len(seen) >= MAX_POINTERS:
                raise _Stop(REASON_LIMIT, f"more than {MAX_POINTERS} compression pointers")
            seen.add(target)
            off = target
            continue
        if length & 0xC0:
            raise _Stop(REASON_MALFORMED, f"label type 0x{length & 0xC0:02x} at {off}")
        if length == 0:
            off += 1
            break
        if off + 1 + length > n:
            raise _Stop(REASON_TRUNCATED, f"label of {length} bytes at {off} is cut")
        octets += length + 1
        if octets > MAX_NAME_OCTETS or len(labels) >= MAX_LABELS:
            limits.add(LIMIT_NAME)
            if end >= 0:
                break  # where the name ends is known; the rest would only be dropped
        else:
            labels.append(render_label(buf[off + 1 : off + 1 + length]))
        off += 1 + length
    return ".".join(labels) if labels else ".", end if end >= 0 else off


# --- Rdata renderers: (message, rdata start, rdata end, limits) -> text -------------------
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_HEADER = struct.Struct("!HHHHHH").unpack_from
_QUESTION_TAIL = struct.Struct("!HH").unpack_from
_RR_TAIL = struct.Struct("!HHIH").unpack_from
_SOA_TAIL = struct.Struct("!IIIII").unpack_from
_SRV_HEAD = struct.Struct("!HHH").unpack_from

Rdata = Callable[[bytes, int, int, set[str]], str]


def _need(start: int, size: int, end: int) -> None:
    if start + size > end:
        raise _Stop(REASON_MALFORMED, f"rdata needs {size} bytes at {start}, ends at {end}")


def _rdata_a(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    if end - start != 4:
        raise _Stop(REASON_MALFORMED, f"A rdata of {end - start} bytes")
    return socket.inet_ntop(socket.AF_INET, buf[start:end])


def _rdata_aaaa(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    if end - start != 16:
        raise _Stop(REASON_MALFORMED, f"AAAA rdata of {end - start} bytes")
    return socket.inet_ntop(socket.AF_INET6, buf[start:end])


def _name_in_rdata(buf: bytes, start: int, end: int, limits: set[str]) -> tuple[str, int]:
    # A name in rdata is read from the message cut at the rdata's end: it cannot run past
    # its record, and its pointers reach anything before that end.
    name, off = unpack_name(buf[:end], start, limits)
    return name, off


def _rdata_name(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    return _name_in_rdata(buf, start, end, limits)[0]


def _rdata_pref_name(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    _need(start, 2, end)
    name, _ = _name_in_rdata(buf, start + 2, end, limits)
    return "%d %s" % (_U16(buf, start)[0], name)


def _rdata_soa(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    mname, off = _name_in_rdata(buf, start, end, limits)
    rname, off = _name_in_rdata(buf, off, end, limits)
    _need(off, 20, end)
    return "%s %s %d %d %d %d %d" % (mname, rname, *_SOA_TAIL(buf, off))


def _rdata_srv(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    _need(start, 6, end)
    target, _ = _name_in_rdata(buf, start + 6, end, limits)
    return "%d %d %d %s" % (*_SRV_HEAD(buf, start), target)


def quote_text(data: bytes) -> str:
    """A character-string in presentation format: quoted, ``"`` and ``\\`` escaped."""
    out = [
        "\\" + chr(b) if b in (0x22, 0x5C) else chr(b) if 0x20 <= b <= 0x7E else "\\%03d" % b
        for b in data
    ]
    return '"%s"' % "".join(out)


def _character_strings(buf: bytes, start: int, end: int, limits: set[str]) -> list[bytes]:
    strings = []
    off = start
    while off < end:
        length = buf[off]
        if off + 1 + length > end:
            raise _Stop(REASON_MALFORMED, f"character-string of {length} bytes at {off} is cut")
        if len(strings) < MAX_RDATA_ITEMS:
            strings.append(buf[off + 1 : off + 1 + length])
        else:
            limits.add(LIMIT_RDATA)
        off += 1 + length
    return strings


def _rdata_txt(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    return " ".join(quote_text(s) for s in _character_strings(buf, start, end, limits))


def _rdata_caa(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    _need(start, 2, end)
    flags, tag_len = buf[start], buf[start + 1]
    _need(start + 2, tag_len, end)
    tag = buf[start + 2 : start + 2 + tag_len]
    return "%d %s %s" % (flags, render_label(tag), quote_text(buf[start + 2 + tag_len : end]))


def _svc_value(key: int, value: bytes, limits: set[str]) -> str:
    if key == 1:  # alpn: character-strings
        ids = _character_strings(value, 0, len(value), limits)
        return ",".join(render_label(i) for i in ids)
    if key == 3 and len(value) == 2:
        return str(_U16(value, 0)[0])
    if key == 4 and len(value) % 4 == 0:
        family, size = socket.AF_INET, 4
    elif key == 6 and len(value) % 16 == 0:
        family, size = socket.AF_INET6, 16
    elif key == 0 and len(value) % 2 == 0:
        return ",".join(
            SVC_PARAM_KEYS.get(k) or "key%d" % k
            for (k,) in struct.iter_unpack("!H", value[: 2 * MAX_RDATA_ITEMS])
        )
    elif key == 5:
        return base64.b64encode(value).decode("ascii")
    else:
        return quote_text(value)
    if len(value) > size * MAX_RDATA_ITEMS:
        limits.add(LIMIT_RDATA)
    return ",".join(
        socket.inet_ntop(family, value[i : i + size])
        for i in range(0, min(len(value), size * MAX_RDATA_ITEMS), size)
    )


def _rdata_svcb(buf: bytes, start: int, end: int, limits: set[str]) -> str:
    _need(start, 2, end)
    priority = _U16(buf, start)[0]
    target, off = _name_in_rdata(buf, start + 2, end, limits)
    parts = ["%d %s" % (priority, target)]
    while off < end:
        _need(off, 4, end)
        key, length = struct.unpack_from("!HH", buf, off)
        _need(off + 4, length, end)
        value = buf[off + 4 : off + 4 + length]
        off += 4 + length
        if len(parts) > MAX_RDATA_ITEMS:
            limits.add(LIMIT_RDATA)
            continue
        key_name = SVC_PARAM_KEYS.get(key) or "key%d" % key
        parts.append(
            key_name if not value else "%s=%s" % (key_name, _svc_value(key, value, limits))
        )
    return " ".join(parts)


def rdata_generic(data: bytes) -> str:
    """RFC 3597 §5: ``\\# <length> <hex>`` for types without a renderer (or bad rdata)."""
    return "\\# %d %s" % (len(data), data.hex()) if data else "\\# 0"


# rrtype → renderer. A type missing here renders generic; a renderer that raises does too,
# and the message is flagged FLAG_BAD_RDATA.
RDATA_RENDERERS: dict[int, Rdata] = {
    1: _rdata_a,
    28: _rdata_aaaa,
    2: _rdata_name,  # NS
    5: _rdata_name,  # CNAME
    12: _rdata_name,  # PTR
    39: _rdata_name,  # DNAME
    15: _rdata_pref_name,  # MX
    36: _rdata_pref_name,  # KX
    18: _rdata_pref_name,  # AFSDB
    16: _rdata_txt,
    99: _rdata_txt,  # SPF
    6: _rdata_soa,
    33: _rdata_srv,
    257: _rdata_caa,
    64: _rdata_svcb,
    65: _rdata_svcb,  # HTTPS
}


# --- The message ----------------------------------------------------------------------------
def unpack_question(
    buf: bytes, off: int, limits: set[str], names: dict[int, _Named] | None = None
) -> tuple[DnsQuestion, int]:
    name, off = unpack_name(buf, off, limits, names)
    if off + 4 > len(buf):
        raise _Stop(REASON_TRUNCATED, f"question type/class cut at {off}")
    qtype, qclass = _QUESTION_TAIL(buf, off)
    return DnsQuestion(name, type_name(qtype), class_name(qclass)), off + 4


def unpack_rr(
    buf: bytes, off: int, limits: set[str], names: dict[int, _Named] | None = None
) -> tuple[str, int, int, int, int, int]:
    """(name, type, class, ttl, rdata start, rdata end); the next record starts at the end."""
    name, off = unpack_name(buf, off, limits, names)
    if off + 10 > len(buf):
        raise _Stop(REASON_TRUNCATED, f"record header cut at {off}")
    rtype, rclass, ttl, rdlength = _RR_TAIL(buf, off)
    start = off + 10
    if start + rdlength > len(buf):
        raise _Stop(REASON_TRUNCATED, f"rdata of {rdlength} bytes at {start} is cut")
    return name, rtype, rclass, ttl, start, start + rdlength


def render_rdata(rtype: int, buf: bytes, start: int, end: int, limits: set[str]) -> str:
    renderer = RDATA_RENDERERS.get(rtype)
    if renderer is not None:
        try:
            return renderer(buf, start, end, limits)
        except (_Stop, ValueError, struct.error, IndexError):
            limits.add(FLAG_BAD_RDATA)
    return rdata_generic(buf[start:end])


def parse_message(payload: bytes) -> DnsMessage | DnsError:
    """Parse one DNS message (a UDP payload, or one message of a TCP stream). Never raises."""
    if len(payload) < HEADER_LEN:
        return DnsError(REASON_TRUNCATED, f"{len(payload)} bytes, the header needs {HEADER_LEN}")
    try:
        return _parse(bytes(payload))
    except Exception as exc:  # a bug must cost one message, never the run
        return DnsError(REASON_DECODER_ERROR, repr(exc))


def _parse(buf: bytes) -> DnsMessage:
    msg_id, bits, qdcount, ancount, nscount, arcount = _HEADER(buf, 0)
    rcode = bits & 0xF
    flags = _HEADER_FLAGS[bits & _HEADER_FLAG_MASK]
    limits: set[str] = set()
    names: dict[int, _Named] = {}
    questions: list[DnsQuestion] = []
    answers: list[DnsAnswer] = []
    resolved: list[str] = []
    error = None
    off = HEADER_LEN
    try:
        for _ in range(qdcount):
            question, off = unpack_question(buf, off, limits, names)
            if len(questions) < MAX_QUESTIONS:
                questions.append(question)
            else:
                limits.add(LIMIT_QUESTIONS)
        for _ in range(ancount):
            name, rtype, rclass, ttl, start, off = unpack_rr(buf, off, limits, names)
            if len(answers) >= MAX_ANSWERS:
                limits.add(LIMIT_ANSWERS)
                continue
            data = render_rdata(rtype, buf, start, off, limits)
            answers.append(DnsAnswer(name, type_name(rtype), class_name(rclass), ttl, data))
            if (rtype == 1 or rtype == 28) and not data.startswith("\\#"):
                resolved.append(data)
        # Authority and additional: walked for the OPT record (EDNS rcode bits and DO).
        seen_opt = False
        for _ in range(nscount + arcount):
            _, rtype, _, ttl, _, off = unpack_rr(buf, off, limits, names)
            if rtype == TYPE_OPT and not seen_opt:
                seen_opt = True
                rcode |= (ttl >> 24) << 4
                if ttl & OPT_DO_BIT:
                    flags += ("DO",)
    except _Stop as stop:
        error = DnsError(stop.reason, stop.detail)
    opcode = bits >> 11 & 0xF
    # Positional: a named tuple made with keywords costs 3x as much (one per DNS packet).
    return DnsMessage(
        msg_id,
        OPCODE_NAMES.get(opcode) or str(opcode),
        flags,
        RCODE_NAMES.get(rcode) or str(rcode),
        bool(bits & 0x8000),
        tuple(questions),
        tuple(answers),
        tuple(resolved),
        ancount,
        tuple(sorted(limits)) if limits else (),
        error,
    )


def tcp_messages(stream: bytes) -> tuple[list[bytes], bytes]:
    """Split DNS-over-TCP bytes (RFC 1035 §4.2.2: a 2-byte length before each message) into
    the complete messages and the bytes left over (a message still arriving).

    O(n) over the stream: one slice per message. Callers keep the rest and prepend it to
    what arrives next; a zero length prefix yields an empty message (parsed as truncated).
    """
    messages = []
    off = 0
    n = len(stream)
    while off + 2 <= n:
        length = stream[off] << 8 | stream[off + 1]
        if off + 2 + length > n:
            break
        messages.append(bytes(stream[off + 2 : off + 2 + length]))
        off += 2 + length
    return messages, bytes(stream[off:])


# --- Transactions -----------------------------------------------------------------------------
# A query unanswered this long (capture time) is reported alone: resolvers give up after ~5 s
# and retry, so a longer wait only holds memory.
TRANSACTION_TIMEOUT_NS = 10_000_000_000
# Pending queries held at most; the oldest is reported unanswered (and counted) to make room.
MAX_PENDING = 65_536

STATUS_ANSWERED = "answered"
STATUS_UNANSWERED = "unanswered"  # expired, or still pending at the end of the capture
STATUS_UNSOLICITED = "unsolicited"  # a response with no pending query
STATUS_EVICTED = "evicted"  # pushed out of a full table (MAX_PENDING)


class DnsTransaction(NamedTuple):
    """A query and its response, or one of them alone (``status`` says which and why).
    A named tuple for the reason `DnsMessage` is one."""

    query: DnsMessage | None
    response: DnsMessage | None
    start_ns: int
    end_ns: int
    flow_key: Hashable
    status: str
    retransmits: int = 0  # repeats of the query (same flow, id and question) before the answer
    query_context: Any = None  # what the caller passed with the query (and the response)
    response_context: Any = None

    @property
    def duration_ns(self) -> int | None:
        if self.query is None or self.response is None:
            return None
        return self.end_ns - self.start_ns


@dataclass(slots=True)
class _Pending:
    ts_ns: int
    msg: DnsMessage
    retransmits: int = 0
    context: Any = None


def _pair_key(flow_key: Hashable, msg: DnsMessage) -> tuple[Hashable, int, DnsQuestion | None]:
    return flow_key, msg.id, msg.question


@dataclass
class DnsTransactions:
    """Pairs queries with responses by (flow key, id, first question), in capture time.

    `flow_key` must name the conversation the same way in both directions (a canonical
    5-tuple, or a flow id). Pending queries live in an insertion-ordered dict, so the oldest
    is first: `expire` stops at the first one still in time, and eviction takes the front.
    """

    timeout_ns: int = TRANSACTION_TIMEOUT_NS
    max_pending: int = MAX_PENDING
    evictions: int = 0
    duplicates: int = 0
    unsolicited: int = 0
    _pending: dict[tuple[Hashable, int, DnsQuestion | None], _Pending] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def query(
        self, ts_ns: int, flow_key: Hashable, msg: DnsMessage, context: Any = None
    ) -> list[DnsTransaction]:
        """Hold a query; returns what had to leave the table for it (evictions). `context`
        comes back on its transaction (the converter passes the frame and addresses)."""
        key = _pair_key(flow_key, msg)
        held = self._pending.get(key)
        if held is not None:
            held.retransmits += 1
            self.duplicates += 1
            return []
        out = []
        while len(self._pending) >= self.max_pending:
            old_key = next(iter(self._pending))
            old = self._pending.pop(old_key)
            self.evictions += 1
            out.append(self._alone(old_key, old, STATUS_EVICTED))
        self._pending[key] = _Pending(ts_ns, msg, 0, context)
        return out

    def response(
        self, ts_ns: int, flow_key: Hashable, msg: DnsMessage, context: Any = None
    ) -> DnsTransaction:
        held = self._pending.pop(_pair_key(flow_key, msg), None)
        if held is None:
            self.unsolicited += 1
            return DnsTransaction(
                None, msg, ts_ns, ts_ns, flow_key, STATUS_UNSOLICITED, 0, None, context
            )
        return DnsTransaction(
            held.msg, msg, held.ts_ns, ts_ns, flow_key, STATUS_ANSWERED, held.retransmits,
            held.context, context,
        )  # fmt: skip

    def expire(self, now_ns: int) -> Iterator[DnsTransaction]:
        """Queries older than the timeout at `now_ns`, oldest first, as unanswered."""
        pending = self._pending
        while pending:
            key = next(iter(pending))
            held = pending[key]
            if held.ts_ns + self.timeout_ns > now_ns:
                return
            del pending[key]
            yield self._alone(key, held, STATUS_UNANSWERED)

    def flush(self) -> Iterator[DnsTransaction]:
        """Every pending query, as unanswered: the end of the capture."""
        while self._pending:
            key = next(iter(self._pending))
            yield self._alone(key, self._pending.pop(key), STATUS_UNANSWERED)

    @staticmethod
    def _alone(
        key: tuple[Hashable, int, DnsQuestion | None], held: _Pending, status: str
    ) -> DnsTransaction:
        return DnsTransaction(
            held.msg, None, held.ts_ns, held.ts_ns, key[0], status, held.retransmits, held.context
        )


# --- the converter's side -------------------------------------------------------------------

DNS_PORT = 53
MAX_TCP_PENDING = 65535 + 2  # one whole length-prefixed message: more is not DNS
_udp_length = struct.Struct("!H").unpack_from


class DnsExtractor:
    """DNS over UDP of one input: messages → transactions, in capture time.

    `packet` takes a decoded UDP packet to or from port 53 (the caller checks the ports) and
    its frame; finished transactions collect in `ended` (responses, and queries evicted at the
    cap), `sweep(clock)` and `flush()` give the unanswered. Each transaction carries
    ``(frame, ip version, client ip, client port, server ip, server port[, "tcp"])`` of its
    query and response as their contexts. It is also the flow table's stream subscriber for
    DNS over TCP (`wants`/`data`/`closed`); DNS in tunnels and IP fragments comes from the
    flow tracker (`FlowTracker.inner_udp`).
    """

    __slots__ = ("_tcp", "_tcp_anomalies", "anomalies", "ended", "malformed", "messages", "pairs")

    def __init__(self) -> None:
        self.pairs = DnsTransactions()
        self.ended: list[DnsTransaction] = []
        self.messages = 0
        self.malformed = 0  # payloads that are not a DNS message at all (header cut short)
        self._tcp: dict[tuple[Any, bool], bytes] = {}  # (flow, from originator) → unread bytes
        self.anomalies: list[ExtractorAnomaly] = []
        self._tcp_anomalies: dict[Any, int] = {}  # flow → anomalies reported (numbering)

    def packet(self, frame: Any, pkt: Any) -> None:
        data = frame.data
        start, end = pkt[22], pkt[23]
        if start is None or end is None or start < 8:
            return
        (length,) = _udp_length(data, start - 4)  # the UDP length: IP padding is not DNS
        if length >= 8:
            end = min(end, start - 8 + length)
        msg = parse_message(bytes(data[start:end]))
        self.messages += 1
        src, dst, sport, dport = pkt[7], pkt[8], pkt[14], pkt[15]
        if isinstance(msg, DnsError) or msg.error is not None:
            error = msg if isinstance(msg, DnsError) else msg.error
            assert error is not None
            self.anomalies.append(
                ExtractorAnomaly(
                    "dns",
                    error.reason,
                    error.detail,
                    frame.index,
                    frame.ts_ns,
                    (pkt[6], src, sport, dst, dport, 17),
                    1,
                )
            )
            if isinstance(msg, DnsError):
                self.malformed += 1
                return
        # (src, sport) <= (dst, dport), without making the two tuples to compare.
        if src < dst or (src == dst and sport <= dport):
            flow_key = (src, sport, dst, dport)
        else:
            flow_key = (dst, dport, src, sport)
        if msg.is_response:
            context = (frame.index, pkt[6], dst, dport, src, sport)
            self.ended.append(self.pairs.response(frame.ts_ns, flow_key, msg, context))
        else:
            context = (frame.index, pkt[6], src, sport, dst, dport)
            self.ended += self.pairs.query(frame.ts_ns, flow_key, msg, context)

    def take_ended(self) -> list[DnsTransaction]:
        ended, self.ended = self.ended, []
        return ended

    # DNS over TCP: a stream subscriber of the flow table (length-prefixed messages).

    def wants(self, flow: Any) -> bool:
        return flow.protocol == 6 and DNS_PORT in (flow.orig_port, flow.resp_port)

    def data(self, flow: Any, from_originator: bool, data: bytes) -> bool:
        key = (flow, from_originator)
        messages, rest = tcp_messages(self._tcp.pop(key, b"") + data)
        if len(rest) > MAX_TCP_PENDING:
            self.malformed += 1  # not DNS, or a message past any sane size: give up the flow
            self._tcp_anomaly(flow, REASON_LIMIT, "%d bytes and no whole message" % len(rest))
            self.closed(flow)
            return False
        if rest:
            self._tcp[key] = rest
        if from_originator:
            sender = (flow.orig_ip, flow.orig_port, flow.resp_ip, flow.resp_port)
        else:
            sender = (flow.resp_ip, flow.resp_port, flow.orig_ip, flow.orig_port)
        src, sport, dst, dport = sender
        for payload in messages:
            msg = parse_message(payload)
            self.messages += 1
            if isinstance(msg, DnsError) or msg.error is not None:
                error = msg if isinstance(msg, DnsError) else msg.error
                assert error is not None
                self._tcp_anomaly(flow, error.reason, error.detail)
                if isinstance(msg, DnsError):
                    self.malformed += 1
                    continue
            forward = (src, sport) <= (dst, dport)
            flow_key = (src, sport, dst, dport) if forward else (dst, dport, src, sport)
            ts_ns = flow.last_ns
            if msg.is_response:
                context = (flow.last_index, flow.ip_version, dst, dport, src, sport, "tcp")
                self.ended.append(self.pairs.response(ts_ns, flow_key, msg, context))
            else:
                context = (flow.last_index, flow.ip_version, src, sport, dst, dport, "tcp")
                self.ended += self.pairs.query(ts_ns, flow_key, msg, context)
        return True

    def closed(self, flow: Any) -> None:
        self._tcp.pop((flow, True), None)
        self._tcp.pop((flow, False), None)
        self._tcp_anomalies.pop(flow, None)

    def _tcp_anomaly(self, flow: Any, kind: str, detail: str) -> None:
        number = self._tcp_anomalies[flow] = self._tcp_anomalies.get(flow, 0) + 1
        self.anomalies.append(
            ExtractorAnomaly(
                "dns", kind, detail, flow.last_index, flow.last_ns, flow_endpoints(flow), number
            )
        )

    def sweep(self, clock_ns: int) -> list[DnsTransaction]:
        return list(self.pairs.expire(clock_ns))

    def flush(self) -> list[DnsTransaction]:
        return list(self.pairs.flush())

    def counters(self) -> dict[str, int]:
        return {
            "dns_messages": self.messages,
            "dns_malformed": self.malformed,
            "dns_unsolicited": self.pairs.unsolicited,
            "dns_duplicates": self.pairs.duplicates,
            "dns_evictions": self.pairs.evictions,
        }


def transaction_frame(tx: DnsTransaction) -> int:
    """The frame a transaction is named and ordered by: its query's, else its response's."""
    context = tx.query_context or tx.response_context
    return context[0] if context else 0


# --- ECS --------------------------------------------------------------------------------------
DATASET_DNS = "pcap_ingest.dns"


def transaction_parts(tx: DnsTransaction) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The parts of a transaction's ECS event that are DNS's own: ``event.*`` (kind to
    outcome, and the duration when both messages were seen), ``dns`` and ``pcap.dns``. The
    schema mappers put them in an event with the rest (time, endpoints, provenance)."""
    query, response = tx.query, tx.response
    msg = response or query
    assert msg is not None
    dns: dict[str, Any] = {
        "id": str(msg.id),
        "op_code": msg.opcode,
        "header_flags": list(msg.flags),
        "type": "query" if response is None else "answer",
    }
    if response is not None:
        dns["response_code"] = response.rcode
    questions = (query or msg).questions or msg.questions
    if questions:
        question = questions[0]
        dns["question"] = {"name": question[0], "type": question[1], "class": question[2]}
    if response is not None:
        if response.answers:
            dns["answers"] = [
                {"name": a[0], "type": a[1], "class": a[2], "ttl": a[3], "data": a[4]}
                for a in response.answers
            ]
        if response.resolved_ips:
            dns["resolved_ip"] = list(response.resolved_ips)
    custom: dict[str, Any] = {"status": tx.status}
    if tx.retransmits:
        custom["retransmits"] = tx.retransmits
    # Limits and errors are rare: look for them only when a message has any.
    if (query is not None and (query.limits or query.error is not None)) or (
        response is not None and (response.limits or response.error is not None)
    ):
        messages = [m for m in (query, response) if m is not None]
        flags = sorted({f for m in messages for f in m.limits})
        if flags:
            custom["limits"] = flags
        errors = [m.error for m in messages if m.error is not None]
        if errors:
            custom["error"] = {"reason": errors[0].reason, "detail": errors[0].detail}
    ecs_event: dict[str, Any] = {
        "kind": "event",
        "category": ["network"],
        "type": ["protocol"],
        "dataset": DATASET_DNS,
        "outcome": "unknown" if response is None else "success",
    }
    duration = tx.duration_ns
    if duration is not None:
        # Within 64 bits (JSON, Elasticsearch's long): corrupt capture times can be far apart.
        ecs_event["duration"] = min(duration, (1 << 63) - 1)
    return ecs_event, dns, custom


def transaction_event(tx: DnsTransaction, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ECS event of one transaction: the question, and all answers when answered.

    `base` is merged in first (``@timestamp``, source/destination, ``network.*``, provenance:
    what the caller knows about the flow). `EcsMapper.dns` builds the same event in one
    literal from `transaction_parts` (tests/test_dns_events.py compares the two).
    """
    ecs_event, dns, custom = transaction_parts(tx)
    event: dict[str, Any] = dict(base) if base else {}
    event["event"] = {**event.get("event", {}), **ecs_event}
    event["dns"] = dns
    event.setdefault("network", {})["protocol"] = "dns"
    event["pcap"] = {**event.get("pcap", {}), "dns": custom}
    return event
