"""Fuzzing the whole conversion: nothing crashes, nothing hangs, every frame is accounted for.

Two sources of hostile input (issue #9, first slice):

* **editcap fuzzing** — ``editcap -E 0.02 -o 0 --seed S`` (Wireshark's own payload fuzzer,
  Debian package ``tshark``) on every reference capture, with fixed seeds;
* **our container mutator** — seeded and deterministic, no external tool: truncation at every
  offset of the first 4 KiB, single bit flips, and every length field of the first records or
  blocks (pcap snaplen/caplen/origlen; pcapng block total lengths at both ends, SHB section
  length, EPB captured/original length, option lengths) replaced by hostile values, written in
  the file's own byte order.

Every fuzzed file must convert (``workers=0``; a sample also through the multiprocess engine
and the CLI) without an exception, within a time bound, with status ok or partial, and with
``frames == decoded + sum(anomalies)``. A file the reader cannot open at all must be refused
with a one-line `InputError` (the usage check every input gets before anything is written).

Inputs that once broke the pipeline are kept under ``tests/fuzz_cases/`` and converted by
`test_fuzz_case` on every run. ``PCAP_INGEST_FUZZ_LONG=1`` multiplies the seeds (a longer run,
not for CI); ``PCAP_INGEST_FUZZ_SAVE=DIR`` copies every failing fuzzed input there.
"""

from __future__ import annotations

import faulthandler
import os
import random
import shutil
import signal
import struct
import subprocess
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline import convert
from pipeline.inputs import InputError, capture_problem
from pipeline.stats import STATUS_OK, STATUS_PARTIAL, FileStats
from tests import capture_writers as w
from tests.conftest import HAVE_SHARED, REFERENCE_CAPTURES, SHARED, needs_shared
from tests.test_convert import run_cli

EXTRACT = ("packet", "anomaly", "flow", "stats")
# A longer run (not for CI): every seed list is this many times longer.
LONG = 10 if os.environ.get("PCAP_INGEST_FUZZ_LONG", "") not in ("", "0") else 1
SAVE_DIR = os.environ.get("PCAP_INGEST_FUZZ_SAVE")
FUZZ_CASES = Path(__file__).parent / "fuzz_cases"

# editcap: 15 seeds x ~150 reference captures = ~2,200 fuzzed files and ~1M frames (the CI
# target of #9: >= 1,000 files, >= 1M packets), in about half a minute on two cores.
EDITCAP = shutil.which("editcap")
EDITCAP_SEEDS = range(1, 15 * LONG + 1)
EDITCAP_ERROR_PROBABILITY = "0.02"
MIN_EDITCAP_FILES = 1_000
MIN_EDITCAP_FRAMES = 1_000_000
needs_editcap = pytest.mark.skipif(
    EDITCAP is None, reason="editcap not installed (Debian package tshark; .ci/run installs it)"
)

# Files converted per `convert` call: the per-call cost is small, but a crash in a batch is
# then narrowed down file by file, so batches stay modest.
BATCH_FILES = 400
# Generous bounds: a whole batch, and one file (the slowest reference capture takes < 1 s).
BATCH_SECONDS = 120
FILE_SECONDS = 20.0

# Mutator: how far truncation walks, how many bit flips per base capture, and the hostile
# values written into each length field (masked to the field's width).
TRUNCATE_BYTES = 4096  # the first base capture of each kind
TRUNCATE_BYTES_MORE = 1024  # the others: file header and the first records or blocks
BIT_FLIPS = 300 * LONG
FIRST_RECORDS = 4  # pcap records whose caplen/origlen are replaced
FIRST_BLOCKS = 6  # pcapng blocks whose lengths are replaced
FIRST_OPTIONS = 3  # options per block whose lengths are replaced
HOSTILE_LENGTHS = (0, 1, 11, 12, 13, 2**31 - 1, 2**32 - 16)

# Bugs found and kept under tests/fuzz_cases/ but not fixed yet: (exception text, dataset it
# is in) -> the kept case. A fuzzed file failing this way is counted, not failed, if it
# converts cleanly without that dataset; the case itself is a strict xfail (`KNOWN_BROKEN`).
KNOWN_BUGS: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------------------- the checks


class Hang(Exception):
    """A conversion ran past its time bound."""


@contextmanager
def time_bound(seconds: int) -> Iterator[None]:
    """Raise `Hang` in this (main) thread after `seconds`; if even that does not get through
    (a loop in C), dump every thread's stack and exit, so CI fails instead of hanging."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"conversion still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds + 60, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    """What a fuzz run covered, and what broke (file → one-paragraph problem)."""

    files: int = 0
    frames: int = 0
    refused: int = 0  # could not be opened: refused up front with an InputError
    statuses: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    known: dict[str, str] = field(default_factory=dict)  # broke the way a KNOWN_BUGS entry says

    def count(self, stats: FileStats) -> None:
        self.files += 1
        self.frames += stats.frames
        self.statuses[stats.status] = self.statuses.get(stats.status, 0) + 1

    def problem(self, path: str, text: str) -> None:
        self.problems[path] = text
        if SAVE_DIR:
            os.makedirs(SAVE_DIR, exist_ok=True)
            shutil.copy(path, Path(SAVE_DIR) / Path(path).name)

    def summary(self) -> str:
        return (
            f"{self.files} files converted ({self.statuses}), {self.frames} frames, "
            f"{self.refused} refused up front, {len(self.known)} known bugs hit"
        )

    def assert_clean(self) -> None:
        if self.problems:
            shown = "\n\n".join(f"{p}:\n{t}" for p, t in list(self.problems.items())[:10])
            pytest.fail(f"{len(self.problems)} of {self.files} fuzzed files broke:\n{shown}")


def file_problem(stats: FileStats) -> str | None:
    """Why one file's result breaks the promise, or None."""
    if stats.status not in (STATUS_OK, STATUS_PARTIAL):
        return f"status {stats.status!r} ({stats.error})"
    if stats.status == STATUS_PARTIAL and not stats.error:
        return "partial without an error line"
    if stats.error is not None and "\n" in stats.error:
        return f"error is not one line: {stats.error!r}"
    if not stats.accounted:
        return (
            f"unaccounted frames: frames={stats.frames} decoded={stats.decoded} "
            f"anomalies={dict(stats.anomalies)}"
        )
    if stats.seconds > FILE_SECONDS:
        return f"took {stats.seconds:.1f} s (bound {FILE_SECONDS} s)"
    return None


def known_bug(exc: Exception, path: str, out: str) -> str | None:
    """The KNOWN_BUGS entry `exc` is, if converting `path` without that entry's dataset is
    clean (so a known bug in one dataset hides nothing else); None otherwise."""
    for (message, dataset), case in KNOWN_BUGS.items():
        if message not in str(exc):
            continue
        others = tuple(d for d in EXTRACT if d != dataset)
        try:
            run = convert([path], out, workers=0, extract=others, force=True)
        except Exception:
            return None
        return case if file_problem(run.files[0]) is None else None
    return None


def check_refused(path: str, problem: str, out: str, tally: Tally) -> None:
    """A file the reader cannot open: a one-line reason, and `convert` refuses it up front."""
    tally.refused += 1
    if not problem or "\n" in problem:
        tally.problem(path, f"open problem is not one line: {problem!r}")
        return
    try:
        convert([path], out, workers=0, extract=EXTRACT, force=True)
    except InputError:
        return
    except Exception:
        tally.problem(path, traceback.format_exc())
        return
    tally.problem(path, f"convert accepted a file capture_problem refuses ({problem})")


def convert_checked(paths: list[str], out: str, tally: Tally) -> None:
    """Convert `paths` in this process, in batches, and check every file's result."""
    openable: list[str] = []
    for path in paths:
        try:
            problem = capture_problem(path)
        except Exception:
            tally.problem(path, "capture_problem raised:\n" + traceback.format_exc())
            continue
        if problem is None:
            openable.append(path)
        else:
            check_refused(path, problem, out, tally)
    for start in range(0, len(openable), BATCH_FILES):
        batch = openable[start : start + BATCH_FILES]
        try:
            with time_bound(BATCH_SECONDS):
                run = convert(batch, out, workers=0, extract=EXTRACT, force=True)
        except Exception:
            run = None
        if run is None:  # find the file(s) that raise: one at a time
            for path in batch:
                convert_one_checked(path, out, tally)
            clear_outputs(out)
            continue
        for path, stats in zip(batch, run.files, strict=True):
            tally.count(stats)
            problem = file_problem(stats)
            if problem is not None:
                tally.problem(path, problem)
        clear_outputs(out)


def convert_one_checked(path: str, out: str, tally: Tally) -> None:
    try:
        with time_bound(BATCH_SECONDS):
            run = convert([path], out, workers=0, extract=EXTRACT, force=True)
    except Exception as exc:
        tally.files += 1
        known = known_bug(exc, path, out)
        if known is not None:
            tally.known[path] = known
        else:
            tally.problem(path, traceback.format_exc())
        return
    tally.count(run.files[0])
    problem = file_problem(run.files[0])
    if problem is not None:
        tally.problem(path, problem)


def clear_outputs(out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------------------- editcap fuzzing


def editcap_fuzz(capture: Path, seed: int, out_dir: Path) -> Path | None:
    """`capture` fuzzed by editcap with `seed`, as classic pcap on odd seeds and pcapng on even
    ones (pcapng when pcap cannot hold it); None if editcap cannot read the capture at all."""
    out = out_dir / f"s{seed}__{capture.name}"
    formats = ("pcap", "pcapng") if seed % 2 else ("pcapng",)
    for fmt in formats:
        command = [EDITCAP or "editcap", "-F", fmt, "-E", EDITCAP_ERROR_PROBABILITY, "-o", "0"]
        proc = subprocess.run(
            [*command, "--seed", str(seed), str(capture), str(out)],
            capture_output=True,
            timeout=60,
        )
        if proc.returncode == 0:
            return out
    out.unlink(missing_ok=True)
    return None


def editcap_batch(seed: int, out_dir: Path, captures: list[Path]) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = pool.map(lambda c: editcap_fuzz(c, seed, out_dir), captures)
        return [str(p) for p in made if p is not None]


@needs_shared
@needs_editcap
@pytest.mark.slow
def test_editcap_fuzzed_corpus(tmp_path: Path) -> None:
    """Every reference capture x every seed, fuzzed by editcap: converted in this process."""
    tally = Tally()
    for seed in EDITCAP_SEEDS:
        fuzzed = tmp_path / f"seed{seed}"
        paths = editcap_batch(seed, fuzzed, REFERENCE_CAPTURES)
        convert_checked(paths, str(tmp_path / "out"), tally)
        shutil.rmtree(fuzzed)
    tally.assert_clean()
    assert tally.files + tally.refused >= MIN_EDITCAP_FILES * LONG, tally.summary()
    assert tally.frames >= MIN_EDITCAP_FRAMES * LONG, tally.summary()
    print(f"\neditcap fuzzing: {tally.summary()}")


def engine_sample(tmp_path: Path) -> list[str]:
    """50 editcap-fuzzed files (seed 1, every third reference capture)."""
    paths = editcap_batch(1, tmp_path / "fuzzed", REFERENCE_CAPTURES[::3])
    return [p for p in paths if capture_problem(p) is None][:50]


@needs_shared
@needs_editcap
def test_editcap_fuzzed_engine(tmp_path: Path) -> None:
    """A sample through the multiprocess engine: same accounting as in this process."""
    paths = engine_sample(tmp_path)
    with time_bound(BATCH_SECONDS):
        single = convert(paths, str(tmp_path / "w0"), workers=0, extract=EXTRACT, force=True)
        multi = convert(paths, str(tmp_path / "w2"), workers=2, extract=EXTRACT, force=True)
    assert len(multi.files) == len(paths)
    for path, one, two in zip(paths, single.files, multi.files, strict=True):
        assert file_problem(two) is None, (path, file_problem(two))
        assert (two.status, two.frames, two.decoded, two.anomalies) == (
            one.status,
            one.frames,
            one.decoded,
            one.anomalies,
        ), path


@needs_shared
@needs_editcap
def test_editcap_fuzzed_cli(tmp_path: Path) -> None:
    """A sample through the CLI: exit 0 (all read) or 2 (partial), never a traceback."""
    paths = engine_sample(tmp_path)
    proc = run_cli("convert", *paths, "-o", str(tmp_path / "out"), "-q", "--force", "-w", "2")
    assert proc.returncode in (0, 2), proc.stderr.decode(errors="replace")[-3000:]
    assert b"Traceback" not in proc.stderr


# ------------------------------------------------------------------------ container mutator

PCAP_KINDS = {
    b"\xd4\xc3\xb2\xa1": "pcap-le-us",
    b"\xa1\xb2\xc3\xd4": "pcap-be-us",
    b"\x4d\x3c\xb2\xa1": "pcap-le-ns",
    b"\xa1\xb2\x3c\x4d": "pcap-be-ns",
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
KINDS = ("pcap-le-us", "pcap-be-us", "pcap-le-ns", "pcap-be-ns", "pcapng-le", "pcapng-be")
BASES_PER_KIND = 2
BASE_MAX_BYTES = 32 * 1024  # mutated captures stay small, so thousands convert quickly


def container_kind(data: bytes) -> str | None:
    if data[:4] == PCAPNG_MAGIC and len(data) >= 12:
        return "pcapng-le" if data[8:12] == b"\x4d\x3c\x2b\x1a" else "pcapng-be"
    return PCAP_KINDS.get(data[:4])


def pcap_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(ts_sec, ts_frac, bytes) of a well-formed classic pcap."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records, off = [], 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(order + "IIII", data, off)
        records.append((sec, frac, data[off + 16 : off + 16 + caplen]))
        off += 16 + caplen
    return records


def synthesized(kind: str, data: bytes) -> bytes:
    """A kind the corpus lacks, written from a little-endian µs pcap's records."""
    records = pcap_records(data)
    if kind == "pcap-be-ns":
        return w.pcap_bytes([w.Rec(s, f * 1000, b) for s, f, b in records], order=">", nano=True)
    assert kind == "pcapng-be"
    order = ">"
    out = w.shb(order=order, options=w.option(4, b"pcap-ingest fuzz", order=order))
    out += w.idb(w.LINKTYPE_ETHERNET, order=order, tsresol=6)
    for n, (sec, frac, buf) in enumerate(records):
        comment = w.option(1, f"frame {n}".encode(), order=order) + w.end_of_options(order=order)
        out += w.epb(0, sec * 1_000_000 + frac, buf, order=order, options=comment)
    return out


def mutator_bases() -> list[tuple[str, str, bytes]]:
    """(kind, name, bytes): up to BASES_PER_KIND small reference captures of each container
    kind, picked by magic number, the largest under BASE_MAX_BYTES first (more records to
    walk); a kind the corpus lacks is written from dpkt__http.pcap."""
    by_kind: dict[str, list[Path]] = {k: [] for k in KINDS}
    for path in REFERENCE_CAPTURES:
        size = path.stat().st_size
        if size > BASE_MAX_BYTES:
            continue
        with open(path, "rb") as f:
            kind = container_kind(f.read(12))
        if kind is not None:
            by_kind[kind].append(path)
    bases = []
    seed_capture = (SHARED / "dpkt__http.pcap").read_bytes()
    for kind in KINDS:
        picked = sorted(by_kind[kind], key=lambda p: (-p.stat().st_size, p.name))
        for path in picked[:BASES_PER_KIND]:
            bases.append((kind, path.name, path.read_bytes()))
        if len(picked) < BASES_PER_KIND:
            bases.append((kind, f"synthesized-{kind}", synthesized(kind, seed_capture)))
    return bases


BASES = mutator_bases() if HAVE_SHARED else []
BASE_PARAMS = [pytest.param(b, id=f"{b[0]}:{b[1]}") for b in BASES] or [
    pytest.param(None, marks=needs_shared, id="no-shared-captures")
]

# One mutant: (name, bytes). Mutators are generators, so a base's mutants are written and
# converted a batch at a time.
Mutants = Iterator[tuple[str, bytes]]


def truncations(data: bytes, limit: int) -> Mutants:
    """The capture cut at every offset of its first `limit` bytes (the empty file included)."""
    for n in range(min(limit, len(data))):
        yield f"trunc{n}", data[:n]


def bit_flips(data: bytes, seed: int) -> Mutants:
    """Single bit flips at seeded positions: half in the first 512 bytes (file header, first
    records or blocks), half anywhere."""
    rng = random.Random(seed)
    for i in range(BIT_FLIPS):
        end = min(len(data), 512) if i % 2 == 0 else len(data)
        pos, bit = rng.randrange(end), rng.randrange(8)
        mutant = bytearray(data)
        mutant[pos] ^= 1 << bit
        yield f"flip{pos}.{bit}", bytes(mutant)


@dataclass(frozen=True)
class LengthField:
    """A length field to overwrite: where it is, its struct code ("H", "I", "q"), and what."""

    offset: int
    code: str
    what: str


def pcap_length_fields(data: bytes) -> tuple[str, list[LengthField]]:
    """snaplen, and caplen/origlen of the first records, of a classic pcap."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    found = [LengthField(16, "I", "snaplen")]
    off = 24
    for n in range(FIRST_RECORDS):
        if off + 16 > len(data):
            break
        found.append(LengthField(off + 8, "I", f"rec{n}.caplen"))
        found.append(LengthField(off + 12, "I", f"rec{n}.origlen"))
        off += 16 + struct.unpack_from(order + "I", data, off + 8)[0]
    return order, found


def pcapng_options(
    data: bytes, order: str, start: int, end: int, where: str
) -> Iterator[LengthField]:
    off = start
    for n in range(FIRST_OPTIONS):
        if off + 4 > end:
            return
        code, length = struct.unpack_from(order + "HH", data, off)
        yield LengthField(off + 2, "H", f"{where}.opt{n}({code}).length")
        if code == 0:
            return
        off += 4 + length + (-length % 4)


def pcapng_length_fields(data: bytes) -> tuple[str, list[LengthField]]:
    """Block total lengths (both ends), SHB section length, EPB captured/original length and
    option lengths, of the first blocks of a pcapng file (one section's byte order)."""
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    found: list[LengthField] = []
    off = 0
    for n in range(FIRST_BLOCKS):
        if off + 12 > len(data):
            break
        btype, total = struct.unpack_from(order + "II", data, off)
        if total < 12 or off + total > len(data):
            break
        end = off + total - 4
        where = f"block{n}({btype:#x})"
        found.append(LengthField(off + 4, "I", f"{where}.length"))
        found.append(LengthField(end, "I", f"{where}.trailer"))
        if btype == 0x0A0D0D0A:
            found.append(LengthField(off + 16, "q", f"{where}.section_length"))
            found.extend(pcapng_options(data, order, off + 24, end, where))
        elif btype == 1:
            found.extend(pcapng_options(data, order, off + 16, end, where))
        elif btype == 6 and off + 28 <= end:
            caplen = struct.unpack_from(order + "I", data, off + 20)[0]
            found.append(LengthField(off + 20, "I", f"{where}.caplen"))
            found.append(LengthField(off + 24, "I", f"{where}.origlen"))
            opts = off + 28 + caplen + (-caplen % 4)
            found.extend(pcapng_options(data, order, opts, end, where))
        off += total
    return order, found


def hostile_values(code: str, size: int) -> list[int]:
    """The hostile lengths (and the file size +- 1), as the field's width can hold them."""
    bits = struct.calcsize(code) * 8
    mask = (1 << bits) - 1
    values = [*HOSTILE_LENGTHS, size - 1, size + 1, mask]
    if code == "q":  # the SHB section length is signed: -1 means "not given"
        return sorted({v for v in values if v < 2**63} | {2**63 - 1})
    return sorted({v & mask for v in values})


def length_field_mutants(data: bytes) -> Mutants:
    if data[:4] == PCAPNG_MAGIC:
        order, fields = pcapng_length_fields(data)
    else:
        order, fields = pcap_length_fields(data)
    for fld in fields:
        for value in hostile_values(fld.code, len(data)):
            mutant = bytearray(data)
            struct.pack_into(order + fld.code, mutant, fld.offset, value)
            yield f"{fld.what}={value}", bytes(mutant)


def run_mutants(tmp_path: Path, kind: str, mutants: Mutants) -> Tally:
    """Write the mutants a batch at a time and convert them; every file checked."""
    tally = Tally()
    suffix = ".pcapng" if kind.startswith("pcapng") else ".pcap"
    batch: list[str] = []
    work = tmp_path / "mutants"

    def flush() -> None:
        convert_checked(batch, str(tmp_path / "out"), tally)
        for path in batch:
            if path not in tally.problems:
                os.unlink(path)
        batch.clear()

    work.mkdir(exist_ok=True)
    for n, (name, data) in enumerate(mutants):
        path = work / f"{n:05d}_{name.replace('/', '_')}{suffix}"
        path.write_bytes(data)
        batch.append(str(path))
        if len(batch) == BATCH_FILES:
            flush()
    flush()
    return tally


# name -> mutants of (data, seed, whether the base is the first of its kind)
MUTATORS: dict[str, Callable[[bytes, int, bool], Mutants]] = {
    "truncate": lambda data, seed, first: truncations(
        data, TRUNCATE_BYTES if first else TRUNCATE_BYTES_MORE
    ),
    "bitflip": lambda data, seed, first: bit_flips(data, seed),
    "lengths": lambda data, seed, first: length_field_mutants(data),
}


@pytest.mark.slow
@pytest.mark.parametrize("mutator", sorted(MUTATORS))
@pytest.mark.parametrize("base", BASE_PARAMS)
def test_container_mutants(base: tuple[str, str, bytes], mutator: str, tmp_path: Path) -> None:
    kind, name, data = base
    seed = sum(data[:4096]) + len(data)  # fixed per base capture
    first = next(b for b in BASES if b[0] == kind)[1] == name
    tally = run_mutants(tmp_path, kind, MUTATORS[mutator](data, seed, first))
    tally.assert_clean()
    assert tally.files + tally.refused > 0
    print(f"\n{kind} {name} {mutator}: {tally.summary()}")


def test_mutator_bases_cover_every_kind() -> None:
    if not HAVE_SHARED:
        pytest.skip("reference captures absent")
    assert {kind for kind, _, _ in BASES} == set(KINDS)
    for kind, name, data in BASES:
        assert container_kind(data) == kind, name


def test_length_fields_found() -> None:
    """The walkers find the fields they are meant to break (checked on a synthesized file)."""
    data = synthesized("pcapng-be", w.pcap_bytes([w.Rec(1, 2, b"x" * 60)] * 3))
    whats = [f.what for f in pcapng_length_fields(data)[1]]
    assert "block0(0xa0d0d0a).section_length" in whats
    assert "block2(0x6).caplen" in whats and "block2(0x6).trailer" in whats
    assert any(".opt0(1).length" in x for x in whats)
    whats = [f.what for f in pcap_length_fields(w.pcap_bytes([w.Rec(1, 2, b"x")] * 5))[1]]
    assert whats == ["snaplen"] + [f"rec{n}.{x}" for n in range(4) for x in ("caplen", "origlen")]


# ---------------------------------------------------------------------- kept fuzzing finds

# Kept inputs that still break the pipeline: file name -> what breaks (strict xfail, so the
# fix turns the test red until its entry is removed here, with its KNOWN_BUGS entry).
KNOWN_BROKEN: dict[str, str] = {}

CASES = sorted(p for p in FUZZ_CASES.glob("*") if p.is_file() and p.suffix != ".md")
CASE_PARAMS = [
    pytest.param(
        p,
        id=p.name,
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[p.name])]
        if p.name in KNOWN_BROKEN
        else [],
    )
    for p in CASES
]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fuzz_case(case: Path, tmp_path: Path) -> None:
    """A kept fuzzing find: converts (or is refused up front), accounted, no exception, in
    this process and through the engine."""
    problem = capture_problem(str(case))
    if problem is not None:
        with pytest.raises(InputError):
            convert([str(case)], str(tmp_path), workers=0, extract=EXTRACT, force=True)
        return
    for workers in (0, 2):  # in this process, and through the multiprocess engine
        with time_bound(BATCH_SECONDS):
            run = convert(
                [str(case)], str(tmp_path / f"w{workers}"), workers=workers, extract=EXTRACT
            )
        assert file_problem(run.files[0]) is None, (workers, file_problem(run.files[0]))
