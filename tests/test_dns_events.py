"""DNS transaction events through the converter (`--extract dns`), against tshark truth.

Every DNS query message is in one transaction event (retransmissions of a query are counted
on it, `pcap.dns.retransmits`), every response in one answer event. The extractor reads DNS
over UDP, and over TCP from the flow table's reassembled streams; not yet inside tunnels or IP
fragments (issue #5): each capture where that makes a difference is named below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.convert import read_events
from tests.conftest import CAPTURE_PARAMS, SHARED, truth_for

# Per file: (our query messages, our response messages, reason).
DIFFERENCES: dict[str, tuple[int, int, str]] = {
    "zeek__gre-sample.pcap": (0, 0, "the queries are inside GRE (and quoted in ICMP errors)"),
    "zeek__icmp-destunreach-udp.pcap": (0, 0, "the response is quoted inside an ICMP error"),
    "malformed/tcpdump__LINKTYPE_IPV4_invalid.pcap": (
        0,
        0,
        "the link type says IPv4, the frame holds IPv6: an anomaly, tshark follows the nibble",
    ),
    "malformed/ndpi__fuzz-2006-06-26-2594.pcap": (
        250,
        47,
        "fuzzed: 9-byte messages shorter than a header, reserved label types, and messages on "
        "fuzzed ports tshark still calls DNS (tests/test_extract_dns.py names them)",
    ),
}


def dns_events(capture: Path) -> list[dict[str, Any]]:
    return list(read_events(str(capture), extract=("dns",)))


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_every_dns_message_is_in_a_transaction(capture: Path) -> None:
    truth = truth_for(capture)
    name = str(capture.relative_to(SHARED))
    events = dns_events(capture)
    queries = sum(
        1 + e["pcap"]["dns"].get("retransmits", 0)
        for e in events
        if e["pcap"]["dns"]["status"] != "unsolicited"
    )
    responses = sum(1 for e in events if e["dns"]["type"] == "answer")
    expected = DIFFERENCES.get(name, (truth["dns_query_msgs"], truth["dns_response_msgs"], ""))
    assert (queries, responses) == expected[:2], (
        f"{name}: truth {truth['dns_query_msgs']}/{truth['dns_response_msgs']} ({expected[2]})"
    )
    if name in ("tcpdump__dns_tcp.pcap", "zeek__tkey.pcap"):
        assert {e["network"]["transport"] for e in events} == {"tcp"}
    for e in events:
        assert e["event"]["dataset"] == "pcap_ingest.dns"
        assert e["event"]["id"].endswith(f"-dns-{e['pcap']['frame']}")
        if e["pcap"]["dns"]["status"] == "answered":
            assert e["event"]["duration"] >= 0 and "response_frame" in e["pcap"]
    assert len({e["event"]["id"] for e in events}) == len(events)
