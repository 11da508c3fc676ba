"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

Hand-written because the reference `communityid` package costs ~45 µs a call (NOTES.md) and
every packet event carries the field; tests/test_community_id.py checks this against the
package on every packet of ../shared/captures. Callers cache per flow (`CommunityIdCache`).
"""

from __future__ import annotations

import base64
import hashlib
import struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
# Protocols whose hash input includes ports; for ICMP the type/code stand in for them.
PORT_PROTOCOLS = frozenset((PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP))

# ICMP message types that pair as request/response (Zeek's mapping, which the spec adopts):
# the "destination port" of a request is its response type, so both directions hash alike.
ICMP_PAIRED_TYPES = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMPV6_PAIRED_TYPES = {
    128: 129,  # echo request / reply
    129: 128,
    130: 131,  # MLD query / report
    131: 130,
    133: 134,  # router solicitation / advertisement
    134: 133,
    135: 136,  # neighbour solicitation / advertisement
    136: 135,
    139: 140,  # node information query / reply
    140: 139,
    144: 145,  # home agent address discovery request / reply
    145: 144,
}

_pack_ports = struct.Struct("!HH").pack


def community_id(
    protocol: int,
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int | None = None,
    dst_port: int | None = None,
    seed: int = 0,
) -> str | None:
    """The "1:..." Community ID of a flow tuple; for ICMP pass type and code as the ports.

    Returns None when the tuple cannot have one: a port protocol without ports (a later IP
    fragment), which the reference implementation refuses as well.
    """
    one_way = False
    if protocol in PORT_PROTOCOLS:
        if src_port is None or dst_port is None:
            return None
        if protocol == PROTO_ICMP or protocol == PROTO_ICMPV6:
            paired = ICMP_PAIRED_TYPES if protocol == PROTO_ICMP else ICMPV6_PAIRED_TYPES
            icmp_type = src_port
            reply_type = paired.get(icmp_type)
            if reply_type is None:
                one_way = True  # errors and unpaired messages: the code stands in for a port
            else:
                dst_port = reply_type
    else:
        src_port = dst_port = None
    if not one_way and (
        src_ip > dst_ip or (src_ip == dst_ip and src_port is not None and src_port > dst_port)
    ):
        src_ip, dst_ip, src_port, dst_port = dst_ip, src_ip, dst_port, src_port
    data = seed.to_bytes(2, "big") + src_ip + dst_ip + bytes((protocol, 0))
    if src_port is not None:
        data += _pack_ports(src_port, dst_port)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


# Bounded so a scan of millions of flows cannot grow memory without limit; cleared whole when
# full, which is O(1) amortised and keeps the hit path a single dict look-up. 16k flows: it
# is asked only when a packet-event memo misses (ecs.MEMO_SIZE), and a bigger one took
# millions of packets to fill, so a long capture's peak memory sat above a short one's.
COMMUNITY_ID_CACHE_SIZE = 1 << 14


class CommunityIdCache:
    """Memoises `community_id` per flow: most packets belong to a flow seen before.

    Keys are canonical (the lower endpoint first), so both directions share one entry —
    except for ICMP, whose one-way messages hash by direction.
    """

    __slots__ = ("_cache", "seed")

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._cache: dict[tuple[int, bytes, bytes, int | None, int | None], str | None] = {}

    def get(
        self,
        protocol: int,
        src_ip: bytes,
        dst_ip: bytes,
        src_port: int | None,
        dst_port: int | None,
    ) -> str | None:
        if (
            protocol != PROTO_ICMP
            and protocol != PROTO_ICMPV6
            and (src_ip, src_port or 0) > (dst_ip, dst_port or 0)
        ):
            key = (protocol, dst_ip, src_ip, dst_port, src_port)
        else:
            key = (protocol, src_ip, dst_ip, src_port, dst_port)
        value = self._cache.get(key, False)
        if value is False:
            if len(self._cache) >= COMMUNITY_ID_CACHE_SIZE:
                self._cache.clear()
            value = self._cache[key] = community_id(
                protocol, src_ip, dst_ip, src_port, dst_port, self.seed
            )
        return value  # type: ignore[return-value]
