#!/usr/bin/env bash
# Run the benchmark suite, save the results, regenerate bench/RESULTS.md, compare to a baseline.
#
#   scripts/bench.sh [--quick] [--peers] [-k EXPR] [--out FILE.json] [--no-report]
#                    [--compare BASELINE.json [--threshold PCT]] [--capture FILE]
#
#   --quick        tiny inputs, one round each: checks the suite runs (figures mean nothing);
#                  saved under bench/.cache/results/, and bench/RESULTS.md is left alone
#   --peers        also run the external peers: tcpdump -r F -w /dev/null, tshark -T ek
#                  (each skipped with its reason when not installed)
#   -k EXPR        only the benchmarks pytest's -k EXPR selects (RESULTS.md is then left alone:
#                  a partial run would replace the full tables)
#   --out FILE     save the JSON there instead of bench/results/DATE-COMMIT.json
#   --no-report    do not touch bench/RESULTS.md or write the chart
#   --compare B    afterwards, compare this run to baseline B (scripts/bench_compare.py) and
#                  exit non-zero if any benchmark regressed by more than the threshold
#   --threshold P  the regression threshold in percent (default 10)
#   --capture F    measure the single-process and stage benchmarks on the capture F instead of
#                  the generated mix (RESULTS.md is then left alone, as with -k)
#
# Sizes: the full run converts the 1M-packet 'mix' capture in one process, and the same 1M
# through the engine (PCAP_INGEST_BENCH_ENGINE_PACKETS, default here 1M so a run takes ~15
# minutes on 2 cores; the engine files' own default is 2M). Every PCAP_INGEST_BENCH_* variable
# set in the environment is passed on (bench/conftest.py lists them) and recorded in the JSON.
# The results JSON records the commit, machine and Python ("pcap_ingest" at the top level,
# beside pytest-benchmark's machine_info and commit_info).
set -euo pipefail

quick=0
peers=0
report=1
select=""
out=""
baseline=""
threshold=10
capture=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --peers) peers=1 ;;
        --no-report) report=0 ;;
        -k) select="$2"; shift ;;
        --out) out="$2"; shift ;;
        --compare) baseline="$2"; shift ;;
        --threshold) threshold="$2"; shift ;;
        --capture) capture="$2"; shift ;;
        -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$baseline" ] && [ ! -f "$baseline" ]; then
    echo "bench.sh: no baseline file $baseline" >&2
    exit 2
fi
if [ -n "$capture" ] && [ ! -f "$capture" ]; then
    echo "bench.sh: no capture file $capture" >&2
    exit 2
fi
# Paths given relative to where the script was called from, before moving to the repository.
[ -n "$capture" ] && export PCAP_INGEST_BENCH_CAPTURE="$(realpath "$capture")"
[ -n "$baseline" ] && baseline="$(realpath "$baseline")"
[ -n "$out" ] && out="$(realpath -m "$out")"
source "$(dirname "$0")/_venv.sh"
cd "$repo_root"

# Another benchmark on this 2-core machine halves both: say so rather than wait silently.
others="$(pgrep -af 'pytest.* bench' || true)"
if [ -n "$others" ]; then
    echo "bench.sh: warning: another benchmark is running; figures will be disturbed:" >&2
    echo "$others" >&2
fi

commit="$(git rev-parse --short=10 HEAD 2>/dev/null || echo unversioned)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
fi
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
suffix=""
[ "$quick" = 1 ] && suffix="-quick"
[ -n "$select" ] && suffix="$suffix-partial"
[ -n "$capture" ] && suffix="$suffix-$(basename "$capture")"
if [ -z "$out" ]; then
    # Quick runs are smoke checks, not results: they go to the (ignored) cache folder.
    folder=bench/results
    [ "$quick" = 1 ] && folder=bench/.cache/results
    mkdir -p "$folder"
    out="$folder/$stamp-$commit$suffix.json"
fi

export PCAP_INGEST_BENCH_ENGINE_PACKETS="${PCAP_INGEST_BENCH_ENGINE_PACKETS:-1000000}"
if [ "$quick" = 1 ]; then
    export PCAP_INGEST_BENCH_QUICK=1
fi
if [ "$peers" = 1 ]; then
    export PCAP_INGEST_BENCH_PEERS=1
fi

args=(-q -p no:cacheprovider bench --benchmark-only "--benchmark-json=$out")
if [ -n "$select" ]; then
    args+=(-k "$select")
fi
echo "== benchmarks -> $out" >&2
python -m pytest "${args[@]}"

if [ "$report" = 1 ] && [ "$quick" = 0 ] && [ -z "$select" ] && [ -z "$capture" ]; then
    echo "== report: bench/RESULTS.md, ${out%.json}.png" >&2
    python scripts/bench_report.py "$out" --png "${out%.json}.png" --results-md bench/RESULTS.md
else
    python scripts/bench_report.py "$out" > "${out%.json}.md"
    echo "== report of this run (RESULTS.md left alone): ${out%.json}.md" >&2
fi

if [ -n "$baseline" ]; then
    echo "== compare with $baseline (threshold $threshold%)" >&2
    python scripts/bench_compare.py "$baseline" "$out" --threshold "$threshold"
fi
