"""`pcap-ingest extract`: from events back to the packets, end to end through the real CLI.

Captures are converted with `pcap-ingest convert`, events are picked from its output, the
packets are extracted, and the written pcap is read back with both our reader and dpkt's:
it must hold exactly the frames asked for, with the input's bytes, timestamps (to the
nanosecond) and wire lengths, in capture order.
"""

from __future__ import annotations

import gzip
import io
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import dpkt
import orjson
import pytest
import zstandard

from pipeline.capture import Frame, open_capture
from pipeline.carve import ExtractError, TupleFilter, parse_time, parse_tuple
from pipeline.cli import EXIT_OK, EXIT_USAGE
from tests import capture_writers as w
from tests.conftest import SHARED, needs_shared

NS = 1_000_000_000
# Not a whole microsecond, so the output must be a nanosecond pcap to keep it.
BASE_NS = 1_700_000_000_123_456_789
STEP_NS = 1_000_000_007
MAC_1 = b"\x02\x00\x00\x00\x00\x01"
MAC_2 = b"\x02\x00\x00\x00\x00\x02"


# ---------------------------------------------------------------------- building captures


def tcp(src: str, sport: int, dst: str, dport: int, flags: int, payload: bytes = b"") -> bytes:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=1000, data=payload)
    return _ethernet_ipv4(src, dst, dpkt.ip.IP_PROTO_TCP, segment)


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    datagram.ulen = len(datagram)
    return _ethernet_ipv4(src, dst, dpkt.ip.IP_PROTO_UDP, datagram)


def _ethernet_ipv4(src: str, dst: str, protocol: int, transport: dpkt.Packet) -> bytes:
    ip = dpkt.ip.IP(
        src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=protocol, ttl=64, data=transport
    )
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=MAC_1, dst=MAC_2, type=0x0800, data=ip))


ARP = MAC_2 + MAC_1 + b"\x08\x06" + bytes(28)

SYN, ACK, FIN, PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
# Frame number → (packet, extra wire bytes not captured). Flow A (TCP 10.0.0.1:40000 →
# 10.0.0.2:80) is frames 1 3 6 8 10, flow B (DNS over UDP) 2 5, flow C (TCP from 10.0.0.4) 4 7.
FRAMES: dict[int, tuple[bytes, int]] = {
    1: (tcp("10.0.0.1", 40000, "10.0.0.2", 80, SYN), 0),
    2: (udp("10.0.0.1", 5353, "10.0.0.3", 53, b"query"), 0),
    3: (tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK), 0),
    4: (tcp("10.0.0.4", 40001, "10.0.0.2", 80, SYN), 0),
    5: (udp("10.0.0.3", 53, "10.0.0.1", 5353, b"answer"), 1400),  # cut by a snaplen
    6: (tcp("10.0.0.1", 40000, "10.0.0.2", 80, PSH | ACK, b"GET / HTTP/1.0\r\n\r\n"), 0),
    7: (tcp("10.0.0.2", 80, "10.0.0.4", 40001, SYN | ACK), 0),
    8: (tcp("10.0.0.1", 40000, "10.0.0.2", 80, FIN | ACK), 0),
    9: (ARP, 0),
    10: (tcp("10.0.0.2", 80, "10.0.0.1", 40000, FIN | ACK), 0),
}
FLOW_A = [1, 3, 6, 8, 10]
FLOW_B = [2, 5]
FLOW_C = [4, 7]


def ts_of(index: int) -> int:
    return BASE_NS + (index - 1) * STEP_NS


def synthetic_pcap(path: Path) -> Path:
    records = []
    for index, (data, cut) in FRAMES.items():
        seconds, fraction = divmod(ts_of(index), NS)
        records.append(w.Rec(seconds, fraction, data, origlen=len(data) + cut))
    path.write_bytes(w.pcap_bytes(records, nano=True))
    return path


# ---------------------------------------------------------------------- running the CLI


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, timeout=120
    )


def convert(capture: Path, outdir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """`pcap-ingest convert` to OUTDIR; the events file and its events."""
    done = run_cli(
        "convert", capture, "-o", outdir, "-w", "0", "-q", "--extract", "packet,flow,anomaly"
    )
    assert done.returncode == EXIT_OK, done.stderr
    events_file = outdir / (capture.name + ".ndjson.zst")
    with zstandard.ZstdDecompressor().stream_reader(events_file.read_bytes()) as reader:
        events = [orjson.loads(line) for line in io.BufferedReader(reader)]  # type: ignore[arg-type]
    return events_file, events


def extract(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    done = run_cli("extract", *args)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return done


def by_dataset(events: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["dataset"] == f"pcap_ingest.{dataset}"]


# ---------------------------------------------------------------------- reading back


class Packet(NamedTuple):
    ts_ns: int
    data: bytes
    origlen: int
    link_type: int


def input_frames(capture: Path) -> dict[int, Packet]:
    with open_capture(str(capture)) as cap:
        return {
            f.index: Packet(f.ts_ns, f.data or b"", f.origlen, f.link_type)
            for f in cap
            if isinstance(f, Frame)
        }


def read_back(pcap: Path) -> list[Packet]:
    """The written pcap by our reader, checked against dpkt's reading of it."""
    with open_capture(str(pcap)) as cap:
        ours = [
            Packet(f.ts_ns, f.data or b"", f.origlen, f.link_type)
            for f in cap
            if isinstance(f, Frame)
        ]
        assert cap.status == "ok"
    reader = dpkt.pcap.Reader(io.BytesIO(pcap.read_bytes()))
    theirs = [(round(Decimal(str(ts)) * NS), bytes(buf)) for ts, buf in reader]
    assert theirs == [(p.ts_ns, p.data) for p in ours]
    assert all(p.link_type == reader.datalink() for p in ours)
    return ours


def expect(written: list[Packet], frames: dict[int, Packet], indices: list[int]) -> None:
    assert written == [frames[i] for i in indices]


def is_nanosecond_pcap(path: Path) -> bool:
    return path.read_bytes()[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    base = tmp_path_factory.mktemp("carve")
    capture = synthetic_pcap(base / "mix.pcap")
    events_file, events = convert(capture, base)
    return capture, events_file, events


# ---------------------------------------------------------------------- selections


def test_packet_event_id_gives_its_frame(synthetic: tuple, tmp_path: Path) -> None:
    capture, events_file, events = synthetic
    (event,) = [e for e in by_dataset(events, "packet") if e["pcap"]["frame"] == 6]
    out = tmp_path / "one.pcap"
    done = extract("--events", events_file, "--event-id", event["event"]["id"], "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stderr.decode() == f"pcap-ingest: wrote 1 packet to {out}\n"
    expect(read_back(out), input_frames(capture), [6])
    assert is_nanosecond_pcap(out)  # the input's nanoseconds are kept


def test_flow_event_id_gives_every_packet_of_the_flow(synthetic: tuple, tmp_path: Path) -> None:
    capture, events_file, events = synthetic
    frames = input_frames(capture)
    flows = {e["pcap"]["frame"]: e for e in by_dataset(events, "flow")}
    for first, indices in ((1, FLOW_A), (2, FLOW_B), (4, FLOW_C)):
        flow = flows[first]
        out = tmp_path / f"flow{first}.pcap"
        done = extract("--events", events_file, "--event-id", flow["event"]["id"], "-o", out)
        assert done.returncode == EXIT_OK, done.stderr
        written = read_back(out)
        expect(written, frames, indices)
        assert len(written) == flow["network"]["packets"]
        # ... and they are the packets whose events carry the flow's community id.
        cid = flow["network"]["community_id"]
        assert indices == [
            e["pcap"]["frame"]
            for e in by_dataset(events, "packet")
            if e["network"].get("community_id") == cid
        ]


def test_community_id_keeps_wire_lengths(synthetic: tuple, tmp_path: Path) -> None:
    capture, _, events = synthetic
    (query,) = [e for e in by_dataset(events, "packet") if e["pcap"]["frame"] == 2]
    out = tmp_path / "cid.pcap"
    done = extract(capture, "--community-id", query["network"]["community_id"], "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    written = read_back(out)
    expect(written, input_frames(capture), FLOW_B)
    assert written[1].origlen == len(written[1].data) + 1400  # dpkt's writepkt would drop it


@pytest.mark.parametrize(
    ("spec", "indices"),
    [
        ("tcp:10.0.0.1:40000:10.0.0.2:80", FLOW_A),
        ("tcp:10.0.0.2:80:10.0.0.1:40000", FLOW_A),  # the other direction
        ("tcp:10.0.0.2:80:*:*", FLOW_A + FLOW_C),
        ("6:10.0.0.4:*:*:*", FLOW_C),
        ("udp:*:53:*:*", FLOW_B),
        ("udp:10.0.0.1:5353:10.0.0.2:53", []),
    ],
)
def test_tuple_matches_either_direction(
    synthetic: tuple, tmp_path: Path, spec: str, indices: list[int]
) -> None:
    capture = synthetic[0]
    out = tmp_path / "tuple.pcap"
    done = extract(capture, "--tuple", spec, "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    expect(read_back(out), input_frames(capture), sorted(indices))


def test_time_range_includes_both_ends(synthetic: tuple, tmp_path: Path) -> None:
    capture, _, events = synthetic
    (third,) = [e for e in by_dataset(events, "packet") if e["pcap"]["frame"] == 3]
    seventh_s, seventh_ns = divmod(ts_of(7), NS)
    out = tmp_path / "time.pcap"
    done = extract(
        capture,
        "--time-from",
        third["@timestamp"],  # ISO 8601 with nanoseconds, as events write it
        "--time-to",
        f"{seventh_s}.{seventh_ns:09d}",  # epoch seconds
        "-o",
        out,
    )
    assert done.returncode == EXIT_OK, done.stderr
    expect(read_back(out), input_frames(capture), [3, 4, 5, 6, 7])


def test_selections_combine_as_and(synthetic: tuple, tmp_path: Path) -> None:
    capture, events_file, events = synthetic
    flow_a = next(e for e in by_dataset(events, "flow") if e["pcap"]["frame"] == 1)
    out = tmp_path / "and.pcap"
    done = extract(
        "--events",
        events_file,
        "--event-id",
        flow_a["event"]["id"],
        "--tuple",
        "tcp:*:*:*:*",
        "--time-to",
        str(ts_of(6) / NS + 1e-4),
        "-o",
        out,
    )
    assert done.returncode == EXIT_OK, done.stderr
    expect(read_back(out), input_frames(capture), [1, 3, 6])


def test_pcap_on_stdout(synthetic: tuple, tmp_path: Path) -> None:
    capture = synthetic[0]
    done = extract(capture, "--tuple", "udp:*:*:*:*", "-o", "-")
    assert done.returncode == EXIT_OK, done.stderr
    (tmp_path / "stdout.pcap").write_bytes(done.stdout)
    expect(read_back(tmp_path / "stdout.pcap"), input_frames(capture), FLOW_B)


def test_capture_is_matched_by_content_not_path(synthetic: tuple, tmp_path: Path) -> None:
    """Events name their capture by a hash of its first frame: a compressed copy elsewhere
    matches, and another capture is refused instead of yielding the wrong packets."""
    capture, events_file, events = synthetic
    event_id = next(e for e in by_dataset(events, "flow") if e["pcap"]["frame"] == 4)["event"]["id"]
    moved = tmp_path / "moved.pcap.gz"
    moved.write_bytes(gzip.compress(capture.read_bytes()))
    out = tmp_path / "moved.pcap"
    done = extract(moved, "--events", events_file, "--event-id", event_id, "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    expect(read_back(out), input_frames(capture), FLOW_C)

    other = tmp_path / "other.pcap"
    first_data = FRAMES[2][0]
    other.write_bytes(w.pcap_bytes([w.Rec(1, 0, first_data)]))
    refused = tmp_path / "refused.pcap"
    done = extract(other, "--events", events_file, "--event-id", event_id, "-o", refused)
    assert done.returncode == EXIT_USAGE
    assert b"no input capture is the one event" in done.stderr
    assert not refused.exists()


# ---------------------------------------------------------------------- reference captures


@needs_shared
def test_every_flow_of_a_reference_capture(tmp_path: Path) -> None:
    capture = SHARED / "dpkt__http.pcap"
    events_file, events = convert(capture, tmp_path)
    frames = input_frames(capture)
    packets = by_dataset(events, "packet")
    flows = by_dataset(events, "flow")
    assert len(flows) == 3
    for n, flow in enumerate(flows):
        out = tmp_path / f"flow{n}.pcap"
        done = extract("--events", events_file, "--event-id", flow["event"]["id"], "-o", out)
        assert done.returncode == EXIT_OK, done.stderr
        pcap = flow["pcap"]
        indices = [
            p["pcap"]["frame"]
            for p in packets
            if p["network"].get("community_id") == flow["network"]["community_id"]
            and pcap["frame"] <= p["pcap"]["frame"] <= pcap["last_frame"]
        ]
        written = read_back(out)
        expect(written, frames, indices)
        assert len(written) == flow["network"]["packets"]
        assert not is_nanosecond_pcap(out)  # a microsecond capture stays one


@needs_shared
def test_flow_of_fragments_includes_a_first_fragment_without_ports(tmp_path: Path) -> None:
    """The first fragment is too short for the TCP ports; the flow still holds it, as the
    flow table counts it (the flow event's pcap.frame is the fragment that completed it)."""
    capture = SHARED / "zeek__fragmented-syn.pcap"
    if not capture.is_file():
        pytest.skip(f"{capture} not found")
    events_file, events = convert(capture, tmp_path)
    (flow,) = by_dataset(events, "flow")
    out = tmp_path / "frag.pcap"
    done = extract("--events", events_file, "--event-id", flow["event"]["id"], "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    written = read_back(out)
    expect(written, input_frames(capture), [1, 2])
    assert len(written) == flow["network"]["packets"]


# ---------------------------------------------------------------------- user errors


def _one_line_usage_error(done: subprocess.CompletedProcess[bytes], words: str) -> None:
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pcap-ingest: error: ")
    assert words in lines[0]
    assert done.stdout == b""


def test_user_errors_are_one_line(synthetic: tuple, tmp_path: Path) -> None:
    capture, events_file, _ = synthetic
    out = tmp_path / "out.pcap"
    cases = [
        ((tmp_path / "missing.pcap", "--time-from", "0"), "capture not found"),
        (("--events", tmp_path / "missing.ndjson", "--event-id", "x-1"), "events file not found"),
        (("--events", events_file, "--event-id", "0123456789ab-99"), "event id not found"),
        (("--event-id", "x-1"), "--event-id needs --events"),
        ((capture,), "say what to extract"),
        ((capture, "--tuple", "tcp:1.2.3.4:80"), "not a tuple"),
        ((capture, "--tuple", "tcp:1.2.3.4:80:2001:db8::1:80"), "not a tuple"),
        ((capture, "--tuple", "xyz:*:*:*:*"), "unknown protocol"),
        ((capture, "--time-from", "yesterday"), "not a time"),
        ((capture, "--time-from", "20", "--time-to", "10"), "is after"),
        (("--events", capture, "--event-id", "x-1"), "is a capture, not an events file"),
    ]
    for args, words in cases:
        _one_line_usage_error(extract(*args, "-o", out), words)
        assert not out.exists()
    done = extract(capture, "--time-from", "0", "-o", capture, "--force")
    _one_line_usage_error(done, "is one of the input captures")
    # A time a classic pcap cannot hold (year 151991, as in a real capture of the corpus).
    far = tmp_path / "far.pcapng"
    far.write_bytes(w.shb() + w.idb() + w.epb(0, 4_734_231_571_822_539_464, FRAMES[1][0]))
    _one_line_usage_error(extract(far, "--time-from", "0", "-o", out), "a pcap cannot hold")
    assert not out.exists()


def test_existing_output_needs_force(synthetic: tuple, tmp_path: Path) -> None:
    capture = synthetic[0]
    out = tmp_path / "out.pcap"
    out.write_bytes(b"keep me")
    _one_line_usage_error(extract(capture, "--tuple", "udp:*:*:*:*", "-o", out), "output exists")
    assert out.read_bytes() == b"keep me"
    done = extract(capture, "--tuple", "udp:*:*:*:*", "-o", out, "--force")
    assert done.returncode == EXIT_OK, done.stderr
    expect(read_back(out), input_frames(capture), FLOW_B)
    assert not Path(str(out) + ".partial").exists()


def test_mixed_link_types_are_refused(tmp_path: Path) -> None:
    """A pcap holds one link type (see pipeline/carve.py for why not pcapng)."""
    ethernet = tmp_path / "eth.pcap"
    ethernet.write_bytes(w.pcap_bytes([w.Rec(10, 0, FRAMES[1][0])]))
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(w.pcap_bytes([w.Rec(11, 0, FRAMES[1][0][14:])], linktype=w.LINKTYPE_RAW))
    out = tmp_path / "mixed.pcap"
    _one_line_usage_error(extract(ethernet, raw, "--time-from", "0", "-o", out), "mix link types")
    assert not out.exists()
    # Either alone is fine, and keeps its link type.
    done = extract(raw, "--tuple", "tcp:10.0.0.1:*:*:*", "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    assert read_back(out) == [Packet(11 * NS, FRAMES[1][0][14:], 40, w.LINKTYPE_RAW)]


def test_same_capture_twice_is_read_once(synthetic: tuple, tmp_path: Path) -> None:
    capture = synthetic[0]
    copy = tmp_path / "copy.pcap"
    shutil.copyfile(capture, copy)
    out = tmp_path / "twice.pcap"
    done = extract(capture, copy, "--tuple", "udp:*:*:*:*", "-o", out)
    assert done.returncode == EXIT_OK, done.stderr
    assert b"the same capture as one before: skipped" in done.stderr
    expect(read_back(out), input_frames(capture), FLOW_B)


# ---------------------------------------------------------------------- option parsing


@pytest.mark.parametrize(
    ("text", "ts_ns"),
    [
        ("0", 0),
        ("1700000000.123456789", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123_456_789),
        ("2023-11-14T22:13:20.5", 1_700_000_000_500_000_000),  # no zone: UTC
        ("2023-11-14 23:13:20+01:00", 1_700_000_000 * NS),
        ("2023-11-14T23:13:20+0100", 1_700_000_000 * NS),
        ("2023-11-14", 1_699_920_000 * NS),
        ("2023-11-14T22:13", 1_699_999_980 * NS),
        ("2023-11-14T17:13:20.000000001-05:00", 1_700_000_000 * NS + 1),
    ],
)
def test_parse_time(text: str, ts_ns: int) -> None:
    assert parse_time(text) == ts_ns


V6_DOC = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
V6_LOOPBACK = socket.inet_pton(socket.AF_INET6, "::1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp:10.0.0.1:1:10.0.0.2:2", TupleFilter(6, b"\n\0\0\1", 1, b"\n\0\0\2", 2)),
        ("UDP:*:*:*:53", TupleFilter(17, None, None, None, 53)),
        ("icmpv6:[2001:db8::1]:*:[::1]:*", TupleFilter(58, V6_DOC, None, V6_LOOPBACK, None)),
    ],
)
def test_parse_tuple(text: str, expected: TupleFilter) -> None:
    assert parse_tuple(text) == expected


@pytest.mark.parametrize(
    "text", ["tcp", "tcp:1.2.3.4:80:5.6.7.8", "tcp:1.2.3.4:99999:*:*", "tcp:1.2.3:80:*:*"]
)
def test_parse_tuple_refuses(text: str) -> None:
    with pytest.raises(ExtractError):
        parse_tuple(text)


@pytest.mark.parametrize("text", ["", "yesterday", "2023-11-14.5", "2023-13-01", "1.2.3"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ExtractError):
        parse_time(text)
