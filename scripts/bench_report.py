#!/usr/bin/env python3
"""Render a pytest-benchmark JSON file as the tables (and chart) of bench/RESULTS.md.

    python scripts/bench_report.py bench/results/RUN.json [--png bench/results/RUN.png]

Prints Markdown: every benchmark's median packets/s, its ratio to the naive dpkt converter
measured in the same run (ratios survive a noisy machine; absolute figures do not), and the
peak private memory where the benchmark recorded it. With --png, a bar chart of the same
figures (needs matplotlib, from the dev extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NAIVE = ("test_peer_naive_dpkt_ndjson_zstd", "test_peer_naive_dpkt_ndjson_zstd_2m")


def rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for bench in run["benchmarks"]:
        info = bench.get("extra_info", {})
        out.append(
            {
                "name": bench["name"],
                "file": bench["fullname"].split("::")[0],
                "packets": info.get("packets"),
                "pps": info.get("packets_per_second"),
                "median_s": bench["stats"]["median"],
                "rounds": bench["stats"]["rounds"],
                "peak_mib": info.get("peak_private_mib"),
                "machine": info.get("machine", ""),
            }
        )
    return out


def markdown(run: dict[str, Any]) -> str:
    table = rows(run)
    lines = [
        f"Commit `{run.get('commit_info', {}).get('id', '?')[:10]}`, "
        f"{run.get('datetime', '')[:19]}; machine: {table[0]['machine'] if table else '?'}.",
        "",
    ]
    for file in sorted({r["file"] for r in table}):
        group = [r for r in table if r["file"] == file]
        naive = next((r for r in group if r["name"] in NAIVE), None)
        lines += [
            f"`{file}`",
            "",
            "| benchmark | packets | median s | packets/s | × naive dpkt+orjson+zstd "
            "| peak private MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in group:
            ratio = f"{r['pps'] / naive['pps']:.2f}" if naive and r["pps"] and naive["pps"] else ""
            lines.append(
                f"| {r['name']} | {r['packets'] or ''} | {r['median_s']:.3f} | "
                f"{r['pps'] or ''} | {ratio} | {r['peak_mib'] or ''} |"
            )
        lines.append("")
    return "\n".join(lines)


def chart(run: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in rows(run) if r["pps"]]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 1.5))
    names = [r["name"].removeprefix("test_") for r in table]
    values = [r["pps"] / 1000 for r in table]
    bars = ax.barh(names, values, color="#4472c4")
    ax.bar_label(bars, labels=[f"{v:,.0f}k" for v in values], padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("thousand packets per second (median)")
    ax.set_title("pcap-ingest benchmarks (same run, same machine)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    run = json.loads(args.result.read_text())
    print(markdown(run))
    if args.png:
        chart(run, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
