"""TLS handshakes from one direction of a TCP stream: records, hellos, JA3/JA3S/JA4. Pure.

Three layers, each a pure function or a small state machine over bytes (no I/O, no logging):

* `TlsStream` — the record layer and handshake reassembly for ONE direction of a TCP stream.
  Feed it the in-order bytes a `StreamReassembler` delivers, in whatever pieces they come; it
  returns each complete handshake message (type + body) once, however the message was split
  across TCP segments and TLS records (a ClientHello with post-quantum key shares spans several
  of both). It stops quietly where the handshake becomes encrypted (ChangeCipherSpec,
  application data) and stops with a typed `TlsError` where the bytes are not TLS, are
  malformed or would exceed `MAX_BUFFERED_BYTES`. It never raises.
* `parse_client_hello` / `parse_server_hello` — a handshake body → a frozen record, or a
  `TlsError`. Written over `struct` rather than dpkt.ssl: dpkt raises `SSL3Exception` on
  unknown versions/types and `IndexError` on short input (NOTES.md), and it leaves what JA4
  needs (supported_versions, signature algorithms, ALPN) as raw extension bytes anyway.
  An extension whose inside is malformed does not lose the hello: its type is listed in
  `malformed_extensions` and its fields stay empty.
* `ja3`, `ja3s`, `ja4` — the fingerprints, GREASE removed as their specifications say.
  JA3/JA3S: https://github.com/salesforce/ja3 (README). JA4 (TLS client only; BSD-3):
  https://github.com/FoxIO-LLC/ja4 technical_details/JA4.md (read at commit d8f731c, which
  also fixes the corners: a one-character ALPN, a non-alphanumeric ALPN, empty lists). The
  other JA4+ methods (JA4S, JA4H, ...) are under the FoxIO License 1.1 and deliberately not
  implemented here.

Buffer discipline: `TlsStream` holds unparsed record bytes and unparsed handshake bytes in two
bytearrays; each complete record or message is cut off the front with one ``del buf[:n]``
(O(remaining) memmove). Both together are bounded by the stream's cap, so a stream fed one
byte at a time costs O(cap) per byte at worst; real hellos are a few KiB.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from pipeline.extract import ExtractorAnomaly, flow_endpoints

# Record content types (RFC 8446 5.1; 24 = heartbeat, RFC 6520).
CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_HEARTBEAT = 24
# Handshake message types we parse (others are returned as raw `Handshake`s).
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
# Extension types (IANA "TLS ExtensionType Values").
EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B

# A TLSCiphertext fragment is at most 2**14 + 2048 bytes (RFC 5246 6.2.3); anything longer is
# not a TLS record, and reading on would only buffer garbage.
MAX_RECORD_LENGTH = 2**14 + 2048
# Bytes one direction may hold while waiting for a record or handshake message to complete.
# Real ClientHellos are 0.5-8 KiB (post-quantum key shares add ~1.2 KiB each) and a server's
# first flight with its certificate chain rarely passes 16 KiB; 256 KiB leaves room for huge
# chains while bounding what a hostile peer announcing a 16 MiB handshake message can pin.
MAX_BUFFERED_BYTES = 256 * 1024
# The HelloRetryRequest is a ServerHello whose random is this value (RFC 8446 4.1.3).
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

# Error kinds (the project's taxonomy, STYLE.md): the bytes end too soon / contradict
# themselves / are another protocol or an SSL we do not parse / hit a named cap / our bug.
ERROR_TRUNCATED = "truncated"
ERROR_MALFORMED = "malformed"
ERROR_UNSUPPORTED = "unsupported"
ERROR_LIMIT = "limit"
ERROR_DECODER_BUG = "decoder_bug"

# Why a `TlsStream` stopped reading (None while it still reads).
STOP_ENCRYPTED = "encrypted"  # ChangeCipherSpec or application data: the clear part is over
STOP_ERROR = "error"  # see the stream's `errors`

_Hello = TypeVar("_Hello")
_u16 = struct.Struct("!H").unpack_from
_record_header = struct.Struct("!BHH").unpack_from  # content type, version, length


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa (both bytes equal, low nibble a)."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


class TlsError(NamedTuple):
    """Why something could not be read. `kind` is one of the ERROR_* values."""

    kind: str
    detail: str


class Handshake(NamedTuple):
    """One complete handshake message: its type and its body (without the 4-byte header)."""

    msg_type: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello offers. Lists keep wire order and GREASE values (the fingerprint
    functions drop GREASE); `extensions` are the types in order."""

    legacy_version: int  # the hello's own version field (0x0303 for TLS 1.2 and 1.3)
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[int, ...]
    server_name: bytes | None  # first host_name of the server_name extension, raw bytes
    alpn: tuple[bytes, ...]  # protocol names offered, in order, raw bytes
    supported_versions: tuple[int, ...]  # the supported_versions extension, in order
    supported_groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    malformed_extensions: tuple[int, ...] = ()  # types whose inside could not be read

    @property
    def version(self) -> int:
        """The highest version offered: supported_versions (GREASE dropped) decides TLS 1.3."""
        offered = [v for v in self.supported_versions if not is_grease(v)]
        return max(offered) if offered else self.legacy_version


@dataclass(frozen=True, slots=True)
class ServerHello:
    """What a ServerHello (or HelloRetryRequest) chose."""

    legacy_version: int
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[int, ...]
    selected_version: int | None  # from supported_versions (TLS 1.3), else None
    alpn: bytes | None  # the protocol chosen, raw bytes
    hello_retry_request: bool
    malformed_extensions: tuple[int, ...] = ()

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions decides TLS 1.3."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


class _Short(Exception):
    """Internal: a length field points past the end of its container."""


def _vector(buf: bytes, off: int, len_size: int, end: int) -> tuple[bytes, int]:
    """Read a length-prefixed vector at `off` (1- or 2-byte length) ending before `end`."""
    if off + len_size > end:
        raise _Short
    n = buf[off] if len_size == 1 else _u16(buf, off)[0]
    off += len_size
    if off + n > end:
        raise _Short
    return buf[off : off + n], off + n


def _u16_list(data: bytes) -> tuple[int, ...]:
    """A vector of 16-bit values; an odd trailing byte makes the vector malformed."""
    if len(data) % 2:
        raise _Short
    return struct.unpack("!%dH" % (len(data) // 2), data)


def _extensions(buf: bytes, off: int, end: int) -> list[tuple[int, bytes]]:
    """The (type, data) pairs of an extensions block starting at `off` (its 2-byte length)."""
    if off >= end:
        return []  # no extensions block at all (SSLv3/TLS 1.0-era hellos)
    block, _ = _vector(buf, off, 2, end)
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(block):
        if pos + 4 > len(block):
            raise _Short
        ext_type = _u16(block, pos)[0]
        data, pos = _vector(block, pos + 2, 2, len(block))
        out.append((ext_type, data))
    return out


def _server_name(data: bytes) -> bytes | None:
    """The first host_name (type 0) of a server_name extension; None for an empty one."""
    if not data:
        return None  # a server's empty acknowledgement, or a client sending nothing
    names, _ = _vector(data, 0, 2, len(data))
    pos = 0
    while pos < len(names):
        if pos + 1 > len(names):
            raise _Short
        name_type = names[pos]
        name, pos = _vector(names, pos + 1, 2, len(names))
        if name_type == 0:
            return bytes(name)
    return None


def _alpn(data: bytes) -> tuple[bytes, ...]:
    protocols, _ = _vector(data, 0, 2, len(data))
    out: list[bytes] = []
    pos = 0
    while pos < len(protocols):
        name, pos = _vector(protocols, pos, 1, len(protocols))
        out.append(bytes(name))
    return tuple(out)


def _u16_vector(data: bytes, len_size: int) -> tuple[int, ...]:
    return _u16_list(_vector(data, 0, len_size, len(data))[0])


def _u8_vector(data: bytes) -> tuple[int, ...]:
    return tuple(_vector(data, 0, 1, len(data))[0])


# Client extension type → (ClientHello field, reader of the extension data).
_CLIENT_EXTENSION_READERS = {
    EXT_SERVER_NAME: ("server_name", _server_name),
    EXT_ALPN: ("alpn", _alpn),
    EXT_SUPPORTED_VERSIONS: ("supported_versions", lambda d: _u16_vector(d, 1)),
    EXT_SUPPORTED_GROUPS: ("supported_groups", lambda d: _u16_vector(d, 2)),
    EXT_EC_POINT_FORMATS: ("ec_point_formats", _u8_vector),
    EXT_SIGNATURE_ALGORITHMS: ("signature_algorithms", lambda d: _u16_vector(d, 2)),
}


def _never_raising(what: str, parse: Callable[[bytes], _Hello], body: bytes) -> _Hello | TlsError:
    """`parse(body)`, or the TlsError saying why it could not be read."""
    try:
        return parse(bytes(body))
    except _Short:
        return TlsError(ERROR_TRUNCATED, "%s: a length runs past the message" % what)
    except Exception as exc:  # a bug here must cost one hello, never the run
        return TlsError(ERROR_DECODER_BUG, "%s: %r" % (what, exc))


def parse_client_hello(body: bytes) -> ClientHello | TlsError:
    """Parse a ClientHello body (the handshake message without its 4-byte header)."""
    return _never_raising("client hello", _parse_client_hello, body)


def _parse_client_hello(body: bytes) -> ClientHello:
    end = len(body)
    if end < 2 + 32:
        raise _Short
    legacy_version = _u16(body, 0)[0]
    session_id, off = _vector(body, 34, 1, end)
    ciphers, off = _vector(body, off, 2, end)
    compression, off = _vector(body, off, 1, end)
    fields: dict[str, object] = {
        "server_name": None,
        "alpn": (),
        "supported_versions": (),
        "supported_groups": (),
        "ec_point_formats": (),
        "signature_algorithms": (),
    }
    types: list[int] = []
    malformed: list[int] = []
    for ext_type, data in _extensions(body, off, end):
        types.append(ext_type)
        reader = _CLIENT_EXTENSION_READERS.get(ext_type)
        if reader is None:
            continue
        name, read = reader
        try:
            fields[name] = read(data)
        except (_Short, struct.error):
            malformed.append(ext_type)
    return ClientHello(
        legacy_version=legacy_version,
        session_id=bytes(session_id),
        cipher_suites=_u16_list(ciphers),
        compression_methods=tuple(compression),
        extensions=tuple(types),
        malformed_extensions=tuple(malformed),
        **fields,  # type: ignore[arg-type]
    )


def parse_server_hello(body: bytes) -> ServerHello | TlsError:
    """Parse a ServerHello body (also a HelloRetryRequest, flagged as such)."""
    return _never_raising("server hello", _parse_server_hello, body)


def _parse_server_hello(body: bytes) -> ServerHello:
    end = len(body)
    if end < 2 + 32:
        raise _Short
    legacy_version = _u16(body, 0)[0]
    random = body[2:34]
    session_id, off = _vector(body, 34, 1, end)
    if off + 3 > end:
        raise _Short
    cipher_suite = _u16(body, off)[0]
    compression_method = body[off + 2]
    selected_version: int | None = None
    alpn: bytes | None = None
    types: list[int] = []
    malformed: list[int] = []
    for ext_type, data in _extensions(body, off + 3, end):
        types.append(ext_type)
        try:
            if ext_type == EXT_SUPPORTED_VERSIONS:
                if len(data) != 2:
                    raise _Short
                selected_version = _u16(data, 0)[0]
            elif ext_type == EXT_ALPN:
                chosen = _alpn(data)
                if len(chosen) != 1:
                    raise _Short  # RFC 7301 3.1: exactly one protocol name
                alpn = chosen[0]
        except _Short:
            malformed.append(ext_type)
    return ServerHello(
        legacy_version=legacy_version,
        session_id=bytes(session_id),
        cipher_suite=cipher_suite,
        compression_method=compression_method,
        extensions=tuple(types),
        selected_version=selected_version,
        alpn=alpn,
        hello_retry_request=random == HELLO_RETRY_REQUEST_RANDOM,
        malformed_extensions=tuple(malformed),
    )


class TlsStream:
    """Record layer + handshake reassembly for one direction of one TCP connection.

    `feed` takes the next in-order stream bytes and returns the handshake messages completed
    by them. Once `stopped` is set (`STOP_ENCRYPTED` or `STOP_ERROR`) everything fed is
    counted in `ignored_bytes` and nothing more is returned. Errors land in `errors`;
    `limit_hit` says the buffer cap stopped the stream.

    After a ChangeCipherSpec the handshake is normally encrypted, except in TLS 1.3's
    middlebox-compatibility mode (RFC 8446 D.4): a client answering a HelloRetryRequest sends
    a dummy ChangeCipherSpec and then its second ClientHello in the clear, and the server's
    real ServerHello may follow its own dummy ChangeCipherSpec. So after a ChangeCipherSpec a
    handshake record that starts a message is still read when it begins with a ClientHello or
    ServerHello header carrying version 0x0303; anything else there ends the stream as
    encrypted (TLS 1.2's encrypted Finished starts with an explicit nonce or IV, so it passes
    this test with odds of about 2**-23).
    """

    __slots__ = (
        "_after_ccs",
        "_hs",
        "_max_buffered",
        "_records",
        "errors",
        "handshakes",
        "ignored_bytes",
        "limit_hit",
        "records",
        "stopped",
    )

    def __init__(self, max_buffered_bytes: int = MAX_BUFFERED_BYTES) -> None:
        self._max_buffered = max(0, max_buffered_bytes)
        self._records = bytearray()  # record-layer bytes not yet consumed
        self._hs = bytearray()  # handshake-layer bytes (record fragments) not yet consumed
        self._after_ccs = False
        self.records = 0
        self.handshakes = 0
        self.ignored_bytes = 0
        self.limit_hit = False
        self.stopped: str | None = None
        self.errors: list[TlsError] = []

    @property
    def buffered_bytes(self) -> int:
        return len(self._records) + len(self._hs)

    def feed(self, data: bytes) -> list[Handshake]:
        """Feed the next in-order bytes; return the handshake messages they complete."""
        if self.stopped is not None:
            self.ignored_bytes += len(data)
            return []
        out: list[Handshake] = []
        try:
            self._records += data
            self._read_records(out)
            if self.stopped is None and self.buffered_bytes > self._max_buffered:
                self.limit_hit = True
                self._stop_with(ERROR_LIMIT, "more than %d bytes buffered" % self._max_buffered)
        except Exception as exc:  # a bug here must cost one stream, never the run
            self._stop_with(ERROR_DECODER_BUG, "tls stream: %r" % (exc,))
        return out

    def _stop_with(self, kind: str, detail: str) -> None:
        self.errors.append(TlsError(kind, detail))
        self._stop(STOP_ERROR)

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        self.ignored_bytes += len(self._records) + len(self._hs)
        self._records = bytearray()
        self._hs = bytearray()

    def _read_records(self, out: list[Handshake]) -> None:
        """Consume every complete record at the front of the buffer. Each record is cut off
        the front as soon as it is read, so a stop mid-way counts only unread bytes."""
        buf = self._records
        while len(buf) >= 5 and self.stopped is None:
            content_type, version, length = _record_header(buf, 0)
            problem = self._record_problem(buf, content_type, version, length)
            if problem is not None:
                self._stop_with(*problem)
                return
            if len(buf) < 5 + length:
                return  # the record is not complete yet
            if content_type == CONTENT_APPLICATION_DATA:
                self._stop(STOP_ENCRYPTED)
                return
            fragment = bytes(buf[5 : 5 + length])
            if (
                content_type == CONTENT_HANDSHAKE
                and self._after_ccs
                and not self._hs
                and not _plaintext_hello(fragment)
            ):
                self._stop(STOP_ENCRYPTED)
                return
            del buf[: 5 + length]
            self.records += 1
            if content_type == CONTENT_HANDSHAKE:
                self._hs += fragment
                self._read_handshakes(out)
            elif content_type == CONTENT_CHANGE_CIPHER_SPEC:
                self._after_ccs = True
            # Alerts and heartbeats carry no handshake bytes: skipped, counted as records.

    def _record_problem(
        self, buf: bytearray, content_type: int, version: int, length: int
    ) -> tuple[str, str] | None:
        if self.records == 0 and buf[0] & 0x80 and buf[2] == 1:
            return ERROR_UNSUPPORTED, "SSLv2-format ClientHello"
        if not CONTENT_CHANGE_CIPHER_SPEC <= content_type <= CONTENT_HEARTBEAT:
            return ERROR_UNSUPPORTED, "not a TLS record: content type %d" % content_type
        if version >> 8 != 3:
            return ERROR_UNSUPPORTED, "not a TLS record: version 0x%04x" % version
        if length > MAX_RECORD_LENGTH:
            return ERROR_MALFORMED, "record length %d > %d" % (length, MAX_RECORD_LENGTH)
        return None

    def _read_handshakes(self, out: list[Handshake]) -> None:
        hs = self._hs
        pos = 0
        while len(hs) - pos >= 4:
            msg_type = hs[pos]
            length = int.from_bytes(hs[pos + 1 : pos + 4], "big")
            if length > self._max_buffered:
                del hs[:pos]
                self.limit_hit = True
                self._stop_with(
                    ERROR_LIMIT,
                    "handshake type %d of %d bytes > %d" % (msg_type, length, self._max_buffered),
                )
                return
            if len(hs) - pos < 4 + length:
                break
            out.append(Handshake(msg_type, bytes(hs[pos + 4 : pos + 4 + length])))
            self.handshakes += 1
            pos += 4 + length
        del hs[:pos]


def _plaintext_hello(fragment: bytes) -> bool:
    """Whether a handshake record after ChangeCipherSpec starts a plaintext hello."""
    return (
        len(fragment) >= 6
        and fragment[0] in (HANDSHAKE_CLIENT_HELLO, HANDSHAKE_SERVER_HELLO)
        and fragment[4:6] == b"\x03\x03"
    )


# ---- fingerprints -------------------------------------------------------------------------


def _dash(values: tuple[int, ...] | list[int]) -> str:
    return "-".join(str(v) for v in values if not is_grease(v))


def ja3(ch: ClientHello) -> tuple[str, str]:
    """JA3 string and its MD5: SSLVersion,Ciphers,Extensions,Groups,PointFormats in decimal,
    wire order, GREASE removed (salesforce/ja3). The version is the hello's legacy field."""
    text = "%d,%s,%s,%s,%s" % (
        ch.legacy_version,
        _dash(ch.cipher_suites),
        _dash(ch.extensions),
        _dash(ch.supported_groups),
        "-".join(str(v) for v in ch.ec_point_formats),
    )
    return text, hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ja3s(sh: ServerHello) -> tuple[str, str]:
    """JA3S string and its MD5: SSLVersion,Cipher,Extensions (legacy version, wire order)."""
    text = "%d,%d,%s" % (sh.legacy_version, sh.cipher_suite, _dash(sh.extensions))
    return text, hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


# JA4's two-character version codes (JA4.md "TLS and DTLS Version"); anything else is "00",
# including a draft or private version that sorts highest (Facebook's 0xfb1a, say).
_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_EMPTY_HASH = "000000000000"  # JA4's hash part when its list is empty
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _ja4_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else _EMPTY_HASH


def _ja4_alpn(alpn: tuple[bytes, ...]) -> str:
    """First and last characters of the first ALPN value; when either is not ASCII
    alphanumeric, the first and last characters of its hex form; "00" when there is none."""
    if not alpn or not alpn[0]:
        return "00"
    first, last = alpn[0][0], alpn[0][-1]
    if first in _ALNUM and last in _ALNUM:
        return chr(first) + chr(last)
    text = alpn[0].hex()
    return text[0] + text[-1]


def ja4_raw(ch: ClientHello, protocol: str = "t") -> str:
    """JA4_r: the fingerprint with its sorted lists in clear (what `ja4` hashes)."""
    a, ciphers, extensions = _ja4_parts(ch, protocol)
    return "%s_%s_%s" % (a, ciphers, extensions)


def ja4(ch: ClientHello, protocol: str = "t") -> str:
    """JA4 (TLS client), FoxIO technical_details/JA4.md. `protocol` is "t" for TLS over TCP.

    a: protocol, version (highest non-GREASE supported_versions, else the hello's version),
    "d"/"i" for SNI extension present or not, cipher and extension counts (GREASE removed,
    capped at 99), first/last character of the first ALPN value. b: sha256[:12] of the sorted
    4-hex cipher list. c: sha256[:12] of the sorted extension list without SNI and ALPN,
    then "_" and the signature algorithms in wire order (no "_" when there are none).
    """
    a, ciphers, extensions = _ja4_parts(ch, protocol)
    return "%s_%s_%s" % (a, _ja4_hash(ciphers), _ja4_hash(extensions))


def _ja4_parts(ch: ClientHello, protocol: str) -> tuple[str, str, str]:
    ciphers = sorted("%04x" % c for c in ch.cipher_suites if not is_grease(c))
    extensions = [e for e in ch.extensions if not is_grease(e)]
    a = "%s%s%s%02d%02d%s" % (
        protocol,
        _JA4_VERSIONS.get(ch.version, "00"),
        "d" if EXT_SERVER_NAME in extensions else "i",
        min(len(ciphers), 99),
        min(len(extensions), 99),
        _ja4_alpn(ch.alpn),
    )
    ext_list = ",".join(
        sorted("%04x" % e for e in extensions if e != EXT_SERVER_NAME and e != EXT_ALPN)
    )
    sigs = ",".join("%04x" % s for s in ch.signature_algorithms if not is_grease(s))
    c = "%s_%s" % (ext_list, sigs) if sigs else ext_list
    return a, ",".join(ciphers), c


# --- the converter's side -------------------------------------------------------------------


class TlsHandshake(NamedTuple):
    """One TLS handshake seen in a flow: the ClientHello and, if it came, the ServerHello."""

    flow: Any  # pipeline.flows.table.Flow
    number: int  # 1 for the flow's first ClientHello, 2 after a HelloRetryRequest, ...
    client_hello: ClientHello
    server_hello: ServerHello | None
    client_is_originator: bool
    errors: tuple[TlsError, ...]


class _FlowState:
    __slots__ = ("anomalies", "client", "hello", "hellos", "retry", "streams")

    def __init__(self) -> None:
        self.anomalies = 0  # reported so far, numbering the next
        self.streams = (TlsStream(), TlsStream())  # originator's bytes, responder's bytes
        self.hello: ClientHello | None = None
        self.client = True  # whether the originator sent the ClientHello
        self.hellos = 0
        self.retry = False  # a HelloRetryRequest came: a second ClientHello will follow


class TlsExtractor:
    """A `StreamSubscriber` for the flow table: the TLS handshakes of TCP flows.

    Each direction's reassembled bytes go through a `TlsStream`; a ClientHello waits for its
    ServerHello, and the pair lands in `ended`. Once a direction is encrypted (or is not TLS
    at all) and nothing is waiting, the flow is released: the table stops reassembling it,
    so a long TLS transfer costs its handshake only. A ClientHello whose flow ends first is
    ended alone.
    """

    def __init__(self) -> None:
        self._flows: dict[Any, _FlowState] = {}
        self.ended: list[TlsHandshake] = []
        self.anomalies: list[ExtractorAnomaly] = []
        self.errors = 0

    def wants(self, flow: Any) -> bool:
        return True

    def data(self, flow: Any, from_originator: bool, data: bytes) -> bool:
        state = self._flows.get(flow)
        if state is None:
            state = self._flows[flow] = _FlowState()
        stream = state.streams[0 if from_originator else 1]
        errors_before = len(stream.errors)
        self._read(flow, state, stream, from_originator, data)
        # Reported only once the bytes were TLS (a record read): a stream that is another
        # protocol stops with an error too, and that is no anomaly.
        if len(stream.errors) > errors_before and stream.records:
            for error in stream.errors[errors_before:]:
                state.anomalies += 1
                self.anomalies.append(
                    ExtractorAnomaly(
                        "tls",
                        error.kind,
                        error.detail,
                        flow.last_index,
                        flow.last_ns,
                        flow_endpoints(flow),
                        state.anomalies,
                    )
                )
        if state.hello is not None or state.retry:
            return True
        if all(s.stopped is not None for s in state.streams):
            return self._release(flow)
        if stream.stopped is not None and state.hellos:
            return self._release(flow)  # the handshake is done; the rest is encrypted
        if not state.hellos and stream.stopped == STOP_ERROR:
            return self._release(flow)  # not TLS
        return True

    def _read(
        self, flow: Any, state: _FlowState, stream: TlsStream, from_originator: bool, data: bytes
    ) -> None:
        for message in stream.feed(data):
            if message.msg_type == HANDSHAKE_CLIENT_HELLO:
                hello = parse_client_hello(message.body)
                if isinstance(hello, TlsError):
                    stream.errors.append(hello)
                    continue
                if state.hello is not None:  # a second hello before any answer
                    self._end(flow, state, None)
                state.hello, state.client, state.retry = hello, from_originator, False
            elif message.msg_type == HANDSHAKE_SERVER_HELLO and state.hello is not None:
                server = parse_server_hello(message.body)
                if isinstance(server, TlsError):
                    stream.errors.append(server)
                    continue
                self._end(flow, state, server)

    def closed(self, flow: Any) -> None:
        state = self._flows.pop(flow, None)
        if state is not None and state.hello is not None:
            self._end(flow, state, None)

    def take_ended(self) -> list[TlsHandshake]:
        ended, self.ended = self.ended, []
        return ended

    def _end(self, flow: Any, state: _FlowState, server: ServerHello | None) -> None:
        assert state.hello is not None
        state.hellos += 1
        errors = tuple(e for s in state.streams for e in s.errors)
        self.errors += len(errors)
        self.ended.append(
            TlsHandshake(flow, state.hellos, state.hello, server, state.client, errors)
        )
        state.hello = None
        state.retry = server is not None and server.hello_retry_request

    def _release(self, flow: Any) -> bool:
        state = self._flows.pop(flow, None)
        if state is not None:
            self.errors += sum(len(s.errors) for s in state.streams)
        return False
