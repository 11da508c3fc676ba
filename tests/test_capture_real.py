"""Capture framing on the real reference captures (../shared/captures), against tshark and dpkt.

Truth is tshark 4.0's frame count (`truth/<file>.json`: "frames", "read_error"). The rule:
frames + framing errors >= tshark's frames always; equal when tshark read the file without
error and we found no framing error. Files where we differ from tshark, or agree in count for
a different reason, are pinned below with their reason. dpkt's readers are the second opinion:
same timestamps and bytes, frame by frame, except on the files listed with a reason.

The tests skip, with the reason, when ../shared/captures (or $PCAP_INGEST_SHARED) is absent.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path
from typing import Any

import dpkt
import pytest

from pipeline.capture import REASON_LENGTH, REASON_TRUNCATED, Frame, FramingError, open_capture
from pipeline.capture import open_stream as open_stream_
from tests.conftest import CAPTURE_PARAMS, SHARED, truth_for

Items = list[Frame | FramingError]

# Per file: (frames, framing errors) we read where that differs from tshark's view, and why.
TSHARK_DIFFERENCES: dict[str, tuple[int, int, str]] = {
    "malformed/tcpdump__brcm-tag.pcap": (
        23,
        0,
        "tshark 4.0 refuses link type 281 (Broadcom tag) and reads 0 frames; framing does not "
        "depend on link types, so all 23 records are frames",
    ),
    "malformed/suricata-verify__smtp-to-comma__10.7.29.101_49898-178.63.41.150_25.pcap": (
        199,
        1,
        "record 19 (offset 3695) claims caplen 3925868813; tshark stops there after 18 frames, "
        "we report a length_error and resynchronise 3 bytes later, reading 181 more frames",
    ),
    "malformed/suricata-verify__bug-6875-01__fuzz.pcap": (
        1,
        1,
        "same item count (2) as tshark, different content: after record 1, record 2 claims "
        "caplen 1409179648; tshark's heuristic then takes the file for the 24-byte-header "
        "'ss990417' pcap variant, reads a 2nd (bogus) frame and fails on a 16711424-byte "
        "record; we read the standard format and report the length_error (no resync found)",
    ),
}

# Per file: how many leading frames dpkt gets right, and why the rest differ.
DPKT_DIFFERENCES: dict[str, tuple[int, str]] = {
    "zeek__pcapng-multi-interface.pcapng": (
        2,
        "dpkt scales every interface's timestamps by the first interface's if_tsresol (ns); "
        "frames 3-6 are on interface 1 (µs), so dpkt's times are 1000x too small",
    ),
    "malformed/ndpi__fuzz-2021-10-13.pcap": (
        0,
        "a pcap 2.0 file: its record headers hold origlen before caplen, which libpcap and "
        "tshark swap back; dpkt takes caplen 524501 and returns the 197 bytes left",
    ),
    "malformed/suricata-verify__bug-6875-01__fuzz.pcap": (
        1,
        "record 2 claims caplen 1409179648: dpkt returns the rest of the file as a packet "
        "(a silent short read) where we report a length_error",
    ),
    "malformed/suricata-verify__smtp-to-comma__10.7.29.101_49898-178.63.41.150_25.pcap": (
        18,
        "record 19 claims caplen 3925868813: dpkt returns the rest of the file as one packet "
        "and stops; we report a length_error and resynchronise",
    ),
}

# tshark's link-type names (truth "link_type") -> LINKTYPE_* values.
LINK_TYPE_NAMES = {
    "Ethernet": 1,
    "NULL/Loopback": 0,
    "Raw IP": 101,
    "Linux cooked-mode capture v1": 113,
    "Linux cooked-mode capture v2": 276,
    "Raw IPv4": 228,
    "Raw IPv6": 229,
    "IEEE 802.3br mPackets": 274,
}


def _rel(capture: Path) -> str:
    return str(capture.relative_to(SHARED))


def _read(capture: Path, **kwargs: Any) -> tuple[Items, dict[str, Any]]:
    with open_capture(str(capture), **kwargs) as cap:
        items = list(cap)
        info = {"format": cap.format, "compression": cap.compression, "status": cap.status}
        info["frames_read"] = cap.frames_read
    return items, info


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_frame_counts_match_tshark(capture: Path) -> None:
    truth = truth_for(capture)
    items, info = _read(capture)
    frames = [i for i in items if type(i) is Frame]
    errors = [i for i in items if type(i) is FramingError]
    assert len(items) >= truth["frames"]
    assert info["frames_read"] == len(items)
    assert info["status"] == ("partial" if errors else "ok")
    rel = _rel(capture)
    if rel in TSHARK_DIFFERENCES:
        n_frames, n_errors, _reason = TSHARK_DIFFERENCES[rel]
        assert (len(frames), len(errors)) == (n_frames, n_errors)
    elif truth["read_error"] is None:
        assert errors == []
        assert len(frames) == truth["frames"]
    else:  # tshark stopped on a bad record: we stop there too, with one fatal error
        assert len(frames) == truth["frames"]
        assert len(errors) == 1
        assert errors[0].fatal
        assert errors[0].reason in (REASON_TRUNCATED, REASON_LENGTH)


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_format_compression_and_link_types_match_capinfos(capture: Path) -> None:
    truth = truth_for(capture)
    items, info = _read(capture, with_data=False)
    assert info["format"] == ("pcapng" if "pcapng" in truth["file_type"] else "pcap")
    assert info["compression"] == ("gzip" if "gzip" in truth["file_type"] else "none")
    ours = {i.link_type for i in items if type(i) is Frame}
    names = truth["link_type"].removeprefix("per-packet: ").split(", ")
    expected = {LINK_TYPE_NAMES[n.split(" (")[0]] for n in names if n}
    if expected:  # "" when tshark could not read the file
        assert ours <= expected


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_frames_are_consistent_and_equal_across_drivers(capture: Path, tmp_path: Path) -> None:
    """Indexes count up from 1, data is where the offset says, and every driver agrees."""
    items, info = _read(capture)
    assert [i.index for i in items] == list(range(1, len(items) + 1))
    if info["compression"] == "none":
        raw = capture.read_bytes()
        with open_stream_(io.BytesIO(raw), chunk_size=4093) as stream:
            assert list(stream) == items
    else:  # decompress to a plain file and read that mapped
        plain = tmp_path / "plain.cap"
        plain.write_bytes(gzip.decompress(capture.read_bytes()))
        raw = plain.read_bytes()
        assert _read(plain)[0] == items
    for item in items:
        if type(item) is Frame:
            assert item.data == raw[item.offset : item.offset + item.caplen]
            assert item.caplen == len(item.data)


def _dpkt_packets(capture: Path, fmt: str) -> list[tuple[float, bytes]]:
    opener = gzip.open if capture.name.endswith(".gz") else open
    with opener(capture, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if fmt == "pcapng" else dpkt.pcap.Reader(f)
        return [(float(ts), bytes(buf)) for ts, buf in reader]


def _same_time(dpkt_ts: float, ts_ns: int) -> bool:
    """Within 1 µs, or within float resolution: nfstream__dhcp_big_endian.pcapng has times near
    4.7e12 s (its writer stored odd values), where a float only resolves about 1 ms."""
    return abs(dpkt_ts - ts_ns / 1e9) <= max(1e-6, 4 * math.ulp(dpkt_ts))


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_frames_match_dpkt(capture: Path) -> None:
    items, info = _read(capture)
    frames = [i for i in items if type(i) is Frame]
    packets = _dpkt_packets(capture, info["format"])
    rel = _rel(capture)
    agree = len(frames)
    if rel in DPKT_DIFFERENCES:
        agree, _reason = DPKT_DIFFERENCES[rel]
        assert len(packets) >= agree
    else:
        assert len(packets) == len(frames)
    for i, (frame, (ts, data)) in enumerate(zip(frames[:agree], packets[:agree], strict=True)):
        assert _same_time(ts, frame.ts_ns), (i, ts, frame.ts_ns)
        assert data == frame.data, i
    if agree < len(frames) and agree < len(packets):  # the first difference is real
        frame, (ts, data) = frames[agree], packets[agree]
        assert not (_same_time(ts, frame.ts_ns) and data == frame.data)
