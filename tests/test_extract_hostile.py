"""Hostile inputs for the extractors (issue #5), each written into a capture and converted.

The inputs dpkt raises on outside its own exceptions (NOTES.md): non-UTF-8 and looping DNS
names, repeated or non-numeric Content-Length and repeated Transfer-Encoding headers, unknown
TLS versions and handshake types, an MPLS label stack with no payload, deeply nested
IP-in-IP. Every one must be read without an exception, reported as a typed anomaly event with
its frame, counted per extractor, and every frame accounted for.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import orjson

from pipeline.convert import convert
from tests.capture_writers import Rec, pcap_bytes

CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def ether(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", ethertype) + payload


def ipv4(payload: Any, p: int, src: bytes = CLIENT, dst: bytes = SERVER) -> bytes:
    ip = dpkt.ip.IP(src=src, dst=dst, p=p, ttl=64, data=payload)
    ip.len = len(bytes(ip))
    return bytes(ip)


def tcp(sport: int, dport: int, seq: int, data: bytes, to_server: bool) -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=1, flags=0x18, data=data)
    src, dst = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    return ether(ipv4(segment, 6, src, dst))


def udp(sport: int, dport: int, data: bytes, to_server: bool = True) -> bytes:
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
    datagram.ulen = len(bytes(datagram))
    src, dst = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    return ether(ipv4(datagram, 17, src, dst))


def exchange(port: int, request: bytes, response: bytes, dport: int = 80) -> list[bytes]:
    return [tcp(port, dport, 1000, request, True), tcp(dport, port, 5000, response, False)]


def dns_response(name: bytes) -> bytes:
    """A response whose question and answer name hold `name`'s raw label bytes."""
    labels = b"".join(bytes([len(part)]) + part for part in name.split(b".")) + b"\x00"
    header = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    return header + labels + struct.pack("!HH", 1, 1) + answer


def dns_loop() -> bytes:
    """A question name that is a compression pointer to itself."""
    return struct.pack("!HHHHHH", 0x4321, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"


def tls_record(content_type: int, version: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def hostile_frames() -> list[bytes]:
    frames: list[bytes] = []
    # HTTP: two different Content-Length values; a non-numeric one; two Transfer-Encoding
    # headers (joined: legal); a head past the cap arrives in pieces below.
    frames += exchange(
        40001,
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    )
    frames += exchange(
        40002,
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\nxyz",
    )
    frames += exchange(
        40003,
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    # TLS: a record of an unknown version after a valid start; an unknown handshake type in
    # a ClientHello-looking record; a ClientHello whose body is cut short.
    frames += exchange(
        40004,
        tls_record(22, 0x0301, b"\x63\x00\x00\x02ab")  # handshake type 99: unknown, skipped
        + tls_record(22, 0x0501, b"\x01\x00\x00\x00"),  # record version 0x0501: not TLS
        b"",
        dport=443,
    )
    frames += exchange(
        40005,
        tls_record(22, 0x0301, b"\x01\x00\x00\x06\x03\x03abcd"),  # ClientHello cut short
        tls_record(21, 0x0303, b"\x02\x28"),
        dport=443,
    )
    # DNS: non-UTF-8 label bytes; a compression loop.
    frames.append(udp(53, 33333, dns_response(b"\xff\xfe\x80.example.com"), to_server=False))
    frames.append(udp(33334, 53, dns_loop()))
    # An MPLS label stack with no payload, and IP-in-IP nested 200 deep.
    frames.append(ether(struct.pack("!I", (16 << 12) | (1 << 8) | 64), ethertype=0x8847))
    inner: bytes = ipv4(dpkt.udp.UDP(sport=1, dport=2, data=b"x"), 17)
    for _ in range(200):
        inner = ipv4(inner, 4)
    frames.append(ether(inner))
    return frames


def test_hostile_inputs_become_anomalies_and_every_frame_is_accounted_for(
    tmp_path: Path,
) -> None:
    frames = hostile_frames()
    # One more: an HTTP head past MAX_HEAD_BYTES, in 1,400-byte segments.
    head = b"GET /big HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024)
    frames += [
        tcp(40006, 80, 1000 + i, head[i : i + 1400], True) for i in range(0, len(head), 1400)
    ]
    records = [Rec(1_700_000_000 + i, 0, f) for i, f in enumerate(frames)]
    path = tmp_path / "hostile.pcap"
    path.write_bytes(pcap_bytes(records))
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        run = convert(
            [str(path)],
            str(out),
            workers=workers,
            extract=("packet", "anomaly", "flow", "dns", "tls", "http"),
            compression="none",
        )
        (stats,) = run.files
        assert stats.status == "ok" and stats.accounted
        assert stats.frames == len(frames)
        events = [
            orjson.loads(line) for line in (out / "hostile.pcap.ndjson").read_bytes().splitlines()
        ]
        anomalies = [e for e in events if e["event"]["dataset"] == "pcap_ingest.anomaly"]
        types = Counter(e["error"]["type"] for e in anomalies)
        assert types["http_malformed"] == 3, types  # two lengths, "1e3", chunk size "zz"
        assert types["http_limit"] == 1, types  # the 70 KiB head
        assert types["tls_unsupported"] + types["tls_malformed"] + types["tls_truncated"] >= 2
        assert types["dns_malformed"] >= 1, types  # the compression loop
        assert types["truncated"] >= 1, types  # the MPLS label stack with nothing after it
        # IP-in-IP 200 deep: tracked as its outer packet, the depth cap counted.
        assert stats.flows["tunnel_errors"] == 1
        for e in anomalies:
            assert e["pcap"]["frame"] >= 1 and e["event"]["id"]
        counted = stats.extractors
        assert counted["http_anomalies"] == 4 and counted["dns_anomalies"] >= 1
        assert len({e["event"]["id"] for e in events}) == len(events)
        # The non-UTF-8 name is in a DNS event, escaped, not lost.
        dns = [e for e in events if e["event"]["dataset"] == "pcap_ingest.dns"]
        assert any("\\255" in e["dns"].get("question", {}).get("name", "") for e in dns)
