"""Single-process conversion, packets/s, beside the naive dpkt converters in the same run.

Workload: the generated 'mix' capture (bench/conftest.py; 1M packets by default). Stages:
framing alone, framing + L2–L4 decode, and end to end (framing + decode + packet events +
orjson + zstd into a file). Compare figures only within one run: the machine is shared.
End to end means packet and anomaly events only (`PACKET_EXTRACT`), as when these figures
were first recorded; bench/test_bench_flows.py measures the flow layer's cost. MB/s here is
the capture file's bytes over the median round.

The end-to-end run is repeated on the other named workloads (`PROFILES`, 200k packets each:
``PCAP_INGEST_BENCH_PROFILE_PACKETS``), whose packet sizes and flow counts differ from the
mix's. With ``PCAP_INGEST_BENCH_PEERS=1`` (scripts/bench.sh --peers) the external peers run
too: tcpdump on the whole capture, tshark on its first 30k packets
(``PCAP_INGEST_BENCH_TSHARK_PACKETS``), each skipped with its reason when not installed.

Run: .venv/bin/pytest bench/test_bench_convert.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.conftest import (
    CACHE,
    PACKET_EXTRACT,
    PACKETS,
    QUICK,
    file_bytes,
    needs_peers,
    run_pedantic,
    workload,
)
from bench.peers import (
    naive_dpkt_fields,
    naive_dpkt_ndjson_zstd,
    pcap_slice,
    tcpdump_copy,
    tool,
    tshark_ek,
)
from pipeline.capture import Frame, open_capture
from pipeline.convert import convert
from pipeline.decode.packet import decode_packet

# The other named workloads (pipeline.gen.profiles), end to end in one process.
PROFILES = ("dns-heavy", "http-heavy", "tls-heavy", "small-flood", "many-flows")
PROFILE_PACKETS = (
    10_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_PROFILE_PACKETS", "200000"))
)
# tshark -T ek dissects ~10k packets/s: a slice keeps a round to a few seconds.
TSHARK_PACKETS = (
    2_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_TSHARK_PACKETS", "30000"))
)


def test_peer_naive_dpkt_fields(benchmark: Any, mix_capture: Path) -> None:
    run_pedantic(
        benchmark, lambda: naive_dpkt_fields(str(mix_capture)), PACKETS, file_bytes(mix_capture)
    )


def test_peer_naive_dpkt_ndjson_zstd(benchmark: Any, mix_capture: Path, tmp_path: Path) -> None:
    """The reference peer: every ratio in RESULTS.md, and --compare's normalisation, is
    against this benchmark of the same run."""
    out = str(tmp_path / "naive.ndjson.zst")
    run_pedantic(
        benchmark,
        lambda: naive_dpkt_ndjson_zstd(str(mix_capture), out),
        PACKETS,
        file_bytes(mix_capture),
    )


@needs_peers
def test_peer_tcpdump(benchmark: Any, mix_capture: Path) -> None:
    """``tcpdump -r FILE -w /dev/null`` on the whole capture: the C framing floor."""
    tcpdump = tool("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed (Debian: apt-get install tcpdump)")
    run_pedantic(
        benchmark, lambda: tcpdump_copy(tcpdump, str(mix_capture)), PACKETS, file_bytes(mix_capture)
    )
    benchmark.extra_info["command"] = "tcpdump -r FILE -w /dev/null"


@needs_peers
def test_peer_tshark_ek(benchmark: Any, mix_capture: Path) -> None:
    """``tshark -T ek -r FILE > /dev/null`` on the capture's first TSHARK_PACKETS packets
    (packets/s and MB/s are of that slice; its start-up, ~0.3 s, is in the time)."""
    tshark = tool("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian: apt-get install tshark)")
    packets = min(TSHARK_PACKETS, PACKETS)
    part = pcap_slice(mix_capture, CACHE / f"{mix_capture.stem}.first{packets}.pcap", packets)
    run_pedantic(benchmark, lambda: tshark_ek(tshark, str(part)), packets, file_bytes(part))
    benchmark.extra_info["command"] = "tshark -T ek -r FILE > /dev/null"
    benchmark.extra_info["slice"] = (
        f"first {packets:,} of {PACKETS:,} packets of {mix_capture.name}"
    )


def test_framing(benchmark: Any, mix_capture: Path) -> None:
    def frame_all() -> int:
        n = 0
        with open_capture(str(mix_capture)) as capture:
            for batch in capture.batches(1024):
                n += len(batch)
        return n

    run_pedantic(benchmark, frame_all, PACKETS, file_bytes(mix_capture))


def test_framing_and_decode(benchmark: Any, mix_capture: Path) -> None:
    def decode_all() -> int:
        n = 0
        with open_capture(str(mix_capture)) as capture:
            for batch in capture.batches(1024):
                for record in batch:
                    if record.__class__ is Frame:
                        decode_packet(record.link_type, record.data)
                n += len(batch)
        return n

    run_pedantic(benchmark, decode_all, PACKETS, file_bytes(mix_capture))


def test_end_to_end_single_process(benchmark: Any, mix_capture: Path, tmp_path: Path) -> None:
    """`pipeline.convert` in one process: framing + decode + packet events + zstd 3 to a file.

    The same path as ``pcap-ingest convert --workers 0 --extract packet,anomaly``: NDJSON
    lines from the records (`PacketLineEncoder`), compressed and written on the sink's writer
    thread. Pinned to packet and anomaly events (no flow records), so the figure means what
    it meant before the flow layer became part of the default extract.
    """

    def convert_all() -> None:
        run = convert([str(mix_capture)], str(tmp_path), force=True, extract=PACKET_EXTRACT)
        (stats,) = run.files
        assert stats.frames == PACKETS and stats.accounted

    run_pedantic(benchmark, convert_all, PACKETS, file_bytes(mix_capture))


@pytest.mark.parametrize("profile", PROFILES)
def test_end_to_end_profile(benchmark: Any, tmp_path: Path, profile: str) -> None:
    """The same end-to-end conversion as above on another named workload (PROFILE_PACKETS
    packets): DNS-heavy and small-flood are small packets (the per-packet cost shows),
    HTTP/TLS-heavy large ones, many-flows a new flow every few packets (the memo tables)."""
    capture = workload(PROFILE_PACKETS, profile=profile)

    def convert_all() -> None:
        run = convert([str(capture)], str(tmp_path), force=True, extract=PACKET_EXTRACT)
        (stats,) = run.files
        assert stats.frames == PROFILE_PACKETS and stats.accounted

    run_pedantic(benchmark, convert_all, PROFILE_PACKETS, file_bytes(capture))
    benchmark.extra_info["workload"] = profile


@pytest.mark.parametrize(
    ("dataset", "profile"),
    [("dns", "dns-heavy"), ("tls", "tls-heavy"), ("http", "http-heavy")],
    ids=["dns", "tls", "http"],
)
def test_extraction(benchmark: Any, tmp_path: Path, dataset: str, profile: str) -> None:
    """An extractor as users run it: `convert --extract DATASET` in one process on its
    workload — framing, decode, the flow table's reassembly for TLS and HTTP (and DNS over
    TCP), the extractor, its events and zstd. events/s counts its transactions or handshakes."""
    capture = workload(PROFILE_PACKETS, profile=profile)
    seen: dict[str, int] = {}

    def convert_all() -> None:
        run = convert([str(capture)], str(tmp_path), force=True, extract=(dataset,))
        (stats,) = run.files
        assert stats.frames == PROFILE_PACKETS and stats.accounted
        seen["events"] = stats.events[dataset]

    run_pedantic(benchmark, convert_all, PROFILE_PACKETS, file_bytes(capture))
    benchmark.extra_info["workload"] = profile
    benchmark.extra_info["events"] = seen["events"]
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["events_per_second"] = round(seen["events"] / stats.stats.median)
    assert seen["events"] > 0
