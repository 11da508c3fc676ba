"""Flow-affine routing: symmetric, fragment-safe, and the vectorised path equals the scalar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.capture import Frame, open_capture
from pipeline.decode.packet import decode_packet
from pipeline.gen.capture_mix import write_capture
from pipeline.runtime.routing import flow_hash, packet_hash, route_batch
from tests.conftest import CAPTURE_PARAMS
from tests.test_decode import DST4, SRC4, ether, ipv4, ipv6, tcp, udp


def vector_vs_scalar(path: str) -> tuple[int, int]:
    """Route every frame both ways; return (frames compared, frames left to the scalar path)."""
    with open_capture(path) as capture:
        frames = [r for r in capture if isinstance(r, Frame)]
    compared = scalar = 0
    for link_type in sorted({f.link_type for f in frames}):
        group = [f for f in frames if f.link_type == link_type]
        blob = b"".join(f.data for f in group)
        offsets = np.cumsum([0] + [f.caplen for f in group[:-1]], dtype=np.int64)
        caplens = np.array([f.caplen for f in group], dtype=np.int64)
        hashes, needs_scalar = route_batch(
            np.frombuffer(blob, dtype=np.uint8), offsets, caplens, link_type
        )
        for i, frame in enumerate(group):
            if needs_scalar[i]:
                scalar += 1
                continue
            if decode_packet(link_type, frame.data).error is not None:
                continue  # anomalies carry no flow state: any worker will do
            assert int(hashes[i]) == packet_hash(link_type, frame.data, int(offsets[i])), (
                frame.index
            )
            compared += 1
    return compared, scalar


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_vectorised_equals_scalar_on_reference_captures(capture: Path) -> None:
    vector_vs_scalar(str(capture))


def test_vectorised_path_takes_the_generated_mix(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 5000, seed=5)
    compared, scalar = vector_vs_scalar(str(path))
    assert compared > 4900 and scalar < 100  # QinQ-in-QinQ and the like only


@given(
    a=st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    b=st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    pa=st.integers(0, 65535),
    pb=st.integers(0, 65535),
)
def test_hash_is_symmetric(a: bytes, b: bytes, pa: int, pb: int) -> None:
    assert flow_hash(a, b, pa, pb) == flow_hash(b, a, pb, pa)


def test_both_directions_and_all_fragments_meet() -> None:
    forward = ether(0x0800, ipv4(6, tcp(1234, 80)))
    reverse = forward[:26] + DST4 + SRC4 + tcp(80, 1234)
    assert packet_hash(1, forward, 0) == packet_hash(1, reverse, 999)
    first = ether(0x0800, ipv4(17, udp(5353, 53), frag=0x2000))
    later = ether(0x0800, ipv4(17, b"rest of the datagram", frag=0x0010))
    assert packet_hash(1, first, 0) == packet_hash(1, later, 5000) == flow_hash(SRC4, DST4, 0, 0)
    v6_first = ether(0x86DD, ipv6(44, bytes([17, 0, 0, 1, 0, 0, 0, 9]) + udp()))
    v6_later = ether(0x86DD, ipv6(44, bytes([17, 0, 0, 0x19, 0, 0, 0, 9]) + b"data"))
    assert packet_hash(1, v6_first, 0) == packet_hash(1, v6_later, 77)


def test_spread_over_workers_is_even_on_the_mix(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    write_capture(str(path), 20000, seed=6)
    with open_capture(str(path)) as capture:
        frames = [r for r in capture if isinstance(r, Frame)]
    blob = b"".join(f.data for f in frames)
    offsets = np.cumsum([0] + [f.caplen for f in frames[:-1]], dtype=np.int64)
    caplens = np.array([f.caplen for f in frames], dtype=np.int64)
    hashes, _ = route_batch(np.frombuffer(blob, dtype=np.uint8), offsets, caplens, 1)
    for workers in (2, 3, 4, 8):
        counts = np.bincount((hashes % workers).astype(np.int64), minlength=workers)
        assert counts.min() > 0.5 * len(frames) / workers, (workers, counts)
