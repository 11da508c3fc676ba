"""`pcap-ingest stats`: traffic statistics of captures, as a text table or as ECS events.

The edges around the pure accumulator (pipeline/flows/traffic.py): `collect` reads one capture
in this process and feeds it frame by frame; `render_table` writes what capinfos and
``tshark -z io,stat`` / ``-z endpoints,ip`` users look for; `stats_command` is the command.

`stats_event`, the schema mapper, lives with the other ECS mappers in pipeline/events/ecs.py.

The stats event (one per input, and one per interval with ``--interval``):

================================  ===========================================================
``@timestamp``                    capture: first packet; interval: its start
``ecs.version``                   as in packet events
``event.kind``, ``.category``,    ``metric``, ``["network"]``, ``["info"]``,
``.type``, ``.dataset``,          ``pcap_ingest.stats``, ``pcap_ingest``
``.module``
``event.id``                      ``<capture key>-stats`` (capture),
                                  ``<capture key>-stats-<interval ns>-<interval number>``
``event.start``, ``.end``         capture: first and last packet; interval: ``[start, end)``
``event.duration``                ns: last - first packet, or the interval
``network.packets``, ``.bytes``   frames read (framing errors included) and bytes on the wire
``pcap.file``                     the capture path, as in packet events
``pcap.stats.scope``              ``capture`` or ``interval``
``pcap.stats.interval_s``,        interval only: its length in seconds (the requested one,
``.interval_index``               doubled as often as `MAX_INTERVALS` needed), and
                                  floor(start / interval)
``pcap.stats.anomalies``          frames that did not fully decode, plus framing errors
``pcap.stats.<class>_packets``,   per protocol class, outermost view: ipv4, ipv6, arp,
``<class>_bytes``                 other_l3, undecoded (these five add up to all frames); tcp,
                                  udp, icmp, icmpv6, sctp, gre, esp, other_l4, no_l4 (these
                                  add up to the IPv4 and IPv6 packets)
``pcap.stats.pps_mean``,          packets and bits per second of capture time (capture: over
``.bps_mean``                     first to last packet, as capinfos; absent for one instant)
``pcap.stats.pps_peak``,          packets in the busiest capture-time window (aligned to whole
``.peak_window_s``                seconds) per second; the window is 1 s unless more than
                                  `MAX_WINDOWS` seconds were seen; absent when the capture or
                                  interval is shorter than a window
``pcap.stats.packet_size_mean``   bytes / packets
``pcap.stats.top_talkers``        ``[{ip, packets, bytes, tx_packets, tx_bytes, rx_packets,
                                  rx_bytes}]`` by bytes; an address counts every IP packet
                                  it sends (tx) or receives (rx), as tshark's endpoints do
``pcap.stats.talkers_tracked``,   addresses counted; whether the table hit its cap (then top
``.talkers_overflow``,            talkers are the top of a deterministic sample), and the
``.talkers_untracked_packets``,   endpoint packets and bytes of addresses not in it
``.talkers_untracked_bytes``
``pcap.stats.top_destination_``   ``[{transport, port, packets, bytes}]`` by packets: the
``ports``                         destination port of every TCP, UDP, UDP-Lite, SCTP packet
``pcap.stats.ports_tracked``,     as for talkers
``.ports_overflow``,
``.ports_untracked_packets``,
``.ports_untracked_bytes``
================================  ===========================================================
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple, TextIO

import orjson

from pipeline.capture import Capture, CaptureOpenError, Frame, open_capture
from pipeline.decode.packet import decode_packet
from pipeline.events.ecs import capture_key, format_timestamp, ip_text, stats_event, transport_name
from pipeline.flows.traffic import (
    DEFAULT_TOP,
    L3_CLASSES,
    MIN_INTERVAL_NS,
    NS,
    PROTOCOL_CLASSES,
    TrafficStats,
    TrafficSummary,
)
from pipeline.inputs import InputError, expand_inputs

# Exit codes, as pipeline/cli.py and the README define them (not imported: the CLI imports us).
EXIT_OK = 0
EXIT_USAGE = 1  # missing file, not a capture, bad option: one line on stderr, nothing printed
EXIT_INCOMPLETE = 2  # a capture was cut short or corrupt: what could be read is reported
# Frames per batch read from the capture (as the converter reads them).
BATCH_FRAMES = 4096


class CaptureTraffic(NamedTuple):
    """What `collect` learnt from one capture."""

    stats: TrafficStats
    key: str  # the capture key that names its events (pipeline.events.ecs.capture_key)
    problem: str | None  # why the capture was not read whole, or None


def collect(
    capture: Capture, interval_ns: int | None = None, top: int = DEFAULT_TOP
) -> CaptureTraffic:
    """Read `capture` to its end in this process and count every record.

    A frame is decoded and counted (an anomaly if decoding stopped early); a record the
    reader could not frame is counted as an undecoded frame at the last good frame's time.
    """
    stats = TrafficStats(interval_ns, top)
    add = stats.add
    decode = decode_packet
    frame_class = Frame
    key: str | None = None
    last_ts_ns: int | None = None
    framing: Counter[str] = Counter()
    problem: str | None = None
    batches = capture.batches(BATCH_FRAMES)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as exc:
            # As convert_file does: a failure below the framing (a decompressor giving up
            # half-way) keeps what was read.
            problem = f"read error: {exc!r}"
            break
        if key is None and batch:
            key = capture_key(batch[0])
        for record in batch:
            if record.__class__ is frame_class:
                last_ts_ns = record.ts_ns
                add(last_ts_ns, record.origlen, decode(record.link_type, record.data))  # type: ignore[union-attr,arg-type]
            else:
                framing[record.reason] += 1  # type: ignore[union-attr]
                ts_ns = record.ts_ns if record.ts_ns >= 0 else last_ts_ns
                stats.add_undecoded(ts_ns)
    if problem is None and framing:
        problem = "partly unreadable: " + ", ".join(
            f"{n} {reason}" for reason, n in sorted(framing.items())
        )
    return CaptureTraffic(stats, key if key is not None else capture_key(None), problem)


# ---------------------------------------------------------------------- the text table


def _si(value: float, unit: str) -> str:
    """1234567 → "1.23 M<unit>" (decimal prefixes, as capinfos and tshark write rates)."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    -"


def _time(ts_ns: int | None) -> str:
    return "n/a" if ts_ns is None else format_timestamp(ts_ns)


def _interval_start(ts_ns: int) -> str:
    # Milliseconds are enough to tell intervals apart (they are at least MIN_INTERVAL_NS).
    return format_timestamp(ts_ns)[:23].replace("T", " ")


def render_table(summaries: Sequence[TrafficSummary], name: str) -> str:
    """A readable report of one capture: totals, protocols, talkers, ports, intervals."""
    lines = [f"Capture: {name}"]
    if not summaries:
        lines.append("  no packets")
        return "\n".join(lines) + "\n"
    whole, intervals = summaries[0], summaries[1:]
    packets = whole.packets
    lines += [
        f"  Packets:          {packets:,}   (anomalies: {whole.anomalies:,})",
        f"  Bytes:            {whole.bytes:,}",
        f"  First packet:     {_time(whole.start_ns)}",
        f"  Last packet:      {_time(whole.end_ns)}",
        f"  Duration:         {whole.duration_ns / NS:.6f} s",
    ]
    if whole.pps_mean is not None and whole.bps_mean is not None:
        lines.append(
            f"  Average rate:     {whole.pps_mean:,.2f} packets/s, {_si(whole.bps_mean, 'bit/s')}"
        )
    else:
        lines.append("  Average rate:     n/a (all packets at one instant)")
    if whole.pps_peak is not None:
        window = whole.peak_window_ns / NS
        lines.append(
            f"  Peak rate:        {whole.pps_peak:,.2f} packets/s (busiest {window:g} s window)"
        )
    lines.append(f"  Average packet:   {whole.bytes / packets:,.2f} bytes")

    lines += ["", f"  {'Protocol':<12}{'Packets':>14}{'%':>8}{'Bytes':>18}{'%':>8}"]
    for protocol in PROTOCOL_CLASSES:
        count, nbytes = whole.protocols[protocol]
        if not count:
            continue
        label = protocol if protocol in L3_CLASSES else "  " + protocol
        lines.append(
            f"  {label:<12}{count:>14,}{_percent(count, packets):>8}"
            f"{nbytes:>18,}{_percent(nbytes, whole.bytes):>8}"
        )
    lines.append(f"  (indented: transport of the outermost IP header; % of all {packets:,} frames)")

    if whole.talkers:
        lines += [
            "",
            f"  {'Top talkers by bytes':<40}{'Packets':>10}{'Bytes':>16}"
            f"{'Tx bytes':>16}{'Rx bytes':>16}",
        ]
        for t in whole.talkers:
            lines.append(
                f"  {ip_text(t.ip):<40}{t.packets:>10,}{t.bytes:>16,}"
                f"{t.tx_bytes:>16,}{t.rx_bytes:>16,}"
            )
        lines.append(
            _table_note(
                "addresses",
                whole.talkers_tracked,
                whole.talkers_overflow,
                f"{whole.talkers_untracked_bytes:,} bytes",
            )
        )
    if whole.ports:
        lines += ["", f"  {'Top destination ports':<24}{'Packets':>10}{'%':>8}{'Bytes':>16}"]
        for p in whole.ports:
            label = f"{transport_name(p.protocol)}/{p.port}"
            lines.append(
                f"  {label:<24}{p.packets:>10,}{_percent(p.packets, packets):>8}{p.bytes:>16,}"
            )
        lines.append(
            _table_note(
                "ports",
                whole.ports_tracked,
                whole.ports_overflow,
                f"{whole.ports_untracked_packets:,} packets",
            )
        )

    if intervals:
        interval_ns = intervals[0].interval_ns or 0
        lines += [
            "",
            f"  Intervals of {interval_ns / NS:g} s (capture time, UTC; empty intervals omitted)",
            f"  {'Start':<25}{'Packets':>10}{'Bytes':>14}{'Packets/s':>12}{'Bits/s':>15}"
            f"{'TCP':>9}{'UDP':>9}{'Other':>9}  Top talker",
        ]
        if intervals[0].talkers_overflow:
            lines.append("  (per-interval talkers hit their table cap: top talkers are sampled)")
        for s in intervals:
            tcp = s.protocols["tcp"][0]
            udp = s.protocols["udp"][0]
            other = s.packets - tcp - udp
            talker = ip_text(s.talkers[0].ip) if s.talkers else "-"
            lines.append(
                f"  {_interval_start(s.start_ns or 0):<25}{s.packets:>10,}{s.bytes:>14,}"
                f"{s.pps_mean or 0:>12,.1f}{_si(s.bps_mean or 0, 'bit/s'):>15}"
                f"{tcp:>9,}{udp:>9,}{other:>9,}  {talker}"
            )
    return "\n".join(lines) + "\n"


def _table_note(what: str, tracked: int, overflow: bool, untracked: str) -> str:
    if overflow:
        return (
            f"  (table full at {tracked:,} {what}: the list is the top of a sample; "
            f"{untracked} to other {what} not itemised)"
        )
    return f"  ({tracked:,} {what} in all)"


# ---------------------------------------------------------------------- the command


def _say(message: str) -> None:
    print(f"pcap-ingest: {message}", file=sys.stderr)


def _interval_ns(interval_s: float | None) -> int | None:
    if interval_s is None:
        return None
    if not (math.isfinite(interval_s) and interval_s * NS >= MIN_INTERVAL_NS):
        raise InputError(
            f"--interval must be at least {MIN_INTERVAL_NS / NS:g} s, not {interval_s}"
        )
    return round(interval_s * NS)


def stats_command(
    paths: list[str], interval_s: float | None, top: int, as_json: bool, out: TextIO
) -> int:
    """`pcap-ingest stats FILE…`: a table per capture on `out` (or, `as_json`, NDJSON events).

    Returns 0 when every capture was read whole; 1 on a usage error (missing file, not a
    capture, bad option: one line on stderr, nothing on `out`); 2 when a capture was cut short
    or corrupt (its statistics cover what could be read, and stderr says what was not).
    """
    try:
        interval_ns = _interval_ns(interval_s)
        if top < 0:
            raise InputError(f"--top must be 0 or more, not {top}")
        captures = expand_inputs(list(paths))
    except InputError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    status = EXIT_OK
    for n, path in enumerate(captures):
        try:
            capture = open_capture(path)
        except CaptureOpenError as exc:  # it passed expand_inputs, then went away
            _say(f"error: {exc}")
            return EXIT_USAGE
        with capture:
            traffic = collect(capture, interval_ns, top)
        if traffic.problem is not None:
            _say(f"{path}: {traffic.problem}")
            status = EXIT_INCOMPLETE
        summaries = traffic.stats.summaries()
        if as_json:
            for summary in summaries:
                event = stats_event(summary, capture.name, traffic.key)
                out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE).decode())
        else:
            if n:
                out.write("\n")
            out.write(render_table(summaries, capture.name))
    return status
