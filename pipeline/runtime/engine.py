"""The coordinator: start the reader and the workers, write what they produce, watch them.

Process shape (see messages.py for what travels where):

    reader ──batches──▶ worker 0..N-1 ──NDJSON──▶ coordinator (this process) ──▶ sinks

The coordinator stays light: in unordered mode (the default) workers send finished zstd
frames and it only appends bytes; with ``ordered`` it merges each batch's lines by frame
number (a numpy argsort) and compresses on the sink's writer thread, so the output files
are byte-identical for any worker count.

Faults: a worker or reader that dies fails the run within a poll interval (`POLL_SECONDS`)
naming the process and the input; every output not complete is removed (only complete
files ever carry their final name). `request_stop` (SIGINT/SIGTERM) stops the reader,
lets the workers drain what was read, and closes the outputs cleanly. Every child is
reaped before `run_engine` returns or raises.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, TextIO

import numpy as np
import orjson
import zstandard

from pipeline.convert import (
    ConvertOptions,
    order_key,
    output_stem,
    plan_outputs,
    stats_events,
    write_quarantine,
)
from pipeline.flows.traffic import TrafficStats
from pipeline.runtime.memory import tree_private_memory_bytes
from pipeline.runtime.messages import (
    BatchOutput,
    ReaderDone,
    ReaderFile,
    ReaderProgress,
    WorkerFailed,
    WorkerFileDone,
)
from pipeline.runtime.reader import reader_main
from pipeline.runtime.worker import worker_main
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.files import FileSink, Sink, StdoutSink
from pipeline.stats import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    STATUS_PARTIAL,
    FileStats,
    RunStats,
)

# How often the coordinator checks its children when no message comes: the bound on how long
# a dead worker goes unnoticed.
POLL_SECONDS = 0.2
# Batches each worker's inbox holds. With DEFAULT_BATCH_FRAMES packets a batch, this bounds
# the packets in flight (and, for unmapped input, their bytes) to workers x this x batch.
QUEUE_BATCHES = 4
# A worker that has work and sends nothing for this long is taken as hung (a decoder stuck on
# one packet) and the run fails naming it (`--worker-timeout`). Generous: a batch takes well
# under a second here, and a file's end (every open flow's record) streams out as it goes.
DEFAULT_WORKER_TIMEOUT = 300.0
# A coordinator loop turn slower than this (a sink that blocked it) is not held against the
# workers: they could not be heard meanwhile.
WATCHDOG_STALL_SECONDS = 1.0
# Packets per reader batch: large enough that routing's numpy calls and the queue puts are
# amortised (measured: the reader's cost per packet halves from 1024 to 4096).
DEFAULT_BATCH_FRAMES = 4096


class EngineFailed(Exception):
    """The run could not go on (a process died or failed): one line saying which, on what."""


@dataclass
class _FileState:
    stats: FileStats
    sink: Sink | None = None
    batches_expected: int | None = None  # known when the reader is done with the file
    workers_done: int = 0
    reader_done: ReaderDone | None = None
    next_batch: int = 0  # ordered: the next batch to write
    pending: dict[int, list[BatchOutput]] = field(default_factory=dict)  # ordered: parts
    early: list[BatchOutput] = field(default_factory=list)  # outputs before the file's news
    final: list[WorkerFileDone] = field(default_factory=list)  # the flows open at the end
    traffic: TrafficStats | None = None  # the workers' traffic statistics, merged
    capture_key: str = ""
    opened: bool = False  # the reader's ReaderFile has arrived
    position: int = 0
    size: int = 0


@dataclass
class EngineOptions:
    workers: int
    ordered: bool = False
    batch_frames: int = DEFAULT_BATCH_FRAMES
    queue_batches: int = QUEUE_BATCHES
    progress: str | None = None  # None, "tty" or "json"
    progress_interval: float = 1.0
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT  # seconds without progress: hung


class _Watchdog:
    """Notices a worker that has work and makes no progress for `timeout` seconds.

    The reader sends every worker every batch (some empty) and every file's end, and a
    worker answers each with one message (BatchOutput, WorkerFileDone), so the work owed by
    worker i is what the reader said it sent (ReaderProgress/ReaderDone) minus i's answers;
    a non-empty inbox counts too (the reader's progress lags its sends). An idle worker is
    never late: its clock starts when it has work again. A worker stuck while the reader
    waits on live input with its last batch not yet reported goes unnoticed until the next
    report.
    """

    def __init__(self, workers: int, timeout: float) -> None:
        now = time.monotonic()
        self.timeout = timeout
        self.last = [now] * workers  # last progress, or when the worker last had no work
        self.answered = [0] * workers  # batches and file ends each worker has answered
        self.sent: dict[int, int] = {}  # file number -> batches (+ its end) sent to each
        self.checked = now

    def heard(self, message: Any) -> None:
        if isinstance(message, (BatchOutput, WorkerFileDone)):
            self.last[message.worker] = time.monotonic()
            if not isinstance(message, BatchOutput) or message.batch_no >= 0:
                self.answered[message.worker] += 1  # batch -1: end-of-file events, streamed
        elif isinstance(message, ReaderProgress):
            self.sent[message.file_no] = max(self.sent.get(message.file_no, 0), message.batches)
        elif isinstance(message, ReaderDone):
            ended = 0 if message.status == STATUS_FAILED else 1  # a file never opened: none
            self.sent[message.file_no] = message.batches + ended

    def stalled(self, inboxes: list[Any]) -> tuple[int, float] | None:
        """The first worker late past the timeout, and for how long; else None."""
        now = time.monotonic()
        gap = now - self.checked
        self.checked = now
        if gap > WATCHDOG_STALL_SECONDS:
            self.last = [t + gap for t in self.last]
        sent = sum(self.sent.values())
        for worker, last in enumerate(self.last):
            try:
                waiting = inboxes[worker].qsize() > 0
            except NotImplementedError:  # macOS
                waiting = False
            if sent <= self.answered[worker] and not waiting:
                self.last[worker] = now  # idle: nothing owed
            elif now - last > self.timeout:
                return worker, now - last
        return None


def _set_parent_death_signal() -> None:
    """Ask Linux to SIGKILL this child if the coordinator dies: no orphans, even on kill -9."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(target: Any, *args: Any) -> None:
    """Every child's start: die with the coordinator; leave SIGINT to it (a Ctrl-C reaches
    the whole process group, and a child killed by it would look like a crash); and take
    SIGTERM's default action again (a forked child inherits the CLI's handler)."""
    _set_parent_death_signal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    target(*args)


class Engine:
    def __init__(
        self,
        paths: list[str],
        out: str,
        options: ConvertOptions,
        engine: EngineOptions,
        shared_sink: Sink | None = None,
        stems: list[str] | None = None,
        manifests: Any = None,
    ) -> None:
        """`shared_sink`: one sink every input writes into (a network sink; the caller opened
        it and closes it), instead of files in directory `out` or stdout. `stems`: the
        inputs' output stems when the caller planned them (a resume converts some of a run's
        inputs under the names the whole run gave them); `manifests`: told when each input
        starts and, after its sink is closed, is finished (`pipeline.manifest`)."""
        self.paths = paths
        self.out = out
        self.options = options
        self.engine = engine
        self.stop_signal: int | None = None
        self.files: dict[int, _FileState] = {}
        self.run_stats = RunStats()
        methods = multiprocessing.get_all_start_methods()
        self.ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.processes: list[Any] = []
        # The sink every input shares: stdout (made at the first input) or `shared_sink`.
        self._stdout: Sink | None = shared_sink
        self._shared_given = shared_sink is not None
        self._stems: list[str] = []
        self._given_stems = stems
        self.manifests = manifests
        self._started = 0.0
        self._last_progress = 0.0
        self._events = 0
        self._finished: dict[int, FileStats] = {}
        self.stop_event: Any = None

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self, signum: int) -> None:
        """Stop reading; what was read is still converted and written (SIGINT/SIGTERM)."""
        if self.stop_signal is None:
            self.stop_signal = signum
            if self.stop_event is not None:
                self.stop_event.set()

    def run(self) -> RunStats:
        n = self.engine.workers
        if self.out != "-" and not self._shared_given:
            self._stems = self._given_stems or plan_outputs(self.paths, self.out, self.options)
            os.makedirs(self.out, exist_ok=True)
        self.stop_event = self.ctx.Event()
        self.inboxes = [self.ctx.Queue(maxsize=self.engine.queue_batches) for _ in range(n)]
        # One pipe per child to us: a send blocks while we are busy, which is backpressure
        # too, and a child that dies mid-message shows up as end-of-file on its own pipe.
        pipes = [self.ctx.Pipe(duplex=False) for _ in range(n + 1)]
        self.channels = {receiver: i for i, (receiver, _) in enumerate(pipes)}
        for worker in range(n):
            process = self.ctx.Process(
                target=_child,
                args=(
                    worker_main,
                    worker,
                    self.inboxes[worker],
                    pipes[worker][1],
                    self.options,
                    self.engine.ordered,
                    n,
                ),
                name=f"pcap-ingest worker {worker}",
                daemon=True,
            )
            self.processes.append(process)
        self.reader = self.ctx.Process(
            target=_child,
            args=(
                reader_main,
                self.paths,
                self.inboxes,
                pipes[n][1],
                self.engine.batch_frames,
                self.stop_event,
                os.dup(0) if "-" in self.paths else None,
            ),
            name="pcap-ingest reader",
            daemon=True,
        )
        self.processes.append(self.reader)
        for process in self.processes:
            process.start()
        for _, sender in pipes:
            sender.close()  # only the children write: their death must reach us as EOF
        self._started = time.perf_counter()
        self._watchdog = _Watchdog(n, self.engine.worker_timeout)
        try:
            self._loop()
        except BaseException:
            self._abort()
            raise
        self._reap(timeout=10.0)
        self.run_stats.files = [self._finished[n] for n in sorted(self._finished)]
        self.run_stats.seconds = time.perf_counter() - self._started
        self._progress(final=True)
        return self.run_stats

    def _loop(self) -> None:
        done_files = 0
        total = len(self.paths)
        while done_files < total:
            for channel in wait(list(self.channels), timeout=POLL_SECONDS):
                try:
                    message = channel.recv()
                except (EOFError, OSError):
                    # The child is gone: normally after its Stop; otherwise its exit code
                    # says how (it may take a moment to be reaped).
                    del self.channels[channel]  # type: ignore[arg-type]
                    self._check_children(wait_for_exit=True)
                    continue
                self._watchdog.heard(message)
                done_files += self._handle(message)
            self._check_children()
            self._check_progress()
            self._progress()
            if self.stop_signal is not None and self._all_read_and_drained():
                break
        self._close_stdout()

    def _all_read_and_drained(self) -> bool:
        """After a stop: every file the reader started has been finalised."""
        return not self.reader.is_alive() and all(
            state.sink is None and state.reader_done is not None for state in self.files.values()
        )

    # -- messages -----------------------------------------------------------------------

    def _handle(self, message: Any) -> int:
        if isinstance(message, BatchOutput):
            self._on_output(message)
            return 0
        if isinstance(message, ReaderProgress):
            self._state(message.file_no).position = message.position
            return 0
        if isinstance(message, WorkerFileDone):
            state = self._state(message.file_no)
            stats = state.stats
            stats.decoded += message.stats["decoded"]
            stats.anomalies.update(message.stats["anomalies"])
            stats.events.update(message.stats["events"])
            stats.flows.update(message.stats["flows"])
            stats.extractors.update(message.stats["extractors"])
            stats.add_quarantine(
                message.stats["quarantine_frames"],
                message.stats["quarantine_dropped"],
                message.stats["quarantine_unframed"],
            )
            state.final.append(message)
            traffic = message.stats["traffic"]
            if traffic is not None:
                if state.traffic is None:
                    state.traffic = traffic
                else:
                    state.traffic.merge(traffic)
                state.capture_key = message.stats["capture_key"]
            state.workers_done += 1
            return self._maybe_finish(message.file_no)
        if isinstance(message, ReaderFile):
            self._on_file(message)
            return self._maybe_finish(message.file_no)
        if isinstance(message, ReaderDone):
            state = self._state(message.file_no)
            state.reader_done = message
            state.batches_expected = message.batches
            state.stats.frames = message.frames
            if message.status == STATUS_FAILED:
                state.workers_done = self.engine.workers  # no worker saw this file
            return self._maybe_finish(message.file_no)
        if isinstance(message, WorkerFailed):
            raise EngineFailed(
                f"worker {message.worker} failed while converting "
                f"{self._inputs_in_flight()}: {message.error}"
            )
        raise EngineFailed(f"unexpected message {type(message).__name__}")

    def _state(self, file_no: int) -> _FileState:
        """A file's state. Messages from different processes share one queue with no order
        between them: a worker's first output can arrive before the reader's ReaderFile."""
        state = self.files.get(file_no)
        if state is None:
            stats = FileStats(path=self.paths[file_no], quarantine_asked=self.options.quarantine)
            state = self.files[file_no] = _FileState(stats=stats)
        return state

    def _on_file(self, message: ReaderFile) -> None:
        state = self._state(message.file_no)
        state.opened = True
        if self.manifests is not None:
            self.manifests.started(message.path)
        stats = state.stats
        stats.format, stats.compression = message.format, message.compression
        state.size = message.size
        if message.error is not None:
            stats.status = STATUS_FAILED
            stats.error = message.error
            return
        precompressed = not self.engine.ordered
        if self.out == "-" or self._shared_given:
            if self._stdout is None:
                self._stdout = BackgroundSink(
                    StdoutSink(self.options.compression, self.options.level, precompressed)
                )
            state.sink = self._stdout
        else:
            sink = FileSink(
                self.out,
                self._stems[message.file_no] if self._stems else output_stem(message.path),
                self.options.compression,
                self.options.level,
                self.options.rotate_bytes,
                precompressed=precompressed,
            )
            state.sink = BackgroundSink(sink) if self.engine.ordered else sink
        early, state.early = state.early, []
        for output in early:
            self._on_output(output)

    def _on_output(self, message: BatchOutput) -> None:
        state = self._state(message.file_no)
        if not state.opened:
            state.early.append(message)
            return
        if state.sink is None:
            return
        if not self.engine.ordered:
            if message.payload:
                state.sink.write(message.payload)
            return
        parts = state.pending.setdefault(message.batch_no, [])
        parts.append(message)
        while len(state.pending.get(state.next_batch, ())) == self.engine.workers:
            self._write_ordered(state, state.pending.pop(state.next_batch))
            state.next_batch += 1

    def _write_ordered(self, state: _FileState, parts: list[BatchOutput]) -> None:
        indices: list[Any] = []
        lines: list[bytes] = []
        for part in parts:
            indices += part.indices or ()
            lines += part.lines or ()
        if not lines:
            return
        if all(key.__class__ is int for key in indices):
            order = np.argsort(np.array(indices, dtype=np.int64), kind="stable").tolist()
        else:  # flow events among them: keys are tuples too
            order = sorted(range(len(indices)), key=lambda i: order_key(indices[i]))
        assert state.sink is not None
        state.sink.write(b"".join([lines[i] for i in order]))

    def _write_final(self, state: _FileState) -> None:
        """The events of the flows still open at the end of the file, after everything else."""
        final, state.final = state.final, []
        if state.sink is None:
            return
        if self.engine.ordered:
            self._write_ordered(state, final)  # type: ignore[arg-type]
        else:
            for part in final:
                if part.payload:
                    state.sink.write(part.payload)
        if state.traffic is not None:
            events = stats_events(state.traffic, state.stats.path, state.capture_key)
            lines = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events)
            if lines and not self.engine.ordered and self.options.compression == "zstd":
                lines = zstandard.ZstdCompressor(level=self.options.level).compress(lines)
            if lines:
                state.sink.write(lines)
            state.stats.events["stats"] += len(events)

    def _maybe_finish(self, file_no: int) -> int:
        state = self.files[file_no]
        done = state.reader_done
        if done is None or not state.opened or state.workers_done < self.engine.workers:
            return 0
        stats = state.stats
        if stats.status != STATUS_FAILED:
            if done.interrupted:
                stats.status = STATUS_INTERRUPTED
                stats.error = "interrupted: stopped reading here"
            elif done.status != STATUS_OK:
                stats.status = STATUS_PARTIAL
                stats.error = done.error or stats.framing_problems()
        if stats.status != STATUS_FAILED:
            self._write_final(state)
        sink = state.sink
        state.sink = None
        if sink is not None and sink is not self._stdout:
            if stats.status in (STATUS_OK, STATUS_PARTIAL):
                sink.close()
            elif stats.status == STATUS_INTERRUPTED:
                sink.close_incomplete()  # type: ignore[attr-defined]
            else:
                sink.abort()
            stats.outputs = list(getattr(sink, "paths", []))
            if self.options.quarantine:  # beside the closed output, before its manifest
                stem = self._stems[file_no] if self._stems else output_stem(stats.path)
                write_quarantine(stats, self.out, stem)
            if self.manifests is not None:
                self.manifests.finished(stats)  # the sink is closed: the manifest comes last
        stats.seconds = time.perf_counter() - self._started
        self._events += sum(stats.events.values())
        self._finished[file_no] = stats
        return 1

    def _close_stdout(self) -> None:
        if self._stdout is not None and not self._shared_given:
            self._stdout.close()
        self._stdout = None

    # -- faults -------------------------------------------------------------------------

    def _inputs_in_flight(self) -> str:
        open_files = [s.stats.path for s in self.files.values() if s.sink is not None]
        return ", ".join(open_files) or "(between inputs)"

    def _check_children(self, wait_for_exit: bool = False) -> None:
        if wait_for_exit:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and all(p.exitcode is None for p in self.processes):
                time.sleep(0.01)
        for process in self.processes:
            code = process.exitcode
            if code is None or code == 0:
                continue  # running, or done: children exit 0 only after the reader's Stop
            cause = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise EngineFailed(
                f"{process.name} (pid {process.pid}) died ({cause}) while converting "
                f"{self._inputs_in_flight()}"
            )

    def _check_progress(self) -> None:
        """Fail the run if a worker with work has been silent past --worker-timeout."""
        late = self._watchdog.stalled(self.inboxes)
        if late is None:
            return
        worker, seconds = late
        process = self.processes[worker]
        raise EngineFailed(
            f"{process.name} (pid {process.pid}) made no progress for {seconds:.0f} s "
            f"(--worker-timeout {self.engine.worker_timeout:g}) while converting "
            f"{self._inputs_in_flight()}: stopped (a decoder hung?)"
        )

    def _abort(self) -> None:
        """Stop every child now, drop incomplete outputs, reap."""
        self.stop_event.set()
        for state in self.files.values():
            if state.sink is not None and state.sink is not self._stdout:
                with contextlib.suppress(Exception):
                    state.sink.abort()
                state.sink = None
        if self._stdout is not None and not self._shared_given:
            with contextlib.suppress(Exception):
                self._stdout.abort()
        self._stdout = None
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        self._reap(timeout=5.0)

    def _reap(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for q in self.inboxes:
            q.cancel_join_thread()  # never block exit on a queue nobody will read
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
        # No draining: this process only reads the queues, so it has no feeder thread to wait
        # for, and a child killed mid-message can leave half a message that would block a read.
        for q in self.inboxes:
            q.close()
        for channel in self.channels:
            channel.close()
        self.channels = {}

    # -- progress -----------------------------------------------------------------------

    def _progress(self, final: bool = False) -> None:
        mode = self.engine.progress
        if mode is None:
            return
        now = time.perf_counter()
        if not final and now - self._last_progress < self.engine.progress_interval:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        frames = sum(s.stats.frames or 0 for s in self.files.values())
        read = sum((s.reader_done.frames if s.reader_done else 0) for s in self.files.values())
        position = sum(s.position for s in self.files.values())
        size = sum(s.size for s in self.files.values())
        events = self._events
        rate = (read or frames) / elapsed
        stream: TextIO = sys.stderr
        if mode == "json":
            depths = []
            for q in self.inboxes:
                try:
                    depths.append(q.qsize())
                except NotImplementedError:  # macOS
                    depths.append(-1)
            record = {
                "elapsed_s": round(elapsed, 3),
                "bytes_read": position,
                "bytes_total": size,
                "frames": read,
                "events": events,
                "packets_per_second": round(rate),
                "files_done": len(self._finished),
                "files": len(self.paths),
                "queue_depth": depths,
                "private_memory_mib": round(
                    tree_private_memory_bytes(
                        [os.getpid(), *(p.pid for p in self.processes if p.pid)]
                    )
                    / (1 << 20),
                    1,
                ),
                # Which process is which, for monitoring (and the fault tests).
                "worker_pids": [p.pid for p in self.processes[: self.engine.workers]],
                "reader_pid": self.reader.pid,
                "final": final,
            }
            stream.write(orjson.dumps(record).decode() + "\n")
        else:
            pct = f"{100 * position / size:5.1f}%" if size else "  ?  "
            eta = (
                f"ETA {int((size - position) / max(position / elapsed, 1))}s"
                if size and position
                else ""
            )
            stream.write(
                f"\r{pct} {position / 1e6:,.0f} MB  {rate:,.0f} packets/s  "
                f"{events / elapsed:,.0f} events/s  {eta}   " + ("\n" if final else "")
            )
        stream.flush()
