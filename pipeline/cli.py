"""The `pcap-ingest` command line.

Exit codes: 0 every input read whole; 1 usage error (one line on stderr, no traceback);
2 some input was truncated or corrupt (what could be read is kept, the summary says which);
3 the run failed (a worker process died): nothing incomplete is left under a final name;
130/143 interrupted by SIGINT/SIGTERM; 141 output pipe closed by the reader (quietly).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from typing import Any, NoReturn

import orjson

from pipeline import __version__
from pipeline.capture import CaptureOpenError
from pipeline.convert import DATASETS, DEFAULT_EXTRACT, ConvertOptions, convert
from pipeline.inputs import InputError
from pipeline.runtime.engine import EngineFailed
from pipeline.sinks.delivery import DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_SINK_TIMEOUT, DeliveryError
from pipeline.sinks.files import COMPRESSIONS, DEFAULT_ZSTD_LEVEL

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_INCOMPLETE = 2
EXIT_FAILED = 3
EXIT_SIGINT = 130
EXIT_BROKEN_PIPE = 141
EXIT_SIGTERM = 143

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits 2 on a bad flag; we promise one line and exit 1."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_extract(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in DATASETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {', '.join(unknown) or '(none)'}; known: {', '.join(DATASETS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pcap-ingest",
        description="Turn packet captures into SIEM-ready ECS NDJSON events.",
    )
    parser.add_argument("--version", action="version", version=f"pcap-ingest {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    conv = commands.add_parser(
        "convert",
        help="convert captures to NDJSON event files",
        description="Convert pcap/pcapng captures (plain, gzip, zstd, xz, bz2) to ECS NDJSON.",
    )
    conv.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="capture file, directory, glob, or - (stdin)"
    )
    conv.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output directory, - (stdout), or a sink URL: kafka://HOST:PORT, "
        "http(s)://HOST:PORT (OpenSearch/Elasticsearch _bulk), syslog://HOST:PORT, "
        "syslog+tls://HOST:PORT (options in the README)",
    )
    conv.add_argument("-R", "--recursive", action="store_true", help="descend into directories")
    conv.add_argument(
        "--extract",
        type=parse_extract,
        default=DEFAULT_EXTRACT,
        metavar="LIST",
        help=f"datasets to emit, comma-separated (default: {','.join(DEFAULT_EXTRACT)})",
    )
    conv.add_argument(
        "--compress",
        choices=COMPRESSIONS,
        default=None,
        help="output compression (default: zstd for files, none for stdout)",
    )
    conv.add_argument(
        "--level", type=int, default=DEFAULT_ZSTD_LEVEL, help="zstd level, 1-22 (default 3)"
    )
    conv.add_argument(
        "--rotate-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="start a new numbered output file past this many bytes (e.g. 512M)",
    )
    conv.add_argument("--stats-json", metavar="PATH", help="write run statistics as JSON here")
    conv.add_argument("--force", action="store_true", help="replace existing output files")
    conv.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose manifests in the output directory match (same input, options "
        "and outputs); redo the rest",
    )
    conv.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="local (this machine, default) or dask: one task per input on the Dask cluster "
        "at --scheduler, writing into the (shared) output directory",
    )
    conv.add_argument("--scheduler", metavar="URL", help="the Dask scheduler, e.g. tcp://HOST:8786")
    conv.add_argument(
        "-w",
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="decoder worker processes (default: the number of CPUs; 0: all in this process)",
    )
    conv.add_argument(
        "--ordered",
        action="store_true",
        help="write events in frame order: byte-identical output for any --workers",
    )
    conv.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="FRAMES",
        help="packets per batch sent to a worker (default 4096)",
    )
    conv.add_argument(
        "--progress",
        choices=("auto", "tty", "json", "none"),
        default="auto",
        help="progress on stderr: a live line (tty), JSON lines (json); auto: tty if a terminal",
    )
    conv.add_argument(
        "-q", "--quiet", action="store_true", help="no progress and no summary on stderr"
    )
    conv.add_argument(
        "--max-decompressed",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="stop reading a compressed input past this many decompressed bytes (status "
        "partial; default: no cap)",
    )
    conv.add_argument(
        "--max-decompression-ratio",
        type=float,
        default=None,
        metavar="N",
        help="stop reading a compressed input that expands more than N:1 past its first "
        "64M (a decompression bomb; default 1000, 0: no limit)",
    )
    conv.add_argument(
        "--worker-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail the run (exit 3) when a worker with work makes no progress this long "
        "(a decoder hung; default 300)",
    )
    conv.add_argument(
        "--stats-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --extract ...,stats: also a stats event per interval of capture time",
    )
    conv.add_argument(
        "--schema",
        choices=("ecs", "ocsf"),
        default="ecs",
        help="event schema: ecs (Elastic Common Schema, default) or ocsf (OCSF 1.5.0; "
        "no stats dataset)",
    )
    conv.add_argument(
        "--one-capture",
        action="store_true",
        help="the inputs are one capture cut into files (rotated): one output, flows across "
        "files; ordered by first timestamp (runs in one process)",
    )
    conv.add_argument(
        "--quarantine",
        action="store_true",
        help="also write every frame that became an anomaly to <stem>.quarantine.pcap beside "
        "the output (directory output only)",
    )
    sinks = conv.add_argument_group("network sinks (-o URL)")
    sinks.add_argument(
        "--sink-timeout",
        type=float,
        default=DEFAULT_SINK_TIMEOUT,
        metavar="SECONDS",
        help="longest outage of the sink's server to ride out (retrying with backoff); past "
        f"it the run fails and says how many events were not delivered (default "
        f"{DEFAULT_SINK_TIMEOUT:g})",
    )
    sinks.add_argument(
        "--sink-buffer",
        type=parse_size,
        default=DEFAULT_MAX_BUFFERED_BYTES,
        metavar="SIZE",
        help="undelivered events held before the pipeline waits for the sink (default 32M)",
    )
    flows = conv.add_argument_group("flows (the flow dataset)")
    flows.add_argument(
        "--flow-stats",
        action="store_true",
        help="add per-direction packet size and inter-arrival statistics to flow events",
    )
    flows.add_argument(
        "--max-flows",
        type=int,
        default=None,
        metavar="N",
        help="flows tracked per worker; more evict the oldest (default: sized to memory)",
    )
    for name, default in (
        ("tcp", ConvertOptions.tcp_timeout),
        ("udp", ConvertOptions.udp_timeout),
        ("other", ConvertOptions.other_timeout),
    ):
        flows.add_argument(
            f"--{name}-timeout",
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"end a quiet {name.upper() if name != 'other' else 'other'} flow after this "
            f"much capture time (default {default:g})",
        )
    flows.add_argument(
        "--active-timeout",
        type=float,
        default=ConvertOptions.active_timeout,
        metavar="SECONDS",
        help="split a flow's record after this much capture time "
        f"(default {ConvertOptions.active_timeout:g})",
    )
    stats = commands.add_parser(
        "stats",
        help="print traffic statistics of captures (as capinfos and tshark -z do)",
        description="Packets, bytes, protocols, top talkers, top destination ports and rates, "
        "per capture and per --interval of capture time.",
    )
    stats.add_argument(
        "files", nargs="+", metavar="FILE", help="capture file, directory, glob, or - (stdin)"
    )
    stats.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="also summarise each interval of this much capture time (at least 0.001)",
    )
    stats.add_argument(
        "--top", type=int, default=10, metavar="N", help="entries in the top lists (default 10)"
    )
    stats.add_argument(
        "--json", action="store_true", help="print pcap_ingest.stats events as NDJSON"
    )
    carve = commands.add_parser(
        "extract",
        help="write the packets behind events, a flow or a filter to a pcap",
        description="Write the packets behind a selection to a pcap (the selections combine "
        "as AND): events by id (a flow event: all its packets), a community id, a 5-tuple, "
        "a capture-time range.",
    )
    carve.add_argument(
        "captures",
        nargs="*",
        metavar="CAPTURE",
        help="capture file, directory or glob (default: the pcap.file of the --event-id events)",
    )
    carve.add_argument(
        "-o", "--output", required=True, metavar="OUT.pcap", help="the pcap to write, or - (stdout)"
    )
    carve.add_argument(
        "--event-id", action="append", default=[], metavar="ID", help="an event's event.id"
    )
    carve.add_argument(
        "--events",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="event files (.ndjson, .ndjson.zst) to look the --event-id ids up in",
    )
    carve.add_argument(
        "--community-id", action="append", default=[], metavar="CID", help="a Community ID"
    )
    carve.add_argument(
        "--tuple",
        action="append",
        default=[],
        metavar="PROTO:SRC:SPORT:DST:DPORT",
        help="either direction; * for any; IPv6 in brackets",
    )
    carve.add_argument(
        "--time-from", metavar="TIME", help="capture time, ISO 8601 or epoch seconds (included)"
    )
    carve.add_argument("--time-to", metavar="TIME", help="capture time (included)")
    carve.add_argument("--force", action="store_true", help="replace an existing output")
    return parser


def _stats(args: argparse.Namespace) -> int:
    from pipeline.traffic_report import stats_command

    try:
        return stats_command(args.files, args.interval, args.top, args.json, sys.stdout)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_SIGINT
    except BrokenPipeError:  # `pcap-ingest stats x | head`: quietly, as convert does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _extract(args: argparse.Namespace) -> int:
    from pipeline.carve import extract_command

    try:
        return extract_command(
            args.captures,
            args.output,
            event_ids=args.event_id,
            events_files=args.events,
            community_ids=args.community_id,
            tuples=args.tuple,
            time_from=args.time_from,
            time_to=args.time_to,
            force=args.force,
        )
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_SIGINT
    except BrokenPipeError:  # `pcap-ingest extract ... -o - | tshark -r - ...` quitting early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _say(message: str) -> None:
    print(f"pcap-ingest: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _say(f"error: {exc} (see pcap-ingest --help)")
        return EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "stats":
        return _stats(args)
    if args.command == "extract":
        return _extract(args)
    if args.workers < 0:
        _say("error: --workers must be 0 or more (see pcap-ingest --help)")
        return EXIT_USAGE
    if args.batch_size is not None and args.batch_size < 1:
        _say("error: --batch-size must be positive (see pcap-ingest --help)")
        return EXIT_USAGE
    progress = None if args.quiet or args.progress == "none" else args.progress
    if progress == "auto":
        progress = "tty" if sys.stderr.isatty() else None
    stop = _StopOnSignals()
    try:
        run = convert(
            args.inputs,
            args.output,
            recursive=args.recursive,
            extract=args.extract,
            compression=args.compress,
            level=args.level,
            rotate_bytes=args.rotate_size,
            force=args.force,
            workers=args.workers,
            ordered=args.ordered,
            batch_frames=args.batch_size,
            progress=progress,
            on_engine=stop.attach,
            flow_stats=args.flow_stats,
            max_flows=args.max_flows,
            tcp_timeout=args.tcp_timeout,
            udp_timeout=args.udp_timeout,
            other_timeout=args.other_timeout,
            active_timeout=args.active_timeout,
            stats_interval=args.stats_interval,
            one_capture=args.one_capture,
            sink_timeout=args.sink_timeout,
            sink_buffer=args.sink_buffer,
            max_decompressed=args.max_decompressed,
            max_decompression_ratio=args.max_decompression_ratio,
            worker_timeout=args.worker_timeout,
            resume=args.resume,
            executor=args.executor,
            scheduler=args.scheduler,
            schema=args.schema,
            quarantine=args.quarantine,
        )
    except (InputError, CaptureOpenError) as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except (EngineFailed, DeliveryError) as exc:
        _say(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_SIGINT
    except SystemExit as exc:  # SIGTERM in the single-process path
        _say("terminated")
        return int(exc.code or EXIT_SIGTERM)
    except BrokenPipeError:
        # The reader of our stdout went away (`... -o - | head`): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # Output that cannot be written (no permission, a full disk): one line, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"error: {exc.strerror or exc}{where}")
        return EXIT_USAGE
    if args.stats_json:
        with open(args.stats_json, "wb") as f:
            f.write(orjson.dumps(run.to_json(), option=orjson.OPT_INDENT_2))
    if not args.quiet:
        print(run.summary(), file=sys.stderr)
    if stop.signum is not None:
        _say("interrupted: stopped reading, wrote what was read")
        return EXIT_SIGINT if stop.signum == signal.SIGINT else EXIT_SIGTERM
    return EXIT_OK if run.complete else EXIT_INCOMPLETE


class _StopOnSignals:
    """SIGINT/SIGTERM: with the engine, stop reading and drain (outputs closed cleanly);
    without it (single process), interrupt at once (outputs in progress are dropped)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.engine: Any = None
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def attach(self, engine: Any) -> None:
        self.engine = engine

    def _handle(self, signum: int, frame: object) -> None:
        if self.engine is not None:
            self.signum = signum
            self.engine.request_stop(signum)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(EXIT_SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
