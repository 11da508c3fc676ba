#!/usr/bin/env bash
# Set up the virtual environment (first run) and run the whole test suite: lint, tests, and
# every benchmark once in quick mode (so they cannot rot). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$repo_root"
echo "== ruff" >&2
ruff check pipeline tests bench scripts
ruff format --check pipeline tests bench scripts
echo "== pytest" >&2
python -m pytest -q "$@"
echo "== benchmarks (quick mode: one round each, no timing assertions)" >&2
PCAP_INGEST_BENCH_QUICK=1 python -m pytest -q bench --benchmark-disable -p no:cacheprovider
