"""Manifests: what a finished output was made from, so an interrupted archive run can resume.

Every output stem in an output directory gets ``<stem>.manifest.json`` beside it, written
after its output files are complete and renamed, and written atomically (a temporary name in
the same directory, fsync, `os.replace`, fsync of the directory): a manifest that exists is
whole, and says its outputs were whole when it was written. It records

- the inputs (usually one; a capture set's several): absolute path, size, mtime (ns), sha256;
- the options that change the output (every `ConvertOptions` field but ``force``);
- the conversion's counts (frames, events per dataset, anomalies per reason) and status;
- the output files, with their sizes and sha256;
- the pcap-ingest version and the started/finished times (UTC).

`convert --resume` skips an input whose manifest matches what the run would produce: the
same input (size and mtime first; the sha256 is computed only when both match), the same
options, every output present with its size and hash, and a final status (``ok`` or
``partial``: a partial input is partial again). Anything else is redone from scratch: its
outputs, their ``.partial`` leftovers and the manifest are removed first. So a run killed at
any point (even between an output's rename and its manifest) resumes into the outputs an
uninterrupted run writes.

The pure parts (building, comparing, reading) take dicts and values; the hashing, the
stale-output removal and the atomic write are the file-touching edges.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.stats import QUARANTINE_SUFFIX, STATUS_OK, STATUS_PARTIAL, FileStats

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
# Statuses whose outputs are final: converting the same input again gives the same outputs.
# (``failed`` and ``interrupted`` are redone.)
FINAL_STATUSES = (STATUS_OK, STATUS_PARTIAL)
# Options that do not change what is written (``force`` only says whether to replace).
_NOT_OUTPUT_OPTIONS = ("force",)
# Read size for hashing: large reads keep hashlib in C with the GIL released.
_HASH_CHUNK = 1 << 20
# Threads hashing inputs beside the conversion (hashlib releases the GIL), and for the
# checks of a resume (many inputs, mostly in the page cache or on a fast disk).
HASH_THREADS = 2


@dataclass(frozen=True)
class InputIdentity:
    path: str
    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _regular_file(path: str) -> bool:
    return path != "-" and os.path.isfile(path)


def manifest_path(out_dir: str, stem: str) -> str:
    return os.path.join(out_dir, stem + MANIFEST_SUFFIX)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identify_input(path: str) -> InputIdentity:
    """Size and mtime taken before hashing: a file changed while hashed looks changed later.
    The path is made absolute: a resume may run from another directory."""
    st = os.stat(path)
    return InputIdentity(os.path.abspath(path), st.st_size, st.st_mtime_ns, file_sha256(path))


def output_options(options: Any) -> dict[str, Any]:
    """The options that change the output, as JSON values (tuples become lists)."""
    fields = dataclasses.asdict(options)
    for name in _NOT_OUTPUT_OPTIONS:
        fields.pop(name, None)
    return orjson.loads(orjson.dumps(fields))  # type: ignore[no-any-return]


def _utc(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"
    )


def build_manifest(
    inputs: list[InputIdentity],
    options: Any,
    files: list[FileStats],
    outputs: list[dict[str, Any]],
    started: float,
    finished: float,
    version: str,
) -> dict[str, Any]:
    """The manifest of one output stem. `outputs`: ``{"name", "size", "sha256"}`` each, names
    relative to the output directory; `started`/`finished`: epoch seconds."""
    events: dict[str, int] = {}
    anomalies: dict[str, int] = {}
    for stats in files:
        for name, n in stats.events.items():
            events[name] = events.get(name, 0) + n
        for name, n in stats.anomalies.items():
            anomalies[name] = anomalies.get(name, 0) + n
    statuses = [stats.status for stats in files]
    worst = next((s for s in ("failed", "interrupted", "partial") if s in statuses), STATUS_OK)
    return {
        "manifest": MANIFEST_VERSION,
        "pcap_ingest": version,
        "inputs": [identity.to_json() for identity in inputs],
        "options": output_options(options),
        "status": worst,
        "counts": {
            "frames": sum(stats.frames for stats in files),
            "decoded": sum(stats.decoded for stats in files),
            "events": dict(sorted(events.items())),
            "anomalies": dict(sorted(anomalies.items())),
        },
        "files": [
            {
                "path": stats.path,
                "format": stats.format,
                "compression": stats.compression,
                "frames": stats.frames,
                "decoded": stats.decoded,
                "status": stats.status,
                "error": stats.error,
                "events": dict(sorted(stats.events.items())),
                "anomalies": dict(sorted(stats.anomalies.items())),
                "flows": dict(sorted(stats.flows.items())),
                "extractors": dict(sorted(stats.extractors.items())),
            }
            for stats in files
        ],
        "outputs": outputs,
        "started": _utc(started),
        "finished": _utc(finished),
    }


def file_stats_from_manifest(manifest: dict[str, Any], out_dir: str) -> list[FileStats]:
    """The per-input accounting a manifest recorded (for the summary of a resumed run)."""
    outputs = [os.path.join(out_dir, o["name"]) for o in manifest.get("outputs", [])]
    found = []
    for entry in manifest.get("files", []):
        stats = FileStats(path=entry["path"])
        stats.format = entry.get("format", "")
        stats.compression = entry.get("compression", "")
        stats.frames = entry.get("frames", 0)
        stats.decoded = entry.get("decoded", 0)
        stats.status = entry.get("status", STATUS_OK)
        stats.error = entry.get("error")
        stats.events.update(entry.get("events", {}))
        stats.anomalies.update(entry.get("anomalies", {}))
        stats.flows.update(entry.get("flows", {}))
        stats.extractors.update(entry.get("extractors", {}))
        stats.outputs = list(outputs)
        found.append(stats)
    return found


def read_manifest(path: str) -> dict[str, Any] | None:
    """The manifest at `path`, or None when absent or unreadable (treated as not converted)."""
    try:
        with open(path, "rb") as f:
            manifest = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def mismatch(
    manifest: dict[str, Any] | None,
    paths: list[str],
    options: Any,
    out_dir: str,
    sha256: Callable[[str], str] = file_sha256,
) -> str | None:
    """Why `manifest` does not vouch for converting `paths` with `options` into `out_dir`,
    or None when it does. Cheap checks first; input hashes only when size and mtime match."""
    if manifest is None:
        return "no manifest"
    if manifest.get("manifest") != MANIFEST_VERSION:
        return "manifest version"
    if manifest.get("status") not in FINAL_STATUSES:
        return f"status {manifest.get('status')}"
    if manifest.get("options") != output_options(options):
        return "options changed"
    recorded = manifest.get("inputs", [])
    if [entry.get("path") for entry in recorded] != [os.path.abspath(p) for p in paths]:
        return "inputs changed"
    for entry in recorded:
        try:
            st = os.stat(entry["path"])
        except OSError:
            return f"input missing: {entry['path']}"
        if st.st_size != entry.get("size") or st.st_mtime_ns != entry.get("mtime_ns"):
            return f"input changed: {entry['path']}"
    for output in manifest.get("outputs", []):
        target = os.path.join(out_dir, output["name"])
        try:
            if os.path.getsize(target) != output.get("size"):
                return f"output size: {output['name']}"
        except OSError:
            return f"output missing: {output['name']}"
    for entry in recorded:
        if sha256(entry["path"]) != entry.get("sha256"):
            return f"input content changed: {entry['path']}"
    for output in manifest.get("outputs", []):
        if sha256(os.path.join(out_dir, output["name"])) != output.get("sha256"):
            return f"output content: {output['name']}"
    return None


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Atomically: a temporary name in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stem_files(names: Iterable[str], stem: str, suffix: str) -> list[str]:
    """The names in a directory listing that belong to `stem`: its output (plain or rotated,
    numbered), its ``--quarantine`` pcap, their ``.partial`` leftovers, its manifest and a
    manifest's temporary."""
    rotated = re.compile(re.escape(stem) + r"\.\d+" + re.escape(suffix) + r"(\.partial)?")
    manifest = stem + MANIFEST_SUFFIX
    quarantine = stem + QUARANTINE_SUFFIX
    found = []
    for name in names:
        if (
            name in (stem + suffix, stem + suffix + ".partial", manifest)
            or name in (quarantine, quarantine + ".partial")
            or rotated.fullmatch(name)
            or (name.startswith("." + manifest + ".") and name.endswith(".tmp"))
        ):
            found.append(name)
    return sorted(found)


def remove_stale(out_dir: str, stem: str, suffix: str, manifest: dict[str, Any] | None) -> None:
    """Remove what an earlier, unfinished or mismatching conversion of `stem` left: the
    manifest first (so no manifest ever vouches for a half-removed set), then the outputs it
    names and every file of the stem's names (`stem_files`)."""
    try:
        names = os.listdir(out_dir)
    except FileNotFoundError:
        return
    doomed = stem_files(names, stem, suffix)
    listed = [o.get("name", "") for o in (manifest or {}).get("outputs", [])]
    first = stem + MANIFEST_SUFFIX
    for name in sorted(
        set(doomed) | {n for n in listed if n and "/" not in n}, key=lambda n: n != first
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out_dir, name))


def describe_outputs(paths: list[str], out_dir: str) -> list[dict[str, Any]]:
    return [
        {
            "name": os.path.relpath(path, out_dir),
            "size": os.path.getsize(path),
            "sha256": file_sha256(path),
        }
        for path in paths
    ]


class ManifestWriter:
    """Writes each finished stem's manifest for a run into a directory.

    `units` maps each stem to the inputs it is made from. Inputs are hashed on background
    threads from the start (hashlib releases the GIL), overlapping the conversion; a stem's
    manifest is written once its last input has finished (`finished`) and its sink is
    closed. Interrupted stems get none (they are redone by a resume), nor do stems read from
    standard input or a pipe: those cannot be identified again (nor hashed beside the
    reader without taking its data).
    """

    def __init__(self, out_dir: str, options: Any, units: dict[str, list[str]]) -> None:
        from pipeline import __version__

        self.out_dir = out_dir
        self.options = options
        self.version = __version__
        self.units = {
            stem: paths for stem, paths in units.items() if all(map(_regular_file, paths))
        }
        self.stem_of = {path: stem for stem, paths in self.units.items() for path in paths}
        self._pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="pcap-ingest-hash")
        self._identities: dict[str, Future[InputIdentity]] = {
            path: self._pool.submit(identify_input, path) for path in self.stem_of
        }
        self._started: dict[str, float] = {}
        self._done: dict[str, list[FileStats]] = {}
        self.written: dict[str, dict[str, Any]] = {}  # stem -> its manifest

    def started(self, path: str) -> None:
        self._started.setdefault(self.stem_of.get(path, path), time.time())

    def finished(self, stats: FileStats) -> None:
        """`stats` of one input, its outputs closed; writes the stem's manifest when whole."""
        stem = self.stem_of.get(stats.path)
        if stem is None:
            return
        done = self._done.setdefault(stem, [])
        done.append(stats)
        if len(done) < len(self.units[stem]):
            return
        if any(s.status not in (*FINAL_STATUSES, "failed") for s in done):
            return
        order = {path: i for i, path in enumerate(self.units[stem])}
        done.sort(key=lambda s: order[s.path])
        outputs = sorted({path for s in done for path in s.outputs})
        now = time.time()
        manifest = build_manifest(
            [self._identities[path].result() for path in self.units[stem]],
            self.options,
            done,
            describe_outputs(outputs, self.out_dir),
            self._started.get(stem, now),
            now,
            self.version,
        )
        write_manifest(manifest_path(self.out_dir, stem), manifest)
        self.written[stem] = manifest

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ResumePlan:
    todo: list[str]  # stems to convert
    skipped: dict[str, dict[str, Any]]  # stem -> its matching manifest


def plan_resume(units: dict[str, list[str]], out_dir: str, options: Any, suffix: str) -> ResumePlan:
    """Which stems' manifests match (skipped) and which to redo; the latter's stale files are
    removed here. Checks run on `HASH_THREADS` threads (hashing dominates)."""
    manifests = {stem: read_manifest(manifest_path(out_dir, stem)) for stem in units}
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        reasons = dict(
            zip(
                units,
                pool.map(
                    lambda stem: mismatch(manifests[stem], units[stem], options, out_dir), units
                ),
                strict=True,
            )
        )
    plan = ResumePlan(todo=[], skipped={})
    for stem, reason in reasons.items():
        manifest = manifests[stem]
        if reason is None and manifest is not None:
            plan.skipped[stem] = manifest
        else:
            remove_stale(out_dir, stem, suffix, manifest)
            plan.todo.append(stem)
    return plan
