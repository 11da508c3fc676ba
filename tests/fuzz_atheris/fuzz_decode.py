"""Coverage-guided fuzzing (atheris) of the per-packet decode: one frame in, every decoder
that looks at a frame run over it, and their invariants checked.

Input: byte 0 picks the link type (`LINK_TYPES`, wrapping), the rest is the frame. The frame
goes through `decode_packet`, `decapsulate`, `quoted_flow` (ICMP errors), and its transport
payload through the DNS, TLS and HTTP parsers. An exception, or a broken invariant (an
AssertionError), is a crash.

    python tests/fuzz_atheris/fuzz_decode.py [libFuzzer flags] CORPUS_DIR
    python tests/fuzz_atheris/fuzz_decode.py --seed-corpus DIR      # frames of a generated capture
    python tests/fuzz_atheris/fuzz_decode.py --to-pcap CRASH OUT    # a crasher as a capture

`--to-pcap` writes the input as a one-frame classic pcap of its link type, the form
tests/test_fuzz.py::test_fuzz_case replays (scripts/fuzz.sh does this for every crasher).
Not run by CI (atheris is not a project dependency); scripts/fuzz.sh runs it.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pipeline"]):
    from pipeline.decode import errors
    from pipeline.decode.icmp import QUOTE_OFFSET, is_error, quoted_flow
    from pipeline.decode.link import LINK_DECODERS
    from pipeline.decode.packet import Packet, decode_packet
    from pipeline.decode.tunnel import MAX_TUNNEL_DEPTH, decapsulate
    from pipeline.extract.dns import parse_message, tcp_messages
    from pipeline.extract.http import ERROR_DECODER_BUG as HTTP_DECODER_BUG
    from pipeline.extract.http import HttpStream
    from pipeline.extract.tls import ERROR_DECODER_BUG as TLS_DECODER_BUG
    from pipeline.extract.tls import (
        ClientHello,
        TlsError,
        TlsStream,
        ja3,
        ja4,
        parse_client_hello,
        parse_server_hello,
    )

# Every link type we decode, then one we do not (the unsupported-link path).
LINK_TYPES = [*sorted(LINK_DECODERS), 147]
REASONS = {
    errors.REASON_TRUNCATED,
    errors.REASON_MALFORMED,
    errors.REASON_UNSUPPORTED_LINK,
    errors.REASON_LIMIT,
}


def split_input(data: bytes) -> tuple[int, bytes]:
    """(link type, frame) of one fuzz input."""
    if not data:
        return LINK_TYPES[0], b""
    return LINK_TYPES[data[0] % len(LINK_TYPES)], data[1:]


def check_packet(pkt: Packet, frame: bytes) -> None:
    assert pkt.error is None or pkt.error in REASONS, (pkt.error, pkt.error_detail)
    if pkt.payload_offset is not None:
        assert 0 <= pkt.payload_offset <= len(frame), pkt
        if pkt.payload_end is not None:
            assert pkt.payload_offset <= pkt.payload_end <= len(frame), pkt
    if pkt.ip_version is not None:
        size = 4 if pkt.ip_version == 4 else 16
        assert pkt.src_ip is None or len(pkt.src_ip) == size, pkt


def check_payload(pkt: Packet, payload: bytes) -> None:
    """The extractors over a transport payload, as the flow layer would hand it to them."""
    if pkt.protocol == 17:
        parse_message(payload)
    elif pkt.protocol == 6:
        messages, _ = tcp_messages(payload)
        for message in messages:
            parse_message(message)
        tls = TlsStream(max_buffered_bytes=1 << 16)
        for hs in tls.feed(payload):
            result = (parse_client_hello if hs.msg_type == 1 else parse_server_hello)(hs.body)
            assert not (isinstance(result, TlsError) and result.kind == TLS_DECODER_BUG), result
            if isinstance(result, ClientHello):
                ja3(result), ja4(result)
        for requests in (True, False):
            http = HttpStream(requests=requests)
            http.request_methods.append(b"GET")
            http.feed(payload)
            assert all(e.kind != HTTP_DECODER_BUG for e in http.errors), http.errors


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    link_type, frame = split_input(data)
    pkt = decode_packet(link_type, frame)
    check_packet(pkt, frame)
    result = decapsulate(pkt, frame)
    if result is not None:
        inner, tunnels = result
        assert 1 <= len(tunnels) <= MAX_TUNNEL_DEPTH
        check_packet(inner, frame)
        pkt = inner
    icmp = pkt.icmp_type is not None and pkt.payload_offset is not None and pkt.protocol
    if icmp and is_error(pkt.protocol, pkt.icmp_type):  # an error quotes the datagram it is about
        end = pkt.payload_end if pkt.payload_end is not None else len(frame)
        quoted = quoted_flow(frame, pkt.payload_offset + QUOTE_OFFSET, end)
        assert quoted is None or quoted.ip_version in (4, 6)
    if pkt.payload_offset is not None:
        end = pkt.payload_end if pkt.payload_end is not None else len(frame)
        check_payload(pkt, frame[pkt.payload_offset : end])


def to_pcap(data: bytes) -> bytes:
    """One fuzz input as a classic pcap (little-endian, µs) holding its one frame."""
    link_type, frame = split_input(data)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262_144, link_type)
    record = struct.pack("<IIII", 1_600_000_000, 0, len(frame), len(frame))
    return header + record + frame


def write_seed_corpus(out_dir: Path) -> int:
    """Frames of a small generated capture, as fuzz inputs (the link type byte first)."""
    from pipeline.capture import Frame, open_capture
    from pipeline.gen import write_capture

    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "seed.pcap")
        write_capture(path, 400, seed=9)
        with open_capture(path) as capture:
            for record in capture:
                if isinstance(record, Frame) and record.data is not None:
                    link = bytes([LINK_TYPES.index(record.link_type)])
                    (out_dir / f"gen-{record.index:04d}").write_bytes(link + record.data)
                    written += 1
    return written


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--seed-corpus":
        print(f"{write_seed_corpus(Path(argv[2]))} seed inputs written to {argv[2]}")
        return
    if len(argv) == 4 and argv[1] == "--to-pcap":
        Path(argv[3]).write_bytes(to_pcap(Path(argv[2]).read_bytes()))
        return
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
