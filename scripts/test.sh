#!/usr/bin/env bash
# Set up the virtual environment (first run) and run the whole test suite: lint, tests, and
# every benchmark once in quick mode (so they cannot rot). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$repo_root"
echo "== ruff" >&2
ruff check pipeline tests bench scripts
ruff format --check pipeline tests bench scripts
# CI runs the suite on the compiled flow table (tests/test_native.py runs it against the
# pure Python one): a machine that cannot build it fails here, not later.
python -c "import pipeline.flows as f, sys; sys.exit(not f.COMPILED_TABLE)" || {
    echo "the compiled flow table is not in use (scripts/build_native.py)" >&2
    exit 1
}
echo "== pytest" >&2
python -m pytest -q "$@"
echo "== benchmarks (quick mode: one round each, no timing assertions)" >&2
PCAP_INGEST_BENCH_QUICK=1 python -m pytest -q bench --benchmark-disable -p no:cacheprovider
