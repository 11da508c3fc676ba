#!/usr/bin/env python3
"""Render a pytest-benchmark JSON file as the tables (and chart) of bench/RESULTS.md.

    python scripts/bench_report.py bench/results/RUN.json [--png bench/results/RUN.png]
                                   [--results-md bench/RESULTS.md]

Prints Markdown: the stage table (packets/s and MB/s of every stage of the data path, and of
end-to-end conversion on each workload), the scaling table (workers → packets/s, peak private
memory), the peers, then every benchmark of the run. Each figure is also given as a ratio to
the naive dpkt+orjson+zstd converter measured in the same run (ratios survive a noisy machine;
absolute figures do not), and to tcpdump and tshark when the run had them (--peers).

With --png, a chart of packets/s by stage and by worker count (needs matplotlib, from the dev
extra). With --results-md, the generated part of that file — between the markers
``<!-- bench.sh:begin -->`` and ``<!-- bench.sh:end -->`` in its section "Latest run
(scripts/bench.sh)" — is replaced, and nothing outside the markers is touched; a file without
the markers gets the section appended.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench.sh:begin -->"
END = "<!-- bench.sh:end -->"
SECTION = "## Latest run (scripts/bench.sh)"

# Benchmarks are named by file and test ("test_bench_convert.py::test_framing"): pytest's
# node id without the folder, which is the same wherever the suite ran from.
REFERENCE = "test_bench_convert.py::test_peer_naive_dpkt_ndjson_zstd"
# Where the single-process reference is missing (a run of the engine file alone), the
# engine file's own naive run on its capture stands in.
REFERENCES = (REFERENCE, "test_bench_engine.py::test_peer_naive_dpkt_ndjson_zstd_2m")
TCPDUMP = "test_bench_convert.py::test_peer_tcpdump"
TSHARK = "test_bench_convert.py::test_peer_tshark_ek"

# The data path in order: (stage, what is measured, benchmark id or None while the stage
# does not exist yet; then the reason).
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("framing", "mmap, `Frame` batches with data", "test_bench_convert.py::test_framing"),
    ("routing", "`BatchRouter.split`, 2 workers", "test_bench_stages.py::test_stage_routing"),
    (
        "framing + routing",
        "the engine's reader ceiling: columns + split for 8 workers",
        "test_bench_engine.py::test_reader_ceiling",
    ),
    ("L2–L4 decode", "`decode_packet`", "test_bench_stages.py::test_stage_decode"),
    ("flow table", "`FlowTable.packet` + sweeps", "test_bench_flows.py::test_stage_flow_table"),
    ("reassembly", "`StreamReassembler`, ooo-holes", "test_bench_stages.py::test_stage_reassembly"),
    (
        "DNS extraction",
        "`convert --extract dns`, dns-heavy",
        "test_bench_convert.py::test_extraction[dns]",
    ),
    (
        "HTTP extraction",
        "`convert --extract http` (flow table + reassembly), http-heavy",
        "test_bench_convert.py::test_extraction[http]",
    ),
    (
        "TLS extraction",
        "`convert --extract tls` (flow table + reassembly), tls-heavy",
        "test_bench_convert.py::test_extraction[tls]",
    ),
    ("schema mapping", "`EcsMapper.packet` dicts", "test_bench_stages.py::test_stage_mapping"),
    ("flow events", "`EcsMapper.flow` + orjson", "test_bench_flows.py::test_stage_flow_events"),
    (
        "serialisation",
        "`PacketLineEncoder` lines",
        "test_bench_stages.py::test_stage_serialisation",
    ),
    ("compression", "zstd level 3", "test_bench_stages.py::test_stage_compression"),
    (
        "Kafka sink",
        "events/s into a local Tansu broker",
        "test_bench_sink_kafka.py::test_sink_kafka",
    ),
    (
        "OpenSearch _bulk sink",
        "events/s into local osmem (stored-only indices)",
        "test_bench_sink_bulk.py::test_sink_bulk",
    ),
    (
        "syslog sink",
        "events/s into local rsyslog, TCP, every event confirmed",
        "test_bench_sink_syslog.py::test_sink_syslog[tcp]",
    ),
)
# End-to-end rows: (label, what runs, benchmark id).
_PACKETS_ONLY = "`convert`: packet + anomaly events, zstd"
END_TO_END: tuple[tuple[str, str, str], ...] = (
    ("one process, mix", _PACKETS_ONLY, "test_bench_convert.py::test_end_to_end_single_process"),
    *(
        (f"one process, {p}", _PACKETS_ONLY, f"test_bench_convert.py::test_end_to_end_profile[{p}]")
        for p in ("dns-heavy", "http-heavy", "tls-heavy", "small-flood", "many-flows")
    ),
    (
        "one process, mix, packets + flows",
        "`convert`: packet, anomaly and flow events (the default), zstd",
        "test_bench_flows.py::test_end_to_end_single_process[packets+flows]",
    ),
    (
        "engine, 2 workers, mix",
        "`convert -w 2`: packet + anomaly events, zstd",
        "test_bench_engine.py::test_end_to_end_workers[2]",
    ),
    (
        "engine, 2 workers, mix, every extractor",
        "`convert -w 2 --extract anomaly,flow,dns,http,tls,stats`, zstd",
        "test_bench_engine.py::test_end_to_end_extractors_2_workers",
    ),
)
WORKERS = "test_bench_engine.py::test_end_to_end_workers[{}]"
ORDERED = "test_bench_engine.py::test_end_to_end_ordered_2_workers"
CEILING = "test_bench_engine.py::test_machine_parallel_ceiling[{}]"
PEERS: tuple[tuple[str, str], ...] = (
    (
        "naive dpkt: Reader + Ethernet + field dict",
        "test_bench_convert.py::test_peer_naive_dpkt_fields",
    ),
    ("naive dpkt + orjson + zstd 3 (the reference)", REFERENCE),
    ("naive dpkt + orjson + zstd 3, engine's capture", REFERENCES[1]),
    ("`tcpdump -r FILE -w /dev/null`", TCPDUMP),
    ("`tshark -T ek -r FILE > /dev/null`", TSHARK),
)


def bench_id(bench: dict[str, Any]) -> str:
    """A benchmark's name within the suite: file::test[param]."""
    return str(bench["fullname"]).rsplit("/", 1)[-1]


def packets_per_second(bench: dict[str, Any]) -> float | None:
    """The median round's packets/s: packets ÷ median time (unrounded, unlike extra_info's
    figure, which matters for the small counts of the machine-ceiling benchmark)."""
    info = bench.get("extra_info", {})
    median = bench.get("stats", {}).get("median")
    if median and info.get("packets"):
        return float(info["packets"]) / median
    if info.get("packets_per_second"):
        return float(info["packets_per_second"])
    return None


def by_id(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {bench_id(b): b for b in run.get("benchmarks", [])}


def reference_id(run: dict[str, Any]) -> str | None:
    benches = by_id(run)
    for ref in REFERENCES:
        if ref in benches and packets_per_second(benches[ref]):
            return ref
    return None


def describe(run: dict[str, Any]) -> dict[str, Any]:
    """Commit, machine and Python of a run: our own top-level fields (bench/conftest.py),
    else what pytest-benchmark recorded."""
    own = run.get("pcap_ingest", {})
    commit = own.get("commit") or run.get("commit_info", {}).get("id", "?")
    dirty = own.get("dirty", run.get("commit_info", {}).get("dirty", False))
    machine = own.get("machine")
    if not machine:
        first = next(iter(run.get("benchmarks", [])), {})
        machine = first.get("extra_info", {}).get("machine", "?")
    python = own.get("python") or run.get("machine_info", {}).get("python_version", "?")
    return {
        "commit": commit,
        "dirty": bool(dirty),
        "machine": machine,
        "python": python,
        "datetime": str(run.get("datetime", ""))[:19],
        "quick": own.get("quick", False),
        "sizes": own.get("sizes", {}),
        "rounds": own.get("rounds"),
    }


def _fmt_int(value: float | None) -> str:
    return f"{value:,.0f}" if value else ""


def _ratio(value: float | None, base: float | None, digits: int = 2) -> str:
    if not value or not base:
        return ""
    ratio = value / base
    return f"{ratio:.{digits}f}" if ratio >= 0.01 else f"{ratio:.4f}"


def _mb(bench: dict[str, Any]) -> str:
    info = bench.get("extra_info", {})
    if info.get("mb_per_second") is None:
        return ""
    return f"{info['mb_per_second']:,.1f} ({info.get('bytes_of', 'capture file')})"


def stage_table(run: dict[str, Any]) -> list[str]:
    benches = by_id(run)
    ref = reference_id(run)
    ref_pps = packets_per_second(benches[ref]) if ref else None
    tcpdump = packets_per_second(benches[TCPDUMP]) if TCPDUMP in benches else None
    tshark = packets_per_second(benches[TSHARK]) if TSHARK in benches else None
    lines = [
        "| stage | what runs | packets/s | MB/s (of what) | × naive dpkt+orjson+zstd "
        "| × tcpdump | × tshark -T ek |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, what: str, key: str | None) -> None:
        bench = benches.get(key) if key else None
        if bench is None:
            reason = what if key is None else "not in this run"
            lines.append(f"| {label} | {reason} | | | | | |")
            return
        pps = packets_per_second(bench)
        info = bench.get("extra_info", {})
        if info.get("events_per_second") and info.get("events") != info.get("packets"):
            # A stage whose unit is not the packet (flow events): its own rate too.
            what = f"{what}; {info['events_per_second']:,} events/s"
        lines.append(
            f"| {label} | {what} | {_fmt_int(pps)} | {_mb(bench)} | {_ratio(pps, ref_pps)} "
            f"| {_ratio(pps, tcpdump, 3)} | {_ratio(pps, tshark, 1)} |"
        )

    for label, what, key in STAGES:
        row(label, what, key)
    for label, what, key in END_TO_END:
        row(f"**end to end**: {label}", what, key)
    return lines


def scaling_table(run: dict[str, Any]) -> list[str]:
    benches = by_id(run)
    ref = REFERENCES[1] if REFERENCES[1] in benches else reference_id(run)
    ref_pps = packets_per_second(benches[ref]) if ref else None
    one = benches.get(WORKERS.format(1))
    one_pps = packets_per_second(one) if one else None
    lines = [
        "| workers | packets/s | × 1 worker | × naive dpkt+orjson+zstd "
        "| peak private memory (tree) |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [(str(n), benches.get(WORKERS.format(n))) for n in (1, 2, 4, 8)]
    rows.append(("2, `--ordered`", benches.get(ORDERED)))
    for label, bench in rows:
        if bench is None:
            continue
        pps = packets_per_second(bench)
        peak = bench.get("extra_info", {}).get("peak_private_mib")
        lines.append(
            f"| {label} | {_fmt_int(pps)} | {_ratio(pps, one_pps)} | {_ratio(pps, ref_pps)} "
            f"| {f'{peak:,.0f} MiB' if peak else ''} |"
        )
    spin = [benches.get(CEILING.format(n)) for n in (1, 2)]
    if all(spin):
        # 2 processes do twice the work: speedup = 2 × t1 / t2.
        t1, t2 = (b["stats"]["median"] for b in spin)  # type: ignore[index]
        lines += [
            "",
            f"Machine ceiling in the same run (`test_machine_parallel_ceiling`): two "
            f"share-nothing spinning processes got **{2 * t1 / t2:.2f}×** one.",
        ]
    if len(lines) == 2:
        return ["(no engine benchmarks in this run)"]
    return lines


def peer_table(run: dict[str, Any]) -> list[str]:
    benches = by_id(run)
    ours = benches.get(END_TO_END[0][2])
    ours_pps = packets_per_second(ours) if ours else None
    lines = [
        "| peer | packets/s | MB/s | our end to end (one process) ÷ peer | note |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key in PEERS:
        bench = benches.get(key)
        if bench is None:
            if key in (TCPDUMP, TSHARK):
                lines.append(f"| {label} | | | | not run (scripts/bench.sh --peers) |")
            continue
        info = bench.get("extra_info", {})
        pps = packets_per_second(bench)
        note = info.get("slice", "") or f"{info.get('packets', 0):,} packets"
        lines.append(
            f"| {label} | {_fmt_int(pps)} | {info.get('mb_per_second', '')} "
            f"| {_ratio(ours_pps, pps, 2)} | {note} |"
        )
    return lines


def markdown(run: dict[str, Any]) -> str:
    """Every benchmark of the run, one table per file."""
    benches = run.get("benchmarks", [])
    ref = reference_id(run)
    ref_pps = packets_per_second(by_id(run)[ref]) if ref else None
    lines: list[str] = []
    for file in sorted({bench_id(b).split("::")[0] for b in benches}):
        lines += [
            f"`{file}`",
            "",
            "| benchmark | packets | median s | packets/s | MB/s | × naive dpkt+orjson+zstd "
            "| peak private MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for bench in benches:
            if bench_id(bench).split("::")[0] != file:
                continue
            info = bench.get("extra_info", {})
            pps = packets_per_second(bench)
            lines.append(
                f"| {bench['name']} | {info.get('packets', '')} | {bench['stats']['median']:.3f} "
                f"| {_fmt_int(pps)} | {info.get('mb_per_second', '')} | {_ratio(pps, ref_pps)} "
                f"| {info.get('peak_private_mib') or ''} |"
            )
        lines.append("")
    return "\n".join(lines)


def generated_section(run: dict[str, Any], name: str, png: str | None) -> str:
    """What goes between the markers: the run's identity, the three tables, the chart."""
    d = describe(run)
    sizes = ", ".join(f"{k.removeprefix('PCAP_INGEST_BENCH_')}={v}" for k, v in d["sizes"].items())
    dirty = " (with uncommitted changes)" if d["dirty"] else ""
    python = "" if f"Python {d['python']}" in d["machine"] else f"; Python {d['python']}"
    quick = "; QUICK MODE (tiny inputs: the figures mean nothing)" if d["quick"] else ""
    parts = [
        f"Run `{name}`: commit `{d['commit'][:10]}`{dirty}, {d['datetime']} UTC; "
        f"{d['machine']}{python}; median of {d['rounds'] or '?'} rounds a benchmark{quick}"
        f"{f'; {sizes}' if sizes else ''}. Generated by `scripts/bench.sh`: edits here are "
        "overwritten by the next run.",
        "",
        "### Stages and workloads",
        "",
        "packets/s counts the workload's frames over the stage's median time, so stages can be "
        "set side by side (the stage benchmarks: bench/test_bench_stages.py). Ratios are to "
        "the peers' runs on the mix capture, for every row.",
        "",
        *stage_table(run),
        "",
        "### Scaling with workers (engine, `convert -w N`, packet + anomaly events)",
        "",
        *scaling_table(run),
        "",
        "### Peers, same run",
        "",
        *peer_table(run),
        "",
    ]
    if png:
        parts += [f"![packets/s by stage and by worker count]({png})", ""]
    parts += [
        "<details><summary>Every benchmark of the run</summary>",
        "",
        markdown(run),
        "</details>",
    ]
    return "\n".join(parts)


def rewrite_results(text: str, generated: str) -> str:
    """`text` with what lies between the markers replaced by `generated`; everything outside
    them is kept byte for byte. Without markers, the section is appended."""
    block = f"{BEGIN}\n{generated.strip()}\n{END}"
    start, end = text.find(BEGIN), text.find(END)
    if start == -1 and end == -1:
        return f"{text.rstrip()}\n\n{SECTION}\n\n{block}\n"
    if start == -1 or end == -1 or end < start or text.count(BEGIN) > 1 or text.count(END) > 1:
        raise ValueError(f"RESULTS.md markers are broken: want one {BEGIN} before one {END}")
    return text[:start] + block + text[end + len(END) :]


def chart(run: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = by_id(run)
    stage_rows = [(label, benches.get(key)) for label, _, key in STAGES if key]
    stage_rows += [(f"e2e: {label}", benches.get(key)) for label, _, key in END_TO_END]
    stage_rows += [(f"peer: {label.strip('`')}", benches.get(key)) for label, key in PEERS]
    stages = []
    for label, bench in stage_rows:
        pps = packets_per_second(bench) if bench is not None else None
        if not pps:
            continue
        info = bench.get("extra_info", {})  # type: ignore[union-attr]
        if info.get("events_per_second") and info.get("events") != info.get("packets"):
            label += " (per packet of the capture)"  # flow events: not its own unit
        stages.append((label[:60], pps))
    workers = [
        (str(n), benches.get(WORKERS.format(n)))
        for n in (1, 2, 4, 8)
        if WORKERS.format(n) in benches
    ]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 0.36 * max(len(stages), 6) + 1.8), gridspec_kw={"width_ratios": [3, 1.3]}
    )
    colours = [
        "#a5a5a5"
        if label.startswith("peer")
        else "#ed7d31"
        if label.startswith("e2e")
        else "#4472c4"
        for label, _ in stages
    ]
    bars = left.barh([s[0] for s in stages], [s[1] for s in stages], color=colours)
    left.bar_label(bars, labels=[f"{v / 1000:,.0f}k" for _, v in stages], padding=3, fontsize=8)
    left.set_xscale("log")
    left.invert_yaxis()
    left.set_xlabel("packets per second (median, log scale)")
    left.set_title("by stage, workload and peer")
    left.tick_params(axis="y", labelsize=8)
    if workers:
        values = [packets_per_second(b) or 0 for _, b in workers]  # type: ignore[arg-type]
        wbars = right.bar([w for w, _ in workers], values, color="#70ad47")
        mem = [b.get("extra_info", {}).get("peak_private_mib") for _, b in workers]  # type: ignore[union-attr]
        right.bar_label(
            wbars,
            labels=[
                f"{v / 1000:,.0f}k\n{m:,.0f} MiB" if m else f"{v / 1000:,.0f}k"
                for v, m in zip(values, mem, strict=True)
            ],
            fontsize=8,
        )
        right.set_ylim(0, max(values) * 1.25)
        right.yaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
    right.set_xlabel("workers")
    right.set_ylabel("packets per second (median)")
    right.set_title("engine by worker count\n(peak private memory)")
    d = describe(run)
    fig.suptitle(
        f"pcap-ingest benchmarks, one run: {d['commit'][:10]}, {d['datetime']}, {d['machine']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--png", type=Path, help="write the chart here")
    parser.add_argument(
        "--results-md", type=Path, help="rewrite the generated section of this file (RESULTS.md)"
    )
    args = parser.parse_args(argv)
    run = json.loads(args.result.read_text())
    if args.png:
        chart(run, args.png)
    png_link = None
    if args.png:
        base = args.results_md.parent if args.results_md else Path.cwd()
        png_link = os.path.relpath(args.png.resolve(), base.resolve())
    section = generated_section(run, args.result.stem, png_link)
    if args.results_md:
        text = args.results_md.read_text() if args.results_md.exists() else "# Benchmark results\n"
        args.results_md.write_text(rewrite_results(text, section))
        print(f"updated {args.results_md} (between {BEGIN} and {END})", file=sys.stderr)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
