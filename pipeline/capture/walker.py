"""The sans-IO contract shared by the capture format walkers (classic pcap, pcapng).

A walker knows one capture format and nothing about files. It is handed a buffer and a window
into it, and turns the records it finds there into `Frame` / `FramingError` items. The same
walker object is driven either by the whole memory map of a regular file (everything is there
at once, ``at_eof`` is true) or by a receive buffer that a stream reader refills with
decompressed chunks. Both paths therefore share every line of parsing and validation; only the
driver in `source.py` differs (this is h11's split: the parser says "need more data", the
driver does the I/O).

The call is::

    pos = walker.walk(buf, pos, end, at_eof, base, out, max_items, with_data)

* ``buf[pos:end]`` holds the bytes not yet consumed; ``buf[0]`` is byte ``base`` of the
  (decompressed) capture stream, so stream offsets are ``base + position in buf``.
* The walker appends items to ``out`` until ``len(out) == max_items``, the input is used up,
  or it is ``done`` (clean end of input, or a fatal error). It returns the position of the
  first byte it did not consume.
* When it returns with room left in ``out`` and ``done`` still false, it needs more input:
  ``walker.need`` is the number of bytes it wants to see from the returned position before it
  can take its next step (always more than it has). This only happens when ``at_eof`` is
  false; with ``at_eof`` true a short record is reported as truncated instead.
* Framing is never decided on partial input: a record is parsed only once all of it is in the
  buffer, and resynchronisation runs only once its whole search window is buffered (or the
  input has ended). That is what makes the mapped and streamed paths give identical results.

Walkers never raise for bad content: every problem becomes a `FramingError` item.
"""

from __future__ import annotations

import mmap
from typing import TypeAlias

from pipeline.capture.frame import Frame, FramingError

# What a walker reads from: a file mapping, or the stream reader's receive buffer. Both slice
# to `bytes`, which is what `Frame.data` must be (a bytearray would slice to bytearray).
Buffer: TypeAlias = bytes | mmap.mmap

# One item of walker output.
Item: TypeAlias = Frame | FramingError

# How far past a bad length the walkers search for the next plausible record before giving up
# on the capture. Real corruption is a few bytes to a few KiB of garbage; a bounded window
# keeps a hopeless file from costing a byte-by-byte scan of gigabytes.
RESYNC_WINDOW = 1 << 20


class BaseWalker:
    """State and error reporting common to both walkers; subclasses implement `walk`."""

    def __init__(self) -> None:
        self.done = False  # no more items will come: clean end of input or a fatal error
        self.fatal = False  # done because of a fatal FramingError
        self.need = 0  # bytes wanted from the returned position when walk() stopped for input
        self.index = 1  # the 1-based number the next frame (or framing error) gets
        self.errors = 0  # FramingErrors emitted so far
        self.notes: list[str] = []  # worth telling the user, but not frames (bad options...)

    def walk(
        self,
        buf: Buffer,
        pos: int,
        end: int,
        at_eof: bool,
        base: int,
        out: list[Item],
        max_items: int,
        with_data: bool,
    ) -> int:
        """Append items parsed from ``buf[pos:end]`` to `out`; see the module docstring."""
        raise NotImplementedError

    def error(self, out: list[Item], offset: int, reason: str, detail: str, fatal: bool) -> None:
        """Emit one FramingError; it takes a frame number like a frame would."""
        out.append(FramingError(self.index, offset, reason, detail, fatal))
        self.index += 1
        self.errors += 1
        if fatal:
            self.done = True
            self.fatal = True
