"""Our Community ID equals the reference `communityid` package's, on every packet we can."""

from __future__ import annotations

from pathlib import Path

import communityid
import pytest

from pipeline import read_events
from pipeline.events.community_id import CommunityIdCache, community_id
from tests.conftest import CAPTURE_PARAMS, truth_for

_REFERENCE = communityid.CommunityID()


def reference(protocol: int, src: bytes, dst: bytes, sport, dport) -> str | None:
    try:
        tpl = communityid.FlowTuple(protocol, src, dst, sport, dport)
    except communityid.error.FlowTupleError:
        return None
    return _REFERENCE.calc(tpl)


# (protocol, src, dst, sport, dport) covering the ordering rules and the ICMP port mapping.
CASES = [
    (6, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1234, 80),
    (6, bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), 80, 1234),  # flipped: same id
    (17, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 1]), 53, 5353),  # equal addresses: port order
    (17, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 1]), 5353, 53),
    (132, bytes(16), bytes(15) + b"\x01", 9, 9),
    (1, bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), 8, 0),  # echo request
    (1, bytes([5, 6, 7, 8]), bytes([1, 2, 3, 4]), 0, 0),  # echo reply: same flow
    (1, bytes([5, 6, 7, 8]), bytes([1, 2, 3, 4]), 3, 3),  # port unreachable: one way
    (58, bytes(15) + b"\x02", bytes(15) + b"\x01", 135, 0),  # neighbour solicitation
    (58, bytes(15) + b"\x02", bytes(15) + b"\x01", 1, 4),
    (47, bytes([9, 9, 9, 9]), bytes([1, 1, 1, 1]), None, None),  # GRE: no ports
    (50, bytes([1, 1, 1, 1]), bytes([9, 9, 9, 9]), None, None),
    (17, bytes([1, 1, 1, 1]), bytes([9, 9, 9, 9]), None, None),  # port protocol, no ports
]


@pytest.mark.parametrize("case", CASES)
def test_matches_reference_on_table(case) -> None:
    assert community_id(*case) == reference(*case)


def test_flipped_directions_hash_alike() -> None:
    a = community_id(6, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1234, 80)
    b = community_id(6, bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), 80, 1234)
    assert a == b == "1:" + a[2:] and a.startswith("1:")


def test_cache_returns_the_same_values() -> None:
    cache = CommunityIdCache()
    for case in CASES * 2:
        assert cache.get(*case) == community_id(*case)


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_every_event_matches_reference(capture: Path) -> None:
    """Every event's network.community_id, as emitted, equals the reference's value."""
    compared = 0
    for event in read_events(str(capture)):
        network = event.get("network", {})
        if "iana_number" not in network:
            assert "community_id" not in network
            continue
        if "port" in event["source"]:
            ports = (event["source"]["port"], event["destination"]["port"])
        elif "icmp_type" in event["pcap"]:
            ports = (event["pcap"]["icmp_type"], event["pcap"]["icmp_code"])
        else:
            ports = (None, None)
        args = (
            int(network["iana_number"]),
            event["source"]["ip"],
            event["destination"]["ip"],
            *ports,
        )
        assert network.get("community_id") == reference(*args), (event["pcap"], args)
        compared += 1
    truth = truth_for(capture)
    clean = "malformed" not in capture.parts and not truth["malformed"]
    if clean and truth["outer"]["ipv4"] + truth["outer"]["ipv6"] > truth["outer"]["no_l4"]:
        assert compared > 0
