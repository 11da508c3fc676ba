"""Frames and outer protocol counts against tshark truth, on every reference capture.

For each capture: the frames we read (decoded + anomalies) equal truth ``frames`` — or, where
tshark stopped with a ``read_error``, at least as many, with the error reported — and the
events per outer ``network.type`` / ``network.transport`` equal truth ``outer``. Every frame is
accounted for (frames = decoded + anomalies). Differences are named per file with the reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from pipeline import convert
from tests.conftest import CAPTURE_PARAMS, truth_for

# network.transport → truth "outer" key. ESP is listed with the extension headers in the
# truth's outer view (make_truth.py skips it like AH), leaving nothing after it: no_l4.
OUTER_TRANSPORT = {
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
    "ipv6-icmp": "icmpv6",
    "sctp": "sctp",
    "gre": "gre",
    "esp": "no_l4",
}
TRANSPORT_LAYERS = ("tcp", "udp", "icmp", "sctp")

# Why a malformed capture's outer counts differ from tshark's. We set network.type only when the
# IP header itself decoded, and network.transport only when the transport header is complete;
# tshark names a layer as soon as its dissector starts, even on a header it then flags.
IP_HEADER_BAD = "IP header malformed or cut short: an anomaly event without network.type"
L4_HEADER_CUT = "transport header cut short: an anomaly event, counted here as no_l4"
# Per file: (our outer counts, reason). Only non-zero counts are listed.
OUTER_DIFFERENCES: dict[str, tuple[dict[str, int], str]] = {
    "malformed/ndpi__fuzz-2006-06-26-2594.pcap": (
        {"ipv4": 606, "udp": 522, "tcp": 50, "no_l4": 29, "other_l4": 5},
        "fuzzed: 7 IPv4 headers with impossible fields (" + IP_HEADER_BAD + "), 1 cut TCP "
        "header; tshark reads a bad protocol field as other_l4 where ours is no_l4 and back",
    ),
    "malformed/suricata-verify__bug-6875-01__fuzz.pcap": (
        {"ipv4": 1, "no_l4": 1},
        "tshark cannot open the file; we read the one frame before the bad record",
    ),
    "malformed/suricata-verify__smtp-to-comma__10.7.29.101_49898-178.63.41.150_25.pcap": (
        {"ipv4": 199, "tcp": 199},
        "tshark stops at the bad record length; we resynchronise and read the rest",
    ),
    "malformed/tcpdump__LINKTYPE_IPV4_invalid.pcap": ({}, IP_HEADER_BAD + " (IPv6 in DLT IPV4)"),
    "malformed/tcpdump__gre-heapoverflow-1.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__heapoverflow-tcp_print.pcap": ({"ipv4": 1, "no_l4": 1}, L4_HEADER_CUT),
    "malformed/tcpdump__icmp-icmp_print-oobr-1.pcap": (
        {"ipv4": 2, "no_l4": 1, "other_l4": 1},
        L4_HEADER_CUT,
    ),
    "malformed/tcpdump__ip6_frag_asan.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__ip_ts_opts_asan.pcap": ({"ipv4": 1, "no_l4": 1}, L4_HEADER_CUT),
    "malformed/tcpdump__ipv4_invalid_hdr_length.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__ipv4_invalid_length.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__ipv6-next-header-oobr-1.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__ipv6-rthdr-oobr.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__ipv6_invalid_length.pcap": ({}, IP_HEADER_BAD),
    "malformed/tcpdump__tcp_header_heapoverflow.pcap": ({"ipv4": 1, "no_l4": 1}, L4_HEADER_CUT),
    "malformed/tcpdump__udp-length-heapoverflow.pcap": ({"ipv4": 1, "no_l4": 1}, L4_HEADER_CUT),
    "malformed/zeek__truncated-header.pcap": (
        {"ipv4": 24, "tcp": 23, "no_l4": 1},
        "the last frame's TCP options are cut by the snaplen: " + L4_HEADER_CUT,
    ),
    "zeek__ipv6-mobility-dst-opts.pcap": (
        {"ipv6": 2, "udp": 2},
        "truth marks all 3 frames malformed; one extension header runs past the IPv6 payload "
        "(an anomaly without network.type), and tshark gives up on the UDP of another",
    ),
}

# Where we read more frames than tshark: it stops at the first unreadable record.
FRAME_DIFFERENCES = {
    "malformed/ndpi__fuzz-2021-10-13.pcap": "the cut-short last record is reported, not dropped",
    "malformed/suricata-verify__smtp-to-comma__10.7.29.101_49898-178.63.41.150_25.pcap": (
        "we resynchronise after the bad record length"
    ),
    "malformed/tcpdump__brcm-tag.pcap": (
        "tshark refuses the link type; we report each frame as unsupported_link_type"
    ),
}


def outer_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for event in events:
        network = event.get("network", {})
        network_type = network.get("type")
        if network_type is None:
            continue
        counts[network_type] += 1
        pcap = event["pcap"]
        layer = pcap.get("anomaly_layer")
        if pcap.get("fragment_offset") or "iana_number" not in network or layer in TRANSPORT_LAYERS:
            counts["no_l4"] += 1
        else:
            counts[OUTER_TRANSPORT.get(network.get("transport", ""), "other_l4")] += 1
    return dict(counts)


def read_ndjson_zst(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_frames_and_outer_counts_match_truth(capture: Path, tmp_path: Path) -> None:
    truth = truth_for(capture)
    rel = truth["file"]
    run = convert([str(capture)], str(tmp_path), extract=("packet", "anomaly"))
    (stats,) = run.files
    assert stats.accounted, stats.to_json()
    events = read_ndjson_zst(Path(stats.outputs[0]))
    assert len(events) == stats.frames  # packet and anomaly events: one per frame

    if truth["read_error"] is None and rel not in FRAME_DIFFERENCES:
        assert stats.frames == truth["frames"]
    else:
        assert stats.frames >= truth["frames"]
    if truth["read_error"] is not None and rel not in FRAME_DIFFERENCES:
        # tshark could not read the whole file: neither could we, and we say so.
        assert stats.status == "partial", stats.to_json()

    expected = {k: v for k, v in truth["outer"].items() if v}
    if rel in OUTER_DIFFERENCES:
        expected = OUTER_DIFFERENCES[rel][0]
    assert outer_counts(events) == expected
