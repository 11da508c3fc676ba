"""The conversion loop: capture frames → decoded packets → ECS events → NDJSON → sinks.

This is the single-process runtime and the per-packet hot path; the multiprocess workers
(pipeline/runtime/worker.py) run the same `FrameConverter`. Its pieces are the seams:
framing yields `Frame` references, `decode_packet` is a pure function of (link type,
bytes), `EcsMapper` defines the ECS event (dicts, for the API) and `PacketLineEncoder`
writes the same events as NDJSON bytes (for files), and sinks receive whole chunks.

Work is done a batch of frames at a time: one ``b"".join`` and one sink write per batch keep
the per-packet cost at a decode and an encode (NOTES.md: per-record writes cost more
than the compression).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.capture import Capture, CaptureOpenError, Frame, FramingError, open_capture
from pipeline.capture.source import DecompressionLimits, decompression_limits
from pipeline.decode.packet import Packet, decode_packet
from pipeline.events.ecs import EcsMapper, capture_key, stats_event
from pipeline.events.ecs_lines import PacketLineEncoder
from pipeline.events.ocsf import OcsfMapper
from pipeline.extract import ExtractorAnomaly
from pipeline.extract.dns import DnsExtractor, DnsTransaction, transaction_frame
from pipeline.extract.http import HttpExtractor, HttpTransaction
from pipeline.extract.tls import TlsExtractor, TlsHandshake
from pipeline.flows.table import (
    ACTIVE_TIMEOUT_NS,
    OTHER_IDLE_TIMEOUT_NS,
    TCP_IDLE_TIMEOUT_NS,
    UDP_IDLE_TIMEOUT_NS,
    Flow,
    FlowTable,
    default_max_flows,
)
from pipeline.flows.tracker import FlowTracker, sweep_points
from pipeline.flows.traffic import MIN_INTERVAL_NS, TrafficStats
from pipeline.inputs import STDIN, InputError, expand_inputs
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.delivery import DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_SINK_TIMEOUT, Delivery
from pipeline.sinks.files import (
    COMPRESSIONS,
    DEFAULT_ZSTD_LEVEL,
    FileSink,
    Sink,
    StdoutSink,
    output_suffix,
)
from pipeline.sinks.network import is_network_output, open_network_sink, redact
from pipeline.stats import (
    QUARANTINE_SUFFIX,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_PARTIAL,
    FileStats,
    RunStats,
)

# Datasets `--extract` can name today; later extractors add theirs here.
DATASETS = ("packet", "anomaly", "flow", "stats", "dns", "tls", "http")
DEFAULT_EXTRACT = ("packet", "anomaly", "flow")
# Output schemas (`--schema`): ECS (pipeline/events/ecs.py) or OCSF 1.5.0 (events/ocsf.py).
SCHEMAS = ("ecs", "ocsf")
# Datasets OCSF has no event class for: refused with --schema ocsf (events/ocsf.py says why).
OCSF_UNMAPPED_DATASETS = ("stats",)
# Order key of the flows ended at end of input: after every frame.
END_OF_INPUT_KEY = 1 << 62
# Added to a DNS transaction's frame in its order key where it shares a sweep point (or the
# end of input) with flow records: the flows' go first. TLS handshakes follow the flows ended
# by the same frame or sweep the same way.
DNS_ORDER = 1 << 61
TLS_ORDER = 1 << 60
HTTP_ORDER = 1 << 59
# Extractor anomalies go after the events of the same step (lifted past HTTP's).
EXTRACTOR_ANOMALY_ORDER = 1 << 58
# Frames per batch: big enough to amortise the per-batch join/write/compress calls, small
# enough that a batch of 1500-byte frames stays within a few MiB.
DEFAULT_BATCH_FRAMES = 1024

_COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd", ".xz", ".bz2")


@dataclass(frozen=True)
class ConvertOptions:
    extract: tuple[str, ...] = DEFAULT_EXTRACT
    compression: str = "zstd"
    level: int = DEFAULT_ZSTD_LEVEL
    rotate_bytes: int | None = None
    force: bool = False  # replace existing output files
    batch_frames: int = DEFAULT_BATCH_FRAMES
    flow_stats: bool = False  # per-direction size and inter-arrival statistics on flows
    max_flows: int | None = None  # per flow table; None: sized to the machine
    tcp_timeout: float = TCP_IDLE_TIMEOUT_NS / 1e9  # seconds of capture time
    udp_timeout: float = UDP_IDLE_TIMEOUT_NS / 1e9
    other_timeout: float = OTHER_IDLE_TIMEOUT_NS / 1e9
    active_timeout: float = ACTIVE_TIMEOUT_NS / 1e9
    stats_interval: float | None = None  # seconds of capture time per stats event, or None
    schema: str = "ecs"  # one of SCHEMAS
    # Keep the numbers of the frames that became anomalies, and write them to
    # ``<stem>.quarantine.pcap`` beside the output (`write_quarantine`).
    quarantine: bool = False

    def validate(self) -> None:
        if self.schema not in SCHEMAS:
            raise InputError(f"unknown --schema {self.schema!r} (known: {', '.join(SCHEMAS)})")
        unmapped = [name for name in self.extract if name in OCSF_UNMAPPED_DATASETS]
        if self.schema == "ocsf" and unmapped:
            raise InputError(
                f"--schema ocsf: no OCSF event class for dataset(s) {', '.join(unmapped)} "
                "(use --schema ecs for them)"
            )
        unknown = [name for name in self.extract if name not in DATASETS]
        if unknown:
            raise InputError(
                f"unknown dataset(s) for --extract: {', '.join(unknown)} "
                f"(known: {', '.join(DATASETS)})"
            )
        if self.compression not in COMPRESSIONS:
            raise InputError(f"unknown --compress {self.compression!r} (known: zstd, none)")
        if not 1 <= self.level <= 22:
            raise InputError(f"--level must be 1..22, not {self.level}")
        if self.rotate_bytes is not None and self.rotate_bytes < 1:
            raise InputError("--rotate-size must be positive")
        if self.batch_frames < 1:
            raise InputError("batch size must be positive")
        if self.max_flows is not None and self.max_flows < 1:
            raise InputError("--max-flows must be positive")
        if self.stats_interval is not None and not self.stats_interval * 1e9 >= MIN_INTERVAL_NS:
            raise InputError("--stats-interval must be at least 0.001 seconds")
        for name in ("tcp_timeout", "udp_timeout", "other_timeout", "active_timeout"):
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive seconds")

    def flow_table(self, workers: int = 1, subscriber: Any = None) -> FlowTable:
        return FlowTable(
            self.max_flows if self.max_flows is not None else default_max_flows(workers),
            tcp_idle_ns=int(self.tcp_timeout * 1e9),
            udp_idle_ns=int(self.udp_timeout * 1e9),
            other_idle_ns=int(self.other_timeout * 1e9),
            active_ns=int(self.active_timeout * 1e9),
            spreads=self.flow_stats,
            subscriber=subscriber,
        )


def output_stem(path: str) -> str:
    """``dir/x.pcap.gz`` → ``x.pcap``: the source's name without its compression suffix."""
    if path == STDIN:
        return "stdin"
    name = os.path.basename(path)
    for suffix in _COMPRESSED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def plan_outputs(inputs: list[str], out_dir: str, options: ConvertOptions) -> list[str]:
    """One output stem per input, unique within the run; refuse to overwrite unless forced."""
    stems = output_stems(inputs)
    refuse_existing(stems, out_dir, options)
    return stems


def output_stems(inputs: list[str]) -> list[str]:
    """One output stem per input, unique within the run (``x.pcap``, ``x.pcap-2``, ...)."""
    stems: list[str] = []
    used: set[str] = set()
    for path in inputs:
        stem = output_stem(path)
        candidate, n = stem, 1
        while candidate in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate)
        stems.append(candidate)
    return stems


def refuse_existing(stems: list[str], out_dir: str, options: ConvertOptions) -> None:
    """Raise `InputError` if an output of these stems exists, unless forced."""
    if not options.force and os.path.isdir(out_dir):
        suffix = output_suffix(options.compression)
        existing = set(os.listdir(out_dir))
        for stem in stems:
            clash = [
                name
                for name in existing
                if name == stem + suffix
                or (
                    name.startswith(stem + ".")
                    and name.endswith(suffix)
                    and name[len(stem) + 1 : -len(suffix)].isdigit()
                )
            ]
            if clash:
                raise InputError(
                    f"output exists: {os.path.join(out_dir, sorted(clash)[0])} (use --force)"
                )


class CaptureSet:
    """The files of a capture set read so far: where each one's frames start in the set."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, str, str]] = []  # (frames before it, path, capture key)
        self._bases: list[int] = []
        self.frames = 0  # frames in the parts so far

    def add(self, path: str, key: str) -> int:
        """Start the next file; returns the number of frames before it."""
        self.parts.append((self.frames, path, key))
        self._bases.append(self.frames)
        return self.frames

    def count(self, frames: int) -> None:
        self.frames += frames

    def locate(self, index: int) -> tuple[str, str, int]:
        """A frame number in the set → (file, its capture key, frame number in the file)."""
        # Frames count from 1 in each file: frame `base + 1` is a file's first.
        base, path, key = self.parts[max(0, bisect_left(self._bases, index) - 1)]
        return path, key, index - base


class FrameConverter:
    """Turns batches of one capture's records into events, keeping that file's accounting.

    `run` is the per-packet hot loop. With ``serialise=True`` (the converter) every event is
    appended as its NDJSON line, written by `PacketLineEncoder` straight from the records;
    otherwise (the API) as its dict. Either way an event is finished as soon as it is built:
    holding a batch of 1024 event dicts made mapping 2.5x slower (allocator and cyclic-GC
    work on ~10k live containers).
    """

    def __init__(
        self,
        capture_name: str,
        stats: FileStats,
        options: ConvertOptions,
        serialise: bool,
        workers: int = 1,
    ) -> None:
        self.capture_name = capture_name
        self.stats = stats
        self.serialise = serialise
        self.schema = options.schema
        self.want_packet = "packet" in options.extract
        self.want_anomaly = "anomaly" in options.extract
        self.quarantine = options.quarantine
        stats.quarantine_asked = options.quarantine
        self.want_flow = "flow" in options.extract
        self.tls = TlsExtractor() if "tls" in options.extract else None
        self.dns = DnsExtractor() if "dns" in options.extract else None
        self.http = HttpExtractor() if "http" in options.extract else None
        # Extractors that read TCP streams subscribe to the flow table's reassembly.
        readers = [r for r in (self.tls, self.http, self.dns) if r is not None]
        self.extractors: list[TlsExtractor | HttpExtractor | DnsExtractor] = readers
        self.tracker = (
            FlowTracker(options.flow_table(workers, FanOut.of(readers)))
            if self.want_flow or readers
            else None
        )
        if self.dns is not None and self.tracker is not None:
            self.tracker.inner_udp = _dns_of(self.dns)
        self.traffic = (
            TrafficStats(
                None if options.stats_interval is None else int(options.stats_interval * 1e9)
            )
            if "stats" in options.extract
            else None
        )
        self.last_ts_ns = 0  # of the last frame, for framing errors (which carry no time)
        self._next_sweep_ns: int | None = None  # sweep points, when this process sees all frames
        self._packet_event: Callable[..., Any] | None = None
        self._flow_lines = False  # `_packet_event` takes the packet's flow (PacketLineEncoder)
        self._framing_event: Callable[[FramingError, int], Any] | None = None
        self._flow_event: Callable[[Flow], Any] | None = None
        self._dns_event: Callable[[DnsTransaction], Any] | None = None
        self._tls_event: Callable[[TlsHandshake], Any] | None = None
        self._http_event: Callable[[HttpTransaction], Any] | None = None
        self._extractor_anomaly_event: Callable[[ExtractorAnomaly], Any] | None = None
        self.capture_key = ""
        self.parts = CaptureSet()  # a capture set's files so far; empty for one capture

    def _start(self, first: Frame | FramingError | None) -> None:
        self.start_with_key(capture_key(first))

    def start_with_key(self, key: str) -> None:
        """Name the capture's events ``key-<frame>`` (the reader derived `key`)."""
        self.capture_key = key
        mapper: EcsMapper | OcsfMapper
        if self.schema == "ocsf":
            mapper = OcsfMapper(self.capture_name, key)
        else:
            mapper = EcsMapper(self.capture_name, key)
        where = self.parts.locate if self.parts.parts else None
        if self.serialise:
            if isinstance(mapper, EcsMapper):
                self._packet_event = PacketLineEncoder(mapper).line
                self._flow_lines = True
            else:  # no byte-level fast path for OCSF: the dict, then orjson (~2x the cost)
                packet = mapper.packet
                self._packet_event = lambda frame, pkt: _serialise(packet(frame, pkt))
            self._framing_event = lambda err, ts: _serialise(mapper.framing_error(err, ts))
            self._flow_event = lambda flow: _serialise(mapper.flow(flow, where))
            self._dns_event = lambda tx: _serialise(mapper.dns(tx))
            self._tls_event = lambda hs: _serialise(mapper.tls(hs, where))
            self._http_event = lambda tx: _serialise(mapper.http(tx, where))
            self._extractor_anomaly_event = lambda a: _serialise(mapper.extractor_anomaly(a, where))
        else:
            self._packet_event = mapper.packet
            self._framing_event = mapper.framing_error
            self._flow_event = lambda flow: mapper.flow(flow, where)
            self._dns_event = mapper.dns
            self._tls_event = lambda hs: mapper.tls(hs, where)
            self._http_event = lambda tx: mapper.http(tx, where)
            self._extractor_anomaly_event = lambda a: mapper.extractor_anomaly(a, where)

    def start_part(self, path: str, key: str, stats: FileStats) -> None:
        """Go on with the next file of a capture set: its own names and frame numbers, the
        same flows (the flow table counts frames through the set)."""
        base = self.parts.add(path, key)
        self.capture_name = path
        self.stats = stats
        self.start_with_key(key)
        if self.tracker is not None:
            self.tracker.table.index_base = base

    def run(
        self,
        batch: list[Frame | FramingError],
        append: Callable[[Any], None],
        indices: list[Any] | None = None,
        sweeps: list[tuple[int, int]] | None = None,
    ) -> None:
        """Append the events of `batch`; with `indices`, also each event's order key.

        An order key is the frame number for a frame's event, and ``(frame number, 0 or 1,
        first frame of the flow)`` for a flow event that goes before that frame (0: ended by
        a sweep, 1: ended by that frame): sorting by key gives the single-process order
        whatever the worker count. `sweeps` are the batch's sweep points when this process
        sees only some of the capture's frames (a worker); otherwise they are found here.
        """
        if self._packet_event is None:
            self._start(batch[0])
        packet_event = self._packet_event
        framing_event = self._framing_event
        assert packet_event is not None and framing_event is not None
        want_packet = self.want_packet
        want_anomaly = self.want_anomaly
        quarantine = self.quarantine
        decode = decode_packet
        frame_class = Frame
        flow_lines = self._flow_lines
        stats = self.stats
        anomalies = stats.anomalies
        decoded = 0
        anomaly_events = 0
        last_ts_ns = self.last_ts_ns
        tracker = self.tracker
        table = tracker.table if tracker is not None else None
        track = table.packet if table is not None else None
        traffic = self.traffic.add if self.traffic is not None else None
        dns = self.dns
        tls = self.tls
        http = self.http
        timed = tracker is not None or dns is not None  # something expires on capture time
        if timed and sweeps is None:
            sweeps, self._next_sweep_ns = sweep_points(batch, self._next_sweep_ns)
        pending_sweeps = (sweeps or []) if timed else []
        sweep_at = pending_sweeps[0][0] if pending_sweeps else END_OF_INPUT_KEY
        for record in batch:
            if record.__class__ is frame_class:
                if record.index >= sweep_at:  # type: ignore[union-attr]
                    sweep_at = self._sweep(pending_sweeps, record.index, append, indices)  # type: ignore[union-attr]
                pkt = decode(record.link_type, record.data)  # type: ignore[union-attr,arg-type]
                if traffic is not None:
                    traffic(record.ts_ns, record.origlen, pkt)  # type: ignore[union-attr]
                error = pkt.error
                if error is None:
                    decoded += 1
                    flow = None
                    if track is not None and pkt[7] is not None:
                        flow = track(record, pkt)  # type: ignore[arg-type]
                        if (
                            table.ended  # type: ignore[union-attr]
                            or (tls is not None and (tls.ended or tls.anomalies))
                            or (http is not None and (http.ended or http.anomalies))
                            or (dns is not None and (dns.ended or dns.anomalies))
                        ):
                            self._flow_events(
                                table.take_ended(), (record.index, 1), append, indices
                            )  # type: ignore[union-attr]
                    if want_packet:
                        if flow_lines:  # the encoder keeps its rendering on the flow
                            append(packet_event(record, pkt, flow))  # type: ignore[call-arg]
                        else:
                            append(packet_event(record, pkt))  # type: ignore[arg-type]
                        if indices is not None:
                            indices.append(record.index)
                    if (
                        dns is not None
                        and pkt[9] == 17
                        and (pkt[14] == 53 or pkt[15] == 53)
                        and not pkt[13]  # a first fragment: its datagram comes from the tracker
                    ):
                        dns.packet(record, pkt)
                        if dns.ended:
                            self._dns_events(dns.take_ended(), (record.index, 3), append, indices)
                        if dns.anomalies:
                            self._extractor_anomalies((record.index, 3), append, indices)
                else:
                    anomalies[error] += 1
                    if quarantine:
                        stats.quarantine_frame(record.index)  # type: ignore[union-attr]
                    if want_anomaly:
                        append(packet_event(record, pkt))  # type: ignore[arg-type]
                        anomaly_events += 1
                        if indices is not None:
                            indices.append(record.index)
            else:
                anomalies[record.reason] += 1  # type: ignore[union-attr]
                if quarantine:  # no frame was read: nothing to write to the quarantine pcap
                    stats.quarantine_unframed += 1
                if traffic is not None:
                    self._undecoded(batch, record)  # type: ignore[arg-type]
                if want_anomaly:
                    ts_ns = record.ts_ns  # type: ignore[union-attr]
                    if ts_ns < 0:
                        ts_ns = last_ts_ns = last_timestamp(batch, record, last_ts_ns)
                    append(framing_event(record, ts_ns))  # type: ignore[arg-type]
                    anomaly_events += 1
                    if indices is not None:
                        indices.append(record.index)
        if pending_sweeps:  # points past this worker's last frame of the batch
            self._sweep(pending_sweeps, END_OF_INPUT_KEY, append, indices)
        self.last_ts_ns = last_timestamp(batch, None, last_ts_ns)
        # Counters live in locals and are added once per batch, not once per packet.
        stats.frames += len(batch)
        stats.decoded += decoded
        if want_packet and decoded:
            stats.events["packet"] += decoded
        if anomaly_events:
            stats.events["anomaly"] += anomaly_events

    def _sweep(
        self,
        pending: list[tuple[int, int]],
        before: int,
        append: Callable[[Any], None],
        indices: list[Any] | None,
    ) -> int:
        """Run the sweeps due before frame `before`; return the next sweep point."""
        tracker = self.tracker
        while pending and pending[0][0] <= before:
            at, clock_ns = pending.pop(0)
            if tracker is not None:
                self._flow_events(tracker.sweep(clock_ns), (at, 0), append, indices)
            if self.dns is not None:
                self._dns_events(self.dns.sweep(clock_ns), (at, 0), append, indices)
        return pending[0][0] if pending else END_OF_INPUT_KEY

    def _flow_events(
        self,
        flows: list[Flow],
        key: tuple[int, int],
        append: Callable[[Any], None],
        indices: list[Any] | None,
    ) -> None:
        if self.want_flow:
            flow_event = self._flow_event
            assert flow_event is not None
            flows.sort(key=_first_index)
            for flow in flows:
                append(flow_event(flow))
                if indices is not None:
                    indices.append((*key, flow.first_index))
            self.stats.events["flow"] += len(flows)
        # Handshakes and transactions the same step finished (flows ending close their streams).
        if self.tls is not None and self.tls.ended:
            self._stream_events("tls", self.tls.take_ended(), _handshake_order, TLS_ORDER,
                                self._tls_event, key, append, indices)  # fmt: skip
        if self.http is not None and self.http.ended:
            self._stream_events("http", self.http.take_ended(), _transaction_order, HTTP_ORDER,
                                self._http_event, key, append, indices)  # fmt: skip
        if self.dns is not None and self.dns.ended:  # DNS over TCP, read from the streams
            self._dns_events(self.dns.take_ended(), key, append, indices)
        self._extractor_anomalies(key, append, indices)

    def _stream_events(
        self,
        dataset: str,
        records: list[Any],
        order: Callable[[Any], int],
        lift: int,
        event: Callable[[Any], Any] | None,
        key: tuple[int, int],
        append: Callable[[Any], None],
        indices: list[Any] | None,
    ) -> None:
        """Events of records a stream extractor finished in one step, in `order` (their
        flow, then their number), lifted past the flow records of the same step."""
        assert event is not None
        records.sort(key=order)
        for record in records:
            append(event(record))
            if indices is not None:
                indices.append((*key, lift + order(record)))
        self.stats.events[dataset] += len(records)

    def _extractor_anomalies(
        self, key: tuple[int, int], append: Callable[[Any], None], indices: list[Any] | None
    ) -> None:
        """Anomaly events of what the extractors could not read, counted per extractor
        (``<extractor>_anomalies``) whether or not the anomaly dataset is written."""
        for extractor in self.extractors:
            anomalies = extractor.anomalies
            if not anomalies:
                continue
            extractor.anomalies = []
            name = anomalies[0].extractor
            self.stats.extractors[f"{name}_anomalies"] += len(anomalies)
            if self.quarantine:
                for anomaly in anomalies:
                    self.stats.quarantine_frame(anomaly.frame_index)
            if not self.want_anomaly:
                continue
            event = self._extractor_anomaly_event
            if event is None:
                self._start(None)
                event = self._extractor_anomaly_event
            assert event is not None
            for anomaly in anomalies:
                append(event(anomaly))
                if indices is not None:
                    indices.append((*key, EXTRACTOR_ANOMALY_ORDER + anomaly.frame_index))
            self.stats.events["anomaly"] += len(anomalies)

    def _undecoded(self, batch: list[Frame | FramingError], record: FramingError) -> None:
        """A framing error in the traffic statistics, at the last good frame's time."""
        assert self.traffic is not None
        ts_ns = record.ts_ns
        if ts_ns < 0:
            ts_ns = last_timestamp(batch, record, -1)
        self.traffic.add_undecoded(ts_ns if ts_ns >= 0 else None)

    def _dns_events(
        self,
        transactions: list[DnsTransaction],
        key: tuple[int, int],
        append: Callable[[Any], None],
        indices: list[Any] | None,
    ) -> None:
        """DNS transaction events, ordered by their query's frame. At a sweep point and at end
        of input they go after the flows' (`DNS_ORDER` lifts their order keys past them)."""
        dns_event = self._dns_event
        if dns_event is None:
            self._start(None)
            dns_event = self._dns_event
        assert dns_event is not None
        transactions.sort(key=transaction_frame)
        lift = DNS_ORDER if key[1] < 2 else 0
        for tx in transactions:
            append(dns_event(tx))
            if indices is not None:
                indices.append((*key, lift + transaction_frame(tx)))
        self.stats.events["dns"] += len(transactions)

    def finish(
        self,
        append: Callable[[Any], None],
        indices: list[Any] | None = None,
        with_stats: bool = True,
    ) -> None:
        """End of input: the flows still open end now (their counters go to the file's
        statistics), then the traffic statistics events — unless `with_stats` is False (a
        worker: the coordinator merges every worker's `traffic` first)."""
        if self._flow_event is None:
            self._start(None)
        tracker = self.tracker
        if tracker is not None:
            self._flow_events(tracker.finish(), (END_OF_INPUT_KEY, 0), append, indices)
            self.stats.flows.update(tracker.counters())
        if self.dns is not None:
            self._dns_events(self.dns.flush(), (END_OF_INPUT_KEY, 0), append, indices)
            self.stats.extractors.update(self.dns.counters())
        if self.tls is not None:
            self.stats.extractors["tls_errors"] += self.tls.errors
        if self.http is not None:
            self.stats.extractors.update(self.http.counters)
        if self.traffic is not None and with_stats:
            name, key = self.capture_name, self.capture_key
            if self.parts.parts:  # a capture set: named after its first file
                name, key = self.parts.parts[0][1], self.parts.parts[0][2]
            events = stats_events(self.traffic, name, key)
            for event in events:
                append(_serialise(event) if self.serialise else event)
                if indices is not None:
                    indices.append((END_OF_INPUT_KEY, 1, 0))
            self.stats.events["stats"] += len(events)


def stats_events(traffic: TrafficStats, capture_name: str, key: str) -> list[dict[str, Any]]:
    """The traffic statistics events of one input: the whole capture, then each interval."""
    return [stats_event(summary, capture_name, key) for summary in traffic.summaries()]


def _serialise(event: dict[str, Any]) -> bytes:
    """One NDJSON line. orjson (3.13) returns its output in a block of 4–8 KiB whatever its
    length; the concatenation copies it into one of its own size, so the thousands of lines
    a flush at end of input holds cost their length, not 8 KiB each (measured)."""
    return orjson.dumps(event) + b"\n"


class ChunkWriter:
    """An `append` that hands lines to `write` joined, every `lines` of them: the flows open
    at end of input can be millions, and are written as they are made, not held."""

    def __init__(self, write: Callable[[bytes], None], lines: int = 4096) -> None:
        self._write = write
        self._limit = lines
        self._lines: list[bytes] = []

    def append(self, line: bytes) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._limit:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._write(b"".join(self._lines))
            self._lines.clear()


def _first_index(flow: Flow) -> int:
    return flow.first_index


class FanOut:
    """Several stream subscribers behind the flow table's one: each flow goes to those that
    want it, and is released when none wants more."""

    def __init__(self, readers: list[Any]) -> None:
        self.readers = readers
        self._wanting: dict[Any, list[Any]] = {}

    @staticmethod
    def of(readers: list[Any]) -> Any:
        if not readers:
            return None
        return readers[0] if len(readers) == 1 else FanOut(readers)

    def wants(self, flow: Any) -> bool:
        wanting = [r for r in self.readers if r.wants(flow)]
        if wanting:
            self._wanting[flow] = wanting
        return bool(wanting)

    def data(self, flow: Any, from_originator: bool, data: bytes) -> bool:
        wanting = self._wanting.get(flow)
        if not wanting:
            return False
        if len(wanting) == 1:  # most flows, once their first bytes told the others no
            if wanting[0].data(flow, from_originator, data) is False:
                del self._wanting[flow]
                return False
            return True
        wanting[:] = [r for r in wanting if r.data(flow, from_originator, data) is not False]
        if not wanting:
            del self._wanting[flow]
            return False
        return True

    def closed(self, flow: Any) -> None:
        for reader in self._wanting.pop(flow, ()):
            reader.closed(flow)


def _handshake_order(hs: TlsHandshake) -> int:
    """A handshake's place among those finished together: its flow, then its number."""
    return hs.flow.first_index * 16 + min(hs.number, 15)


def _dns_of(dns: DnsExtractor) -> Callable[[Frame, Packet], None]:
    """The flow tracker's hook for the UDP packets it makes (tunnels' inner packets,
    reassembled datagrams): DNS in them goes to the extractor, as outer DNS does."""
    packet = dns.packet

    def inner_dns(record: Frame, pkt: Packet) -> None:
        if pkt[14] == 53 or pkt[15] == 53:
            packet(record, pkt)

    return inner_dns


def _transaction_order(tx: HttpTransaction) -> int:
    """An HTTP transaction's place among those finished together: its flow, then its number
    (2**20 transactions per connection before two could tie, and a tie keeps worker order:
    one flow's events all come from one worker)."""
    return (tx.flow.first_index << 20) + min(tx.number, (1 << 20) - 1)


def order_key(key: int | tuple[int, int, int]) -> tuple[int, int, int]:
    """The sort key of an event's order key (see `FrameConverter.run`)."""
    return (key, 2, 0) if key.__class__ is int else key  # type: ignore[return-value]


def last_timestamp(
    batch: list[Frame | FramingError], before: FramingError | None, default: int
) -> int:
    """The timestamp of the last Frame in `batch` before `before` (or at all), else `default`.

    Looked up only where needed — once per batch and per framing error — so the hot loop
    does not track it per packet.
    """
    end = len(batch) if before is None else batch.index(before)
    for i in range(end - 1, -1, -1):
        record = batch[i]
        if isinstance(record, Frame):
            return record.ts_ns
    return default


# Cyclic GC thresholds while converting. The flow table keeps tens of thousands of live
# objects, and every full collection walks them all (0.8 s per 1M packets of the mix, 13 full
# collections, measured with gc callbacks); conversion makes next to no reference cycles, so
# collecting the young generation 70x less often and the old one 10x less often costs little
# memory and saves that time (bench/RESULTS.md).
GC_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """Conversion's GC thresholds for the duration (a library call restores the caller's)."""
    saved = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def convert_file(path: str, sink: Sink, options: ConvertOptions) -> FileStats:
    """Convert one capture into `sink` (which the caller closes or aborts)."""
    stats = FileStats(path=path)
    started = time.perf_counter()
    try:
        capture = open_capture(path)
    except CaptureOpenError as exc:
        stats.status = STATUS_FAILED
        stats.error = str(exc)
        stats.seconds = time.perf_counter() - started
        return stats
    with capture:
        converter = FrameConverter(capture.name, stats, options, serialise=True)
        _feed(capture, converter, sink, stats, options)
        _finish(converter, sink)
    stats.seconds = time.perf_counter() - started
    return stats


def _feed(
    capture: Capture,
    converter: FrameConverter,
    sink: Sink,
    stats: FileStats,
    options: ConvertOptions,
    first: list[Frame | FramingError] | None = None,
) -> None:
    """Run a capture's batches (`first` already read) through `converter` into `sink`."""
    stats.format = capture.format
    stats.compression = capture.compression
    batches = capture.batches(options.batch_frames)
    lines: list[bytes] = []
    batch = first
    while True:
        if batch is None:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as exc:
                # The reader turns bad records into FramingErrors; this is the backstop for a
                # failure below it (a decompressor giving up half-way): keep what was read.
                stats.status = STATUS_PARTIAL
                stats.error = f"read error: {exc!r}"
                break
        converter.run(batch, lines.append)
        batch = None
        if lines:
            sink.write(b"".join(lines))
            lines.clear()
    if capture.status != STATUS_OK and stats.status == STATUS_OK:
        stats.status = STATUS_PARTIAL
        stats.error = stats.framing_problems()


def _finish(converter: FrameConverter, sink: Sink) -> None:
    chunks = ChunkWriter(sink.write)
    converter.finish(chunks.append)
    chunks.flush()


def convert_set(paths: list[str], sink: Sink, options: ConvertOptions) -> list[FileStats]:
    """Convert consecutive captures (rotated files) as one: one output, one flow table, so a
    flow crossing a file boundary is one flow. Files go in order of their first timestamp;
    each keeps its own frame numbers, event ids and ``pcap.file``. A file that cannot be
    opened is reported failed and skipped."""
    started = time.perf_counter()
    opened: list[tuple[int, int, str]] = []
    first_keys: dict[str, str] = {}
    results: dict[str, FileStats] = {path: FileStats(path=path) for path in paths}
    for n, path in enumerate(paths):
        try:
            capture = open_capture(path)
        except CaptureOpenError as exc:
            results[path].status = STATUS_FAILED
            results[path].error = str(exc)
            continue
        batches = capture.batches(options.batch_frames)
        try:
            first: list[Frame | FramingError] | None = next(batches)
        except StopIteration:
            first = None
        except Exception:  # read again (and reported) when the file's turn comes
            first = None
        start = next((r.ts_ns for r in first or () if isinstance(r, Frame)), 1 << 62)
        capture.close()
        first_keys[path] = capture_key(first[0] if first else None)
        opened.append((start, n, path))
    opened.sort()
    converter: FrameConverter | None = None
    for _, _, path in opened:
        stats = results[path]
        with open_capture(path) as capture:
            if converter is None:
                converter = FrameConverter(capture.name, stats, options, serialise=True)
            converter.start_part(capture.name, first_keys[path], stats)
            _feed(capture, converter, sink, stats, options)
            converter.parts.count(stats.frames)
    if converter is not None:
        _finish(converter, sink)
    elapsed = time.perf_counter() - started
    for stats in results.values():
        stats.seconds = elapsed
    return [results[path] for path in paths]


def convert(
    inputs: Iterable[str] | str,
    out: str,
    *,
    recursive: bool = False,
    extract: Iterable[str] = DEFAULT_EXTRACT,
    compression: str | None = None,
    level: int = DEFAULT_ZSTD_LEVEL,
    rotate_bytes: int | None = None,
    force: bool = False,
    workers: int = 0,
    ordered: bool = False,
    batch_frames: int | None = None,
    progress: str | None = None,
    on_engine: Callable[[Any], None] | None = None,
    flow_stats: bool = False,
    max_flows: int | None = None,
    tcp_timeout: float = ConvertOptions.tcp_timeout,
    udp_timeout: float = ConvertOptions.udp_timeout,
    other_timeout: float = ConvertOptions.other_timeout,
    active_timeout: float = ConvertOptions.active_timeout,
    stats_interval: float | None = None,
    one_capture: bool = False,
    sink_timeout: float = DEFAULT_SINK_TIMEOUT,
    sink_buffer: int = DEFAULT_MAX_BUFFERED_BYTES,
    max_decompressed: int | None = None,
    max_decompression_ratio: float | None = None,
    worker_timeout: float | None = None,
    resume: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    schema: str = "ecs",
    quarantine: bool = False,
) -> RunStats:
    """Convert captures to NDJSON event files in directory `out` (or ``"-"``: stdout; or a
    network sink's URL, see `pipeline.sinks.network`: every input into that one sink, which
    gets `sink_timeout` seconds of outage and `sink_buffer` bytes of undelivered events; an
    outage past that raises `DeliveryError` with the count of events not delivered).

    One output per input, named after it (``x.pcap.gz`` → ``x.pcap.ndjson.zst``). Returns the
    run's statistics. Raises `InputError` for usage errors (missing input, unknown dataset,
    existing output without `force`) before anything is written. Output compression defaults
    to zstd for files and none for stdout.

    ``workers=0`` converts in this process; ``workers=N`` runs the multiprocess engine (one
    reader, N flow-affine workers; `ordered` makes the files byte-identical for any N, and
    `progress` is None, "tty" or "json"). `on_engine` receives the engine before it starts,
    so a caller can wire signals to its ``request_stop``. Raises
    `pipeline.runtime.engine.EngineFailed` when a process dies.

    Flow records (dataset ``flow``) take the flow options: `flow_stats` adds per-direction
    size and inter-arrival statistics, `max_flows` caps each flow table, and the timeouts
    are seconds of capture time (see `pipeline.flows.table`). Traffic statistics (dataset
    ``stats``) give one event per input and, with `stats_interval` (seconds of capture time),
    one per interval. `one_capture` converts the inputs as one capture set (rotated files:
    one output, flows across file boundaries; in this process, whatever `workers` says).

    Into a directory, every output stem gets a manifest (`pipeline.manifest`); `resume` skips
    the inputs whose manifests match and redoes the rest (directory output only). `executor`
    ``"dask"`` maps the inputs to the workers of the Dask cluster at `scheduler`
    (`pipeline.executors.dask`). `schema` is ``"ecs"`` or ``"ocsf"`` (OCSF 1.5.0 events,
    `pipeline.events.ocsf`; no ``stats`` dataset).

    `quarantine` writes every frame that became an anomaly (decode and extractor anomalies)
    to ``<stem>.quarantine.pcap`` beside the events (`write_quarantine`); directory output of
    files only: not with stdout, a network sink, stdin, `one_capture` or the dask executor.

    Hardening: a compressed input stops (status partial) past `max_decompressed` bytes of
    output or past `max_decompression_ratio` (default 1000:1, 0: off; see
    `pipeline.capture.source.DecompressionLimits`); with the
    engine, a worker that has work and makes no progress for `worker_timeout` seconds
    (default `pipeline.runtime.engine.DEFAULT_WORKER_TIMEOUT`) fails the run.
    """
    if isinstance(inputs, str):
        inputs = [inputs]
    if max_decompressed is not None and max_decompressed < 1:
        raise InputError("--max-decompressed must be positive")
    if max_decompression_ratio is None:
        max_decompression_ratio = DecompressionLimits.max_ratio
    elif not max_decompression_ratio >= 0:
        raise InputError("--max-decompression-ratio must be 0 (no limit) or more")
    limits = DecompressionLimits(max_ratio=max_decompression_ratio, max_bytes=max_decompressed)
    if worker_timeout is not None:
        if not worker_timeout > 0:
            raise InputError("--worker-timeout must be positive seconds")
        on_engine = _with_worker_timeout(on_engine, worker_timeout)
    network = is_network_output(out)
    if network and compression not in (None, "none"):
        raise InputError(
            "--compress applies to files and stdout; a network sink compresses its own way"
        )
    if compression is None:
        compression = "none" if out == "-" or network else "zstd"
    options = ConvertOptions(
        extract=tuple(extract),
        compression=compression,
        level=level,
        rotate_bytes=rotate_bytes,
        force=force,
        flow_stats=flow_stats,
        max_flows=max_flows,
        tcp_timeout=tcp_timeout,
        udp_timeout=udp_timeout,
        other_timeout=other_timeout,
        active_timeout=active_timeout,
        stats_interval=stats_interval,
        schema=schema,
        quarantine=quarantine,
    )
    options.validate()
    if workers < 0:
        raise InputError(f"--workers must be 0 or more, not {workers}")
    paths = expand_inputs(list(inputs), recursive=recursive)
    if quarantine:
        _check_quarantine(out, network, executor, one_capture, paths)
    if resume or executor != "local":
        _check_directory_run(out, network, resume, force, executor, scheduler, paths)
    if executor == "dask":
        from pipeline.executors.dask import convert_on_dask

        assert scheduler is not None
        return convert_on_dask(paths, out, options, scheduler, resume=resume,
                               one_capture=one_capture, progress=progress,
                               limits=limits)  # fmt: skip
    shared: Any = None
    if network:
        if sink_timeout <= 0 or sink_buffer <= 0:
            raise InputError("--sink-timeout and --sink-buffer must be positive")
        try:
            shared = open_network_sink(out, Delivery(sink_timeout, sink_buffer))
        except (ValueError, OSError) as exc:
            raise InputError(str(exc)) from None
        except ImportError as exc:
            raise InputError(f"{redact(out)}: {exc} (pip install 'pcap-ingest[kafka]')") from None
    try:
        with decompression_limits(limits):
            run = _convert_to(paths, out, options, shared, workers, ordered, batch_frames,
                              progress, on_engine, one_capture, resume)  # fmt: skip
    except BaseException:
        if shared is not None:
            shared.abort()
        raise
    if shared is not None:
        shared.close()  # every event acknowledged, or DeliveryError
        run.sink = {"url": redact(out), "counters": shared.counters()}
    return run


def _with_worker_timeout(
    on_engine: Callable[[Any], None] | None, seconds: float
) -> Callable[[Any], None]:
    """`on_engine`, first setting the engine's watchdog timeout (before it starts)."""

    def hook(engine: Any) -> None:
        engine.engine.worker_timeout = seconds
        if on_engine is not None:
            on_engine(engine)

    return hook


def _convert_to(
    paths: list[str],
    out: str,
    options: ConvertOptions,
    shared: Sink | None,
    workers: int,
    ordered: bool,
    batch_frames: int | None,
    progress: str | None,
    on_engine: Callable[[Any], None] | None,
    one_capture: bool,
    resume: bool = False,
) -> RunStats:
    if out == "-" or shared is not None:
        return _convert_planned(paths, out, options, shared, workers, ordered, batch_frames,
                                progress, on_engine, one_capture)  # fmt: skip
    from pipeline.manifest import ManifestWriter

    paths, stems, skipped = plan_directory(paths, out, options, resume, one_capture)
    if one_capture:
        units = {stems[0]: paths} if paths else {}
    else:
        units = {stem: [path] for path, stem in zip(paths, stems, strict=True)}
    manifests = ManifestWriter(out, options, units)
    try:
        if not paths:
            run = RunStats()
        else:
            run = _convert_planned(paths, out, options, None, workers, ordered, batch_frames,
                                   progress, on_engine, one_capture, stems, manifests)  # fmt: skip
    finally:
        manifests.close()
    run.skipped = skipped
    return run


def _check_quarantine(
    out: str, network: bool, executor: str, one_capture: bool, paths: list[str]
) -> None:
    """Usage errors of `--quarantine`: its pcap goes beside the events in an output directory,
    and is made by reading the input a second time."""
    if out == "-" or network:
        raise InputError("--quarantine needs an output directory (-o DIR): its pcap goes there")
    if executor != "local":
        raise InputError(f"--quarantine is not supported with --executor {executor}")
    if one_capture:
        raise InputError("--quarantine is not supported with --one-capture")
    if STDIN in paths:
        raise InputError("--quarantine reads each input twice: not standard input")


def write_quarantine(stats: FileStats, out_dir: str, stem: str) -> None:
    """After a file's events are written: its anomalous frames (`FileStats.quarantine_frames`)
    to ``<stem>.quarantine.pcap`` in `out_dir`, read again from the input, in frame order, as
    `pcap-ingest extract` writes frames. No file when there are none, nor for an input that
    failed or was interrupted. The pcap is added to the file's outputs (so its manifest lists
    it); a failure to write it is recorded in `FileStats.quarantine_error`, not raised."""
    from pipeline.capture import CaptureOpenError
    from pipeline.carve import ExtractError, write_frames

    frames, stats.quarantine_frames = stats.quarantine_frames, []
    stats.quarantine_asked = True
    if not frames or stats.status not in (STATUS_OK, STATUS_PARTIAL):
        return
    path = os.path.join(out_dir, stem + QUARANTINE_SUFFIX)
    try:
        stats.quarantined = write_frames(stats.path, frames, path)
    except (ExtractError, CaptureOpenError, OSError) as exc:
        stats.quarantine_error = f"{path}: {exc}"
        return
    stats.quarantine_path = path
    stats.outputs.append(path)


def _check_directory_run(
    out: str,
    network: bool,
    resume: bool,
    force: bool,
    executor: str,
    scheduler: str | None,
    paths: list[str],
) -> None:
    """Usage errors of `--resume` and `--executor`: both write manifests beside files in an
    output directory, so they need one (not stdout, not a network sink) and file inputs."""
    what = "--resume" if resume else f"--executor {executor}"
    if executor not in ("local", "dask"):
        raise InputError(f"unknown --executor {executor!r} (known: local, dask)")
    if executor == "dask" and not scheduler:
        raise InputError("--executor dask needs --scheduler tcp://HOST:PORT")
    if out == "-" or network:
        raise InputError(f"{what} needs an output directory (-o DIR): manifests live there")
    if resume and force:
        raise InputError("--resume and --force together: --resume redoes what does not match")
    if STDIN in paths and (resume or executor != "local"):
        raise InputError(f"{what} reads files, not standard input")


def plan_directory(
    paths: list[str], out: str, options: ConvertOptions, resume: bool, one_capture: bool
) -> tuple[list[str], list[str], list[FileStats]]:
    """For output into directory `out`: the inputs to convert, their stems (one, the set's,
    with `one_capture`), and the accounting of the inputs `resume` skips (their manifests
    match; the stale files of the others are removed). Without `resume`, refuses existing
    outputs unless forced."""
    from pipeline.manifest import file_stats_from_manifest, plan_resume

    if one_capture:
        if STDIN in paths:
            raise InputError("--one-capture reads files, not standard input")
        units = {output_stem(paths[0]) + ".set": list(paths)}
    else:
        units = {stem: [path] for path, stem in zip(paths, output_stems(paths), strict=True)}
    skipped: list[FileStats] = []
    if resume:
        plan = plan_resume(units, out, options, output_suffix(options.compression))
        for manifest in plan.skipped.values():
            skipped += file_stats_from_manifest(manifest, out)
        units = {stem: units[stem] for stem in plan.todo}
    else:
        refuse_existing(list(units), out, options)
    return [path for group in units.values() for path in group], list(units), skipped


def _convert_planned(
    paths: list[str],
    out: str,
    options: ConvertOptions,
    shared: Sink | None,
    workers: int,
    ordered: bool,
    batch_frames: int | None,
    progress: str | None,
    on_engine: Callable[[Any], None] | None,
    one_capture: bool,
    stems: list[str] | None = None,
    manifests: Any = None,
) -> RunStats:
    if one_capture:
        with gc_tuned():
            return _convert_one_capture(paths, out, options, shared, manifests)
    if workers > 0:
        from pipeline.runtime.engine import DEFAULT_BATCH_FRAMES, Engine, EngineOptions

        engine = Engine(
            paths,
            out,
            options,
            EngineOptions(
                workers=workers,
                ordered=ordered,
                batch_frames=batch_frames or DEFAULT_BATCH_FRAMES,
                progress=progress,
            ),
            shared_sink=shared,
            stems=stems,
            manifests=manifests,
        )
        if on_engine is not None:
            on_engine(engine)
        return engine.run()
    with gc_tuned():
        return _convert_files(paths, out, options, shared, stems, manifests)


def _convert_files(
    paths: list[str],
    out: str,
    options: ConvertOptions,
    shared: Sink | None = None,
    stems: list[str] | None = None,
    manifests: Any = None,
) -> RunStats:
    """`convert` in this process, one output per input (or all into `shared`, which the
    caller closes). `stems`: the inputs' output stems, planned by the caller; `manifests`:
    a `pipeline.manifest.ManifestWriter`, told when each input starts and is finished."""
    run = RunStats()
    started = time.perf_counter()
    if shared is not None:
        for path in paths:
            run.files.append(convert_file(path, shared, options))
    elif out == "-":
        stdout = BackgroundSink(StdoutSink(options.compression, options.level))
        try:
            for path in paths:
                run.files.append(convert_file(path, stdout, options))
        except BaseException:
            stdout.abort()
            raise
        stdout.close()
    else:
        if stems is None:
            stems = plan_outputs(paths, out, options)
        os.makedirs(out, exist_ok=True)
        for path, stem in zip(paths, stems, strict=True):
            if manifests is not None:
                manifests.started(path)
            sink = BackgroundSink(
                FileSink(out, stem, options.compression, options.level, options.rotate_bytes)
            )
            try:
                stats = convert_file(path, sink, options)
            except BaseException:
                sink.abort()
                raise
            if stats.status == STATUS_FAILED:
                sink.abort()
            else:
                sink.close()
            stats.outputs = list(sink.paths)
            if options.quarantine:
                write_quarantine(stats, out, stem)
            run.files.append(stats)
            if manifests is not None:
                manifests.finished(stats)  # after the sink's close: the manifest comes last
    run.seconds = time.perf_counter() - started
    return run


def _convert_one_capture(
    paths: list[str],
    out: str,
    options: ConvertOptions,
    shared: Sink | None = None,
    manifests: Any = None,
) -> RunStats:
    """`convert` for a capture set: one output, named after the first input + ``.set``."""
    if STDIN in paths:
        raise InputError("--one-capture reads files, not standard input")
    run = RunStats()
    started = time.perf_counter()
    if shared is not None:
        files = convert_set(paths, shared, options)
        for stats in files:
            stats.outputs = []
        run.files = files
        run.seconds = time.perf_counter() - started
        return run
    if out == "-":
        sink: Any = BackgroundSink(StdoutSink(options.compression, options.level))
    else:
        stem = output_stem(paths[0]) + ".set"
        refuse_existing([stem], out, options)
        os.makedirs(out, exist_ok=True)
        sink = BackgroundSink(
            FileSink(out, stem, options.compression, options.level, options.rotate_bytes)
        )
    if manifests is not None:
        manifests.started(paths[0])
    try:
        files = convert_set(paths, sink, options)
    except BaseException:
        sink.abort()
        raise
    if all(stats.status == STATUS_FAILED for stats in files):
        sink.abort()
    else:
        sink.close()
    outputs = list(getattr(sink, "paths", []))
    for stats in files:
        stats.outputs = outputs
        if manifests is not None:
            manifests.finished(stats)
    run.files = files
    run.seconds = time.perf_counter() - started
    return run


def read_events(path: str, extract: Iterable[str] = DEFAULT_EXTRACT) -> Iterator[dict[str, Any]]:
    """Yield the event dicts of one capture, lazily, in frame order.

    The scripting counterpart of `convert`: ``for ev in read_events("x.pcap"): ...``.
    Raises `CaptureOpenError` if the file cannot be opened as a capture.
    """
    options = ConvertOptions(extract=tuple(extract))
    options.validate()
    with open_capture(path) as capture:
        converter = FrameConverter(capture.name, FileStats(path=path), options, serialise=False)
        for batch in capture.batches(options.batch_frames):
            events: list[dict[str, Any]] = []
            converter.run(batch, events.append)
            yield from events
        events = []
        converter.finish(events.append)
        yield from events
