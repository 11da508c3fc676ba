"""Run accounting: per input file and in total, as `--stats-json` writes it.

The invariant every conversion keeps, per file: ``frames == decoded + sum(anomalies)``. Every
frame the reader saw is either decoded into a packet, or reported as an anomaly with a typed
reason — never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"  # read whole
STATUS_PARTIAL = "partial"  # read until a corrupt or cut-short record, what was read is kept
STATUS_FAILED = "failed"  # nothing could be read
STATUS_INTERRUPTED = "interrupted"  # SIGINT/SIGTERM stopped the reading; output kept as .partial
# `convert --quarantine`: frame numbers kept per file for the quarantine pcap. 1,000,000 is
# 8 MB of list in the converting process (and once more in the coordinator with workers): a
# capture that is mostly anomalies is better looked at with `extract --time-from/--time-to`.
# Frames past it are counted in `quarantine_dropped`, not written.
QUARANTINE_MAX_FRAMES = 1_000_000
# `--quarantine`'s pcap of a stem's anomalous frames, beside ``<stem>.ndjson.zst``.
QUARANTINE_SUFFIX = ".quarantine.pcap"


@dataclass
class FileStats:
    path: str
    format: str = ""
    compression: str = ""
    frames: int = 0
    decoded: int = 0
    status: str = STATUS_OK
    anomalies: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    flows: Counter[str] = field(default_factory=Counter)  # flow table counters (FlowTracker)
    extractors: Counter[str] = field(default_factory=Counter)  # e.g. dns_messages
    outputs: list[str] = field(default_factory=list)
    error: str | None = None  # why the file is partial or failed, one line
    seconds: float = 0.0
    # `--quarantine`: the numbers of the frames that became anomalies (a frame can appear more
    # than once), capped at QUARANTINE_MAX_FRAMES; the pcap they were written to, how many
    # frames it holds, and what could not be written (records the reader could not frame, the
    # numbers past the cap; an error writing the pcap).
    quarantine_asked: bool = False
    quarantine_frames: list[int] = field(default_factory=list)
    quarantine_dropped: int = 0
    quarantine_unframed: int = 0
    quarantined: int = 0
    quarantine_path: str | None = None
    quarantine_error: str | None = None

    def quarantine_frame(self, index: int) -> None:
        """Keep frame `index` for the quarantine pcap, within QUARANTINE_MAX_FRAMES."""
        if len(self.quarantine_frames) < QUARANTINE_MAX_FRAMES:
            self.quarantine_frames.append(index)
        else:
            self.quarantine_dropped += 1

    def add_quarantine(self, frames: list[int], dropped: int, unframed: int) -> None:
        """A worker's share of the file's quarantined frames (the engine's coordinator)."""
        self.quarantine_unframed += unframed
        room = QUARANTINE_MAX_FRAMES - len(self.quarantine_frames)
        self.quarantine_frames += frames[:room]
        self.quarantine_dropped += dropped + max(0, len(frames) - room)

    @property
    def anomaly_count(self) -> int:
        return sum(self.anomalies.values())

    def framing_problems(self) -> str:
        """One line on why the capture's records could not all be read, from the anomalies."""
        reasons = [
            r
            for r in ("length_error", "truncated", "malformed", "limit_exceeded")
            if self.anomalies.get(r)
        ]
        return "capture records: " + ", ".join(reasons) if reasons else "corrupt capture records"

    @property
    def accounted(self) -> bool:
        return self.frames == self.decoded + self.anomaly_count

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "compression": self.compression,
            "frames": self.frames,
            "decoded": self.decoded,
            "status": self.status,
            "anomalies": dict(sorted(self.anomalies.items())),
            "events": dict(sorted(self.events.items())),
            "flows": dict(sorted(self.flows.items())),
            "extractors": dict(sorted(self.extractors.items())),
            "outputs": self.outputs,
            "error": self.error,
            "seconds": round(self.seconds, 6),
            **({"quarantine": self.quarantine_json()} if self.quarantine_asked else {}),
        }

    def quarantine_json(self) -> dict[str, Any]:
        """`--stats-json`'s ``quarantine`` of a file converted with --quarantine: the pcap
        (null when no frame needed it), frames written, and anomalies left out of it."""
        return {
            "path": self.quarantine_path,
            "frames": self.quarantined,
            "not_quarantined": {
                "unframed": self.quarantine_unframed,
                "over_limit": self.quarantine_dropped,
            },
            "error": self.quarantine_error,
        }


@dataclass
class RunStats:
    files: list[FileStats] = field(default_factory=list)
    seconds: float = 0.0
    # A network sink's name (URL without password) and its counters, when the run had one.
    sink: dict[str, Any] | None = None
    # Inputs `--resume` left alone (their manifests matched), with the accounting recorded
    # there; not counted in `files` or the totals of this run's work.
    skipped: list[FileStats] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    @property
    def events(self) -> int:
        return sum(sum(f.events.values()) for f in self.files)

    @property
    def anomalies(self) -> int:
        return sum(f.anomaly_count for f in self.files)

    @property
    def complete(self) -> bool:
        return all(f.status == STATUS_OK for f in self.files + self.skipped)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [f.to_json() for f in self.files],
            "totals": {
                "files": len(self.files),
                "frames": self.frames,
                "events": self.events,
                "anomalies": self.anomalies,
                "seconds": round(self.seconds, 6),
                "packets_per_second": round(self.frames / self.seconds) if self.seconds else 0,
            },
            **({"sink": self.sink} if self.sink is not None else {}),
            **({"skipped": [f.to_json() for f in self.skipped]} if self.skipped else {}),
        }

    def summary(self) -> str:
        """The one-screen summary printed on stderr at the end of a run."""
        lines = []
        shown = self.files if len(self.files) <= 20 else self.files[:10] + self.files[-5:]
        width = min(60, max([len(f.path) for f in shown] + [5]))
        lines.append(
            f"{'input':<{width}} {'format':<12} {'frames':>10} {'events':>10} "
            f"{'anomalies':>9}  status"
        )
        for i, f in enumerate(shown):
            if len(self.files) > 20 and i == 10:
                lines.append(f"... {len(self.files) - 15} more files ...")
            name = f.path if len(f.path) <= width else "..." + f.path[-(width - 3) :]
            fmt = f.format + ("" if f.compression in ("", "none") else f"+{f.compression}")
            lines.append(
                f"{name:<{width}} {fmt:<12} {f.frames:>10} {sum(f.events.values()):>10} "
                f"{f.anomaly_count:>9}  {f.status}" + (f" ({f.error})" if f.error else "")
            )
        rate = self.frames / self.seconds if self.seconds else 0.0
        lines.append(
            f"total: {len(self.files)} file(s), {self.frames} frames, {self.events} events, "
            f"{self.anomalies} anomalies in {self.seconds:.2f} s ({rate:,.0f} packets/s)"
        )
        if self.skipped:
            lines.append(skipped_line(len(self.skipped)))
        if self.sink is not None:
            counters = self.sink.get("counters", {})
            lines.append(
                f"sink: {self.sink['url']}: {counters.get('delivered', 0)} events delivered"
                + "".join(
                    f", {name} {counters[name]}"
                    for name in ("retries", "rejected", "resent")
                    if counters.get(name)
                )
            )
        reasons: Counter[str] = Counter()
        for f in self.files:
            reasons.update(f.anomalies)
        if reasons:
            lines.append("anomalies: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
        flows: Counter[str] = Counter()
        for f in self.files:
            flows.update(f.flows)
        if flows["flows"]:
            evicted = flows["evicted"]
            lines.append(
                f"flows: {flows['flows']}"
                + (f", {evicted} evicted at the --max-flows cap" if evicted else "")
                + (
                    f", {flows['tunnelled_packets']} packets in tunnels"
                    if flows["tunnelled_packets"]
                    else ""
                )
                + (
                    f", {flows['datagrams_reassembled']} fragmented datagrams reassembled"
                    if flows["datagrams_reassembled"]
                    else ""
                )
            )
        quarantined = [f for f in self.files if f.quarantine_asked]
        if quarantined:
            lines.append(
                f"quarantine: {sum(f.quarantined for f in quarantined)} anomalous frames written "
                f"to {sum(f.quarantine_path is not None for f in quarantined)} pcap(s)"
                + "".join(
                    f"; {f.path}: {f.quarantine_error}" for f in quarantined if f.quarantine_error
                )
            )
        incomplete = [f for f in self.files + self.skipped if f.status != STATUS_OK]
        if incomplete:
            lines.append(
                f"{len(incomplete)} input(s) not read whole: what could be read was converted"
            )
        return "\n".join(lines)


def skipped_line(n: int) -> str:
    return f"skipped {n} input{'s' if n != 1 else ''} already converted (manifests match)"
