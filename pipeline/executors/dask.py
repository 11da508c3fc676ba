"""`convert --executor dask`: the inputs of a run as tasks on an existing Dask cluster.

    pcap-ingest convert ARCHIVE/ -o /shared/out --executor dask --scheduler tcp://HOST:8786

The client (this process) expands the inputs and plans every output's stem (so two inputs
with the same name get ``x.pcap`` and ``x.pcap-2`` as in a local run), then submits one
task per input — one per capture set with ``--one-capture`` — to the cluster. Each task
runs the single-machine pipeline on its input, writes into the output directory (which
every worker must see at the same path, as it must see the inputs: a shared filesystem),
writes the input's manifest (`pipeline.manifest`) and returns it. With ``--resume`` a task
first checks its manifest and returns at once when it matches, so the hashing of a resume
is spread over the cluster too. Every task attempt starts by removing what an earlier
attempt of the same stem left (``.partial`` files, rotated parts, a stale manifest), so
a retried task writes the same outputs as a first one.

Failures: a task that raises (a worker process died, the output directory unwritable) is
retried by Dask (`RETRIES` times, on any worker); past that the input is reported failed in
the summary with the exception's words, and the other inputs convert regardless. A corrupt
or truncated input is not a failure: it converts as far as it can be read and is reported
``partial``, as locally. The client prints one line per finished input (``--progress
tty``; JSON lines with ``--progress json``) and returns the run's statistics, built from
the tasks' results.

How a task converts: in the Dask worker's process, single-process (``-w 0``), not as a
subprocess running the multiprocess engine. Dask worker processes are daemonic and cannot
start multiprocessing children (the engine's reader and workers); a subprocess
(``python -m pipeline convert INPUT -o OUT -w N``) gets around that, but each costs a fresh
interpreter and imports (0.3–0.4 s measured here per task, against ~0.01 s for the same tiny
input in-process) and, more to the point, the cluster's parallelism is already across
inputs: a cluster of N single-threaded worker processes keeps N cores busy with N inputs,
which is what an archive of many files wants. Run the workers with one thread each
(``dask worker --nthreads 1 --nworkers N``): conversion is CPU-bound Python and holds the
GIL. One large capture is still best converted locally with ``-w N``.

Limits: the client's decompression limits (``--max-decompressed``,
``--max-decompression-ratio``) travel with every task. ``--worker-timeout`` does not apply:
there are no engine workers to watch in a task; a task stuck on an input is the cluster's
to time out or cancel.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import orjson

from pipeline.capture.source import DecompressionLimits, decompression_limits
from pipeline.convert import (
    ConvertOptions,
    _convert_files,
    _convert_one_capture,
    gc_tuned,
    output_stem,
    output_stems,
    refuse_existing,
)
from pipeline.manifest import (
    ManifestWriter,
    file_stats_from_manifest,
    manifest_path,
    mismatch,
    read_manifest,
    remove_stale,
)
from pipeline.sinks.files import output_suffix
from pipeline.stats import STATUS_FAILED, FileStats, RunStats

# Attempts after the first for a task that raises (Dask resubmits it, on any worker).
RETRIES = 2


def convert_unit(
    stem: str,
    paths: list[str],
    out: str,
    options: ConvertOptions,
    resume: bool,
    one_capture: bool,
    limits: DecompressionLimits | None = None,
) -> dict[str, Any]:
    """One task: convert `paths` (one input, or a capture set) into `out` under `stem`,
    with the client's decompression `limits` (the task runs in another process: the
    client's `decompression_limits` block does not reach it).

    Returns ``{"stem", "skipped", "manifest", "files", "worker_pid"}``: `files` the
    per-input statistics as `FileStats.to_json` writes them; `manifest` the one written (or,
    when `skipped`, the one that matched), None when the input could not be read at all."""
    suffix = output_suffix(options.compression)
    manifest = read_manifest(manifest_path(out, stem))
    if resume and mismatch(manifest, paths, options, out) is None:
        assert manifest is not None
        files = file_stats_from_manifest(manifest, out)
        return _result(stem, True, manifest, files)
    remove_stale(out, stem, suffix, manifest)  # what an earlier attempt or run left
    os.makedirs(out, exist_ok=True)
    writer = ManifestWriter(out, options, {stem: list(paths)})
    try:
        with gc_tuned(), decompression_limits(limits or DecompressionLimits()):
            if one_capture:
                run = _convert_one_capture(paths, out, options, None, writer)
            else:
                run = _convert_files(paths, out, options, None, [stem], writer)
    finally:
        writer.close()
    return _result(stem, False, writer.written.get(stem), run.files)


def _result(
    stem: str, skipped: bool, manifest: dict[str, Any] | None, files: list[FileStats]
) -> dict[str, Any]:
    return {
        "stem": stem,
        "skipped": skipped,
        "manifest": manifest,
        "files": [stats.to_json() for stats in files],
        "worker_pid": os.getpid(),
    }


def stats_from_json(entry: dict[str, Any]) -> FileStats:
    """`FileStats.to_json`, read back."""
    stats = FileStats(path=entry["path"])
    for name in ("format", "compression", "frames", "decoded", "status", "error", "seconds"):
        setattr(stats, name, entry[name])
    for name in ("anomalies", "events", "flows", "extractors"):
        getattr(stats, name).update(entry.get(name, {}))
    stats.outputs = list(entry.get("outputs", []))
    return stats


def convert_on_dask(
    paths: list[str],
    out: str,
    options: ConvertOptions,
    scheduler: Any,
    *,
    resume: bool = False,
    one_capture: bool = False,
    progress: str | None = None,
    retries: int = RETRIES,
    limits: DecompressionLimits | None = None,
) -> RunStats:
    """Convert `paths` into directory `out` on the Dask cluster at `scheduler` (an address,
    or a `distributed` cluster object). Raises `InputError` for an existing output (without
    `resume` or ``options.force``) before any task is submitted."""
    from distributed import Client, as_completed

    paths = [os.path.abspath(path) for path in paths]  # workers may start elsewhere
    out = os.path.abspath(out)
    if one_capture:
        units = {output_stem(paths[0]) + ".set": paths}
    else:
        units = {stem: [path] for path, stem in zip(paths, output_stems(paths), strict=True)}
    if not resume:
        refuse_existing(list(units), out, options)
    run = RunStats()
    started = time.perf_counter()
    by_path: dict[str, FileStats] = {}
    skipped: dict[str, FileStats] = {}
    with Client(scheduler) as client:  # an unreachable scheduler raises OSError: exit 1
        os.makedirs(out, exist_ok=True)
        futures = {
            client.submit(
                convert_unit,
                stem,
                group,
                out,
                options,
                resume,
                one_capture,
                limits,
                key=f"pcap-ingest-convert-{stem}-{os.getpid()}-{time.time_ns()}",
                retries=retries,
                pure=False,
            ): stem
            for stem, group in units.items()
        }
        for done, future in enumerate(as_completed(futures), start=1):
            stem = futures[future]
            if future.status == "finished":
                result = future.result()
                files = [stats_from_json(entry) for entry in result["files"]]
                target = skipped if result["skipped"] else by_path
            else:
                error = future.exception()
                files = []
                for path in units[stem]:
                    stats = FileStats(path=path, status=STATUS_FAILED)
                    stats.error = (
                        f"dask task failed after {retries + 1} attempts: "
                        f"{type(error).__name__}: {error}"
                    )
                    files.append(stats)
                target = by_path
                result = {"skipped": False}
            for stats in files:
                target[stats.path] = stats
            _report(progress, done, len(units), stem, files, result["skipped"], started)
    run.files = [by_path[path] for path in paths if path in by_path]
    run.skipped = [skipped[path] for path in paths if path in skipped]
    run.seconds = time.perf_counter() - started
    return run


def _report(
    progress: str | None,
    done: int,
    total: int,
    stem: str,
    files: list[FileStats],
    skipped: bool,
    started: float,
) -> None:
    """A line per finished input on stderr (the client's progress)."""
    if progress is None:
        return
    frames = sum(stats.frames for stats in files)
    events = sum(sum(stats.events.values()) for stats in files)
    statuses = sorted({stats.status for stats in files})
    elapsed = time.perf_counter() - started
    if progress == "json":
        line = orjson.dumps(
            {
                "elapsed_s": round(elapsed, 3),
                "files_done": done,
                "files": total,
                "output": stem,
                "inputs": [stats.path for stats in files],
                "status": ",".join(statuses),
                "skipped": skipped,
                "frames": frames,
                "events": events,
                "error": next((s.error for s in files if s.error), None),
            }
        ).decode()
    else:
        what = "skipped (manifest matches)" if skipped else ",".join(statuses)
        error = next((s.error for s in files if s.error), None)
        line = (
            f"[{done}/{total}] {stem}: {what}, {frames:,} frames, {events:,} events "
            f"({elapsed:.1f} s)" + (f": {error}" if error else "")
        )
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)
