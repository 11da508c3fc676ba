"""The converter end to end: containers, sinks, CLI exit codes, stats, API."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import orjson
import pytest
import zstandard

from pipeline import convert, read_events
from pipeline.gen.capture_mix import write_capture
from pipeline.inputs import InputError
from tests import capture_writers as w
from tests.conftest import SHARED, needs_shared
from tests.test_truth_packets import read_ndjson_zst

PROVENANCE = ("file", "offset")


def strip_provenance(event: dict[str, Any]) -> dict[str, Any]:
    event = orjson.loads(orjson.dumps(event))
    for key in PROVENANCE:
        event["pcap"].pop(key, None)
    return event


def frames_of(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp in µs, bytes) of a classic pcap, read with dpkt as an independent reader."""
    with open(path, "rb") as f:
        return [(round(ts * 1e6), buf) for ts, buf in dpkt.pcap.Reader(f)]


def as_pcapng(frames: list[tuple[int, bytes]], order: str = "<") -> bytes:
    out = w.shb(order=order) + w.idb(w.LINKTYPE_ETHERNET, order=order)
    for ts_us, buf in frames:
        out += w.epb(0, ts_us, buf, order=order)
    return out


def as_pcap(frames: list[tuple[int, bytes]], order: str = "<", nano: bool = False) -> bytes:
    scale = 1000 if nano else 1
    return w.pcap_bytes(
        [w.Rec(ts // 1_000_000, ts % 1_000_000 * scale, buf) for ts, buf in frames],
        order=order,
        nano=nano,
    )


def run_cli(*args: str, stdin: bytes | None = None, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        **kw,
    )


@needs_shared
def test_same_events_from_every_container(tmp_path: Path) -> None:
    """One capture as pcap (both orders, µs and ns), pcapng, and compressed: same events."""
    frames = frames_of(SHARED / "dpkt__http.pcap")
    variants = {
        "le.pcap": as_pcap(frames),
        "be.pcap": as_pcap(frames, order=">"),
        "ns.pcap": as_pcap(frames, nano=True),
        "le.pcapng": as_pcapng(frames),
        "be.pcapng": as_pcapng(frames, order=">"),
    }
    variants["x.pcap.gz"] = gzip.compress(variants["le.pcap"])
    variants["x.pcapng.zst"] = zstandard.ZstdCompressor().compress(variants["le.pcapng"])
    variants["x.pcap.xz"] = lzma.compress(variants["le.pcap"])
    variants["x.pcapng.bz2"] = bz2.compress(variants["be.pcapng"])
    results = {}
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        results[name] = [strip_provenance(e) for e in read_events(str(path))]
    reference = [strip_provenance(e) for e in read_events(str(SHARED / "dpkt__http.pcap"))]
    datasets = Counter(e["event"]["dataset"] for e in reference)
    assert datasets == {"pcap_ingest.packet": 43, "pcap_ingest.flow": 3} and len(frames) == 43
    for name, events in results.items():
        assert events == reference, name


@needs_shared
def test_stdin_gives_the_same_events(tmp_path: Path) -> None:
    data = (SHARED / "scapy__http_chunk.pcap.gz").read_bytes()
    proc = run_cli("convert", "-", "-o", "-", "-q", "--ordered", stdin=data)
    assert proc.returncode == 0, proc.stderr
    from_stdin = [orjson.loads(line) for line in proc.stdout.splitlines()]
    from_file = list(read_events(str(SHARED / "scapy__http_chunk.pcap.gz")))
    assert [strip_provenance(e) for e in from_stdin] == [strip_provenance(e) for e in from_file]
    assert from_stdin[0]["pcap"]["file"] == "-"


def test_event_ids_are_stable_and_unique(tmp_path: Path) -> None:
    frames = [(1_700_000_000_000_000 + i, w.packet(60, seed=i)) for i in range(50)]
    path = tmp_path / "a.pcap"
    path.write_bytes(as_pcap(frames))
    first = [e["event"]["id"] for e in read_events(str(path))]
    again = [e["event"]["id"] for e in read_events(str(path))]
    assert first == again
    assert len(set(first)) == 50


def test_file_sink_rotation_and_atomic_names(tmp_path: Path) -> None:
    frames = [(1_700_000_000_000_000 + i, w.packet(200, seed=i)) for i in range(3000)]
    capture = tmp_path / "big.pcap"
    capture.write_bytes(as_pcap(frames))
    out = tmp_path / "out"
    run = convert([str(capture)], str(out), compression="none", rotate_bytes=100_000)
    (stats,) = run.files
    names = sorted(n for n in os.listdir(out) if not n.endswith(".manifest.json"))
    # Rotation is checked per written batch (1024 frames here): three files, each but the
    # last past the limit.
    assert len(names) == 3
    assert all((out / n).stat().st_size >= 100_000 for n in names[:-1])
    assert all(n.startswith("big.pcap.") and n.endswith(".ndjson") for n in names)
    assert not any(n.endswith(".partial") for n in names)
    lines = b"".join((out / n).read_bytes() for n in names).splitlines()
    assert len(lines) == 3000 == stats.events["anomaly"] + stats.events.get("packet", 0)
    assert [orjson.loads(x)["pcap"]["frame"] for x in lines] == list(range(1, 3001))


def test_no_overwrite_without_force(tmp_path: Path) -> None:
    capture = tmp_path / "a.pcap"
    capture.write_bytes(as_pcap([(1_000_000, w.packet(60))]))
    convert([str(capture)], str(tmp_path / "out"))
    with pytest.raises(InputError, match="output exists"):
        convert([str(capture)], str(tmp_path / "out"))
    convert([str(capture)], str(tmp_path / "out"), force=True)


def test_cli_usage_errors_are_one_line_exit_1(tmp_path: Path) -> None:
    not_capture = tmp_path / "notes.txt"
    not_capture.write_text("hello, this is not a capture\n")
    cases = [
        ("convert", str(tmp_path / "missing.pcap"), "-o", str(tmp_path / "o")),
        ("convert", str(not_capture), "-o", str(tmp_path / "o")),
        ("convert", "--no-such-flag", "x", "-o", "y"),
        ("convert", str(not_capture), "-o", str(tmp_path / "o"), "--extract", "bogus"),
        ("convert", str(tmp_path / "*.nomatch"), "-o", str(tmp_path / "o")),
        ("frobnicate",),
    ]
    for args in cases:
        proc = run_cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        err = proc.stderr.decode()
        assert err.count("\n") == 1 and "Traceback" not in err, (args, err)
        assert err.startswith("pcap-ingest: error:"), err


@needs_shared
def test_cli_exit_codes_and_stats_json(tmp_path: Path) -> None:
    good = SHARED / "dpkt__dns_icmp.pcap"
    cut = SHARED / "malformed" / "ndpi__fuzz-2021-10-13.pcap"
    stats_path = tmp_path / "stats.json"
    proc = run_cli("convert", str(good), "-o", str(tmp_path / "a"), "--stats-json", str(stats_path))
    assert proc.returncode == 0, proc.stderr
    assert b"total: 1 file(s), 32 frames" in proc.stderr
    proc = run_cli(
        "convert", str(good), str(cut), "-o", str(tmp_path / "b"), "--stats-json", str(stats_path)
    )
    assert proc.returncode == 2, proc.stderr
    assert b"not read whole" in proc.stderr and b"Traceback" not in proc.stderr
    stats = orjson.loads(stats_path.read_bytes())
    assert [f["status"] for f in stats["files"]] == ["ok", "partial"]
    for f in stats["files"]:
        assert f["frames"] == f["decoded"] + sum(f["anomalies"].values())
        assert set(f) >= {"path", "format", "frames", "status", "anomalies", "events"}
    assert stats["totals"]["frames"] == sum(f["frames"] for f in stats["files"])
    assert set(stats["totals"]) >= {"frames", "events", "anomalies", "seconds"}
    assert "packets_per_second" in stats["totals"]


@needs_shared
def test_cli_directory_recursive_and_extract(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.pcap").write_bytes((SHARED / "dpkt__http.pcap").read_bytes())
    (src / "sub" / "b.cap").write_bytes((SHARED / "zeek__5-pings.pcap").read_bytes())
    (src / "README").write_text("not a capture")
    proc = run_cli("convert", str(src), "-o", str(tmp_path / "flat"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "flat")) == ["a.pcap.manifest.json", "a.pcap.ndjson.zst"]
    proc = run_cli(
        "convert", str(src), "-R", "-o", str(tmp_path / "deep"), "-q", "--extract", "anomaly"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "deep")) == [
        "a.pcap.manifest.json",
        "a.pcap.ndjson.zst",
        "b.cap.manifest.json",
        "b.cap.ndjson.zst",
    ]
    assert read_ndjson_zst(tmp_path / "deep" / "a.pcap.ndjson.zst") == []


@needs_shared
def test_closed_stdout_pipe_ends_quietly() -> None:
    capture = SHARED / "nfstream__anydesk.pcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "convert", str(capture), "-o", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in err and b"Error" not in err, err


def test_anomaly_events_carry_what_was_decoded(tmp_path: Path) -> None:
    # An Ethernet + IPv4 frame whose TCP header is cut after 8 bytes.
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 48, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = bytes([0x04, 0xD2, 0, 80, 0, 0, 0, 1])
    path = tmp_path / "cut.pcap"
    path.write_bytes(as_pcap([(1_000_000, eth + ip + tcp)]))
    (event,) = read_events(str(path))
    assert event["event"]["dataset"] == "pcap_ingest.anomaly"
    assert event["error"] == {"type": "truncated", "message": "8 bytes left, header needs 20"}
    assert event["pcap"]["anomaly_layer"] == "tcp"
    assert event["source"]["ip"] == "10.0.0.1" and event["destination"]["ip"] == "10.0.0.2"
    assert event["source"]["mac"] == "02-00-00-00-00-01"


def test_timestamps_are_rfc3339_with_nanoseconds(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    path.write_bytes(w.pcap_bytes([w.Rec(1_700_000_000, 123_456_789, w.packet(60))], nano=True))
    (event,) = read_events(str(path))
    assert event["@timestamp"] == "2023-11-14T22:13:20.123456789Z"


def test_cli_stats_and_flow_options(tmp_path: Path) -> None:
    """`pcap-ingest stats` prints the table (or events), and convert's flow options reach the
    flow events; user errors are one line and exit 1."""
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 3000, seed=5)
    table = run_cli("stats", str(path), "--top", "3")
    assert table.returncode == 0, table.stderr
    text = table.stdout.decode()
    assert "Packets:          3,000" in text and "Top talkers by bytes" in text
    as_json = run_cli("stats", str(path), "--json", "--interval", "0.05")
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert lines[0]["event"]["dataset"] == "pcap_ingest.stats"
    assert lines[0]["network"]["packets"] == 3000 and len(lines) > 1
    missing = run_cli("stats", str(tmp_path / "nope.pcap"))
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    out = tmp_path / "o"
    done = run_cli(
        "convert", str(path), "-o", str(out), "-q", "-w", "0", "--extract", "flow,stats",
        "--flow-stats", "--max-flows", "5", "--stats-json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = read_ndjson_zst(out / "mix.pcap.ndjson.zst")
    flows = [e for e in events if e["event"]["dataset"] == "pcap_ingest.flow"]
    sized = [e for e in flows if "source_size" in e["pcap"]["flow"]]  # absent: it sent nothing
    assert len(sized) == sum(1 for e in flows if e["source"]["packets"]) > 0
    assert {e["event"]["dataset"] for e in events} == {"pcap_ingest.flow", "pcap_ingest.stats"}
    counters = json.loads((tmp_path / "s.json").read_text())["files"][0]["flows"]
    assert counters["evicted"] > 0 and counters["flows"] == len(flows)
    bad = run_cli("convert", str(path), "-o", str(out), "--tcp-timeout", "0", "--force")
    assert bad.returncode == 1 and b"--tcp-timeout must be positive" in bad.stderr
