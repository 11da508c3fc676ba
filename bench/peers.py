"""The naive converters we measure ourselves against, in the same run.

`naive_dpkt_fields` is the plain loop dpkt's documentation teaches (Reader + Ethernet decode,
fields into a dict); `naive_dpkt_ndjson_zstd` adds what a converter needs on top (orjson per
record, a zstd level-3 stream). NOTES.md measured them at ~85k and ~74k packets/s here.

The external peers (`tcpdump_copy`, `tshark_ek`) run the tools as a user would, output to
/dev/null: ``tcpdump -r FILE -w /dev/null`` is the C framing floor (libpcap reads and writes
every record), ``tshark -T ek -r FILE`` a full dissector writing Elasticsearch JSON (NOTES.md:
~9.5k packets/s, so it gets a slice of the capture: `pcap_slice`).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import orjson
import zstandard


def _fields(ts: float, buf: bytes) -> dict[str, Any]:
    eth = dpkt.ethernet.Ethernet(buf)
    record: dict[str, Any] = {
        "ts": ts,
        "src_mac": eth.src.hex(":"),
        "dst_mac": eth.dst.hex(":"),
        "type": eth.type,
        "len": len(buf),
    }
    ip = eth.data
    if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
        family = socket.AF_INET if isinstance(ip, dpkt.ip.IP) else socket.AF_INET6
        record["src_ip"] = socket.inet_ntop(family, ip.src)
        record["dst_ip"] = socket.inet_ntop(family, ip.dst)
        record["proto"] = ip.p
        l4 = ip.data
        if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            record["src_port"] = l4.sport
            record["dst_port"] = l4.dport
            if isinstance(l4, dpkt.tcp.TCP):
                record["flags"] = l4.flags
    return record


def naive_dpkt_fields(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            try:  # noqa: SIM105 - suppress() costs a context manager per packet
                _fields(ts, buf)
            except (dpkt.UnpackError, IndexError, ValueError):
                pass
            n += 1
    return n


def naive_dpkt_ndjson_zstd(path: str, out_path: str) -> int:
    n = 0
    with open(path, "rb") as f, open(out_path, "wb") as out:
        writer = zstandard.ZstdCompressor(level=3).stream_writer(out)
        for ts, buf in dpkt.pcap.Reader(f):
            try:  # noqa: SIM105 - suppress() costs a context manager per packet
                writer.write(orjson.dumps(_fields(ts, buf)) + b"\n")
            except (dpkt.UnpackError, IndexError, ValueError):
                pass
            n += 1
        writer.flush(zstandard.FLUSH_FRAME)
    return n


def tool(name: str) -> str | None:
    """The path of an external peer, also where root's sbin is not on PATH (tcpdump)."""
    found = shutil.which(name)
    if found is None:
        for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
            candidate = os.path.join(folder, name)
            if os.access(candidate, os.X_OK):
                return candidate
    return found


def tcpdump_copy(tcpdump: str, path: str) -> None:
    """Read every record and write it out again: libpcap framing, no dissection."""
    subprocess.run(
        [tcpdump, "-r", path, "-w", "/dev/null"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def tshark_ek(tshark: str, path: str) -> None:
    """Full dissection, one Elasticsearch bulk JSON document per packet."""
    with open(os.devnull, "wb") as sink:
        subprocess.run(
            [tshark, "-T", "ek", "-r", path], check=True, stdout=sink, stderr=subprocess.DEVNULL
        )


_PCAP_HEADER_LEN = 24
_RECORD = struct.Struct("<IIII")
_PCAP_LE_MAGICS = (0xA1B2C3D4, 0xA1B23C4D)  # microsecond and nanosecond, little-endian


def pcap_slice(src: Path, dst: Path, packets: int) -> Path:
    """The first `packets` records of classic little-endian pcap `src` as `dst` (made once):
    the same traffic mix as the whole capture, for a peer too slow to read all of it."""
    if dst.exists():
        return dst
    with open(src, "rb") as f:
        header = f.read(_PCAP_HEADER_LEN)
        if struct.unpack_from("<I", header)[0] not in _PCAP_LE_MAGICS:
            raise ValueError(f"{src}: not a little-endian classic pcap")
        records = []
        for _ in range(packets):
            head = f.read(_RECORD.size)
            if len(head) < _RECORD.size:
                break
            caplen = _RECORD.unpack(head)[2]
            records.append(head + f.read(caplen))
    tmp = dst.with_suffix(".tmp")
    tmp.write_bytes(header + b"".join(records))
    tmp.replace(dst)
    return dst
