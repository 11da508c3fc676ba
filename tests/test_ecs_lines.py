"""The NDJSON fast path writes, byte for byte, what orjson writes for the mapper's dict."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.capture import Frame, open_capture
from pipeline.decode.packet import decode_packet
from pipeline.events.ecs import EcsMapper, capture_key
from pipeline.events.ecs_lines import PacketLineEncoder
from pipeline.flows.table import FlowTable
from pipeline.gen.capture_mix import write_capture
from tests.conftest import CAPTURE_PARAMS


def assert_lines_match_dicts(path: str) -> int:
    """Compare the two paths on every frame of `path`; return how many took the fast path.

    The fast path is checked twice: on its own, and as a conversion with flow records runs
    it (given the flow the table accounted the packet to, whose directions keep the parts).
    """
    fast = 0
    table = FlowTable()
    with open_capture(path) as capture:
        mapper = encoder = flow_encoder = None
        for record in capture:
            if not isinstance(record, Frame):
                continue
            if mapper is None:
                mapper = EcsMapper(path, capture_key(record))
                encoder = PacketLineEncoder(EcsMapper(path, capture_key(record)))
                flow_encoder = PacketLineEncoder(EcsMapper(path, capture_key(record)))
            assert encoder is not None and flow_encoder is not None
            pkt = decode_packet(record.link_type, record.data)
            expected = orjson.dumps(mapper.packet(record, pkt), option=orjson.OPT_APPEND_NEWLINE)
            assert encoder.line(record, pkt) == expected, record.index
            flow = table.packet(record, pkt) if pkt.error is None and pkt.src_ip else None
            assert flow_encoder.line(record, pkt, flow) == expected, record.index
            fast += pkt.error is None and pkt.src_ip is not None
    return fast


def test_flow_parts_follow_a_mac_change_within_a_direction(tmp_path: Path) -> None:
    """A flow's direction keeps its rendered parts with the MACs they were made for: a
    packet of the same direction from another MAC (a failover, a capture at a router)
    gets its own, and the flow's next packet from the first MAC its first parts again."""
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 50, seed=5)
    with open_capture(str(path)) as capture:
        record = next(r for r in capture if isinstance(r, Frame))
    pkt = decode_packet(record.link_type, record.data)
    assert pkt.error is None and pkt.src_port is not None
    other_mac = pkt._replace(src_mac=b"\x02\x00\x00\x00\x00\x99")
    mapper = EcsMapper(str(path), capture_key(record))
    encoder = PacketLineEncoder(EcsMapper(str(path), capture_key(record)))
    table = FlowTable()
    for packet in (pkt, other_mac, pkt, other_mac):
        flow = table.packet(record, packet)
        assert flow is not None
        expected = orjson.dumps(mapper.packet(record, packet), option=orjson.OPT_APPEND_NEWLINE)
        assert encoder.line(record, packet, flow) == expected
    assert b"02-00-00-00-00-99" in encoder.line(record, other_mac, flow)


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_reference_captures(capture: Path) -> None:
    assert_lines_match_dicts(str(capture))


def test_generated_mix(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 5000, seed=3)
    assert assert_lines_match_dicts(str(path)) > 4500


def test_path_with_characters_json_must_escape(tmp_path: Path) -> None:
    weird = tmp_path / 'quote" back\\slash \u00e9 tab\t.pcap'
    write_capture(str(weird), 50, seed=4)
    assert assert_lines_match_dicts(str(weird)) > 0
