"""The NDJSON fast path writes, byte for byte, what orjson writes for the mapper's dict."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.capture import Frame, open_capture
from pipeline.decode.packet import decode_packet
from pipeline.events.ecs import EcsMapper, capture_key
from pipeline.events.ecs_lines import PacketLineEncoder
from pipeline.gen.capture_mix import write_capture
from tests.conftest import CAPTURE_PARAMS


def assert_lines_match_dicts(path: str) -> int:
    """Compare the two paths on every frame of `path`; return how many took the fast path."""
    fast = 0
    with open_capture(path) as capture:
        mapper = encoder = None
        for record in capture:
            if not isinstance(record, Frame):
                continue
            if mapper is None:
                mapper = EcsMapper(path, capture_key(record))
                encoder = PacketLineEncoder(EcsMapper(path, capture_key(record)))
            assert encoder is not None
            pkt = decode_packet(record.link_type, record.data)
            expected = orjson.dumps(mapper.packet(record, pkt), option=orjson.OPT_APPEND_NEWLINE)
            assert encoder.line(record, pkt) == expected, record.index
            fast += pkt.error is None and pkt.src_ip is not None
    return fast


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
