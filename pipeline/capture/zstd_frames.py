"""Tell whether a zstd stream ended on a frame boundary, without decompressing it.

`zstandard`'s stream reader returns end-of-data, without an error, when its input stops in the
middle of a frame, so a cut-short ``.zst`` capture would end silently if the cut fell between
two records. gzip, bz2 and xz readers raise EOFError in that case; this module gives zstd the
same: the compressed bytes are passed through `ZstdFrameTracker.feed` on their way to the
decompressor, and at the end `cut_short()` says whether the input stopped inside a frame.

The tracker reads only the framing (RFC 8878): frame headers, 3-byte block headers, checksums,
skippable frames. Block contents are skipped by their sizes, so the cost is a few operations
per block (at most 128 KiB of output each). Bad framing is left for the decompressor to report.
"""

from __future__ import annotations

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_MAGIC_MIN = 0x184D2A50  # skippable frames: 0x184D2A50 ... 0x184D2A5F
SKIPPABLE_MAGIC_MAX = 0x184D2A5F

# Tracker states: what the next bytes are.
_MAGIC = 0  # 4-byte magic number of the next frame (or clean end of input)
_FRAME_HEADER = 1  # frame header descriptor byte, then the header's optional fields
_BLOCK_HEADER = 2  # 3-byte block header
_SKIP_SIZE = 3  # 4-byte size of a skippable frame
_SKIP = 4  # bytes to skip (block content, checksum, skippable frame body)

DICT_ID_SIZES = (0, 1, 2, 4)  # by Dictionary_ID_flag
BLOCK_TYPE_RLE = 1  # an RLE block stores one byte, whatever its size field says
BLOCK_TYPE_RESERVED = 3


class ZstdFrameTracker:
    """Follows zstd framing across arbitrary chunk boundaries (sans-IO)."""

    def __init__(self) -> None:
        self._state = _MAGIC
        self._pending = b""  # bytes of a header that is not complete yet
        self._skip = 0  # bytes left to skip in state _SKIP
        self._after_skip = _MAGIC  # state after the skip
        self._checksum = False  # the current frame ends with a 4-byte checksum
        self.invalid = False  # framing made no sense; the decompressor will say why

    def cut_short(self) -> bool:
        """True if the input so far ends inside a frame (call at end of input)."""
        return not self.invalid and (self._state != _MAGIC or bool(self._pending))

    def feed(self, data: bytes) -> None:
        """Account for the next compressed bytes."""
        pos, end = 0, len(data)
        while pos < end and not self.invalid:
            if self._state == _SKIP:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                if self._skip == 0:
                    self._state = self._after_skip
                continue
            need = self._header_len()
            take = min(need - len(self._pending), end - pos)
            self._pending += data[pos : pos + take]
            pos += take
            if len(self._pending) == self._header_len():  # (a frame header grows once)
                header, self._pending = self._pending, b""
                self._on_header(header)

    def _header_len(self) -> int:
        """Bytes of the header expected in the current state."""
        if self._state in (_MAGIC, _SKIP_SIZE):
            return 4
        if self._state == _BLOCK_HEADER:
            return 3
        # _FRAME_HEADER: the descriptor byte first, then the length it implies
        if not self._pending:
            return 1
        fhd = self._pending[0]
        fcs_flag, single_segment = fhd >> 6, (fhd >> 5) & 1
        fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        return 1 + (0 if single_segment else 1) + DICT_ID_SIZES[fhd & 3] + fcs_size

    def _on_header(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == _MAGIC:
            if value == ZSTD_MAGIC:
                self._state = _FRAME_HEADER
            elif SKIPPABLE_MAGIC_MIN <= value <= SKIPPABLE_MAGIC_MAX:
                self._state = _SKIP_SIZE
            else:
                self.invalid = True
        elif self._state == _SKIP_SIZE:
            self._skip_then(value, _MAGIC)
        elif self._state == _FRAME_HEADER:
            self._checksum = bool(header[0] & 0x04)
            self._state = _BLOCK_HEADER
        else:  # _BLOCK_HEADER
            last, block_type, size = value & 1, (value >> 1) & 3, value >> 3
            if block_type == BLOCK_TYPE_RESERVED:
                self.invalid = True
                return
            content = 1 if block_type == BLOCK_TYPE_RLE else size
            if not last:
                self._skip_then(content, _BLOCK_HEADER)
            else:
                self._skip_then(content + (4 if self._checksum else 0), _MAGIC)

    def _skip_then(self, count: int, state: int) -> None:
        if count == 0:
            self._state = state
        else:
            self._state, self._skip, self._after_skip = _SKIP, count, state
