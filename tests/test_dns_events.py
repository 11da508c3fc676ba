"""DNS transaction events through the converter (`--extract dns`), against tshark truth.

Every DNS query message is in one transaction event (retransmissions of a query are counted
on it, `pcap.dns.retransmits`), every response in one answer event. The extractor reads DNS
over UDP, over TCP from the flow table's reassembled streams, inside tunnels and in
reassembled IP fragments (both handed over by the flow tracker); each capture where we differ
from truth is named below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.capture import Frame, open_capture
from pipeline.convert import read_events
from pipeline.decode.packet import decode_packet
from pipeline.events.ecs import EcsMapper
from pipeline.extract.dns import DnsExtractor, transaction_event
from pipeline.gen.capture_mix import write_capture
from tests.conftest import CAPTURE_PARAMS, REFERENCE_CAPTURES, SHARED, truth_for

# Per file: (our query messages, our response messages, reason).
DIFFERENCES: dict[str, tuple[int, int, str]] = {
    "zeek__gre-sample.pcap": (
        2,
        0,
        "two of truth's four queries are quoted inside ICMP errors (tshark dissects the quote; "
        "we link the error to the quoted flow instead); the two inside GRE are read",
    ),
    "zeek__icmp-destunreach-udp.pcap": (0, 0, "the response is quoted inside an ICMP error"),
    "malformed/tcpdump__LINKTYPE_IPV4_invalid.pcap": (
        0,
        0,
        "the link type says IPv4, the frame holds IPv6: an anomaly, tshark follows the nibble",
    ),
    "malformed/ndpi__fuzz-2006-06-26-2594.pcap": (
        249,
        47,
        "fuzzed: 9-byte messages shorter than a header, reserved label types, and messages on "
        "fuzzed ports tshark still calls DNS (tests/test_extract_dns.py names them); frame "
        "642 has More Fragments set at offset 0 and no other fragment: a datagram that never "
        "completes, so neither tshark (reassembling) nor we read DNS in it",
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


def test_dns_inside_a_tunnel_and_in_ip_fragments(tmp_path: Path) -> None:
    """A query inside GRE and a response cut into two IPv4 fragments: both read (the flow
    tracker hands the inner packet and the reassembled datagram to the extractor), paired
    into one answered transaction; the first fragment alone is not read as a short message."""
    import struct

    import dpkt

    client, server = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 53])
    question = b"\x07example\x03com\x00" + struct.pack("!HH", 1, 1)
    query = struct.pack("!HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0) + question
    answers = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, i]) for i in range(60)
    )
    response = struct.pack("!HHHHHH", 0x5151, 0x8180, 1, 60, 0, 0) + question + answers

    def ip(
        src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 1, off: int = 0
    ) -> bytes:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, off, 64, proto,
                             0, src, dst)  # fmt: skip
        return header + payload

    def udp(sport: int, dport: int, data: bytes) -> bytes:
        return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data

    inner_query = ip(client, server, 17, udp(40000, 53, query))
    gre = ip(bytes([172, 16, 0, 1]), bytes([172, 16, 0, 2]), 47, b"\x00\x00\x08\x00" + inner_query)
    datagram = udp(53, 40000, response)
    cut = 512  # a multiple of 8
    first = ip(server, client, 17, datagram[:cut], ident=7, off=0x2000)  # More Fragments
    second = ip(server, client, 17, datagram[cut:], ident=7, off=cut // 8)
    path = tmp_path / "tunnel-fragments.pcap"
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i, frame in enumerate((gre, first, second)):
            writer.writepkt(frame, ts=1_700_000_000 + i * 0.01)
    events = dns_events(path)
    assert len(events) == 1, events
    (tx,) = events
    assert tx["dns"]["question"]["name"] == "example.com" and tx["dns"]["type"] == "answer"
    assert len(tx["dns"]["answers"]) == 60 and tx["pcap"]["dns"]["status"] == "answered"
    assert tx["source"]["ip"] == "10.0.0.1" and tx["destination"]["port"] == 53


# --- The mapper's one-literal event against the generic merge ------------------------------
def reference_transactions(mix: Path) -> list[Any]:
    """Every DNS-over-UDP transaction of the reference captures and of a generated mix."""
    extractor = DnsExtractor()
    sources = [*REFERENCE_CAPTURES, mix]
    txs: list[Any] = []
    for path in sources:
        with open_capture(str(path)) as capture:
            for batch in capture.batches():
                for record in batch:
                    if not isinstance(record, Frame):
                        continue
                    pkt = decode_packet(record.link_type, record.data)
                    if pkt.error is None and pkt[9] == 17 and 53 in (pkt[14], pkt[15]):
                        extractor.packet(record, pkt)
        txs += extractor.take_ended() + extractor.flush()
    return txs


DNS_OWN = {"kind", "category", "type", "dataset", "outcome", "duration"}


def test_mapper_event_is_the_generic_merge(tmp_path: Path) -> None:
    """`EcsMapper.dns` builds its event in one literal; `transaction_event` merges the DNS
    parts into any base. Take the mapper's event, strip what is DNS's own, merge it back with
    `transaction_event`: the same bytes (keys in the same order) for every transaction."""
    mapper = EcsMapper("capture.pcap", "key")
    mix = tmp_path / "mix.pcap"
    write_capture(str(mix), packets=3000, seed=7)
    txs = reference_transactions(mix)
    statuses = {tx.status for tx in txs}
    assert {"answered", "unanswered"} <= statuses, statuses
    for tx in txs:
        event = mapper.dns(tx)
        base = {k: v for k, v in event.items() if k != "dns"}
        base["event"] = {k: v for k, v in event["event"].items() if k not in DNS_OWN}
        base["network"] = {k: v for k, v in event["network"].items() if k != "protocol"}
        base["pcap"] = {k: v for k, v in event["pcap"].items() if k != "dns"}
        assert orjson.dumps(event) == orjson.dumps(transaction_event(tx, base)), tx
