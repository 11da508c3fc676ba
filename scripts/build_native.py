#!/usr/bin/env python3
"""Compile the flow table (`pipeline/flows/table.py`) with mypyc, in place, beside its source.

    python scripts/build_native.py            # build when missing or stale
    python scripts/build_native.py --clean    # remove the compiled module (pure Python again)

Why: with flow records on, the table's per-packet Python was what kept flows from costing
no more than a quarter of the packets/s (issue #4; bench/RESULTS.md "The flow table
compiled"). mypyc compiles the same source, type annotations enforced, to a C extension;
nothing else changes.

How: the source is copied to a temporary directory with one line appended,
``_COMPILED_FROM = "<sha256 of table.py>"``, compiled there, and the two extension files
(the module and its mypyc runtime) copied into `pipeline/flows/`, where Python imports the
extension before the ``.py``. `pipeline/flows/__init__.py` compares that hash with the source
at import, so a compiled module older than its source is never used (a warning says so), and
``PCAP_INGEST_PURE_PYTHON=1`` makes it load the source instead. Needs mypy (the dev extra)
and a C compiler; without them the package runs as pure Python.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(REPO, "pipeline", "flows")
SOURCE = os.path.join(PACKAGE_DIR, "table.py")
MODULE_GLOBS = ("table.*.so", "table__mypyc.*.so")


def compiled_files() -> list[str]:
    return sorted(
        f for pattern in MODULE_GLOBS for f in glob.glob(os.path.join(PACKAGE_DIR, pattern))
    )


def source_hash() -> str:
    with open(SOURCE, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compiled_hash() -> str | None:
    """The source hash the compiled module was built from (read in a fresh interpreter:
    this one may have the module loaded already), or None without one."""
    if not compiled_files():
        return None
    probe = subprocess.run(
        [sys.executable, "-c", "import pipeline.flows.table as t; print(t._COMPILED_FROM)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PCAP_INGEST_PURE_PYTHON": "0", "PYTHONPATH": REPO},
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def clean() -> None:
    for path in compiled_files():
        os.remove(path)


def build() -> None:
    digest = source_hash()
    with tempfile.TemporaryDirectory(prefix="pcap-ingest-mypyc-") as work:
        # The package's other modules stay Python: mypyc sees only this file's imports' names.
        shutil.copytree(
            os.path.join(REPO, "pipeline"),
            os.path.join(work, "pipeline"),
            ignore=shutil.ignore_patterns("__pycache__", "*.so"),
        )
        with open(os.path.join(work, "pipeline", "flows", "table.py"), "a") as f:
            f.write(f'\n_COMPILED_FROM = "{digest}"\n')
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mypyc",
                "--follow-imports=skip",
                "--ignore-missing-imports",
                "pipeline/flows/table.py",
            ],
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        built = [
            f
            for pattern in MODULE_GLOBS
            for f in glob.glob(os.path.join(work, "pipeline", "flows", pattern))
        ]
        if len(built) != 2:
            raise SystemExit(f"build_native: mypyc made {built}, expected two extension files")
        clean()
        for path in built:
            shutil.copy2(path, PACKAGE_DIR)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled module")
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    args = parser.parse_args()
    if args.clean:
        clean()
        return 0
    if not args.force and compiled_hash() == source_hash():
        return 0
    try:
        build()
    except (subprocess.CalledProcessError, OSError) as exc:
        print(
            f"build_native: could not compile the flow table ({exc}); pure Python", file=sys.stderr
        )
        return 1
    if compiled_hash() != source_hash():
        print("build_native: the compiled flow table does not load", file=sys.stderr)
        return 1
    print("build_native: compiled pipeline/flows/table.py (mypyc)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
