"""Our hand-written L2–L4 decoder agrees with dpkt on every packet of ../shared/captures.

The decoder is hand-written for speed (see pipeline/decode/packet.py); dpkt is the reference.
For every frame both decode, every field we emit must be equal. Where they cannot be compared
the reason is one of the named, justified cases below, and each is counted, never silent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dpkt
import pytest

from pipeline.capture import Frame, open_capture
from pipeline.decode.packet import Packet, decode_packet
from tests.conftest import CAPTURE_PARAMS, truth_for

# Justified reasons a frame is not compared field by field (keys of the per-file tally):
# - "dpkt_error": dpkt raised on the frame (NOTES.md lists its failure modes); ours reported
#   an anomaly or decoded it, which the truth tests check against tshark instead.
# - "ours_anomaly": we stopped with a typed anomaly (truncated/malformed headers) where dpkt
#   silently decoded partial objects (it fills missing fields with defaults/empty bytes).
# - "dpkt_no_ip": dpkt does not look behind this link framing (MPLS, PPPoE, 802.3/LLC,
#   VLAN-tagged SLL, more than two VLAN tags) where we do, or the payload is not IP (ARP...).
#
# Files where dpkt raises on clean frames, or where we report anomalies that tshark does not
# call malformed, each with the reason; any other file must have neither.
DPKT_ERRORS_EXPECTED = {
    # dpkt.ip6 cannot skip ESP (no length field) and raises on every ESP packet.
    "zeek__ip6_esp.pcap",
}
OUR_ANOMALIES_EXPECTED: dict[str, str] = {
    # tshark counts this frame (a TCP header cut by the snaplen) but marks no expert error.
    "zeek__ipv6-mobility-dst-opts.pcap": "a destination-options header past the IPv6 payload",
}
VLAN_TPIDS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")


def _dpkt_link(link_type: int, buf: bytes) -> Any:
    if link_type == 1:
        return dpkt.ethernet.Ethernet(buf)
    if link_type == 113:
        return dpkt.sll.SLL(buf)
    if link_type == 276:
        return dpkt.sll2.SLL2(buf)
    if link_type in (0, 108):
        return dpkt.loopback.Loopback(buf)
    if link_type in (12, 14, 101):
        return dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    if link_type == 228:
        return dpkt.ip.IP(buf)
    if link_type == 229:
        return dpkt.ip6.IP6(buf)
    raise dpkt.UnpackError(f"link type {link_type}")


def _dpkt_fields(link_type: int, buf: bytes) -> dict[str, Any] | None:
    """The fields we emit, as dpkt sees them; None when dpkt finds no IP header."""
    obj = _dpkt_link(link_type, buf)
    fields: dict[str, Any] = {}
    if isinstance(obj, dpkt.ethernet.Ethernet):
        fields["src_mac"], fields["dst_mac"] = obj.src, obj.dst
        tags = getattr(obj, "vlan_tags", None) or []
        if all(buf[i : i + 2] in VLAN_TPIDS for i in (12, 16, 20)):
            return None  # three tags: dpkt reads at most two (and then misreads them)
        if tags:
            fields["vlan_id"] = tags[0].id
            if len(tags) > 1:
                fields["inner_vlan_id"] = tags[1].id
        if getattr(obj, "mpls_labels", None):
            return None
        obj = obj.data
    elif isinstance(obj, (dpkt.sll.SLL, dpkt.sll2.SLL2, dpkt.loopback.Loopback)):
        obj = obj.data
    if isinstance(obj, dpkt.ip.IP):
        fields["ip_version"] = 4
        fields["src_ip"], fields["dst_ip"] = obj.src, obj.dst
        fields["ttl"] = obj.ttl
        fields["fragment_offset"] = (obj.off & dpkt.ip.IP_OFFMASK) * 8
        fields["more_fragments"] = bool(obj.off & dpkt.ip.IP_MF)
        protocol = obj.p
    elif isinstance(obj, dpkt.ip6.IP6):
        fields["ip_version"] = 6
        fields["src_ip"], fields["dst_ip"] = obj.src, obj.dst
        fields["ttl"] = obj.hlim
        frag = obj.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT)
        fields["fragment_offset"] = (frag.frag_off << 3) if frag is not None else 0
        fields["more_fragments"] = bool(frag.m_flag) if frag is not None else False
        protocol = obj.p
    else:
        return None
    fields["protocol"] = protocol
    payload = obj.data
    if fields["fragment_offset"]:
        return fields
    if isinstance(payload, dpkt.tcp.TCP):
        fields.update(
            src_port=payload.sport,
            dst_port=payload.dport,
            tcp_flags=payload.flags,  # dpkt keeps all 9 flag bits, NS included
            tcp_seq=payload.seq,
            tcp_ack=payload.ack,
            tcp_window=payload.win,
        )
    elif isinstance(payload, dpkt.udp.UDP):
        fields.update(src_port=payload.sport, dst_port=payload.dport)
    elif isinstance(payload, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        fields.update(icmp_type=payload.type, icmp_code=payload.code)
    elif isinstance(payload, dpkt.sctp.SCTP):
        fields.update(src_port=payload.sport, dst_port=payload.dport)
    return fields


def _compare(frame: Frame, ours: Packet, tally: dict[str, int]) -> list[str]:
    assert frame.data is not None
    try:
        theirs = _dpkt_fields(frame.link_type, frame.data)
    except Exception:  # dpkt raises many types on bad input (NOTES.md)
        tally["dpkt_error"] = tally.get("dpkt_error", 0) + 1
        return []
    if ours.error is not None:
        tally["ours_anomaly"] = tally.get("ours_anomaly", 0) + 1
        return []
    if theirs is None:
        tally["dpkt_no_ip"] = tally.get("dpkt_no_ip", 0) + 1
        return []
    tally["compared"] = tally.get("compared", 0) + 1
    problems = []
    for name, value in theirs.items():
        if getattr(ours, name) != value:
            problems.append(
                f"frame {frame.index}: {name}: ours {getattr(ours, name)!r} dpkt {value!r}"
            )
    return problems


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_decoder_agrees_with_dpkt(capture: Path) -> None:
    tally: dict[str, int] = {}
    problems: list[str] = []
    with open_capture(str(capture)) as cap:
        for record in cap:
            if isinstance(record, Frame):
                problems += _compare(record, decode_packet(record.link_type, record.data), tally)
    assert not problems[:20], f"{len(problems)} disagreements, first: {problems[:20]}"
    truth = truth_for(capture)
    if "malformed" in capture.parts or truth["malformed"]:
        return  # corrupt on purpose: anomalies and dpkt errors are expected there
    if capture.name not in DPKT_ERRORS_EXPECTED:
        assert not tally.get("dpkt_error"), tally
    if capture.name not in OUR_ANOMALIES_EXPECTED:
        assert not tally.get("ours_anomaly"), tally
    if truth["outer"]["ipv4"] + truth["outer"]["ipv6"] > tally.get("dpkt_no_ip", 0):
        assert tally.get("compared", 0) > 0, tally
