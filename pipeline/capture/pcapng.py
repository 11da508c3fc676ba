"""pcapng framing, without I/O.

A pcapng file is a sequence of blocks: ``type(4) total_length(4) body total_length(4)``. A
Section Header Block (SHB) starts each section and fixes its byte order (its byte-order magic);
Interface Description Blocks (IDB) declare the section's interfaces (link type, snaplen,
timestamp resolution and offset); packets come in Enhanced (EPB), Simple (SPB) or the obsolete
Packet (PB) blocks. Everything else (name resolution, statistics, decryption secrets, custom
and unknown blocks) is skipped by its length.

Choices made here:

* Interface numbers are global: each IDB gets the next number of one counter, so section 2's
  interface 0 follows section 1's last interface and `Frame.interface` is unique in the file.
* Timestamps are exact integers: ``ts_ns = units * mul // div + tsoffset_ns`` with `mul`/`div`
  derived from ``if_tsresol`` (10^-k or 2^-k seconds), floored for resolutions finer than 1 ns.
* An SPB has no timestamp and no interface field: it belongs to the section's interface 0 and
  gets the timestamp of the previous packet of the capture (0 if it is the first), so time
  never runs backwards; its caplen is min(origlen, interface 0's snaplen, bytes in the block).
* Every block length is checked before use (>= 12, multiple of 4, <= `MAX_BLOCK_LEN`, trailing
  copy equal to the leading one). A bad block length is a `length_error`, after which the walker
  searches forward on 4-byte steps for a known block type with matching lengths; a bad length
  *inside* an intact block (EPB caplen beyond the block) costs only that block.
* A packet for an interface the section has not declared (or before any IDB) is `malformed`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import ClassVar

from pipeline.capture.frame import (
    REASON_LENGTH,
    REASON_MALFORMED,
    REASON_TRUNCATED,
    Frame,
)
from pipeline.capture.walker import RESYNC_WINDOW, BaseWalker, Buffer, Item

# Block types.
BT_SHB = 0x0A0D0D0A  # Section Header Block (a palindrome: same in both byte orders)
BT_IDB = 0x00000001  # Interface Description Block
BT_PB = 0x00000002  # Packet Block (obsolete, still written by old tools)
BT_SPB = 0x00000003  # Simple Packet Block
BT_NRB = 0x00000004  # Name Resolution Block
BT_ISB = 0x00000005  # Interface Statistics Block
BT_EPB = 0x00000006  # Enhanced Packet Block
BT_DSB = 0x0000000A  # Decryption Secrets Block
SHB_MAGIC = b"\x0a\x0d\x0d\x0a"

# Block types a resync may land on: the ones a real writer emits (including obsolete and
# experimental ones Wireshark knows), so garbage rarely passes for a block.
KNOWN_BLOCK_TYPES = frozenset(
    {BT_SHB, BT_IDB, BT_PB, BT_SPB, BT_NRB, BT_ISB, BT_EPB, 7, 8, 9, BT_DSB, 0xBAD, 0x40000BAD}
)

# Byte-order magic of an SHB as it appears in the file -> struct byte order.
BYTE_ORDER_MAGICS: dict[bytes, str] = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}

MIN_BLOCK_LEN = 12  # type + leading length + trailing length, empty body
# Largest block accepted. Wireshark's limit too (MAX_BLOCK_SIZE, 16 MiB): beyond it a length is
# far more likely corrupt than real, and a stream reader never buffers more than this for one.
MAX_BLOCK_LEN = 16 * 1024 * 1024
MIN_SHB_LEN = 28  # header 8 + byte-order magic 4 + versions 4 + section length 8 + trailer 4
MIN_IDB_LEN = 20  # header 8 + link type 2 + reserved 2 + snaplen 4 + trailer 4
MIN_EPB_LEN = 32  # header 8 + interface 4 + ts 8 + caplen 4 + origlen 4 + trailer 4
MIN_PB_LEN = 32  # header 8 + interface 2 + drops 2 + ts 8 + caplen 4 + origlen 4 + trailer 4
MIN_SPB_LEN = 16  # header 8 + origlen 4 + trailer 4

# Interface options used here.
OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9  # 1 byte: high bit clear -> 10^-v seconds, set -> 2^-(v & 0x7f) seconds
OPT_IF_TSOFFSET = 14  # signed 64-bit seconds added to every timestamp of the interface
DEFAULT_TSRESOL = 6  # microseconds, when an IDB has no (valid) if_tsresol
# Finest resolutions accepted: beyond these a 64-bit timestamp could not span a single second,
# so the option is corrupt (and 2^-k with a huge k would make pointless giant integers).
MAX_TSRESOL_EXP10 = 19
MAX_TSRESOL_EXP2 = 63

# (global interface number, link type, snaplen, mul, div, tsoffset in ns)
Interface = tuple[int, int, int, int, int, int]


def tsresol_scale(value: int) -> tuple[int, int] | None:
    """(mul, div) turning timestamp units of resolution `value` into ns, or None if invalid."""
    if value & 0x80:
        exp = value & 0x7F
        if exp > MAX_TSRESOL_EXP2:
            return None
        return 1_000_000_000, 1 << exp
    if value > MAX_TSRESOL_EXP10:
        return None
    if value <= 9:
        return 10 ** (9 - value), 1
    return 1, 10 ** (value - 9)


class PcapngWalker(BaseWalker):
    """Walks a pcapng byte stream from its first Section Header Block on (see `walker.py`)."""

    def __init__(self) -> None:
        super().__init__()
        self._order = ""  # struct byte order of the current section
        self._seen_shb = False  # a pcapng stream must open with a section header block
        self._ifaces: list[Interface] = []  # the current section's interfaces, by local id
        self._next_iface = 0  # global interface counter across sections
        self._last_ts_ns = 0  # timestamp of the previous packet, given to SPBs
        self._set_order("<")

    def _set_order(self, order: str) -> None:
        """Bind the struct readers for one byte order (sections may differ)."""
        self._order = order
        self._rd_u32 = struct.Struct(order + "I").unpack_from
        self._rd_head = struct.Struct(order + "II").unpack_from
        # Block header + all fixed EPB fields in one call: the hot loop's only header read.
        self._rd_epb = struct.Struct(order + "IIIIIII").unpack_from
        self._rd_pb = struct.Struct(order + "HHIIII").unpack_from
        self._rd_idb = struct.Struct(order + "HHI").unpack_from
        self._rd_opt = struct.Struct(order + "HH").unpack_from
        self._rd_i64 = struct.Struct(order + "q").unpack_from

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
        while not self.done and len(out) < max_items:
            pos = self._run(buf, pos, end, base, out, max_items, with_data)
            if len(out) >= max_items:
                break
            next_pos = self._step(buf, pos, end, at_eof, base, out, with_data)
            if next_pos < 0:  # needs more input, or done
                break
            pos = next_pos
        return pos

    def _run(
        self,
        buf: Buffer,
        pos: int,
        end: int,
        base: int,
        out: list[Item],
        max_items: int,
        with_data: bool,
    ) -> int:
        """The hot loop: complete, well-formed EPBs of declared interfaces; anything else
        (another block type, a bad length, the end of the buffer) stops it at `pos`."""
        if not self._ifaces:
            return pos
        epb = self._rd_epb
        u32 = self._rd_u32
        ifaces = self._ifaces
        n_ifaces = len(ifaces)
        new = tuple.__new__
        frame = Frame
        append = out.append
        idx = self.index
        ts = 0
        for _ in range(max_items - len(out)):
            if pos + 28 > end:
                break
            btype, blen, iface, ts_hi, ts_lo, caplen, origlen = epb(buf, pos)
            stop = pos + blen
            if (
                btype != BT_EPB
                or blen < MIN_EPB_LEN
                or blen > MAX_BLOCK_LEN
                or blen & 3
                or caplen > blen - MIN_EPB_LEN
                or iface >= n_ifaces
                or stop > end
                or u32(buf, stop - 4)[0] != blen
            ):
                break
            gid, link, _snaplen, mul, div, offset_ns = ifaces[iface]
            ts = ((ts_hi << 32) | ts_lo) * mul // div + offset_ns
            start = pos + 28
            data = buf[start : start + caplen] if with_data else None
            append(new(frame, (idx, ts, base + start, caplen, origlen, gid, link, data)))
            idx += 1
            pos = stop
        if idx != self.index:
            self.index = idx
            self._last_ts_ns = ts
        return pos

    def _step(
        self,
        buf: Buffer,
        pos: int,
        end: int,
        at_eof: bool,
        base: int,
        out: list[Item],
        with_data: bool,
    ) -> int:
        """Handle the one block at `pos` the hot loop would not take, carefully.

        Returns the next position, or -1 when the walker must stop (needs input, or done).
        """
        avail = end - pos
        if avail < 8:
            if not at_eof:
                self.need = 8
            elif avail == 0:
                self.done = True
            else:
                detail = f"file ends inside a block header ({avail} of 8 bytes)"
                self.error(out, base + pos, REASON_TRUNCATED, detail, True)
            return -1
        is_shb = buf[pos : pos + 4] == SHB_MAGIC
        if is_shb:
            # The SHB's own length is in the byte order its byte-order magic announces.
            if avail < 12:
                if not at_eof:
                    self.need = 12
                    return -1
                detail = f"file ends inside a section header ({avail} of 12 bytes)"
                self.error(out, base + pos, REASON_TRUNCATED, detail, True)
                return -1
            order = BYTE_ORDER_MAGICS.get(bytes(buf[pos + 8 : pos + 12]))
            if order is None:
                magic = int.from_bytes(buf[pos + 8 : pos + 12], "big")
                detail = f"section header with unknown byte-order magic 0x{magic:08x}"
                return self._bad_block(buf, pos, end, at_eof, base, out, REASON_MALFORMED, detail)
            if order != self._order:
                self._set_order(order)
            self._seen_shb = True
            btype, blen = BT_SHB, self._rd_u32(buf, pos + 4)[0]
        elif not self._seen_shb:
            detail = "pcapng file does not start with a section header block"
            self.error(out, base + pos, REASON_MALFORMED, detail, True)
            return -1
        else:
            btype, blen = self._rd_head(buf, pos)
        bad = _block_length_problem(blen)
        if bad:
            detail = f"block type 0x{btype:08x}: {bad}"
            return self._bad_block(buf, pos, end, at_eof, base, out, REASON_LENGTH, detail)
        stop = pos + blen
        if stop > end:
            if not at_eof:
                self.need = blen
                return -1
            # Past the end: a cut-short file, unless valid blocks follow (then the length
            # was corrupt, and what follows is still readable).
            detail = f"block type 0x{btype:08x} of length {blen}: only {avail} bytes left"
            found = self._resync(buf, pos + 4, min(end, pos + RESYNC_WINDOW), end)
            if found < 0:
                self.error(out, base + pos, REASON_TRUNCATED, detail + ", cut short", True)
                return -1
            detail += f"; resynchronised at offset {base + found} ({found - pos} bytes skipped)"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return found
        trailer = self._rd_u32(buf, stop - 4)[0]
        if trailer != blen:
            detail = f"block type 0x{btype:08x}: trailing length {trailer} != leading {blen}"
            return self._bad_block(buf, pos, end, at_eof, base, out, REASON_LENGTH, detail)
        handler = self._HANDLERS.get(btype)
        if handler is not None:
            handler(self, buf, pos, blen, base, out, with_data)
        return stop

    # --- one handler per block type; each gets a complete block with valid framing ---

    def _on_shb(
        self, buf: Buffer, pos: int, blen: int, base: int, out: list[Item], with_data: bool
    ) -> None:
        """Start a new section: its interfaces are numbered after all earlier ones."""
        self._ifaces = []
        if blen < MIN_SHB_LEN:
            detail = f"section header block too short: {blen} < {MIN_SHB_LEN} bytes"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        major, minor = struct.unpack_from(self._order + "HH", buf, pos + 12)
        if major != 1:
            self.notes.append(
                f"section at offset {base + pos}: pcapng version {major}.{minor}, read as 1.0"
            )

    def _on_idb(
        self, buf: Buffer, pos: int, blen: int, base: int, out: list[Item], with_data: bool
    ) -> None:
        """Declare the section's next interface, with its timestamp scale from the options."""
        if blen < MIN_IDB_LEN:
            detail = f"interface description block too short: {blen} < {MIN_IDB_LEN} bytes"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        link_type, _reserved, snaplen = self._rd_idb(buf, pos + 8)
        mul, div, offset_ns = self._interface_options(buf, pos + 16, pos + blen - 4, base + pos)
        self._ifaces.append((self._next_iface, link_type, snaplen, mul, div, offset_ns))
        self._next_iface += 1

    def _interface_options(
        self, buf: Buffer, opt_pos: int, opt_end: int, block_offset: int
    ) -> tuple[int, int, int]:
        """(mul, div, tsoffset_ns) from an IDB's options; bad options are noted and ignored."""
        mul, div = 1000, 1  # DEFAULT_TSRESOL: microseconds
        offset_ns = 0
        while opt_pos + 4 <= opt_end:
            code, length = self._rd_opt(buf, opt_pos)
            opt_pos += 4
            if code == OPT_ENDOFOPT:
                break
            if opt_pos + length > opt_end:
                self.notes.append(
                    f"interface block at offset {block_offset}: option {code} of length "
                    f"{length} runs past the block; options ignored from there"
                )
                break
            if code == OPT_IF_TSRESOL:
                scale = tsresol_scale(buf[opt_pos]) if length == 1 else None
                if scale is None:
                    value = buf[opt_pos] if length else "none"
                    self.notes.append(
                        f"interface block at offset {block_offset}: invalid if_tsresol "
                        f"(length {length}, value {value}); using microseconds"
                    )
                else:
                    mul, div = scale
            elif code == OPT_IF_TSOFFSET:
                if length == 8:
                    offset_ns = self._rd_i64(buf, opt_pos)[0] * 1_000_000_000
                else:
                    self.notes.append(
                        f"interface block at offset {block_offset}: invalid if_tsoffset "
                        f"(length {length}); ignored"
                    )
            opt_pos += (length + 3) & ~3  # option values are padded to 32 bits
        return mul, div, offset_ns

    def _on_epb(
        self, buf: Buffer, pos: int, blen: int, base: int, out: list[Item], with_data: bool
    ) -> None:
        """An EPB the hot loop refused: find out why and say so, or take it."""
        if blen < MIN_EPB_LEN:
            detail = f"enhanced packet block too short: {blen} < {MIN_EPB_LEN} bytes"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        _t, _l, iface, ts_hi, ts_lo, caplen, origlen = self._rd_epb(buf, pos)
        self._packet(buf, pos, blen, base, out, with_data, 28, iface, ts_hi, ts_lo, caplen, origlen)

    def _on_pb(
        self, buf: Buffer, pos: int, blen: int, base: int, out: list[Item], with_data: bool
    ) -> None:
        """The obsolete Packet Block: an EPB with a 16-bit interface and a drop counter."""
        if blen < MIN_PB_LEN:
            detail = f"packet block too short: {blen} < {MIN_PB_LEN} bytes"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        iface, _drops, ts_hi, ts_lo, caplen, origlen = self._rd_pb(buf, pos + 8)
        self._packet(buf, pos, blen, base, out, with_data, 28, iface, ts_hi, ts_lo, caplen, origlen)

    def _packet(
        self,
        buf: Buffer,
        pos: int,
        blen: int,
        base: int,
        out: list[Item],
        with_data: bool,
        header_len: int,
        iface: int,
        ts_hi: int,
        ts_lo: int,
        caplen: int,
        origlen: int,
    ) -> None:
        """Checks and frame making shared by EPB and PB (slow path)."""
        space = blen - header_len - 4
        if caplen > space:
            detail = f"packet caplen {caplen} exceeds the {space} bytes of its {blen}-byte block"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        if iface >= len(self._ifaces):
            self.error(out, base + pos, REASON_MALFORMED, self._no_iface(iface), False)
            return
        gid, link, _snaplen, mul, div, offset_ns = self._ifaces[iface]
        ts = ((ts_hi << 32) | ts_lo) * mul // div + offset_ns
        start = pos + header_len
        data = buf[start : start + caplen] if with_data else None
        out.append(Frame(self.index, ts, base + start, caplen, origlen, gid, link, data))
        self.index += 1
        self._last_ts_ns = ts

    def _on_spb(
        self, buf: Buffer, pos: int, blen: int, base: int, out: list[Item], with_data: bool
    ) -> None:
        """A Simple Packet Block: interface 0, previous packet's timestamp (see module doc)."""
        if blen < MIN_SPB_LEN:
            detail = f"simple packet block too short: {blen} < {MIN_SPB_LEN} bytes"
            self.error(out, base + pos, REASON_LENGTH, detail, False)
            return
        if not self._ifaces:
            self.error(out, base + pos, REASON_MALFORMED, self._no_iface(0), False)
            return
        origlen = self._rd_u32(buf, pos + 8)[0]
        gid, link, snaplen, _mul, _div, _offset = self._ifaces[0]
        caplen = min(origlen, blen - MIN_SPB_LEN)
        if snaplen:
            caplen = min(caplen, snaplen)
        start = pos + 12
        data = buf[start : start + caplen] if with_data else None
        ts = self._last_ts_ns
        out.append(Frame(self.index, ts, base + start, caplen, origlen, gid, link, data))
        self.index += 1

    def _no_iface(self, iface: int) -> str:
        if not self._ifaces:
            return f"packet for interface {iface} before any interface description block"
        return f"packet for interface {iface}, but the section declares {len(self._ifaces)}"

    _HANDLERS: ClassVar[dict[int, Callable[..., None]]] = {
        BT_SHB: _on_shb,
        BT_IDB: _on_idb,
        BT_EPB: _on_epb,
        BT_PB: _on_pb,
        BT_SPB: _on_spb,
    }

    # --- bad block framing: report, then resynchronise or stop ---

    def _bad_block(
        self,
        buf: Buffer,
        pos: int,
        end: int,
        at_eof: bool,
        base: int,
        out: list[Item],
        reason: str,
        detail: str,
    ) -> int:
        """Report a block whose framing cannot be trusted, then resync behind it or stop."""
        # A candidate is accepted only when its whole block is in view: wait until the window
        # plus one maximal block is buffered (or the input ended) so streams decide as maps do.
        window_need = RESYNC_WINDOW + MAX_BLOCK_LEN
        if not at_eof and end - pos < window_need:
            self.need = window_need
            return -1
        found = self._resync(buf, pos + 4, min(end, pos + RESYNC_WINDOW), end)
        if found < 0:
            detail += f"; no valid block within {RESYNC_WINDOW} bytes, stopped"
            self.error(out, base + pos, reason, detail, True)
            return -1
        detail += f"; resynchronised at offset {base + found} ({found - pos} bytes skipped)"
        self.error(out, base + pos, reason, detail, False)
        return found

    def _resync(self, buf: Buffer, start: int, stop: int, end: int) -> int:
        """First 4-aligned position (relative to the bad block) in [start, stop) holding a
        known block type whose leading and trailing lengths agree; -1 if there is none."""
        for cand in range(start, stop, 4):
            if cand + MIN_BLOCK_LEN > end:
                break
            if buf[cand : cand + 4] == SHB_MAGIC:
                order = BYTE_ORDER_MAGICS.get(bytes(buf[cand + 8 : cand + 12]))
                if order is None:
                    continue
                u32 = struct.Struct(order + "I").unpack_from
                btype, blen = BT_SHB, u32(buf, cand + 4)[0]
            else:
                u32 = self._rd_u32
                btype, blen = self._rd_head(buf, cand)
            if (
                btype in KNOWN_BLOCK_TYPES
                and not _block_length_problem(blen)
                and cand + blen <= end
                and u32(buf, cand + blen - 4)[0] == blen
            ):
                return cand
        return -1


def _block_length_problem(blen: int) -> str:
    """Why a block length cannot be right, or "" if it can."""
    if blen < MIN_BLOCK_LEN:
        return f"block length {blen} below the minimum of {MIN_BLOCK_LEN}"
    if blen & 3:
        return f"block length {blen} is not a multiple of 4"
    if blen > MAX_BLOCK_LEN:
        return f"block length {blen} exceeds the maximum of {MAX_BLOCK_LEN}"
    return ""
