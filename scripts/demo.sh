#!/usr/bin/env bash
# Set up the virtual environment (first run), generate a realistic capture, convert it, and
# print the summary and a sample event.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$repo_root"
packets="${1:-200000}"
work="$repo_root/demo-out"
mkdir -p "$work"
capture="$work/demo-$packets.pcap"
if [ ! -f "$capture" ]; then
    echo "generating $capture ($packets packets)" >&2
    python scripts/gen_capture.py --packets "$packets" --seed 1 -o "$capture"
fi
echo "converting $capture" >&2
pcap-ingest convert "$capture" -o "$work/events" --force --stats-json "$work/stats.json"
echo >&2
echo "first event ($work/events/$(basename "$capture").ndjson.zst):" >&2
python - "$work/events/$(basename "$capture").ndjson.zst" <<'PY'
import io, sys, zstandard, orjson
with open(sys.argv[1], "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
    line = io.TextIOWrapper(r, encoding="utf-8").readline()
print(orjson.dumps(orjson.loads(line), option=orjson.OPT_INDENT_2).decode())
PY
