"""Shared test helpers: where the reference captures are, and their tshark truth."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_captures_dir() -> Path:
    """../shared/captures beside the repository (as CI lays it), or $PCAP_INGEST_SHARED."""
    env = os.environ.get("PCAP_INGEST_SHARED")
    base = Path(env) if env else REPO.parent / "shared"
    return base / "captures" if (base / "captures").is_dir() else base


SHARED = shared_captures_dir()
HAVE_SHARED = (SHARED / "truth").is_dir()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED,
    reason=f"reference captures not found at {SHARED} (clone beside ../shared, "
    "or set PCAP_INGEST_SHARED)",
)


def reference_captures() -> list[Path]:
    """Every capture in ../shared/captures (malformed/ included) that has a truth file."""
    if not HAVE_SHARED:
        return []
    found = []
    for truth in sorted((SHARED / "truth").rglob("*.json")):
        capture = SHARED / truth.relative_to(SHARED / "truth").with_suffix("")
        if capture.is_file():
            found.append(capture)
    return found


def capture_id(path: Path) -> str:
    return str(path.relative_to(SHARED)) if HAVE_SHARED else str(path)


def truth_for(capture: Path) -> dict[str, Any]:
    rel = capture.relative_to(SHARED)
    return json.loads((SHARED / "truth" / (str(rel) + ".json")).read_text())


# Parametrisation over the whole corpus: one test id per capture file.
REFERENCE_CAPTURES = reference_captures()
CAPTURE_PARAMS = [pytest.param(p, id=capture_id(p)) for p in REFERENCE_CAPTURES] or [
    pytest.param(None, marks=needs_shared, id="no-shared-captures")
]
