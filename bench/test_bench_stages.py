"""Each stage of the pipeline alone, in packets/s and MB/s, on inputs prepared outside the timing.

The data path, in order, and where each stage is measured:

- framing: test_bench_convert.py::test_framing (and test_bench_framing.py); MB/s of the file
- routing: `test_stage_routing` (`BatchRouter.split`: `route_batch` + the per-worker split)
- L2–L4 decode: `test_stage_decode` (`decode_packet`); MB/s of the captured bytes
- flow table: test_bench_flows.py::test_stage_flow_table
- reassembly: `test_stage_reassembly` (`StreamReassembler` on ooo-holes); MB/s of TCP payload
- DNS / HTTP / TLS extraction: test_bench_convert.py::test_extraction (`convert --extract X`)
- schema mapping: `test_stage_mapping` (`EcsMapper.packet` dicts, the API path)
- flow events: test_bench_flows.py::test_stage_flow_events; MB/s of the NDJSON out
- serialisation: `test_stage_serialisation` (`PacketLineEncoder`: the converter's path)
- compression: `test_stage_compression` (zstd level 3, 4096-line chunks); MB/s of NDJSON in
- sinks: bench/test_bench_sink_{kafka,bulk,syslog}.py, events/s against local servers

Workloads: the first ``STAGE_PACKETS`` records (200k; ``PCAP_INGEST_BENCH_STAGE_PACKETS``) of
the 'mix' capture for decode, mapping, serialisation and compression (what they need is held in
memory: ~0.5 GB at 200k); the whole mix for routing (it holds only columns); an 'ooo-holes'
capture (100k packets, 2k connections; ``PCAP_INGEST_BENCH_REASSEMBLY_PACKETS``) for
reassembly. packets/s always counts the workload's frames over the stage's time, so stages can
be set side by side; a stage that sees fewer (reassembly: TCP segments) says so in
``extra_info``. Each round starts cold (a new mapper, router or reassembler set), as a run does.

Run: .venv/bin/pytest bench/test_bench_stages.py --benchmark-only --benchmark-json=OUT.json
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from bench.conftest import PACKETS, QUICK, ROUNDS, file_bytes, record_throughput, workload
from pipeline.capture import Frame, open_capture
from pipeline.capture.columns import FrameColumns
from pipeline.decode.packet import Packet, decode_packet
from pipeline.events.ecs import EcsMapper, capture_key
from pipeline.events.ecs_lines import PacketLineEncoder
from pipeline.flows.reassembly import StreamReassembler
from pipeline.runtime.engine import DEFAULT_BATCH_FRAMES
from pipeline.runtime.reader import BatchRouter

STAGE_PACKETS = min(PACKETS, int(os.environ.get("PCAP_INGEST_BENCH_STAGE_PACKETS", "200000")))
REASSEMBLY_PACKETS = (
    10_000 if QUICK else int(os.environ.get("PCAP_INGEST_BENCH_REASSEMBLY_PACKETS", "100000"))
)
# 50 packets a connection, as the flows benchmarks' ooo-holes (whose quick capture this reuses).
REASSEMBLY_FLOWS = REASSEMBLY_PACKETS // 50
ROUTING_WORKERS = 2  # the engine's worker count on this 2-core machine
ZSTD_LEVEL = 3  # the file sink's default (pipeline.sinks.files.DEFAULT_ZSTD_LEVEL)
CHUNK_LINES = 4096  # lines per sink write, as pipeline.convert.ChunkWriter joins them
SYN, FIN = 0x02, 0x01
PROTO_TCP = 6


class _Discard:
    """A file object that drops what it is given: compression alone, no I/O."""

    def write(self, data: bytes) -> int:
        return len(data)


def _first_frames(path: Path, packets: int) -> list[Frame]:
    frames: list[Frame] = []
    with open_capture(str(path)) as capture:
        for batch in capture.batches(1024):
            frames += [record for record in batch if record.__class__ is Frame]  # type: ignore[misc]
            if len(frames) >= packets:
                break
    return frames[:packets]


@pytest.fixture(scope="module")
def stage_frames(mix_capture: Path) -> list[Frame]:
    """The slice's frames, with their bytes."""
    return _first_frames(mix_capture, STAGE_PACKETS)


@pytest.fixture(scope="module")
def stage_decoded(stage_frames: list[Frame]) -> list[tuple[Frame, Packet]]:
    return [(frame, decode_packet(frame.link_type, frame.data)) for frame in stage_frames]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stage_key(stage_frames: list[Frame]) -> str:
    return capture_key(stage_frames[0])


@pytest.fixture(scope="module")
def stage_lines(
    stage_decoded: list[tuple[Frame, Packet]], stage_key: str, mix_capture: Path
) -> list[bytes]:
    line = PacketLineEncoder(EcsMapper(mix_capture.name, stage_key)).line
    return [line(frame, pkt) for frame, pkt in stage_decoded]


def _captured_bytes(frames: list[Frame]) -> int:
    return sum(frame.caplen for frame in frames)


# -- routing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def routing_columns(mix_capture: Path) -> Iterator[tuple[Any, list[FrameColumns]]]:
    """The whole mix as the reader's column batches (no packet bytes), its mapping open."""
    with open_capture(str(mix_capture), with_data=False) as capture:
        yield capture.mapping, list(capture.column_batches(DEFAULT_BATCH_FRAMES))


def test_stage_routing(
    benchmark: Any, routing_columns: tuple[Any, list[FrameColumns]], mix_capture: Path
) -> None:
    """The reader's routing alone: `BatchRouter.split` (vectorised `route_batch` flow hashes,
    the scalar fallback, one `WorkBatch` per worker) over framed column batches, for 2
    workers. test_bench_engine's reader ceiling is this plus framing."""
    mapping, batches = routing_columns

    def route_all() -> int:
        router = BatchRouter(0, ROUTING_WORKERS, mapping)
        n = 0
        for batch_no, columns in enumerate(batches):
            router.split(batch_no, columns)
            n += len(columns)
        router.close()
        return n

    benchmark.pedantic(route_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    frames = sum(len(columns) for columns in batches)
    record_throughput(benchmark, frames, file_bytes(mix_capture))
    benchmark.extra_info["workers"] = ROUTING_WORKERS


# -- decode, mapping, serialisation, compression ---------------------------------------------


def test_stage_decode(benchmark: Any, stage_frames: list[Frame]) -> None:
    """L2–L4 decoding alone (`decode_packet`) over frames framed beforehand."""

    def decode_all() -> None:
        decode = decode_packet
        for frame in stage_frames:
            decode(frame.link_type, frame.data)  # type: ignore[arg-type]

    benchmark.pedantic(decode_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    record_throughput(
        benchmark, len(stage_frames), _captured_bytes(stage_frames), "captured packet bytes"
    )


def test_stage_mapping(
    benchmark: Any,
    stage_decoded: list[tuple[Frame, Packet]],
    stage_key: str,
    mix_capture: Path,
) -> None:
    """Schema mapping to dicts: `EcsMapper.packet` for every decoded frame (the API path,
    `read_events`); each event is dropped at once, as the converter finishes each."""

    def map_all() -> None:
        packet = EcsMapper(mix_capture.name, stage_key).packet
        for frame, pkt in stage_decoded:
            packet(frame, pkt)

    benchmark.pedantic(map_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    frames = [frame for frame, _ in stage_decoded]
    record_throughput(benchmark, len(frames), _captured_bytes(frames), "captured packet bytes")


def test_stage_serialisation(
    benchmark: Any,
    stage_decoded: list[tuple[Frame, Packet]],
    stage_key: str,
    mix_capture: Path,
) -> None:
    """NDJSON lines straight from the records (`PacketLineEncoder.line`): the converter's
    mapping and serialisation in one step, byte-identical to `orjson.dumps` of the dicts."""
    out: dict[str, int] = {}

    def encode_all() -> None:
        line = PacketLineEncoder(EcsMapper(mix_capture.name, stage_key)).line
        out["bytes"] = sum(len(line(frame, pkt)) for frame, pkt in stage_decoded)

    benchmark.pedantic(encode_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    record_throughput(
        benchmark, len(stage_decoded), out["bytes"], "NDJSON lines out", len(stage_decoded)
    )


def test_stage_compression(benchmark: Any, stage_lines: list[bytes]) -> None:
    """zstd level 3 over the slice's NDJSON, in the chunks the sink is given (4096 lines
    joined), into a discarding writer: compression without I/O."""
    chunks = [
        b"".join(stage_lines[i : i + CHUNK_LINES]) for i in range(0, len(stage_lines), CHUNK_LINES)
    ]
    counter = _Discard()
    out: dict[str, int] = {}

    def compress_all() -> None:
        writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(
            counter, closefd=False, write_return_read=True
        )
        for chunk in chunks:
            writer.write(chunk)
        writer.flush(zstandard.FLUSH_FRAME)
        out["compressed"] = writer.tell()

    benchmark.pedantic(compress_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    raw = sum(len(chunk) for chunk in chunks)
    record_throughput(benchmark, len(stage_lines), raw, "NDJSON in, uncompressed")
    benchmark.extra_info["compressed_bytes"] = out["compressed"]
    benchmark.extra_info["compression_ratio"] = round(raw / max(1, out["compressed"]), 2)


# -- reassembly ------------------------------------------------------------------------------

Segment = tuple[tuple[bytes, bytes, int, int], int, int, bytes]


def _tcp_segments(path: Path) -> tuple[int, list[Segment]]:
    """Every TCP segment of the capture in capture order: (direction, flags, seq, payload)."""
    frames = 0
    segments: list[Segment] = []
    with open_capture(str(path)) as capture:
        for batch in capture.batches(1024):
            for record in batch:
                if record.__class__ is not Frame:
                    continue
                frames += 1
                data: bytes = record.data  # type: ignore[union-attr,assignment]
                pkt = decode_packet(record.link_type, data)  # type: ignore[union-attr]
                if pkt.error is not None or pkt.protocol != PROTO_TCP or pkt.is_fragment:
                    continue
                if pkt.tcp_flags is None or pkt.payload_offset is None:
                    continue
                direction = (pkt.src_ip, pkt.dst_ip, pkt.src_port, pkt.dst_port)
                payload = data[pkt.payload_offset : pkt.payload_end]
                segments.append((direction, pkt.tcp_flags, pkt.tcp_seq, payload))  # type: ignore[arg-type]
    return frames, segments


@pytest.fixture(scope="module")
def ooo_segments() -> tuple[int, list[Segment]]:
    return _tcp_segments(workload(REASSEMBLY_PACKETS, profile="ooo-holes", flows=REASSEMBLY_FLOWS))


def test_stage_reassembly(benchmark: Any, ooo_segments: tuple[int, list[Segment]]) -> None:
    """`StreamReassembler` alone: every TCP direction of the ooo-holes capture (reordered,
    duplicated segments; holes that are never filled) fed as the flow table feeds it — SYN
    sets the base, data and FIN segments go to `segment` — then every stream flushed.
    Default per-stream buffer cap (1 MiB); no table budget (test_bench_flows has that)."""
    frames, segments = ooo_segments
    seen: dict[str, int] = {}

    def reassemble_all() -> None:
        streams: dict[Any, StreamReassembler] = {}
        delivered = 0
        for direction, flags, seq, payload in segments:
            stream = streams.get(direction)
            if stream is None:
                stream = streams[direction] = StreamReassembler()
            if flags & SYN:
                stream.syn(seq)
                seq = (seq + 1) & 0xFFFFFFFF  # data on a SYN follows it, as the table does
            if payload or flags & FIN:
                delivered += len(stream.segment(seq, payload, bool(flags & FIN)))
        for stream in streams.values():
            delivered += len(stream.flush())
        seen["delivered"] = delivered
        seen["missed"] = sum(stream.missed_bytes for stream in streams.values())
        seen["streams"] = len(streams)

    benchmark.pedantic(reassemble_all, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    payload_bytes = sum(len(segment[3]) for segment in segments)
    record_throughput(benchmark, frames, payload_bytes, "TCP payload fed")
    benchmark.extra_info["workload"] = f"ooo-holes, {REASSEMBLY_FLOWS} connections"
    benchmark.extra_info["segments"] = len(segments)
    benchmark.extra_info["streams"] = seen["streams"]
    benchmark.extra_info["delivered_bytes"] = seen["delivered"]
    benchmark.extra_info["missed_bytes"] = seen["missed"]
    # Every byte fed once is delivered or missed (holes); the rest were re-sent duplicates.
    assert seen["delivered"] > 0 and seen["delivered"] <= payload_bytes
