"""Single-process conversion, packets/s, beside the naive dpkt converters in the same run.

Workload: the generated 'mix' capture (bench/conftest.py; 1M packets by default). Stages:
framing alone, framing + L2–L4 decode, and end to end (framing + decode + packet events +
orjson + zstd into a file). Compare figures only within one run: the machine is shared.
End to end means packet and anomaly events only (`PACKET_EXTRACT`), as when these figures
were first recorded; bench/test_bench_flows.py measures the flow layer's cost.

Run: .venv/bin/pytest bench/test_bench_convert.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.conftest import PACKET_EXTRACT, PACKETS, run_pedantic
from bench.peers import naive_dpkt_fields, naive_dpkt_ndjson_zstd
from pipeline.capture import Frame, open_capture
from pipeline.convert import convert
from pipeline.decode.packet import decode_packet


def test_peer_naive_dpkt_fields(benchmark: Any, mix_capture: Path) -> None:
    run_pedantic(benchmark, lambda: naive_dpkt_fields(str(mix_capture)), PACKETS)


def test_peer_naive_dpkt_ndjson_zstd(benchmark: Any, mix_capture: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "naive.ndjson.zst")
    run_pedantic(benchmark, lambda: naive_dpkt_ndjson_zstd(str(mix_capture), out), PACKETS)


def test_framing(benchmark: Any, mix_capture: Path) -> None:
    def frame_all() -> int:
        n = 0
        with open_capture(str(mix_capture)) as capture:
            for batch in capture.batches(1024):
                n += len(batch)
        return n

    run_pedantic(benchmark, frame_all, PACKETS)


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

    run_pedantic(benchmark, decode_all, PACKETS)


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

    run_pedantic(benchmark, convert_all, PACKETS)
