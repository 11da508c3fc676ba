"""Flows and reassembly: pure state trackers over decoded packets. No I/O here."""

from pipeline.flows.reassembly import (
    MAX_AHEAD_BYTES,
    MAX_BEHIND_BYTES,
    MAX_BUFFERED_BYTES,
    MAX_BUFFERED_SEGMENTS,
    SEQ_MOD,
    StreamReassembler,
)

__all__ = [
    "MAX_AHEAD_BYTES",
    "MAX_BEHIND_BYTES",
    "MAX_BUFFERED_BYTES",
    "MAX_BUFFERED_SEGMENTS",
    "SEQ_MOD",
    "StreamReassembler",
]

from pipeline.flows.defrag import (
    DONE_LINGER_NS,
    FRAGMENT_TIMEOUT_NS,
    IPV4_MAX_DATAGRAM_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_DONE_KEYS,
    MAX_PENDING_BYTES,
    MAX_PENDING_DATAGRAMS,
    MAX_PENDING_FRAGMENTS,
    Defragmenter,
)

__all__ += [
    "DONE_LINGER_NS",
    "FRAGMENT_TIMEOUT_NS",
    "IPV4_MAX_DATAGRAM_BYTES",
    "MAX_DATAGRAM_BYTES",
    "MAX_DONE_KEYS",
    "MAX_PENDING_BYTES",
    "MAX_PENDING_DATAGRAMS",
    "MAX_PENDING_FRAGMENTS",
    "Defragmenter",
]


def _load_table() -> bool:
    """Pick the flow table module: the compiled one (scripts/build_native.py) when it was
    built from this very `table.py` and PCAP_INGEST_PURE_PYTHON is not set, else the source.
    Python imports an extension before a ``.py`` of the same name, so a compiled module
    older than its source would otherwise shadow every edit to it."""
    import glob
    import hashlib
    import importlib.util
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__))
    if not glob.glob(os.path.join(here, "table.*.so")):
        return False
    source = os.path.join(here, "table.py")
    if os.environ.get("PCAP_INGEST_PURE_PYTHON", "") in ("", "0"):
        from pipeline.flows import table as compiled

        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if getattr(compiled, "_COMPILED_FROM", None) == digest:
            return True
        warnings.warn(
            "the compiled flow table is older than pipeline/flows/table.py: using the source "
            "(run scripts/build_native.py)",
            stacklevel=2,
        )
    spec = importlib.util.spec_from_file_location("pipeline.flows.table", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipeline.flows.table"] = module
    spec.loader.exec_module(module)
    globals()["table"] = module
    return False


# True when the flow table in use is the mypyc-compiled one (bench results record it).
COMPILED_TABLE = _load_table()
__all__ += ["COMPILED_TABLE"]
