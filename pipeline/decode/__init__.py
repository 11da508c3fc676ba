"""L2–L4 decoding: pure functions of (link type, bytes). No I/O here."""

from pipeline.decode.errors import DecodeStop
from pipeline.decode.packet import Packet, decode_packet

__all__ = ["DecodeStop", "Packet", "decode_packet"]
