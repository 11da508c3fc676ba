#!/usr/bin/env python3
"""Compare two benchmark runs (pytest-benchmark JSON) and fail on a regression.

    python scripts/bench_compare.py BASELINE.json CURRENT.json [--threshold 10] [--absolute]

Prints one row per benchmark present in both runs — baseline, current, change in % — and exits
1 when any benchmark's throughput fell by more than --threshold percent (default 10), naming
it; 0 otherwise; 2 when the two runs have nothing to compare.

What is compared. The machine is shared and noisy, and a baseline may come from another day
or another machine, so an absolute time means little; a ratio measured side by side means
more. When both runs have the reference peer (the naive dpkt + orjson + zstd converter of
bench/test_bench_convert.py, measured in each run), every benchmark's packets/s is divided by
that run's reference packets/s, and the *ratios* are compared ("ratio" mode): a machine that
is 20% slower today moves both and cancels out. Without the reference in both runs (e.g. a
run of one file or one stage), the median packets/s themselves are compared ("absolute"
mode), and the output says so. --absolute forces absolute mode.

Not gated (shown, never failing): the peers themselves (not our code: the reference's own
change is shown in absolute terms), the machine's parallel ceiling (it measures the machine),
and benchmarks whose workload size differs between the runs (their packets/s are not the same
measurement).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Sibling script: run as `python scripts/bench_compare.py`, scripts/ is on sys.path.
from bench_report import REFERENCES, bench_id, describe, packets_per_second

DEFAULT_THRESHOLD_PCT = 10.0
NOT_GATED = ("::test_peer_", "::test_machine_parallel_ceiling")


@dataclass
class Row:
    name: str
    base_pps: float | None
    cur_pps: float | None
    base_value: float | None  # what is compared: packets/s, or packets/s ÷ reference
    cur_value: float | None
    change_pct: float | None  # throughput change, current against baseline
    verdict: str


@dataclass
class Comparison:
    mode: str  # "ratio" or "absolute"
    reference: str | None
    threshold_pct: float
    rows: list[Row]

    @property
    def regressed(self) -> list[Row]:
        return [row for row in self.rows if row.verdict == "REGRESSED"]


def _benches(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {bench_id(b): b for b in run.get("benchmarks", [])}


def compare(
    baseline: dict[str, Any],
    current: dict[str, Any],
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    absolute: bool = False,
) -> Comparison:
    base, cur = _benches(baseline), _benches(current)
    reference = None
    if not absolute:
        timed = [r for r in REFERENCES if r in base and r in cur]
        timed = [r for r in timed if packets_per_second(base[r]) and packets_per_second(cur[r])]
        reference = timed[0] if timed else None
    base_ref = packets_per_second(base[reference]) if reference else None
    cur_ref = packets_per_second(cur[reference]) if reference else None
    rows = []
    for name in sorted(base.keys() | cur.keys()):
        b, c = base.get(name), cur.get(name)
        b_pps = packets_per_second(b) if b else None
        c_pps = packets_per_second(c) if c else None
        if b is None or c is None:
            verdict = "only in baseline" if c is None else "only in current run"
            rows.append(Row(name, b_pps, c_pps, None, None, None, verdict))
            continue
        b_packets = b.get("extra_info", {}).get("packets")
        c_packets = c.get("extra_info", {}).get("packets")
        if b_packets != c_packets:
            verdict = f"not comparable: {b_packets} vs {c_packets} packets"
            rows.append(Row(name, b_pps, c_pps, None, None, None, verdict))
            continue
        if not b_pps or not c_pps:
            rows.append(Row(name, b_pps, c_pps, None, None, None, "no timing"))
            continue
        if name == reference or reference is None:
            b_value, c_value = b_pps, c_pps  # the reference against itself is always 1
        else:
            b_value, c_value = b_pps / base_ref, c_pps / cur_ref  # type: ignore[operator]
        change = (c_value / b_value - 1) * 100
        if name == reference:
            verdict = "reference (absolute, not gated)"
        elif any(marker in name for marker in NOT_GATED):
            verdict = "not gated (peer or machine)"
        elif change < -threshold_pct:
            verdict = "REGRESSED"
        elif change > threshold_pct:
            verdict = "faster"
        else:
            verdict = "ok"
        rows.append(Row(name, b_pps, c_pps, b_value, c_value, change, verdict))
    return Comparison("ratio" if reference else "absolute", reference, threshold_pct, rows)


def _num(value: float | None, ratio: bool) -> str:
    if value is None:
        return "-"
    if ratio or value < 100:  # ratios, and the machine ceiling's handful of "packets"
        return f"{value:.3f}"
    return f"{value:,.0f}"


def render(result: Comparison, baseline: dict[str, Any], current: dict[str, Any]) -> str:
    b, c = describe(baseline), describe(current)
    ratio = result.mode == "ratio"
    lines = [
        f"baseline: commit {b['commit'][:10]}{'+dirty' if b['dirty'] else ''}, "
        f"{b['datetime']}, {b['machine']}",
        f"current:  commit {c['commit'][:10]}{'+dirty' if c['dirty'] else ''}, "
        f"{c['datetime']}, {c['machine']}",
    ]
    injected = current.get("pcap_ingest", {}).get("injected")
    if injected:
        lines.append(f"current run had an injected slowdown: PCAP_INGEST_BENCH_INJECT={injected}")
    if b["machine"] != c["machine"]:
        lines.append("note: the machines differ; ratios carry over better than absolute figures")
    if ratio:
        lines.append(
            f"compared: packets/s ÷ the same run's {result.reference} (naive dpkt+orjson+zstd); "
            "a slower or faster machine cancels out"
        )
    else:
        lines.append(
            "compared: absolute median packets/s (the reference peer is not in both runs, or "
            "--absolute): machine noise counts in full"
        )
    lines.append(f"threshold: a fall of more than {result.threshold_pct:g}% fails")
    lines.append("")
    head = ("benchmark", "baseline pkt/s", "current pkt/s")
    head += ("base ×ref", "cur ×ref") if ratio else ()
    head += ("change", "verdict")
    table = [head]
    for row in result.rows:
        cells = (row.name, _num(row.base_pps, False), _num(row.cur_pps, False))
        if ratio:
            is_ref = row.name == result.reference
            cells += (
                "1" if is_ref and row.base_value else _num(row.base_value, True),
                "1" if is_ref and row.cur_value else _num(row.cur_value, True),
            )
        change = "-" if row.change_pct is None else f"{row.change_pct:+.1f}%"
        table.append((*cells, change, row.verdict))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for n, r in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if i in (0, len(head) - 1) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    gated = [r for r in result.rows if r.verdict in ("ok", "faster", "REGRESSED")]
    if result.regressed:
        names = ", ".join(r.name for r in result.regressed)
        lines.append(
            f"FAIL: {len(result.regressed)} of {len(gated)} benchmarks regressed by more than "
            f"{result.threshold_pct:g}% ({result.mode}): {names}"
        )
    else:
        lines.append(
            f"PASS: none of {len(gated)} benchmarks regressed by more than "
            f"{result.threshold_pct:g}% ({result.mode})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("current", type=Path)
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD_PCT,
        help="fail when a benchmark's throughput falls by more than this many percent",
    )
    parser.add_argument("--absolute", action="store_true", help="compare packets/s, not ratios")
    args = parser.parse_args(argv)
    baseline = json.loads(args.baseline.read_text())
    current = json.loads(args.current.read_text())
    result = compare(baseline, current, args.threshold, args.absolute)
    print(render(result, baseline, current))
    if not any(r.verdict in ("ok", "faster", "REGRESSED") for r in result.rows):
        print("nothing to compare: no benchmark timed in both runs on the same workload")
        return 2
    return 1 if result.regressed else 0


if __name__ == "__main__":
    sys.exit(main())
