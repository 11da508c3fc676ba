"""Tiny struct-based writers of classic pcap and pcapng bytes, for tests.

They write exactly what they are told, including wrong lengths (`caplen=`, `length=`,
`trailer=` overrides), so tests can build both well-formed and broken captures byte by byte.
Every helper takes the byte order as ``order`` ("<" little-endian, ">" big-endian).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from pipeline.capture import Capture, Frame, FramingError, open_capture, open_stream

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


def packet(n: int, seed: int = 0) -> bytes:
    """`n` deterministic, recognisable packet bytes."""
    return bytes((seed * 7 + i) & 0xFF for i in range(n))


# ------------------------------------------------------------------------------- classic pcap


@dataclass(frozen=True)
class Rec:
    """One classic pcap record: ts_frac is µs or ns depending on the file's magic."""

    ts_sec: int
    ts_frac: int
    data: bytes
    origlen: int | None = None  # default: len(data)
    caplen: int | None = None  # default: len(data); set to write a lying header


def pcap_header(
    *,
    order: str = "<",
    nano: bool = False,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    magic = PCAP_MAGIC_NSEC if nano else PCAP_MAGIC_USEC
    return struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)


def pcap_record(rec: Rec, *, order: str = "<") -> bytes:
    caplen = len(rec.data) if rec.caplen is None else rec.caplen
    origlen = len(rec.data) if rec.origlen is None else rec.origlen
    return struct.pack(order + "IIII", rec.ts_sec, rec.ts_frac, caplen, origlen) + rec.data


def pcap_bytes(
    records: list[Rec],
    *,
    order: str = "<",
    nano: bool = False,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    head = pcap_header(order=order, nano=nano, linktype=linktype, snaplen=snaplen, version=version)
    return head + b"".join(pcap_record(r, order=order) for r in records)


# ------------------------------------------------------------------------------------ pcapng


def pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def option(code: int, value: bytes, *, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def end_of_options(*, order: str = "<") -> bytes:
    return struct.pack(order + "HH", 0, 0)


def block(
    btype: int,
    body: bytes,
    *,
    order: str = "<",
    length: int | None = None,
    trailer: int | None = None,
) -> bytes:
    """A block with its lengths; `length`/`trailer` override them to write broken blocks."""
    body = pad4(body)
    total = 12 + len(body)
    lead = total if length is None else length
    trail = lead if trailer is None else trailer
    return struct.pack(order + "II", btype, lead) + body + struct.pack(order + "I", trail)


def shb(*, order: str = "<", major: int = 1, minor: int = 0, options: bytes = b"") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1) + options
    return block(0x0A0D0D0A, body, order=order)


def idb(
    linktype: int = LINKTYPE_ETHERNET,
    *,
    order: str = "<",
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    raw_options: bytes = b"",
) -> bytes:
    opts = raw_options
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order=order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order=order)
    if opts:
        opts += end_of_options(order=order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order=order)


def epb(
    iface: int,
    ts_units: int,
    data: bytes,
    *,
    order: str = "<",
    origlen: int | None = None,
    caplen: int | None = None,
    options: bytes = b"",
    length: int | None = None,
    trailer: int | None = None,
) -> bytes:
    cap = len(data) if caplen is None else caplen
    orig = len(data) if origlen is None else origlen
    fields = struct.pack(order + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, cap, orig)
    return block(6, fields + pad4(data) + options, order=order, length=length, trailer=trailer)


def pb(
    iface: int,
    ts_units: int,
    data: bytes,
    *,
    order: str = "<",
    origlen: int | None = None,
    drops: int = 0,
) -> bytes:
    orig = len(data) if origlen is None else origlen
    fields = struct.pack(
        order + "HHIIII", iface, drops, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), orig
    )
    return block(2, fields + pad4(data), order=order)


def spb(data: bytes, *, order: str = "<", origlen: int | None = None) -> bytes:
    orig = len(data) if origlen is None else origlen
    return block(3, struct.pack(order + "I", orig) + pad4(data), order=order)


def nrb(*, order: str = "<") -> bytes:
    """A Name Resolution Block with one IPv4 record (127.0.0.1 localhost)."""
    rec = struct.pack(order + "HH", 1, 14) + pad4(b"\x7f\x00\x00\x01localhost\x00")
    return block(4, rec + struct.pack(order + "HH", 0, 0), order=order)


def isb(iface: int = 0, *, order: str = "<") -> bytes:
    """An Interface Statistics Block with no options."""
    return block(5, struct.pack(order + "III", iface, 0, 0), order=order)


def custom_block(*, order: str = "<", copyable: bool = True) -> bytes:
    """A custom block (0x00000BAD / 0x40000BAD) with a private enterprise number and data."""
    body = struct.pack(order + "I", 32473) + b"hi"
    return block(0x00000BAD if copyable else 0x40000BAD, body, order=order)


def dsb(*, order: str = "<") -> bytes:
    """A Decryption Secrets Block (TLS key log) with a few bytes of secret."""
    secret = b"CLIENT_RANDOM 00 00\n"
    return block(10, struct.pack(order + "II", 0x544C534B, len(secret)) + secret, order=order)


# ------------------------------------------------------------------------- reading helpers


def read_every_way(
    data: bytes, tmp_path: Path, name: str = "capture.bin"
) -> tuple[list[Frame | FramingError], Capture]:
    """Read `data` mapped (with and without packet bytes) and streamed in chunks of 1, 3, 64
    bytes and 1 MiB; assert every way gives the same items and accounting; return the items
    and the (closed) mapped Capture for its attributes.

    This is how the tests hold the two drivers to sharing one parser: any decision that
    depends on how the input arrives shows up as a difference here.
    """
    path = tmp_path / name
    path.write_bytes(data)
    with open_capture(str(path)) as cap:
        items = list(cap)
    with open_capture(str(path), with_data=False) as refs:
        ref_items = list(refs)
    assert ref_items == [i._replace(data=None) if type(i) is Frame else i for i in items]
    assert (refs.frames_read, refs.status) == (cap.frames_read, cap.status)
    assert cap.frames_read == len(items)
    for chunk_size in (1, 3, 64, 1 << 20):
        with open_stream(io.BytesIO(data), name, chunk_size=chunk_size) as stream:
            streamed = list(stream)
            assert streamed == items, f"chunk size {chunk_size}"
            assert (stream.frames_read, stream.status) == (cap.frames_read, cap.status)
            assert stream.notes == cap.notes
    return items, cap
