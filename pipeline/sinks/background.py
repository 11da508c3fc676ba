"""Run a sink's writes (compression and I/O) on a thread beside the decoding loop.

zstd compression and file writes release the GIL, so on a machine with a spare core they
overlap with decoding instead of adding to it (the compressor is ~15% of a single-process
run's time). The queue is bounded in chunks, so a slow sink slows the producer instead of
letting memory grow: at most `max_pending` chunks (each one batch of NDJSON) wait.

An error in the writer thread is raised again in the producer at its next `write` or at
`close`, so a full disk or a closed pipe surfaces where the caller can handle it.
"""

from __future__ import annotations

import queue
import threading

from pipeline.sinks.files import Sink

# A few batches in flight are enough to keep the writer busy; more only costs memory.
DEFAULT_MAX_PENDING = 4
_CLOSE = None


class BackgroundSink:
    def __init__(self, sink: Sink, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.sink = sink
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="sink-writer", daemon=True)
        self._thread.start()

    @property
    def paths(self) -> list[str]:
        return self.sink.paths  # type: ignore[attr-defined,no-any-return]

    def _drain(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is _CLOSE:
                return
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            try:
                self.sink.write(chunk)
            except BaseException as exc:
                self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, chunk: bytes) -> None:
        self._raise_pending()
        self._queue.put(chunk)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_CLOSE)
            self._thread.join()

    def close(self) -> None:
        self._stop()
        self._raise_pending()
        self.sink.close()

    def close_incomplete(self) -> None:
        self._stop()
        self._raise_pending()
        self.sink.close_incomplete()  # type: ignore[attr-defined]

    def abort(self) -> None:
        self._stop()
        self._error = None
        self.sink.abort()
