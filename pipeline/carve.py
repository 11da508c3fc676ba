"""`pcap-ingest extract`: back from events to the packets behind them, written as a pcap.

Our events carry their provenance (``pcap.file``, ``pcap.frame``, ``pcap.last_frame``,
``network.community_id``, the addresses, ``@timestamp``), so an analyst who found something
in the SIEM can hand its event id back and get the packets for Wireshark. Selections, all
optional but at least one, combine as AND; each repeatable one is an OR of its values:

=========================  ==================================================================
``--event-id ID``          looked up in ``--events FILE...`` (.ndjson or .ndjson.zst, by magic
                           number). A packet or anomaly event selects its frame; a DNS event
                           its query and response frames; a flow event every packet of the
                           flow: the frames of its capture from ``pcap.frame`` to
                           ``pcap.last_frame`` with its community id
``--community-id CID``     packets with that Community ID (the outer one, or the tunnelled
                           flow's inner one, as flow events carry)
``--tuple P:A:AP:B:BP``    protocol (name or number), two endpoints, either direction; ``*``
                           for any address or port, IPv6 addresses in brackets; for ICMP the
                           type and code stand in for the ports, as in the Community ID
``--time-from/--time-to``  capture time, both ends included: ISO 8601 (UTC unless it says
                           otherwise, up to nanoseconds) or epoch seconds
=========================  ==================================================================

The captures read are the ones named on the command line, else the ``pcap.file`` of the
events asked for. An event id starts with the key of its capture (a hash of its first frame,
`pipeline.events.ecs.capture_key`), so events are matched to captures by content, never by
path: a capture moved, recompressed or converted to pcapng still matches, and a different
file at the recorded path is refused instead of yielding the wrong packets.

Output format (decided): classic pcap through dpkt's `dpkt.pcap.Writer`, one link type, the
original timestamps to the nanosecond (a nanosecond pcap when any selected timestamp is not a
whole microsecond, else a microsecond pcap, which every tool reads) and the original wire
lengths. Selected packets of different link types are refused with one line: mixing them
needs pcapng, and dpkt's `dpkt.pcapng.Writer` writes microsecond timestamps only, which would
lose the nanoseconds this command promises. Narrow the selection (one capture, a tuple).

Selected frames are spooled to a temporary file until the whole selection is known (its link
types and timestamp precision decide the pcap header), so nothing is written under the output
name unless the selection can be written whole; the file appears as ``OUT.partial`` and is
renamed when complete.

Known limits: a flow of a capture set (``--one-capture``, ``pcap.last_file``) is refused; a
later IP fragment is matched through its datagram's first fragment (community id, tuple),
so a fragment captured before its first fragment is not selected by them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import sys
import tempfile
from array import array
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from ipaddress import ip_address
from typing import IO, Any

import dpkt
import orjson
import zstandard

from pipeline.capture import CaptureOpenError, Frame, open_capture
from pipeline.capture.pcap import MAX_CAPLEN, MAX_CAPLEN_BY_LINKTYPE, PCAP_MAGICS
from pipeline.capture.pcapng import SHB_MAGIC
from pipeline.decode.packet import Packet, decode_packet
from pipeline.decode.transport import TRANSPORT_NAMES
from pipeline.decode.tunnel import decapsulate
from pipeline.events.community_id import PROTO_ICMP, PROTO_ICMPV6, CommunityIdCache
from pipeline.events.ecs import capture_key
from pipeline.flows.defrag import MAX_PENDING_FRAGMENTS, Defragmenter

# Private helpers of the flow tracker, reused so fragments are read exactly as it reads them.
from pipeline.flows.tracker import _datagram_packet, _ip_payload
from pipeline.inputs import STDIN, InputError, expand_inputs

# Exit codes, as pipeline/cli.py and the README define them (not imported: the CLI imports us).
EXIT_OK = 0
EXIT_USAGE = 1  # a missing file, an unknown event id, an existing output: one line, no output
EXIT_INCOMPLETE = 2  # a capture was cut short or corrupt: the packets that could be read are out

NS = 1_000_000_000
# Frames per batch read from a capture (as the converter and `stats` read them).
BATCH_FRAMES = 4096
# Bytes copied at a time from the spool to the output.
COPY_CHUNK = 1 << 20
# A classic pcap record's seconds are unsigned 32 bits: times before 1970 or from 2106 on
# (a corrupt or strange capture) cannot be written.
PCAP_TS_LIMIT_NS = (1 << 32) * NS
# Spool record header: timestamp (ns), captured length, wire length.
_SPOOL_HEADER = struct.Struct("<qII")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Leading bytes of the capture formats, to tell a capture given to --events from an event file.
CAPTURE_MAGICS = frozenset((*PCAP_MAGICS, SHB_MAGIC))
PARTIAL_SUFFIX = ".partial"
# Protocol names --tuple accepts: the names events write in network.transport.
PROTOCOL_NUMBERS = {name: number for number, name in TRANSPORT_NAMES.items()}


class ExtractError(Exception):
    """A usage error (missing file, unknown event id, bad option): one line, exit code 1."""


# ---------------------------------------------------------------------- what is asked for


@dataclass(frozen=True, slots=True)
class FlowSpan:
    """The packets of one flow event: frames first..last of its capture whose flow (as the
    flow table keys it: the innermost tunnelled packet, with its VLAN tags) is this one."""

    first_frame: int
    last_frame: int
    community_id: str
    vlans: tuple[int | None, int | None]  # network.vlan.id, network.inner.vlan.id


@dataclass(slots=True)
class CaptureFrames:
    """What the --event-id events ask of one capture (named by its capture key)."""

    frames: set[int] = field(default_factory=set)
    flows: list[FlowSpan] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # pcap.file as the events recorded it


# (protocol, src_ip, dst_ip, src_port, dst_port): one flow a frame belongs to; for ICMP the
# type and code stand in for the ports, as the Community ID spec has it.
FlowView = tuple[int, bytes, bytes, int | None, int | None]


@dataclass(frozen=True, slots=True)
class TupleFilter:
    """One --tuple: protocol and two endpoints (None: any), matched in either direction."""

    protocol: int
    a_ip: bytes | None
    a_port: int | None
    b_ip: bytes | None
    b_port: int | None

    def matches(self, view: FlowView) -> bool:
        protocol, src_ip, dst_ip, src_port, dst_port = view
        if protocol != self.protocol:
            return False
        return (
            _endpoint(self.a_ip, self.a_port, src_ip, src_port)
            and _endpoint(self.b_ip, self.b_port, dst_ip, dst_port)
        ) or (
            _endpoint(self.a_ip, self.a_port, dst_ip, dst_port)
            and _endpoint(self.b_ip, self.b_port, src_ip, src_port)
        )


def _endpoint(want_ip: bytes | None, want_port: int | None, ip: bytes, port: int | None) -> bool:
    return (want_ip is None or want_ip == ip) and (want_port is None or want_port == port)


@dataclass(frozen=True, slots=True)
class Selection:
    """Everything the options select by; unset parts select everything."""

    community_ids: frozenset[str] = frozenset()
    tuples: tuple[TupleFilter, ...] = ()
    from_ns: int | None = None
    to_ns: int | None = None

    @property
    def needs_decode(self) -> bool:
        return bool(self.community_ids or self.tuples)


# ---------------------------------------------------------------------- parsing options

_ISO_TIME = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.(?P<fraction>\d{1,9}))?)?)?)"
    r"(?P<zone>Z|(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2}))?",
    re.IGNORECASE,
)


def parse_time(text: str) -> int:
    """ISO 8601 (UTC unless a zone is given; up to 9 fraction digits) or epoch seconds → ns."""
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+(?:\.\d*)?", text):
        return int(Decimal(text) * NS)
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        raise ExtractError(
            f"not a time: {text!r} (ISO 8601 such as 2024-05-01T12:00:00.5Z, or epoch seconds)"
        )
    # datetime keeps microseconds only: the fraction is added as nanoseconds afterwards.
    base, fraction = match.group("base"), match.group("fraction") or ""
    try:
        stamp = datetime.fromisoformat(
            base[: len(base) - len(fraction)].rstrip(".").replace(" ", "T")
        )
    except ValueError as exc:
        raise ExtractError(f"not a time: {text!r} ({exc})") from None
    offset = timedelta(0)
    if match.group("sign"):
        offset = timedelta(hours=int(match.group("hours")), minutes=int(match.group("minutes")))
        offset = -offset if match.group("sign") == "-" else offset
    stamp = stamp.replace(tzinfo=timezone(offset))
    delta = stamp - datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = delta.days * 86400 + delta.seconds
    return seconds * NS + int(fraction.ljust(9, "0"))


def parse_tuple(text: str) -> TupleFilter:
    """``PROTO:SRC:SPORT:DST:DPORT``; ``*`` for any; IPv6 addresses as ``[2001:db8::1]``."""
    example = "e.g. tcp:10.0.0.1:51234:10.0.0.2:80, udp:[2001:db8::1]:53:*:*"
    proto_text, sep, rest = text.partition(":")
    # An endpoint: a bracketed IPv6 address or anything without a colon, then a port.
    endpoint = r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):([^:]+)"
    match = re.fullmatch(endpoint + ":" + endpoint, rest) if sep else None
    if match is None:
        raise ExtractError(f"not a tuple: {text!r} (PROTO:SRC:SPORT:DST:DPORT, {example})")
    protocol = _protocol(proto_text.strip().lower(), text)
    a_ip, a_port, b_ip, b_port = match.groups()
    return TupleFilter(
        protocol, _ip(a_ip, text), _port(a_port, text), _ip(b_ip, text), _port(b_port, text)
    )


def _protocol(name: str, text: str) -> int:
    if name.isdigit() and int(name) < 256:
        return int(name)
    if name == "icmpv6":  # what people type; events write ipv6-icmp
        name = "ipv6-icmp"
    number = PROTOCOL_NUMBERS.get(name)
    if number is None:
        raise ExtractError(f"unknown protocol {name!r} in tuple {text!r} (tcp, udp, icmp, ...)")
    return number


def _ip(part: str, text: str) -> bytes | None:
    if part == "*":
        return None
    try:
        return ip_address(part.strip("[]")).packed
    except ValueError:
        raise ExtractError(f"not an IP address: {part!r} in tuple {text!r}") from None


def _port(part: str, text: str) -> int | None:
    if part == "*":
        return None
    if not part.isdigit() or int(part) > 65535:
        raise ExtractError(f"not a port: {part!r} in tuple {text!r}")
    return int(part)


# ---------------------------------------------------------------------- events → frames


def _open_events(path: str) -> IO[bytes]:
    """An event file as lines of bytes: NDJSON, plain or zstd (told by magic, as captures are)."""
    try:
        f = open(path, "rb")  # noqa: SIM115  (returned; closed by the caller)
    except FileNotFoundError:
        raise ExtractError(f"events file not found: {path}") from None
    except OSError as exc:
        raise ExtractError(f"cannot open events file: {path}: {exc.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if head == ZSTD_MAGIC:
        reader = zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]
    if head in CAPTURE_MAGICS:
        f.close()
        raise ExtractError(
            f"{path} is a capture, not an events file (give captures before --events)"
        )
    return f


def find_events(paths: Iterable[str], event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The events with these ids in the event files, by id. Raises ExtractError for a
    missing file or an id found in none of them."""
    wanted = set(event_ids)
    # A cheap byte test before parsing: most lines are not wanted.
    needles = {event_id: orjson.dumps({"id": event_id})[1:-1] for event_id in wanted}
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        with _open_events(path) as lines:
            try:
                for line in lines:
                    hits = [i for i, needle in needles.items() if needle in line]
                    if not hits:
                        continue
                    event = orjson.loads(line)
                    event_id = event.get("event", {}).get("id")
                    if event_id in hits and event_id not in found:
                        found[event_id] = event
            except (orjson.JSONDecodeError, zstandard.ZstdError, UnicodeDecodeError) as exc:
                raise ExtractError(f"not an NDJSON events file: {path} ({exc})") from None
    missing = [event_id for event_id in event_ids if event_id not in found]
    if missing:
        raise ExtractError(f"event id not found in the --events files: {', '.join(missing)}")
    return found


def frames_of_events(events: dict[str, dict[str, Any]]) -> dict[str, CaptureFrames]:
    """What the events select, per capture key (the part of an event id before its first -)."""
    by_key: dict[str, CaptureFrames] = {}
    for event_id, event in events.items():
        pcap = event.get("pcap") or {}
        frame = pcap.get("frame")
        key = event_id.partition("-")[0]
        if not isinstance(frame, int) or not key:
            raise ExtractError(f"event {event_id} names no frame of a capture (no pcap.frame)")
        wanted = by_key.setdefault(key, CaptureFrames())
        wanted.event_ids.append(event_id)
        if isinstance(pcap.get("file"), str) and pcap["file"] not in wanted.paths:
            wanted.paths.append(pcap["file"])
        last_frame = pcap.get("last_frame")
        if last_frame is None:  # a packet, an anomaly, a DNS transaction, a TLS handshake
            wanted.frames.add(frame)
            if isinstance(pcap.get("response_frame"), int):
                wanted.frames.add(pcap["response_frame"])
            continue
        if "last_file" in pcap and pcap["last_file"] != pcap.get("file"):
            raise ExtractError(
                f"event {event_id} is a flow across the files of a capture set; extract it with "
                "--community-id and --time-from/--time-to over those files"
            )
        cid = (event.get("network") or {}).get("community_id")
        if not isinstance(cid, str):
            raise ExtractError(f"flow event {event_id} has no network.community_id")
        wanted.flows.append(FlowSpan(frame, int(last_frame), cid, _vlans(event)))
    return by_key


def _vlans(event: dict[str, Any]) -> tuple[int | None, int | None]:
    network = event.get("network") or {}
    outer = (network.get("vlan") or {}).get("id")
    inner = ((network.get("inner") or {}).get("vlan") or {}).get("id")
    return (None if outer is None else int(outer), None if inner is None else int(inner))


# ---------------------------------------------------------------------- frames → selected


@dataclass(frozen=True, slots=True)
class FrameFlows:
    """The flows one frame belongs to."""

    outer: FlowView  # of its outermost IP header: what packet events carry
    flow: FlowView  # what the flow table tracks it as: the innermost tunnelled packet, or outer
    vlans: tuple[int | None, int | None]  # the VLAN tags of `flow`'s packet (in the flow key)


class FrameMatcher:
    """Decides, frame by frame in capture order, which frames are selected.

    Decoding is done only when a selection needs addresses (community id, tuple, a flow
    event). IP fragments are then put back together by the flow tracker's own defragmenter
    and decided with their datagram, as the flow table counts them: a first fragment too
    short for the ports, or a fragmented tunnel carrier, still lands in its flow. Fragments
    are therefore decided late (when their datagram completes, at the end of the capture,
    or when `MAX_PENDING_FRAGMENTS` are held), out of capture order.
    """

    def __init__(self, selection: Selection, events: CaptureFrames | None) -> None:
        self.selection = selection
        self.events = events
        self.decodes = selection.needs_decode or bool(events is not None and events.flows)
        self._community_id = CommunityIdCache().get
        self._defrag = Defragmenter()
        # Fragments waiting for their datagram, by datagram key, oldest datagram first.
        self._pending: OrderedDict[tuple[Any, ...], list[Frame]] = OrderedDict()
        self._pending_frames = 0
        # The flows of each pending datagram's first fragment: used if it never completes.
        self._first_flows: dict[tuple[Any, ...], FrameFlows | None] = {}

    def __call__(self, frame: Frame) -> list[Frame]:
        """The frames selected now: this one, none, or the fragments its datagram decided."""
        if not self.decodes:
            return [frame] if self._selected(frame, None) else []
        data = frame.data or b""
        pkt = decode_packet(frame.link_type, data)
        if pkt.is_fragment and pkt.src_ip is not None:
            return self._fragment(frame, pkt, data)
        return [frame] if self._selected(frame, _frame_flows(pkt, data)) else []

    def finish(self) -> list[Frame]:
        """The end of the capture: decide the fragments of datagrams that never completed."""
        selected: list[Frame] = []
        for key in list(self._pending):
            selected += self._release(key, self._first_flows.get(key))
        return selected

    def _fragment(self, frame: Frame, pkt: Packet, data: bytes) -> list[Frame]:
        key = (pkt.ip_version, pkt.src_ip, pkt.dst_ip, pkt.protocol, pkt.ip_id)
        if not pkt.fragment_offset:
            self._first_flows[key] = _frame_flows(pkt, data)
        self._pending.setdefault(key, []).append(frame)
        self._pending_frames += 1
        bounds = _ip_payload(pkt.link_type, data)
        datagram = None
        if bounds is not None:
            off, end = bounds
            datagram = self._defrag.fragment(
                frame.ts_ns, key, pkt.fragment_offset or 0, bool(pkt.more_fragments), data[off:end]
            )
        if datagram is not None:
            whole = _datagram_packet(pkt, datagram)
            flows = None if whole is None else _frame_flows(whole, datagram)
            # The flow table sees the datagram at its completing frame: so do flow spans.
            return self._release(key, flows, frame.index)
        # Fragments held are bounded as the defragmenter bounds its pieces, so a fragment
        # flood cannot grow memory without limit: the oldest datagram is decided early.
        if self._pending_frames > MAX_PENDING_FRAGMENTS:
            oldest = next(iter(self._pending))
            return self._release(oldest, self._first_flows.get(oldest))
        return []

    def _release(
        self, key: tuple[Any, ...], flows: FrameFlows | None, flow_index: int | None = None
    ) -> list[Frame]:
        frames = self._pending.pop(key, [])
        self._first_flows.pop(key, None)
        self._pending_frames -= len(frames)
        return [frame for frame in frames if self._selected(frame, flows, flow_index)]

    def _selected(
        self, frame: Frame, flows: FrameFlows | None, flow_index: int | None = None
    ) -> bool:
        """`flow_index`: the frame number the flow table counted the frame at, if not its own
        (a fragment counts at the frame that completed its datagram)."""
        selection = self.selection
        ts_ns = frame.ts_ns
        if selection.from_ns is not None and ts_ns < selection.from_ns:
            return False
        if selection.to_ns is not None and ts_ns > selection.to_ns:
            return False
        if selection.community_ids and (
            flows is None
            or not (
                self._community_id(*flows.outer) in selection.community_ids
                or self._community_id(*flows.flow) in selection.community_ids
            )
        ):
            return False
        if selection.tuples and (
            flows is None
            or not any(t.matches(flows.outer) or t.matches(flows.flow) for t in selection.tuples)
        ):
            return False
        events = self.events
        if events is None or frame.index in events.frames:
            return True
        if flows is None:
            return False
        index = frame.index if flow_index is None else flow_index
        cid = self._community_id(*flows.flow)
        return any(
            span.first_frame <= index <= span.last_frame
            and span.community_id == cid
            and span.vlans == flows.vlans
            for span in events.flows
        )


def _frame_flows(pkt: Packet, data: bytes) -> FrameFlows | None:
    """The flows of a decoded packet (or reassembled datagram), as the flow tracker decides."""
    if pkt.src_ip is None or pkt.dst_ip is None or pkt.protocol is None:
        return None
    flow_pkt = pkt
    inner = decapsulate(pkt, data)
    if inner is not None and inner[0].error is None and inner[0].src_ip is not None:
        flow_pkt = inner[0]  # the tracker's rule: a tunnelled packet counts as its inner flow
    return FrameFlows(_view(pkt), _view(flow_pkt), (flow_pkt.vlan_id, flow_pkt.inner_vlan_id))


def _view(pkt: Packet) -> FlowView:
    protocol = pkt.protocol or 0
    if protocol == PROTO_ICMP or protocol == PROTO_ICMPV6:
        return protocol, pkt.src_ip or b"", pkt.dst_ip or b"", pkt.icmp_type, pkt.icmp_code
    return protocol, pkt.src_ip or b"", pkt.dst_ip or b"", pkt.src_port, pkt.dst_port


# ---------------------------------------------------------------------- the pcap out


class FrameWriter(dpkt.pcap.Writer):  # type: ignore[misc]
    """dpkt's pcap writer, keeping what its `writepkt` drops: the wire length (it writes
    caplen twice) and the exact nanosecond (it takes float seconds)."""

    def __init__(self, out: IO[bytes], link_type: int, snaplen: int, nano: bool) -> None:
        super().__init__(out, snaplen=snaplen, linktype=link_type, nano=nano)
        self._out = out
        self._ns_per_unit = 1 if nano else 1000

    def write_frame(self, ts_ns: int, data: bytes, origlen: int) -> None:
        seconds, fraction_ns = divmod(ts_ns, NS)
        header = self._pack_hdr(seconds, fraction_ns // self._ns_per_unit, len(data), origlen)
        self._out.write(header + data)


@dataclass(slots=True)
class Spool:
    """Selected frames held until the selection is complete (see the module docstring)."""

    file: IO[bytes]
    packets: int = 0
    link_types: dict[int, int] = field(default_factory=dict)  # link type → packets
    max_caplen: int = 0
    nano: bool = False  # a timestamp that is not a whole microsecond was selected

    # (capture number, frame index, spool offset) of every packet, flattened: fragments are
    # decided late, so packets can arrive out of capture order and are put back in it.
    places: array[int] = field(default_factory=lambda: array("q"))
    in_order: bool = True

    def add(self, capture_number: int, frame: Frame) -> None:
        if not 0 <= frame.ts_ns < PCAP_TS_LIMIT_NS:
            raise ExtractError(
                f"selected frame {frame.index} has a time a pcap cannot hold ({frame.ts_ns} ns "
                "since the epoch): narrow the selection (--time-from/--time-to)"
            )
        data = frame.data or b""
        places = self.places
        if places and (places[-3], places[-2]) > (capture_number, frame.index):
            self.in_order = False
        places.extend((capture_number, frame.index, self.file.tell()))
        self.file.write(_SPOOL_HEADER.pack(frame.ts_ns, len(data), frame.origlen) + data)
        self.packets += 1
        self.link_types[frame.link_type] = self.link_types.get(frame.link_type, 0) + 1
        self.max_caplen = max(self.max_caplen, len(data))
        if frame.ts_ns % 1000:
            self.nano = True

    def records(self) -> Iterator[tuple[int, bytes, int]]:
        """(ts_ns, data, origlen) in capture order."""
        places = self.places
        order: Iterable[int] = range(self.packets)
        if not self.in_order:
            order = sorted(order, key=lambda n: (places[3 * n], places[3 * n + 1]))
        read, seek = self.file.read, self.file.seek
        seek(0)
        for n in order:
            if not self.in_order:
                seek(places[3 * n + 2])
            ts_ns, caplen, origlen = _SPOOL_HEADER.unpack(read(_SPOOL_HEADER.size))
            yield ts_ns, read(caplen), origlen

    def write_pcap(self, out: IO[bytes], default_link_type: int) -> None:
        if len(self.link_types) > 1:
            mix = ", ".join(f"{n} of link type {lt}" for lt, n in sorted(self.link_types.items()))
            raise ExtractError(
                f"the selected packets mix link types ({mix}); a pcap holds one: "
                "narrow the selection (one capture, --tuple)"
            )
        link_type = next(iter(self.link_types), default_link_type)
        snaplen = max(MAX_CAPLEN_BY_LINKTYPE.get(link_type, MAX_CAPLEN), self.max_caplen)
        writer = FrameWriter(out, link_type, snaplen, self.nano)
        for ts_ns, data, origlen in self.records():
            writer.write_frame(ts_ns, data, origlen)


# ---------------------------------------------------------------------- the command


@dataclass(slots=True)
class ExtractResult:
    packets: int  # packets written
    captures: int  # captures read
    problems: list[str]  # one line per capture that could not be read whole
    notes: list[str]  # one line per thing worth saying (a capture skipped as a duplicate)


def _say(message: str) -> None:
    print(f"pcap-ingest: {message}", file=sys.stderr)


def _resolve_captures(captures: list[str], by_key: dict[str, CaptureFrames] | None) -> list[str]:
    """The capture paths to read: as given, else the events' pcap.file."""
    if captures:
        try:
            return expand_inputs(captures)
        except InputError as exc:
            raise ExtractError(str(exc)) from None
    if by_key is None:
        raise ExtractError("no capture given (name captures, or use --event-id with --events)")
    paths: list[str] = []
    for wanted in by_key.values():
        if not wanted.paths:
            raise ExtractError(
                f"event {wanted.event_ids[0]} has no pcap.file: name its capture as an argument"
            )
        for path in wanted.paths[:1]:  # one capture per key: the same packets, read once
            if path == STDIN:
                raise ExtractError(
                    f"event {wanted.event_ids[0]} was read from stdin: name its capture"
                )
            if not os.path.exists(path):
                raise ExtractError(
                    f"capture not found: {path} (pcap.file of event {wanted.event_ids[0]}; "
                    "name the capture on the command line if it moved)"
                )
            if path not in paths:
                paths.append(path)
    return paths


def _check_output(output: str, force: bool, inputs: list[str]) -> None:
    if output == STDIN:
        return
    if os.path.isdir(output):
        raise ExtractError(f"output is a directory: {output}")
    if os.path.exists(output) and not force:
        raise ExtractError(f"output exists: {output} (use --force to replace it)")
    real = os.path.realpath(output)
    if any(path != STDIN and os.path.realpath(path) == real for path in inputs):
        raise ExtractError(f"output is one of the input captures: {output}")


@dataclass(slots=True)
class ReadReport:
    """What reading the captures learnt besides the frames selected."""

    problems: list[str] = field(default_factory=list)  # captures not read whole
    notes: list[str] = field(default_factory=list)  # worth saying, but the run is whole
    keys_seen: set[str] = field(default_factory=set)  # capture keys of the captures read
    first_link_type: int | None = None  # of the first frame read: an empty result's header


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Say which capture a usage error raised while reading it is about."""
    try:
        yield
    except ExtractError as exc:
        raise ExtractError(f"{path}: {exc}") from None


def select_frames(
    paths: list[str],
    selection: Selection,
    by_key: dict[str, CaptureFrames] | None,
    keep: Callable[[int, Frame], None],
) -> ReadReport:
    """Read each capture once and hand every selected frame to `keep` with the capture's
    number (fragments come late, when their datagram is decided: see `FrameMatcher`).

    A capture whose first frame was seen before (the same capture as another file, or given
    twice) is skipped, so no packet is written twice.
    """
    report = ReadReport()
    for capture_number, path in enumerate(paths):
        try:
            capture = open_capture(path)
        except CaptureOpenError as exc:
            raise ExtractError(str(exc)) from None
        with capture, _naming(path):
            batches = capture.batches(BATCH_FRAMES)
            matcher: FrameMatcher | None = None
            unreadable = 0
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception as exc:  # as `stats` does: keep what was read
                    report.problems.append(f"{path}: read error: {exc!r}")
                    break
                if matcher is None and batch:
                    key = capture_key(batch[0])
                    if key in report.keys_seen:
                        report.notes.append(f"{path}: the same capture as one before: skipped")
                        break
                    report.keys_seen.add(key)
                    events = None if by_key is None else by_key.get(key, CaptureFrames())
                    matcher = FrameMatcher(selection, events)
                for record in batch:
                    if record.__class__ is not Frame:
                        unreadable += 1
                        continue
                    if report.first_link_type is None:
                        report.first_link_type = record.link_type
                    for selected in matcher(record):  # type: ignore[misc,arg-type]
                        keep(capture_number, selected)
            if matcher is not None:
                for selected in matcher.finish():
                    keep(capture_number, selected)
            if unreadable:
                report.problems.append(f"{path}: {unreadable} unreadable records skipped")
    return report


def extract(
    captures: list[str],
    output: str,
    *,
    event_ids: Sequence[str] = (),
    events_files: Sequence[str] = (),
    community_ids: Sequence[str] = (),
    tuples: Sequence[str] = (),
    time_from: str | None = None,
    time_to: str | None = None,
    force: bool = False,
    stdout: IO[bytes] | None = None,
) -> ExtractResult:
    """Write the selected packets of `captures` to the pcap `output` ("-": `stdout`).

    Raises ExtractError for a usage error, before anything is written under `output`.
    """
    if not (event_ids or community_ids or tuples or time_from or time_to):
        raise ExtractError(
            "say what to extract: --event-id, --community-id, --tuple, --time-from/--time-to"
        )
    if event_ids and not events_files:
        raise ExtractError("--event-id needs --events FILE... (the event files to look it up in)")
    selection = Selection(
        community_ids=frozenset(community_ids),
        tuples=tuple(parse_tuple(text) for text in tuples),
        from_ns=None if time_from is None else parse_time(time_from),
        to_ns=None if time_to is None else parse_time(time_to),
    )
    from_ns, to_ns = selection.from_ns, selection.to_ns
    if from_ns is not None and to_ns is not None and from_ns > to_ns:
        raise ExtractError(f"--time-from ({time_from}) is after --time-to ({time_to})")
    by_key = frames_of_events(find_events(events_files, event_ids)) if event_ids else None
    paths = _resolve_captures(list(captures), by_key)
    if STDIN in paths and output == STDIN:
        raise ExtractError("stdin cannot be both the input capture and the output")
    _check_output(output, force, paths)
    spool_dir = None if output == STDIN else os.path.dirname(os.path.abspath(output))
    with tempfile.TemporaryFile(dir=spool_dir, prefix=".pcap-ingest-extract-") as spool_file:
        spool = Spool(spool_file)
        report = select_frames(paths, selection, by_key, spool.add)
        if by_key is not None:
            unmatched = [
                event_id
                for key, wanted in by_key.items()
                if key not in report.keys_seen
                for event_id in wanted.event_ids
            ]
            if unmatched:
                raise ExtractError(
                    f"no input capture is the one event {unmatched[0]} came from "
                    "(its first frame differs): name that capture"
                )
        default_link_type = 1 if report.first_link_type is None else report.first_link_type
        if output == STDIN:
            out = stdout if stdout is not None else sys.stdout.buffer
            spool.write_pcap(out, default_link_type)
            out.flush()
        else:
            _write_file(spool, output, default_link_type)
    return ExtractResult(spool.packets, len(paths), report.problems, report.notes)


def _write_file(spool: Spool, output: str, default_link_type: int) -> None:
    """Write under OUTPUT.partial, rename when whole: never a half pcap under the name."""
    partial = output + PARTIAL_SUFFIX
    try:
        with open(partial, "wb") as out:
            spool.write_pcap(out, default_link_type)
        os.replace(partial, output)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def write_frames(path: str, frame_indices: Collection[int], output: str) -> int:
    """Write the frames of capture `path` numbered `frame_indices` (1-based, as `Frame.index`)
    to the pcap `output`, in capture order, as `extract` writes them (original bytes, wire
    lengths and timestamps, under OUTPUT.partial until whole). Returns the frames written;
    numbers past the capture's end select nothing. Reading stops after the last number asked
    for. Raises ExtractError when they cannot share one pcap (link types, times), CaptureOpenError
    when the capture cannot be opened."""
    wanted = frozenset(frame_indices)
    last = max(wanted, default=0)
    spool_dir = os.path.dirname(os.path.abspath(output))
    with (
        open_capture(path) as capture,
        tempfile.TemporaryFile(dir=spool_dir, prefix=".pcap-ingest-extract-") as spool_file,
    ):
        spool = Spool(spool_file)
        default_link_type = 1
        for batch in capture.batches(BATCH_FRAMES):
            for record in batch:
                if record.__class__ is Frame and record.index in wanted:
                    spool.add(0, record)  # type: ignore[arg-type]
                    default_link_type = record.link_type  # type: ignore[union-attr]
            if batch and batch[-1].index >= last:
                break
        _write_file(spool, output, default_link_type)
    return spool.packets


def extract_command(
    captures: list[str],
    output: str,
    *,
    event_ids: list[str],
    events_files: list[str],
    community_ids: list[str],
    tuples: list[str],
    time_from: str | None,
    time_to: str | None,
    force: bool,
) -> int:
    """`pcap-ingest extract`: returns 0 when done, 1 on a usage error (one line on stderr,
    nothing written), 2 when a capture was not read whole (the packets read are written)."""
    try:
        result = extract(
            captures,
            output,
            event_ids=event_ids,
            events_files=events_files,
            community_ids=community_ids,
            tuples=tuples,
            time_from=time_from,
            time_to=time_to,
            force=force,
        )
    except ExtractError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        # Output that cannot be written (no permission, a full disk): one line, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"error: {exc.strerror or exc}{where}")
        return EXIT_USAGE
    for line in result.notes + result.problems:
        _say(line)
    where = "stdout" if output == STDIN else output
    noun = "packet" if result.packets == 1 else "packets"
    _say(f"wrote {result.packets} {noun} to {where}")
    return EXIT_INCOMPLETE if result.problems else EXIT_OK
