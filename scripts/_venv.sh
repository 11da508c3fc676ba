# Sourced by the other scripts: make (once) and activate the project's virtual environment.
# PCAP_INGEST_VENV overrides where it lives (default: .venv in the repository).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PCAP_INGEST_VENV:-$repo_root/.venv}"
stamp="$venv/.installed-$(sha256sum "$repo_root/pyproject.toml" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    echo "setting up a virtual environment in $venv" >&2
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
    echo "installing pcap-ingest and its dev tools into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -e "$repo_root[dev]" >&2
    rm -f "$venv"/.installed-* && touch "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
# The compiled flow table (mypyc): built when missing or older than its source; without a
# C compiler the package runs as pure Python (scripts/build_native.py says so).
python "$repo_root/scripts/build_native.py" || true
