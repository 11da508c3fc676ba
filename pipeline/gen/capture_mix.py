"""Deterministic, realistic synthetic traffic captures for benchmarks and tests.

`write_capture(path, packets, seed)` writes exactly `packets` Ethernet frames of the mix
described here; `profile=` picks one of the other named workloads of `pipeline.gen.profiles`
(dns-heavy, http-heavy, tls-heavy, small-flood, syn-flood, ooo-holes, many-flows), built from
this module's hosts and packet builders. The same (profile, packets, seed, format) always
gives a byte-identical file: every random choice comes from one ``random.Random(seed)``
(plus fixed-seed payload pools), timestamps come from a simulated clock
that starts at 2024-01-01T00:00:00Z, no set is ever iterated, and dicts are only looked up
or read back in insertion order. Nothing is held per packet, so memory stays flat for
8M-packet captures.

Traffic mix, as a share of packets (the scheduler picks each packet's category with these
weights, so the shares hold from the first thousand packets on, whatever the flow lengths):

==========  =====  ====================================================================
category    share  what
==========  =====  ====================================================================
tls          42 %  TCP/443: handshake, ClientHello (SNI, ALPN h2/http1.1, supported_versions,
                   key_share; Chrome-like hellos with GREASE and permuted extensions,
                   Firefox- and OpenSSL-like ones without; 15 % carry a post-quantum
                   X25519MLKEM768 key share and so span two segments, as Chrome's do),
                   TLS 1.3 ServerHello + CCS + encrypted flight, application-data records,
                   close_notify; FIN/ACK or RST teardown
http         17 %  TCP/80: 1-4 keep-alive HTTP/1.1 GET/POST requests per connection
                   (browsers, curl, OCSP, apt, captive-portal probes), 200/301/404
                   responses with Content-Length or (25 % of text) chunked bodies; 3 % of
                   these flows are refused (SYN, RST/ACK) or unanswered (SYN retransmits)
bulk         26 %  TCP/445, 873, 2049: 64 KiB..16 MiB one-way transfers in full-MSS
                   segments (1448 with timestamps, 1460 without; 1428/1440 over IPv6)
                   with a delayed ACK every second segment
dns          11 %  UDP/53 A and AAAA queries and responses (CNAME chains, several A
                   records, NXDOMAIN and NODATA with an SOA, EDNS OPT, compression
                   pointers); a few retransmitted queries
icmp          3 %  echo request/reply (Linux and Windows payloads; ICMPv6 echo over
                   IPv6), and UDP probes to closed ports (about 0.1 % of packets, probe +
                   error) answered by ICMP port unreachable quoting the probe's IP+UDP
arp           1 %  who-has requests and is-at replies, unanswered retries, gratuitous ARP
==========  =====  ====================================================================

Across categories: about 10 % of packets are IPv6 (TCP, DNS, ICMPv6 echo), about 5 % of
frames carry an 802.1Q tag (a flow's frames all carry its client's VLAN, both directions),
and about 0.2 % of non-bulk flows are QinQ (802.1ad outer tag 0x88a8 + 802.1Q inner); see
`_Gen.placement` for how the shares are held steady. Frames shorter than 60 bytes are
zero-padded to 60 as a SPAN port shows them, so the IP total length is often shorter than
the frame. Each host keeps one MAC (hosts beyond the gateway show the gateway's), one TTL,
its OS's TCP options, and a per-host IPv4 ID counter and TCP timestamp clock.

Checksums: IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums are all correct. They cost little
because the one's-complement sum of a big-endian byte string equals ``int.from_bytes(b) %
0xFFFF`` (2**16 == 1 mod 0xFFFF), which runs in C.

Concurrency: each category keeps a pool of open flows and each packet comes from a random
open flow of its category, so flows interleave and a flow's packets are spread out as by
round trips. The pools total about 0.8 x ``packets // 400`` flows (at least 32, at most
4000 before bulk's share), e.g. about 2000 open flows for a 1M capture and 3200 for 8M.
Timestamps advance by exponential gaps with a 10 us mean (about 100k packets/s).
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO, TypeAlias

Buffer: TypeAlias = bytes | memoryview
# One TCP message: (direction 0 = client->server / 1 = server->client, total length, pieces).
Message: TypeAlias = tuple[int, int, Iterable[Buffer]]

EPOCH_NS = 1_704_067_200 * 1_000_000_000  # 2024-01-01T00:00:00Z
MEAN_GAP_NS = 10_000  # ~100k packets per second of capture time
SNAPLEN = 262_144  # what tcpdump writes by default

# Category weights (by packets) and each category's share of the open-flow pool.
CATEGORY_SHARES: tuple[tuple[str, float], ...] = (
    ("tls", 0.42),
    ("http", 0.17),
    ("bulk", 0.26),
    ("dns", 0.11),
    ("icmp", 0.03),
    ("arp", 0.01),
)
P_V6 = 0.10
P_VLAN = 0.05
P_QINQ = 0.002

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_TCP = struct.Struct("!HHIIBBHHH")
_TSOPT = struct.Struct("!HHII")  # NOP NOP TS(kind 8, len 10) tsval tsecr
_IP4 = struct.Struct("!HHHHBBH")
_IP6 = struct.Struct("!IHBB")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")
_ZEROS = bytes(64)
_EMPTY = memoryview(b"")


def _sum(b: Buffer) -> int:
    """One's-complement sum of `b` (as 16-bit big-endian words, zero-padded) modulo 0xFFFF."""
    v = int.from_bytes(b, "big") % 65535
    return v << 8 if len(b) & 1 else v


# --------------------------------------------------------------------------------- payloads


@functools.cache
def _bin_pool() -> memoryview:
    """4 MiB of incompressible bytes: bodies of images, TLS records and bulk transfers."""
    return memoryview(random.Random(0xB17E5).randbytes(4 << 20))


_WORDS = (
    "the",
    "network",
    "packet",
    "capture",
    "event",
    "flow",
    "host",
    "server",
    "client",
    "session",
    "request",
    "response",
    "security",
    "alert",
    "policy",
    "user",
    "account",
    "login",
    "token",
    "cache",
    "index",
    "search",
    "result",
    "page",
    "table",
    "report",
    "metric",
    "value",
    "status",
    "update",
    "service",
    "cluster",
    "region",
    "zone",
    "record",
    "stream",
    "buffer",
    "window",
    "latency",
    "throughput",
    "timeout",
    "retry",
    "error",
    "warning",
    "debug",
    "trace",
    "span",
    "query",
    "field",
    "schema",
    "object",
    "array",
    "string",
    "number",
    "boolean",
    "config",
    "deploy",
    "release",
    "build",
    "commit",
    "branch",
)


@functools.cache
def _text_pool(kind: str) -> memoryview:
    """1 MiB of HTML or JSON-like text with a fixed seed, sliced for text bodies."""
    r = random.Random(0x7E47 if kind == "html" else 0x150B)
    words = _WORDS
    out: list[str] = []
    size = 0
    n = 0
    while size < 1 << 20:
        n += 1
        if kind == "html":
            text = " ".join(r.choice(words) for _ in range(r.randint(12, 60)))
            a, b = r.choice(words), r.choice(words)
            s = (
                f'<div class="c{r.randint(1, 40)}"><p>{text} <a href="/{a}/{b}-{n}.html">'
                f"{a} {b}</a></p></div>\n"
            )
        else:
            tags = ",".join(f'"{r.choice(words)}"' for _ in range(r.randint(0, 4)))
            s = (
                f'{{"id":{r.randint(1, 10**7)},"name":"{r.choice(words)} {r.choice(words)}",'
                f'"tags":[{tags}],"score":{r.random():.4f},'
                f'"active":{str(r.random() < 0.5).lower()}}},\n'
            )
        out.append(s)
        size += len(s)
    return memoryview("".join(out).encode())


def _slice(rng: random.Random, pool: memoryview, n: int) -> memoryview:
    """A zero-copy view of `n` bytes at a random place in `pool`."""
    o = int(rng.random() * (len(pool) - n))
    return pool[o : o + n]


def _lognorm(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    """Heavy-tailed sizes, as object and transfer sizes are."""
    return max(lo, min(hi, int(rng.lognormvariate(math.log(median), sigma))))


# ------------------------------------------------------------------------------ hosts, L2/3


class _Host:
    """A host as seen at the capture point: addresses, the MAC its frames carry, OS habits.

    External hosts carry the gateway's MAC (they are reached through it) and a TTL already
    lowered by the hops between them and the capture point.
    """

    __slots__ = ("ip4", "ip6", "ip_id", "mac", "name", "os", "port", "ts_off", "ttl", "ua", "vlan")

    def __init__(
        self,
        rng: random.Random,
        name: str,
        ip4: bytes,
        ip6: bytes | None,
        mac: bytes,
        os: str,
        ttl: int,
        vlan: int = 0,
    ) -> None:
        self.name = name
        self.ip4 = ip4
        self.ip6 = ip6
        self.mac = mac
        self.os = os
        self.ttl = ttl
        self.vlan = vlan
        self.ip_id = rng.getrandbits(16)
        self.ts_off = rng.getrandbits(32)  # TCP timestamp clocks start anywhere
        lo, hi = (49152, 65535) if os == "windows" else (32768, 60999)
        self.port = rng.randint(lo, hi)
        self.ua = ""

    def ephemeral(self) -> int:
        """Next source port: each host walks its OS's ephemeral range in order."""
        lo, hi = (49152, 65535) if self.os == "windows" else (32768, 60999)
        self.port += 1
        if self.port > hi:
            self.port = lo
        return self.port


class _Path:
    """One direction between two hosts for one IP protocol, with its constant parts pre-built.

    The Ethernet header (with any VLAN tags) and addresses are bytes built once per flow, and
    the constant words of the IPv4 header checksum and of the L4 pseudo-header are pre-summed,
    so a packet costs a couple of struct.pack calls and one join.
    """

    __slots__ = (
        "addrs",
        "first6",
        "flags",
        "host",
        "ip_sum",
        "l2",
        "l2len",
        "proto",
        "pseudo",
        "pseudo_len",
        "ttl",
        "v6",
    )

    def __init__(
        self,
        src: _Host,
        dst: _Host,
        v6: bool,
        tags: bytes,
        proto: int,
        *,
        df: bool = True,
        flow_label: int = 0,
    ) -> None:
        self.l2 = dst.mac + src.mac + tags + (b"\x86\xdd" if v6 else b"\x08\x00")
        self.l2len = len(self.l2)
        self.v6 = v6
        self.host = src
        self.ttl = src.ttl
        self.proto = proto
        self.flags = 0x4000 if df else 0
        self.first6 = 0x60000000 | flow_label
        if v6:
            assert src.ip6 is not None and dst.ip6 is not None
            self.addrs = src.ip6 + dst.ip6
        else:
            self.addrs = src.ip4 + dst.ip4
        self.ip_sum = (0x4500 + self.flags + (self.ttl << 8 | proto) + _sum(self.addrs)) % 65535
        # ICMPv4 has no pseudo-header; TCP, UDP and ICMPv6 do.
        self.pseudo_len = 0 if proto == 1 else 1
        self.pseudo = 0 if proto == 1 else (_sum(self.addrs) + proto) % 65535

    def frame(self, l4: bytes, payload: Buffer = b"") -> bytes:
        """Ethernet + IP header around an L4 header and payload, padded to 60 bytes."""
        n = len(l4) + len(payload)
        if self.v6:
            ip = _IP6.pack(self.first6, n, self.proto, self.ttl) + self.addrs
        else:
            h = self.host
            ident = h.ip_id = (h.ip_id + 1) & 0xFFFF
            tot = n + 20
            s = (self.ip_sum + tot + ident) % 65535
            ip = _IP4.pack(
                0x4500, tot, ident, self.flags, self.ttl, self.proto, 65535 - s if s else 0
            )
            ip += self.addrs
        fr = b"".join((self.l2, ip, l4, payload))
        if len(fr) < 60:
            fr += _ZEROS[: 60 - len(fr)]
        return fr

    def ip_packet(self, frame: bytes) -> bytes:
        """The IP packet inside a frame this path built (without L2 and padding)."""
        body = frame[self.l2len :]
        if self.v6:
            return body[: 40 + int.from_bytes(body[4:6], "big")]
        return body[: int.from_bytes(body[2:4], "big")]

    def udp(self, sport: int, dport: int, payload: Buffer) -> bytes:
        """A UDP datagram with a correct checksum (0 is sent as 0xFFFF)."""
        n = 8 + len(payload)
        s = (self.pseudo + n + sport + dport + n + _sum(payload)) % 65535
        return self.frame(_UDP.pack(sport, dport, n, 65535 - s if s else 0xFFFF), payload)

    def icmp(self, typ: int, code: int, rest: int, payload: Buffer) -> bytes:
        """An ICMP/ICMPv6 message; `rest` is the 32-bit word after the checksum."""
        n = 8 + len(payload)
        s = self.pseudo + n * self.pseudo_len + (typ << 8 | code) + (rest >> 16) + (rest & 0xFFFF)
        s = (s + _sum(payload)) % 65535
        return self.frame(
            _ICMP.pack(typ, code, 65535 - s if s else 0, rest >> 16, rest & 0xFFFF), payload
        )


# ------------------------------------------------------------------------------------- TCP


class _TcpFlow:
    """Sequence numbers, windows, timestamps and paths of one TCP connection.

    Direction 0 is client->server, 1 is server->client. Every segment acknowledges all the
    peer has sent so far: packets are emitted in order, so that is always consistent.
    """

    __slots__ = (
        "g",
        "last_ts",
        "mss",
        "paths",
        "ports",
        "seq",
        "syn_mss",
        "ts_off",
        "use_ts",
        "win",
    )

    def __init__(
        self, g: _Gen, client: _Host, server: _Host, dport: int, v6: bool, tags: bytes
    ) -> None:
        rng = g.rng
        self.g = g
        label = rng.getrandbits(20)
        self.paths = (
            _Path(client, server, v6, tags, 6, flow_label=label),
            _Path(server, client, v6, tags, 6, flow_label=rng.getrandbits(20)),
        )
        sport = client.ephemeral()
        self.ports = ((sport, dport), (dport, sport))
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.use_ts = client.os != "windows" and server.os != "windows"
        self.ts_off = (client.ts_off, server.ts_off)
        self.last_ts = [0, 0]
        base = 1440 if v6 else 1460
        server_mss = base if v6 or rng.random() < 0.85 else rng.choice((1380, 1400, 1410))
        self.syn_mss = (base, server_mss)  # what each side announces in its SYN
        eff = min(base, server_mss) - (12 if self.use_ts else 0)  # 12 = timestamp option
        self.mss = (eff, eff)
        self.win = [64240 if client.os != "macos" else 65535, 65160]

    def seg(self, d: int, flags: int, payload: Buffer = b"", opts: bytes | None = None) -> bytes:
        """Build the next segment in direction `d` and advance its sequence number."""
        if opts is None:
            if self.use_ts:
                tsv = (self.ts_off[d] + self.g.now_ns // 1_000_000) & 0xFFFFFFFF
                opts = _TSOPT.pack(0x0101, 0x080A, tsv, self.last_ts[1 - d])
                self.last_ts[d] = tsv
            else:
                opts = b""
        seq = self.seq[d]
        ack = self.seq[1 - d] if flags & ACK else 0
        hl = 20 + len(opts)
        sp, dp = self.ports[d]
        win = self.win[d]
        path = self.paths[d]
        plen = len(payload)
        hdr = _TCP.pack(sp, dp, seq, ack, hl << 2, flags, win, 0, 0) + opts
        s = path.pseudo + hl + plen + int.from_bytes(hdr, "big")
        if plen:
            s += _sum(payload)
        s %= 65535
        hdr = _TCP.pack(sp, dp, seq, ack, hl << 2, flags, win, 65535 - s if s else 0, 0) + opts
        self.seq[d] = (seq + plen + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return path.frame(hdr, payload)

    def _tsopt(self, d: int) -> bytes:
        tsv = (self.ts_off[d] + self.g.now_ns // 1_000_000) & 0xFFFFFFFF
        self.last_ts[d] = tsv
        return struct.pack("!BBII", 8, 10, tsv, self.last_ts[1 - d] if d else 0)

    def syn(self, os: str) -> bytes:
        """The client's SYN with the option layout its OS uses."""
        mss = struct.pack("!BBH", 2, 4, self.syn_mss[0])
        if os == "windows":
            opts = mss + b"\x01\x03\x03\x08\x01\x01\x04\x02"
        elif os == "macos":
            opts = mss + b"\x01\x03\x03\x06\x01\x01" + self._tsopt(0) + b"\x04\x02\x00\x00"
        else:
            opts = mss + b"\x04\x02" + self._tsopt(0) + b"\x01\x03\x03\x07"
        return self.seg(0, SYN, b"", opts)

    def synack(self, server_os: str) -> bytes:
        """The server's SYN-ACK; timestamps only when the client offered them."""
        mss = struct.pack("!BBH", 2, 4, self.syn_mss[1])
        if self.use_ts:
            opts = mss + b"\x04\x02" + self._tsopt(1) + b"\x01\x03\x03\x07"
        elif server_os == "windows":
            opts = mss + b"\x01\x03\x03\x08\x01\x01\x04\x02"
        else:
            opts = mss + b"\x01\x01\x04\x02\x01\x03\x03\x07"
        return self.seg(1, SYN | ACK, b"", opts)

    def handshake(self, client_os: str, server_os: str) -> Iterator[bytes]:
        """SYN, SYN-ACK, ACK; then switch to the scaled windows of an open connection."""
        yield self.syn(client_os)
        yield self.synack(server_os)
        rng = self.g.rng
        self.win = [
            rng.randint(500, 2100) if client_os != "windows" else 1026,
            rng.randint(480, 520),
        ]
        yield self.seg(0, ACK)

    def send(self, d: int, total: int, pieces: Iterable[Buffer]) -> Iterator[bytes]:
        """Cut a `total`-byte message into MSS segments; the peer ACKs every second one.

        Returns (via StopIteration) how many segments are still unacknowledged at the end.
        """
        mss = self.mss[d]
        it = iter(pieces)
        cur: memoryview = _EMPTY
        left = total
        unacked = 0
        while left > 0:
            k = mss if left > mss else left
            left -= k
            if len(cur) >= k:
                payload: Buffer = cur[:k]
                cur = cur[k:]
            else:
                parts: list[Buffer] = [cur] if len(cur) else []
                need = k - len(cur)
                cur = _EMPTY
                while need > 0:
                    p = memoryview(next(it))
                    if len(p) > need:
                        parts.append(p[:need])
                        cur = p[need:]
                        need = 0
                    else:
                        parts.append(p)
                        need -= len(p)
                payload = b"".join(parts)
            yield self.seg(d, ACK | PSH if left == 0 else ACK, payload)
            unacked += 1
            if unacked == 2 and left:
                yield self.seg(1 - d, ACK)
                unacked = 0
        return unacked

    def exchange(self, messages: Iterable[Message]) -> Iterator[bytes]:
        """Send messages in turn; a reply piggybacks the ACK, a same-side message waits for one."""
        last = 0
        unacked = 0
        for d, total, pieces in messages:
            if unacked and d == last:
                yield self.seg(1 - d, ACK)
            unacked = yield from self.send(d, total, pieces)
            last = d
        if unacked:
            yield self.seg(1 - last, ACK)

    def close(self, p_rst: float = 0.12) -> Iterator[bytes]:
        """FIN/ACK teardown (3- or 4-way, either side first) or an abortive RST."""
        rng = self.g.rng
        r = rng.random()
        if r < p_rst:
            yield self.seg(0 if r < p_rst * 0.7 else 1, RST | ACK, b"", b"")
            return
        first = 0 if rng.random() < 0.6 else 1
        yield self.seg(first, FIN | ACK)
        if rng.random() < 0.3:
            yield self.seg(1 - first, ACK)
        yield self.seg(1 - first, FIN | ACK)
        yield self.seg(first, ACK)


# ------------------------------------------------------------------------------- the world

_OUIS = (b"\xf8\xbc\x12", b"\x3c\xa9\xf4", b"\xf0\x18\x98", b"\xa4\x83\xe7", b"\x54\xe1\xad")
_OUIS += (b"\x9c\x8e\x99", b"\x00\x50\x56", b"\xd8\x9e\xf3", b"\x48\x2a\xe3")

_UA = {
    "windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    ),
    "macos": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.2 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    "linux": (
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
}
_TOOL_UA = ("curl/8.5.0", "python-requests/2.31.0", "Wget/1.21.4", "okhttp/4.12.0")
_TOOL_UA += ("Microsoft-CryptoAPI/10.0", "Debian APT-HTTP/1.3 (2.6.1)", "Go-http-client/1.1")

# (name, how it is reached, CNAME chain). "tls" = 443 only, "http:<kind>" = 80 only,
# "both:<kind>" = both. Names that share a chain's last name share its addresses.
_SITES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("www.google.com", "tls", ()),
    ("fonts.gstatic.com", "tls", ()),
    ("www.gstatic.com", "tls", ()),
    ("accounts.google.com", "tls", ()),
    ("update.googleapis.com", "tls", ()),
    ("www.youtube.com", "tls", ("youtube-ui.l.google.com",)),
    ("i.ytimg.com", "tls", ()),
    ("github.com", "tls", ()),
    ("api.github.com", "tls", ()),
    ("avatars.githubusercontent.com", "tls", ()),
    ("objects.githubusercontent.com", "tls", ()),
    (
        "login.microsoftonline.com",
        "tls",
        ("login.mso.msidentity.com", "ak.privatelink.msidentity.com"),
    ),
    ("outlook.office365.com", "tls", ("ooc-g2.tm-4.office.com", "outlook.ms-acdc.office.com")),
    ("graph.microsoft.com", "tls", ("ags.privatelink.msidentity.com",)),
    ("teams.microsoft.com", "tls", ("teams-office-com.s-0005.s-msedge.net", "s-0005.s-msedge.net")),
    ("www.bing.com", "tls", ("www-www.bing.com.trafficmanager.net", "dual-a-0001.a-msedge.net")),
    ("slack.com", "tls", ()),
    ("app.slack.com", "tls", ()),
    ("zoom.us", "tls", ()),
    (
        "www.amazon.com",
        "tls",
        ("tp.47cf2c8c9-frontier.amazon.com", "d3ag4hukkh62yn.cloudfront.net"),
    ),
    ("s3.amazonaws.com", "tls", ("s3-1-w.amazonaws.com", "s3-w.us-east-1.amazonaws.com")),
    ("www.wikipedia.org", "tls", ("dyna.wikimedia.org",)),
    ("en.wikipedia.org", "tls", ("dyna.wikimedia.org",)),
    ("upload.wikimedia.org", "tls", ()),
    ("www.reddit.com", "tls", ("reddit.map.fastly.net",)),
    ("cdnjs.cloudflare.com", "tls", ()),
    ("cdn.jsdelivr.net", "tls", ("cdn.jsdelivr.net.cdn.cloudflare.net",)),
    ("pypi.org", "tls", ("dualstack.python.map.fastly.net",)),
    ("files.pythonhosted.org", "tls", ("dualstack.python.map.fastly.net",)),
    ("docs.python.org", "tls", ("dualstack.python.map.fastly.net",)),
    ("registry.npmjs.org", "tls", ()),
    ("www.linkedin.com", "tls", ("www-linkedin-com.l-0005.l-msedge.net", "l-0005.l-msedge.net")),
    ("www.apple.com", "tls", ("www.apple.com.edgekey.net", "e6858.dscx.akamaiedge.net")),
    ("gateway.icloud.com", "tls", ()),
    ("o450616.ingest.sentry.io", "tls", ()),
    ("api.segment.io", "tls", ()),
    ("www.dropbox.com", "tls", ("www-env.dropbox-dns.com",)),
    ("stackoverflow.com", "tls", ()),
    ("cdn.sstatic.net", "tls", ("cdn.sstatic.net.cdn.cloudflare.net",)),
    (
        "www.netflix.com",
        "tls",
        ("www.dradis.netflix.com", "www.us-east-1.internal.dradis.netflix.com"),
    ),
    ("connectivity-check.ubuntu.com", "http:probe", ()),
    ("detectportal.firefox.com", "http:probe", ("detectportal.prod.mozaws.net",)),
    (
        "www.msftconnecttest.com",
        "http:probe",
        ("www.msftncsi.com.edgesuite.net", "a1961.g2.akamai.net"),
    ),
    ("ocsp.digicert.com", "http:ocsp", ("fp2e7a.wpc.phicdn.net",)),
    ("ocsp.pki.goog", "http:ocsp", ("pki-goog.l.google.com",)),
    ("ctldl.windowsupdate.com", "http:repo", ("ctldl.windowsupdate.com.delivery.microsoft.com",)),
    ("archive.ubuntu.com", "http:repo", ()),
    ("security.ubuntu.com", "http:repo", ()),
    ("deb.debian.org", "http:repo", ("debian.map.fastlydns.net",)),
    ("neverssl.com", "http:web", ()),
    ("www.example.com", "both:web", ()),
    ("intranet.corp.example", "both:web", ()),
    ("jira.corp.example", "tls", ()),
    ("git.corp.example", "tls", ()),
    ("wiki.corp.example", "both:web", ()),
    ("printer3.corp.example", "http:web", ()),
)
_NX_NAMES = (
    "wpad.corp.example",
    "isatap.corp.example",
    "www.gooogle.com",
    "_ldap._tcp.dc._msdcs.corp.example.corp.example",
    "localhost.corp.example",
    "printer9.corp.example",
)
_PUBLIC_FIRST = (13, 20, 23, 31, 34, 35, 40, 52, 54, 64, 69, 74, 104, 140, 142, 146, 151, 157)
_PUBLIC_FIRST += (162, 172, 185, 198, 199, 204, 208, 216)
_PUBLIC_V6 = (0x2600, 0x2606, 0x2607, 0x2620, 0x2A00, 0x2A02, 0x2A03, 0x2A04, 0x2404, 0x2001)


class _Site:
    """A name clients resolve and connect to, with the DNS answers that lead to it."""

    __slots__ = ("chain", "host", "http", "http_kind", "https", "n_a", "name", "ttl")

    def __init__(
        self, name: str, mode: str, chain: tuple[str, ...], host: _Host, n_a: int, ttl: int
    ) -> None:
        self.name = name
        self.chain = chain
        self.host = host
        kind = mode.partition(":")[2]
        self.https = mode == "tls" or mode.startswith("both")
        self.http = mode != "tls"
        self.http_kind = kind or "web"
        self.n_a = n_a
        self.ttl = ttl


class _Gen:
    """The simulated network: hosts, sites, clock and the flow factories of each category."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.now_ns = EPOCH_NS
        self._dns_cache: dict[tuple[str, int, bool], tuple[bytes, bytes]] = {}
        self.open_flows: dict[str, list[int]] = {}  # see placement()
        self.pool_size: dict[str, int] = {}  # open-flow target of each category
        self.ticket: tuple[list[int], bool, bool] = ([0, 0, 0], False, False)

        def mac(oui: bytes) -> bytes:
            return oui + rng.randbytes(3)

        self.gateway = _Host(
            rng,
            "gw",
            bytes((10, 20, 0, 1)),
            _v6(0x20, 0, 1),
            b"\x00\x1b\x54" + rng.randbytes(3),
            "linux",
            255,
        )
        gw_mac = self.gateway.mac
        # Clients: dual-stack, OS mix of an office network, one VLAN each.
        self.clients: list[_Host] = []
        addrs = rng.sample(range(4 * 256), 600)
        for a in addrs:
            if a % 256 < 10 or a % 256 == 255:
                continue
            os = rng.choices(("windows", "macos", "linux"), (0.45, 0.30, 0.25))[0]
            h = _Host(
                rng,
                f"client{a}",
                bytes((10, 20, a >> 8, a & 255)),
                _v6(0x20, 0, rng.getrandbits(64)),
                mac(rng.choice(_OUIS)),
                os,
                128 if os == "windows" else 64,
                vlan=rng.choice((10, 20, 30, 110, 120)),
            )
            h.ua = rng.choice(_UA[os])
            self.clients.append(h)

        # Internal servers.
        def internal(name: str, last: int, os: str) -> _Host:
            return _Host(
                rng,
                name,
                bytes((10, 20, 10, last)),
                _v6(0x20, 0x10, last),
                mac(b"\x00\x50\x56"),
                os,
                128 if os == "windows" else 64,
            )

        self.resolver_int = internal("dns.corp.example", 53, "windows")
        self.fileserver = internal("fs1.corp.example", 20, "windows")
        self.backup = internal("backup.corp.example", 30, "linux")
        self.nfs = internal("nfs.corp.example", 40, "linux")
        internal_web = {
            "intranet.corp.example": internal("intranet.corp.example", 80, "linux"),
            "jira.corp.example": internal("jira.corp.example", 81, "linux"),
            "git.corp.example": internal("git.corp.example", 82, "linux"),
            "wiki.corp.example": internal("wiki.corp.example", 83, "windows"),
            "printer3.corp.example": internal("printer3.corp.example", 93, "linux"),
        }
        self.internal_hosts = [
            self.resolver_int,
            self.fileserver,
            self.backup,
            self.nfs,
            *internal_web.values(),
        ]

        def external(name: str, ip4: bytes, has_v6: bool) -> _Host:
            init = rng.choices((64, 128, 255), (0.8, 0.15, 0.05))[0]
            os = "windows" if init == 128 else "linux"
            ip6 = None
            if has_v6:
                ip6 = struct.pack(
                    "!HHHHQ",
                    rng.choice(_PUBLIC_V6),
                    rng.getrandbits(16),
                    rng.getrandbits(16),
                    rng.getrandbits(16),
                    rng.getrandbits(16),
                )
            return _Host(rng, name, ip4, ip6, gw_mac, os, init - rng.randint(6, 22))

        def public_ip() -> bytes:
            first = rng.choice(_PUBLIC_FIRST)
            return bytes(
                (
                    first,
                    rng.randint(16, 31) if first == 172 else rng.randint(0, 255),
                    rng.randint(0, 255),
                    rng.randint(1, 254),
                )
            )

        self.resolvers_ext = [
            external("dns.google", b"\x08\x08\x08\x08", True),
            external("one.one.one.one", b"\x01\x01\x01\x01", True),
        ]
        self.resolvers_ext[0].ip6 = bytes.fromhex("20014860486000000000000000008888")
        self.resolvers_ext[1].ip6 = bytes.fromhex("26064700470000000000000000001111")
        by_target: dict[str, _Host] = {}
        self.sites: list[_Site] = []
        for name, mode, chain in _SITES:
            target = chain[-1] if chain else name
            host = internal_web.get(name) or by_target.get(target)
            if host is None:
                host = external(target, public_ip(), rng.random() < 0.7)
                by_target[target] = host
            n_a = rng.choice((1, 1, 1, 2, 4)) if host.mac == gw_mac else 1
            self.sites.append(_Site(name, mode, chain, host, n_a, rng.choice((60, 300, 300, 3600))))
        self.site_by_name = {s.name: s for s in self.sites}
        self.https_sites = [s for s in self.sites if s.https]
        self.http_sites = [s for s in self.sites if s.http]
        self.ping_targets = [
            self.gateway,
            *self.internal_hosts,
            *self.resolvers_ext,
            *(s.host for s in self.sites[:12]),
        ]

    # ------------------------------------------------------------------ shared helpers

    def placement(
        self, cat: str, client: _Host, v6_ok: bool = True, qinq: bool = True
    ) -> tuple[bool, bytes]:
        """IPv6 or not, and the L2 tags, for a new flow of category `cat`.

        Each packet of a category comes from a uniformly random open flow of that category,
        so the IPv6 share of its packets is the IPv6 share of its open flows. For TCP,
        keeping that near 10 % (and the 802.1Q share near 5 %) holds the packet shares
        steady, where a fair coin per flow swings them by several points on a 100k capture:
        a few heavy-tailed transfers carry many packets each. The rounding leans high when
        a pool is small (+2 points of a category's share at 5 open flows, +0.2 at 100), so
        pools under 20 flows toss a fair coin per flow instead, as do the short flows of
        DNS, ICMP and ARP, whose numbers keep a coin steady. Flows that cannot be IPv6
        (`v6_ok` False: a server without an AAAA) stay IPv4; the next flow makes up.
        The scheduler gives the slot back (`release`) when the flow ends.
        """
        rng = self.rng
        book = self.open_flows.setdefault(cat, [0, 0, 0])  # open flows: all, IPv6, 802.1Q
        book[0] += 1
        if cat in _SHORT or self.pool_size[cat] < 20:  # see above: a coin is unbiased
            v6 = v6_ok and rng.random() < P_V6
            vlan_odds = P_VLAN
        else:
            v6 = v6_ok and book[1] + rng.random() < P_V6 * book[0]
            vlan_odds = P_VLAN * book[0] - book[2]
        tagged = False
        if qinq and rng.random() < P_QINQ:
            tags = _qinq(client)
        elif rng.random() < vlan_odds:
            tags = _dot1q(client)
            tagged = True
        else:
            tags = b""
        book[1] += v6
        book[2] += tagged
        self.ticket = (book, v6, tagged)
        return v6, tags

    def release(self, ticket: tuple[list[int], bool, bool]) -> None:
        """A flow has ended: free its place in its category's open-flow counts."""
        book, v6, tagged = ticket
        book[0] -= 1
        book[1] -= v6
        book[2] -= tagged

    def pick_client(self) -> _Host:
        return self.clients[int(self.rng.random() * len(self.clients))]

    def http_date(self) -> str:
        """An RFC 7231 date from the capture clock (no locale, no wall clock)."""
        t = time.gmtime(self.now_ns // 1_000_000_000)
        day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[t.tm_wday]
        mon = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[
            t.tm_mon - 1
        ]
        clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        return f"{day}, {t.tm_mday:02d} {mon} {t.tm_year} {clock} GMT"

    # ------------------------------------------------------------------------- HTTP

    def http_request(self, site: _Site, client: _Host) -> tuple[bytes, str, str]:
        """One HTTP/1.1 request: (bytes, response kind, path). Always fits one segment."""
        rng = self.rng
        ua = client.ua if rng.random() < 0.85 else rng.choice(_TOOL_UA)
        kind = site.http_kind
        body = b""
        method = "GET"
        extra = ""
        if kind == "probe":
            path = rng.choice(("/", "/success.txt?ipv4", "/connecttest.txt", "/canonical.html"))
            resp = "probe"
        elif kind == "ocsp":
            method, path, resp = "POST", "/", "ocsp"
            # DER OCSPRequest with a SHA-1 CertID; the hashes and serial are random.
            der = bytes.fromhex("3051304f304d304b3049300906052b0e03021a05000414")
            body = der + rng.randbytes(60)
            extra = "Content-Type: application/ocsp-request\r\n"
        elif kind == "repo":
            dist = rng.choice(("jammy", "jammy-updates", "noble", "bookworm"))
            h128, minor = rng.getrandbits(128), rng.randint(10, 15)
            if "windowsupdate" in site.name:
                path = f"/msdownload/update/v3/static/trustedr/en/authrootstl.cab?{h128 >> 64:016x}"
            else:
                path = rng.choice(
                    (
                        f"/ubuntu/dists/{dist}/InRelease",
                        f"/ubuntu/dists/{dist}/main/binary-amd64/by-hash/SHA256/{h128:032x}",
                        f"/ubuntu/pool/main/o/openssl/libssl3_3.0.2-0ubuntu1.{minor}_amd64.deb",
                    )
                )
            resp = "binary"
        else:
            w = rng.choice(_WORDS)
            r = rng.random()
            if r < 0.25:
                path, resp = (
                    rng.choice(
                        ("/", "/index.html", f"/{w}/", f"/news/{w}-{rng.randint(1, 9999)}.html")
                    ),
                    "html",
                )
            elif r < 0.45:
                path, resp = (
                    f"/search?q={w}+{rng.choice(_WORDS)}&hl=en&page={rng.randint(1, 5)}",
                    "html",
                )
            elif r < 0.65:
                ext = rng.choice(("js", "css"))
                path = f"/static/{ext}/{w}.{rng.getrandbits(32):08x}.{ext}"
                resp = "static"
            elif r < 0.80:
                path, resp = (
                    f"/images/{w}-{rng.randint(1, 500)}.{rng.choice(('png', 'jpg', 'webp'))}",
                    "image",
                )
            elif r < 0.93:
                limit = rng.choice((10, 25, 50, 100))
                path = f"/api/v1/{w}s/{rng.randint(1, 99999)}?fields=id,name,status&limit={limit}"
                resp = "json"
            else:
                method = "POST"
                if rng.random() < 0.5:
                    path, resp = f"/api/v1/{w}s", "json"
                    body = (
                        f'{{"{w}":"{rng.choice(_WORDS)}","id":{rng.randint(1, 99999)},'
                        f'"ts":{self.now_ns // 1_000_000},"tags":["{rng.choice(_WORDS)}"]}}'
                    ).encode()
                    extra = "Content-Type: application/json\r\n"
                else:
                    path, resp = "/login", "html"
                    user = f"{rng.choice(_WORDS)}{rng.randint(1, 99)}"
                    body = f"username={user}&password={rng.getrandbits(48):x}&remember=on".encode()
                    extra = "Content-Type: application/x-www-form-urlencoded\r\n"
        head = f"{method} {path} HTTP/1.1\r\nHost: {site.name}\r\nUser-Agent: {ua}\r\n"
        if ua.startswith("Mozilla"):
            head += (
                "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                "Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate\r\n"
                "Connection: keep-alive\r\n"
            )
        else:
            head += "Accept: */*\r\n"
        if body:
            head += f"{extra}Content-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body, resp, path

    def body_size(self, kind: str) -> int:
        """Size of a 200 response body of `kind`: heavy-tailed, as web objects are."""
        rng = self.rng
        if kind == "ocsp":
            return rng.randint(471, 1800)
        median, sigma, hi = _BODY_SIZES.get(kind, (10_000, 1.2, 800_000))
        return _lognorm(rng, median, sigma, 40, hi)

    def http_response(self, site: _Site, kind: str, path: str, n: int) -> tuple[int, list[Buffer]]:
        """A response to `http_request` with an `n`-byte body when it is a 200.

        Bodies are zero-copy views of the payload pools; 25 % of text bodies are chunked.
        """
        rng = self.rng
        r = rng.random()
        server = "nginx/1.24.0" if site.host.os != "windows" else "Microsoft-IIS/10.0"
        base = f"Date: {self.http_date()}\r\nServer: {server}\r\n"
        if kind == "probe":
            body = b"success\n" if "success" in path else b"Microsoft Connect Test"
            head = (
                f"HTTP/1.1 200 OK\r\n{base}Content-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-cache, no-store\r\n\r\n"
            )
            return _pieces(head.encode(), body)
        if kind in ("html", "static", "image", "json") and r < 0.07:
            return _error_page(base, server, "404 Not Found", "")
        if kind == "html" and r < 0.15:
            return _error_page(base, server, "301 Moved Permanently", f"https://{site.name}{path}")
        if kind in ("binary", "image", "ocsp"):
            if kind == "binary":
                ctype = "application/octet-stream"
            elif kind == "ocsp":
                ctype = "application/ocsp-response"
            else:
                ctype = "image/" + path.rpartition(".")[2].replace("jpg", "jpeg")
            head = (
                f"HTTP/1.1 200 OK\r\n{base}Content-Type: {ctype}\r\nContent-Length: {n}\r\n"
                "Last-Modified: Tue, 12 Dec 2023 08:00:00 GMT\r\n"
                f'ETag: "{rng.getrandbits(48):012x}"\r\nAccept-Ranges: bytes\r\n\r\n'
            )
            return _pieces(head.encode(), _slice(rng, _bin_pool(), n))
        if kind == "json":
            ctype, pool = "application/json", _text_pool("json")
        elif kind == "static":
            ctype = "application/javascript" if path.endswith(".js") else "text/css"
            pool = _text_pool("html")
        else:
            ctype, pool = "text/html; charset=utf-8", _text_pool("html")
        body = _slice(rng, pool, n)
        head = f"HTTP/1.1 200 OK\r\n{base}Content-Type: {ctype}\r\n"
        if rng.random() >= 0.25:
            head += f"Content-Length: {n}\r\nConnection: keep-alive\r\n\r\n"
            return _pieces(head.encode(), body)
        # Chunked: what dynamic pages and proxies send when the length is not known up front.
        hb = (head + "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n").encode()
        pieces: list[Buffer] = [hb]
        total = len(hb)
        o = 0
        while o < n:
            if rng.random() < 0.8:
                k = min(n - o, rng.choice((4096, 8192, 8192, 16384)))
            else:
                k = min(n - o, rng.randint(100, 4000))
            size = b"%x\r\n" % k
            pieces += (size, body[o : o + k], b"\r\n")
            total += len(size) + k + 2
            o += k
        pieces.append(b"0\r\n\r\n")
        return total + 5, pieces

    # -------------------------------------------------------------------------- TLS

    def client_hello(self, sni: str, profile: str) -> bytes:
        """A TLS ClientHello record as Chrome, Firefox or OpenSSL/curl send it."""
        rng = self.rng
        grease = [0x0A0A + 0x1010 * i for i in range(16)]
        g1, g2, g3, g4, g5 = rng.sample(grease, 5)
        name = sni.encode()
        ext_sni = _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
        alpn_list = (
            (b"h2", b"http/1.1")
            if rng.random() < 0.9 or profile.startswith("chrome")
            else (b"http/1.1",)
        )
        alpn_body = b"".join(bytes((len(p),)) + p for p in alpn_list)
        ext_alpn = _ext(16, struct.pack("!H", len(alpn_body)) + alpn_body)
        x25519 = struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
        if profile.startswith("chrome"):
            ciphers = [g1, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
            ciphers += [0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
            pq = profile == "chrome_pq"
            groups = [g2, *((0x11EC,) if pq else ()), 0x001D, 0x0017, 0x0018]
            shares = struct.pack("!HHB", g2, 1, 0)
            if pq:
                shares += struct.pack("!HH", 0x11EC, 1216) + rng.randbytes(1216)
            shares += x25519
            ech = (
                struct.pack("!BHHB", 0, 1, 1, rng.getrandbits(8))
                + struct.pack("!H", 32)
                + rng.randbytes(32)
            )
            ech_len = rng.choice((144, 176, 208, 240))
            ech += struct.pack("!H", ech_len) + rng.randbytes(ech_len)
            body_exts = [
                ext_sni,
                _ext(23, b""),
                _ext(65281, b"\x00"),
                _ext(10, _u16list(groups)),
                _ext(11, b"\x01\x00"),
                _ext(35, b""),
                ext_alpn,
                _ext(5, b"\x01\x00\x00\x00\x00"),
                _ext(
                    13, _u16list([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601])
                ),
                _ext(18, b""),
                _ext(51, struct.pack("!H", len(shares)) + shares),
                _ext(45, b"\x01\x01"),
                _ext(43, b"\x06" + struct.pack("!HHH", g3, 0x0304, 0x0303)),
                _ext(27, b"\x02\x00\x02"),
                _ext(17513, b"\x00\x03\x02h2"),
                _ext(0xFE0D, ech),
            ]
            # Chrome permutes its extensions on every connection; GREASE stays first and last.
            rng.shuffle(body_exts)
            exts = [_ext(g4, b""), *body_exts, _ext(g5, b"\x00")]
        elif profile == "firefox":
            ciphers = [0x1301, 0x1303, 0x1302, 0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC02C, 0xC030]
            ciphers += [0xC00A, 0xC009, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
            p256 = struct.pack("!HH", 0x0017, 65) + b"\x04" + rng.randbytes(64)
            shares = x25519 + p256
            exts = [
                ext_sni,
                _ext(23, b""),
                _ext(65281, b"\x00"),
                _ext(10, _u16list([0x001D, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101])),
                _ext(11, b"\x01\x00"),
                _ext(35, b""),
                ext_alpn,
                _ext(5, b"\x01\x00\x00\x00\x00"),
                _ext(34, _u16list([0x0403, 0x0503, 0x0603, 0x0203])),
                _ext(51, struct.pack("!H", len(shares)) + shares),
                _ext(43, b"\x04\x03\x04\x03\x03"),
                _ext(
                    13,
                    _u16list(
                        [
                            0x0403,
                            0x0503,
                            0x0603,
                            0x0804,
                            0x0805,
                            0x0806,
                            0x0401,
                            0x0501,
                            0x0601,
                            0x0203,
                            0x0201,
                        ]
                    ),
                ),
                _ext(28, b"\x40\x01"),
                _ext(45, b"\x01\x01"),
            ]
        else:  # OpenSSL 3 as used by curl, python, wget
            ciphers = [0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA]
            ciphers += [0xC02B, 0xC02F, 0x009E, 0xC024, 0xC028, 0x006B, 0xC023, 0xC027, 0x0067]
            ciphers += [0xC00A, 0xC014, 0x0039, 0xC009, 0xC013, 0x0033, 0x009D, 0x009C, 0x003D]
            ciphers += [0x003C, 0x0035, 0x002F, 0x00FF]
            sigalgs = [0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x081A, 0x081B, 0x081C, 0x0809]
            sigalgs += [0x080A, 0x080B, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601]
            exts = [
                ext_sni,
                _ext(11, b"\x03\x00\x01\x02"),
                _ext(
                    10, _u16list([0x001D, 0x0017, 0x001E, 0x0019, 0x0018, 0x0100, 0x0101, 0x0102])
                ),
                _ext(35, b""),
                ext_alpn,
                _ext(22, b""),
                _ext(23, b""),
                _ext(13, _u16list(sigalgs)),
                _ext(43, b"\x04\x03\x04\x03\x03"),
                _ext(45, b"\x01\x01"),
                _ext(51, struct.pack("!H", len(x25519)) + x25519),
            ]
        ext_bytes = b"".join(exts)
        cs = _u16list(ciphers)
        body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + cs + b"\x01\x00"
        body += struct.pack("!H", len(ext_bytes)) + ext_bytes
        hs = struct.pack("!I", 0x01000000 | len(body)) + body
        return struct.pack("!BHH", 22, 0x0301, len(hs)) + hs

    def server_flight(self, client_hello: bytes) -> tuple[int, list[Buffer]]:
        """ServerHello (TLS 1.3, echoing the session id and key-share group), CCS, then the
        encrypted EncryptedExtensions/Certificate/CertificateVerify/Finished flight."""
        rng = self.rng
        sid = client_hello[44:76]
        pq = b"\x11\xec\x04\xc0" in client_hello and rng.random() < 0.6
        cipher = rng.choices((0x1301, 0x1302, 0x1303), (0.7, 0.25, 0.05))[0]
        share = (
            struct.pack("!HH", 0x11EC, 1120) + rng.randbytes(1120)
            if pq
            else struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
        )
        exts = _ext(43, b"\x03\x04") + _ext(51, share)
        body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + sid + struct.pack("!HB", cipher, 0)
        body += struct.pack("!H", len(exts)) + exts
        hs = struct.pack("!I", 0x02000000 | len(body)) + body
        sh = struct.pack("!BHH", 22, 0x0303, len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
        total, pieces = self.tls_records(rng.randint(2400, 6200))
        return len(sh) + total, [sh, *pieces]

    def tls_records(self, n: int, max_record: int = 16401) -> tuple[int, list[Buffer]]:
        """Application-data records carrying `n` bytes of ciphertext (headers not counted)."""
        pool = _bin_pool()
        pieces: list[Buffer] = []
        total = 0
        while n > 0:
            k = min(n, max_record)
            pieces.append(struct.pack("!BHH", 23, 0x0303, k))
            pieces.append(_slice(self.rng, pool, k))
            total += k + 5
            n -= k
        return total, pieces

    # ------------------------------------------------------------------------ flows

    def tls_flow(
        self,
        rounds: Sequence[int] | None = None,
        median: float = 8_000,
        cap: int = 2_000_000,
        p_rst: float = 0.15,
    ) -> Iterator[bytes]:
        """A TLS 1.3 session: handshake, 1-6 request/response rounds, close_notify.

        `rounds` (drawn from, default `_ROUNDS`), the log-normal `median` and `cap` of response
        sizes, and the share of RST teardowns `p_rst` let profiles make handshakes denser; the
        defaults are the mix's and consume the same random numbers.
        """
        rng = self.rng
        client = self.pick_client()
        site = rng.choice(self.https_sites)
        r = rng.random()
        if r < 0.45:
            profile = "chrome"
        elif r < 0.60:
            profile = "chrome_pq"
        elif r < 0.80:
            profile = "firefox"
        else:
            profile = "openssl"
        n_rounds = _pick(rng, rounds or _ROUNDS)
        sizes = [_lognorm(rng, median, 1.5, 100, cap) for _ in range(n_rounds)]
        v6, tags = self.placement("tls", client, site.host.ip6 is not None)
        f = _TcpFlow(self, client, site.host, 443, v6, tags)
        yield from f.handshake(client.os, site.host.os)

        def messages() -> Iterator[Message]:
            ch = self.client_hello(site.name, profile)
            yield 0, len(ch), (ch,)
            yield (1, *self.server_flight(ch))
            for i, size in enumerate(sizes):
                total, pieces = self.tls_records(rng.randint(60, 900))
                if i == 0:  # CCS + Finished ride with the first request
                    first = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + rng.randbytes(53)
                    yield 0, total + len(first), (first, *pieces)
                    tickets = [
                        struct.pack("!BHH", 23, 0x0303, 250) + rng.randbytes(250) for _ in range(2)
                    ]
                    t2, p2 = self.tls_records(size)
                    yield 1, t2 + 510, (*tickets, *p2)
                else:
                    yield 0, total, pieces
                    yield (1, *self.tls_records(size))
            if rng.random() < 0.5:
                alert = struct.pack("!BHH", 23, 0x0303, 19) + rng.randbytes(19)
                yield 0, len(alert), (alert,)

        yield from f.exchange(messages())
        yield from f.close(p_rst=p_rst)

    def http_flow(
        self,
        requests_per_conn: Sequence[int] | None = None,
        body_cap: int = 0,
        sites: Sequence[_Site] | None = None,
        p_rst: float = 0.12,
    ) -> Iterator[bytes]:
        """HTTP/1.1 keep-alive connection; a few are refused or never answered.

        Profiles may draw the requests per connection from `requests_per_conn` (default
        `_REQUESTS`), cap 200 bodies at `body_cap` bytes (0: no cap beyond the pools'), pick
        from other `sites` and change the share of RST teardowns; the defaults are the mix's
        and consume the same random numbers.
        """
        rng = self.rng
        client = self.pick_client()
        site = rng.choice(sites or self.http_sites)
        n_requests = _pick(rng, requests_per_conn or _REQUESTS)
        requests = [self.http_request(site, client) for _ in range(n_requests)]
        sizes = [self.body_size(kind) for _, kind, _ in requests]
        if body_cap:
            sizes = [min(n, body_cap) for n in sizes]
        v6, tags = self.placement("http", client, site.host.ip6 is not None)
        f = _TcpFlow(self, client, site.host, 80, v6, tags)
        r = rng.random()
        if r < 0.02:  # closed port: SYN, RST/ACK
            yield f.syn(client.os)
            yield f.seg(1, RST | ACK, b"", b"")
            return
        if r < 0.03:  # filtered: the SYN is retransmitted, nothing comes back
            isn = f.seq[0]
            for _ in range(rng.randint(2, 4)):
                f.seq[0] = isn  # a retransmitted SYN reuses the ISN
                yield f.syn(client.os)
            return
        yield from f.handshake(client.os, site.host.os)

        def messages() -> Iterator[Message]:
            for (req, kind, path), size in zip(requests, sizes, strict=True):
                yield 0, len(req), (req,)
                yield (1, *self.http_response(site, kind, path, size))

        yield from f.exchange(messages())
        yield from f.close(p_rst=p_rst)

    def bulk_flow(self) -> Iterator[bytes]:
        """A one-way bulk transfer (SMB, rsync, NFS) to an internal server."""
        rng = self.rng
        client = self.pick_client()
        server, port = rng.choice(
            ((self.fileserver, 445), (self.fileserver, 445), (self.backup, 873), (self.nfs, 2049))
        )
        size = _lognorm(rng, 1_000_000, 1.0, 65_536, 16 << 20)
        v6, tags = self.placement("bulk", client, qinq=False)
        f = _TcpFlow(self, client, server, port, v6, tags)
        yield from f.handshake(client.os, server.os)
        download = rng.random() < 0.6
        req = _slice(rng, _bin_pool(), rng.randint(80, 400))
        status = _slice(rng, _bin_pool(), rng.randint(40, 120))

        def stream() -> Iterator[Buffer]:
            pool = _bin_pool()
            while True:
                yield _slice(rng, pool, 65536)

        if download:
            msgs: list[Message] = [(0, len(req), (req,)), (1, size, stream())]
        else:
            msgs = [(0, len(req), (req,)), (0, size, stream()), (1, len(status), (status,))]
        yield from f.exchange(msgs)
        yield from f.close(p_rst=0.03)

    def dns_flow(self) -> Iterator[bytes]:
        """A/AAAA lookups (often both, as browsers do) from one client socket."""
        rng = self.rng
        client = self.pick_client()
        v6, tags = self.placement("dns", client)
        resolver = self.resolver_int if rng.random() < 0.7 else rng.choice(self.resolvers_ext)
        label = rng.getrandbits(20)
        q = _Path(client, resolver, v6, tags, 17, df=client.os == "linux", flow_label=label)
        a = _Path(resolver, client, v6, tags, 17, df=False)
        sport = client.ephemeral() if client.os == "windows" else rng.randint(32768, 60999)
        # Mostly names clients then connect to; a few that do not exist (wpad, typos).
        name = rng.choice(_NX_NAMES) if rng.random() < 0.06 else rng.choice(self.sites).name
        r = rng.random()
        qtypes = (1, 28) if r < 0.45 else (1,) if r < 0.85 else (28,)
        edns = client.os != "windows" or rng.random() < 0.5
        qid = rng.getrandbits(16)
        msgs = [self.dns_messages(name, t, edns) for t in qtypes]
        for i, (query, _) in enumerate(msgs):
            yield q.udp(sport, 53, _with_id(query, qid + i))
        if rng.random() < 0.03:  # a lost reply: the stub resolver asks again
            yield q.udp(sport, 53, _with_id(msgs[0][0], qid))
        for i, (_, reply) in enumerate(msgs):
            yield a.udp(53, sport, _with_id(reply, qid + i))

    def dns_messages(self, name: str, qtype: int, edns: bool) -> tuple[bytes, bytes]:
        """Query and response for (name, qtype), with id 0; cached since names repeat."""
        key = (name, qtype, edns)
        hit = self._dns_cache.get(key)
        if hit is not None:
            return hit
        opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
        qd = _dns_name(name) + struct.pack("!HH", qtype, 1)
        query = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1 if edns else 0) + qd + opt
        w = _DnsWriter()
        w.buf += struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0)
        w.name(name)
        w.buf += struct.pack("!HH", qtype, 1)
        site = self.site_by_name.get(name)
        an = ns = 0
        rcode = 0
        if site is None:
            rcode = 3
            zone = "corp.example" if name.endswith("corp.example") else name.split(".", 1)[1]
            w.soa(zone)
            ns = 1
        else:
            owner = name
            for target in site.chain:
                w.record(owner, 5, site.ttl, target)
                owner = target
                an += 1
            host = site.host
            if qtype == 1:
                for k in range(site.n_a):
                    ip = (
                        host.ip4
                        if k == 0
                        else host.ip4[:3] + bytes(((host.ip4[3] + 17 * k) % 254 + 1,))
                    )
                    w.record(owner, 1, site.ttl, ip)
                    an += 1
            elif host.ip6 is not None:
                w.record(owner, 28, site.ttl, host.ip6)
                an += 1
            else:  # NODATA: the name exists, but has no AAAA
                w.soa(owner.split(".", 1)[1] if owner.count(".") > 1 else owner)
                ns = 1
        w.buf += opt
        struct.pack_into("!HHHHH", w.buf, 2, 0x8180 | rcode, 1, an, ns, 1 if edns else 0)
        out = (query, bytes(w.buf))
        self._dns_cache[key] = out
        return out

    def icmp_flow(self) -> Iterator[bytes]:
        """A ping session, or a UDP probe to a closed port and its port unreachable error."""
        rng = self.rng
        client = self.pick_client()
        unreachable = rng.random() < 0.12
        v6, tags = self.placement("icmp", client, v6_ok=not unreachable)
        if unreachable:
            target = rng.choice([*self.internal_hosts, *rng.sample(self.clients, 3)])
            probe = _Path(client, target, False, tags, 17, df=False)
            err = _Path(target, client, False, tags, 1, df=False)
            sport = client.ephemeral()
            dport = rng.choice(
                (161, 514, 1900, 5353, 33434 + rng.randint(0, 90), 40000 + rng.randint(0, 9999))
            )
            pkt = probe.udp(sport, dport, _slice(rng, _bin_pool(), rng.choice((12, 32, 48, 120))))
            yield pkt
            # Linux quotes as much of the offending datagram as fits in 576 bytes.
            yield err.icmp(3, 3, 0, probe.ip_packet(pkt)[:548])
            return
        targets = (
            self.ping_targets if not v6 else [h for h in self.ping_targets if h.ip6 is not None]
        )
        target = rng.choice(targets)
        proto = 58 if v6 else 1
        req = _Path(
            client, target, v6, tags, proto, df=client.os == "linux", flow_label=rng.getrandbits(20)
        )
        rep = _Path(target, client, v6, tags, proto, df=False)
        ident = rng.getrandbits(16)
        t_req, t_rep = (128, 129) if v6 else (8, 0)
        for seq in range(1, rng.randint(2, 8)):
            if client.os == "windows":
                payload: bytes = b"abcdefghijklmnopqrstuvwabcdefghi"
            else:
                payload = struct.pack(
                    "<qq", self.now_ns // 1_000_000_000, self.now_ns // 1000 % 1_000_000
                )
                payload += bytes(range(0x10, 0x38))
            rest = ident << 16 | seq
            yield req.icmp(t_req, 0, rest, payload)
            if rng.random() < 0.95:
                yield rep.icmp(t_rep, 0, rest, payload)

    def arp_flow(self) -> Iterator[bytes]:
        """who-has / is-at, an unanswered request retried, or a gratuitous announcement."""
        rng = self.rng
        sender = self.pick_client()
        _, tags = self.placement("arp", sender, v6_ok=False)
        r = rng.random()
        bcast = b"\xff" * 6
        if r < 0.05:
            yield _arp(bcast, sender.mac, tags, 1, sender.mac, sender.ip4, b"\x00" * 6, sender.ip4)
            return
        if r < 0.20:
            ghost = bytes((10, 20, rng.randint(0, 3), rng.randint(1, 9)))
            for _ in range(rng.randint(1, 3)):
                yield _arp(bcast, sender.mac, tags, 1, sender.mac, sender.ip4, b"\x00" * 6, ghost)
            return
        target = rng.choice(
            (self.gateway, self.gateway, *self.internal_hosts, *rng.sample(self.clients, 2))
        )
        yield _arp(bcast, sender.mac, tags, 1, sender.mac, sender.ip4, b"\x00" * 6, target.ip4)
        yield _arp(sender.mac, target.mac, tags, 2, target.mac, target.ip4, sender.mac, sender.ip4)


def _v6(subnet: int, sub2: int, iid: int) -> bytes:
    """An address in the site's documentation prefix 2001:db8:<subnet>:<sub2>::/64."""
    return struct.pack("!HHHHQ", 0x2001, 0x0DB8, subnet, sub2, iid)


_SHORT = ("dns", "icmp", "arp")  # categories of many short flows
_ROUNDS = (1, 1, 1, 2, 2, 3, 4, 6)  # request/response rounds per TLS session
_REQUESTS = (1, 1, 1, 2, 2, 3, 4)  # requests per HTTP/1.1 connection
# 200 body sizes by kind: (median, sigma of the log-normal, cap). Caps keep a body inside
# its payload pool (1 MiB of text, 4 MiB of binary).
_BODY_SIZES: dict[str, tuple[float, float, int]] = {
    "html": (10_000, 1.2, 800_000),
    "static": (20_000, 1.1, 800_000),
    "json": (1_500, 1.0, 400_000),
    "image": (15_000, 1.3, 3_500_000),
    "binary": (120_000, 1.3, 3_500_000),
    "probe": (22, 0.0, 22),
}


def _pick(rng: random.Random, choices: Sequence[int]) -> int:
    return choices[int(rng.random() * len(choices))]


def _dot1q(host: _Host) -> bytes:
    """An 802.1Q tag with the host's VLAN (priority 5 on the voice VLAN 30)."""
    return struct.pack("!HH", 0x8100, (5 << 13 if host.vlan == 30 else 0) | host.vlan)


def _qinq(host: _Host) -> bytes:
    """802.1ad service tag (0x88a8) outside the host's 802.1Q tag."""
    return struct.pack("!HHHH", 0x88A8, 1000 + host.vlan % 7, 0x8100, host.vlan)


def _error_page(base: str, server: str, status: str, location: str) -> tuple[int, list[Buffer]]:
    """nginx's small HTML error/redirect page with its headers."""
    body = (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n<hr><center>{server}</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    loc = f"Location: {location}\r\n" if location else ""
    head = (
        f"HTTP/1.1 {status}\r\n{base}Content-Type: text/html\r\nContent-Length: {len(body)}"
        f"\r\n{loc}Connection: keep-alive\r\n\r\n"
    )
    return _pieces(head.encode(), body)


def _pieces(head: bytes, body: Buffer) -> tuple[int, list[Buffer]]:
    return len(head) + len(body), [head, body]


def _ext(typ: int, data: bytes) -> bytes:
    return struct.pack("!HH", typ, len(data)) + data


def _u16list(values: Sequence[int]) -> bytes:
    return struct.pack(f"!H{len(values)}H", 2 * len(values), *values)


def _with_id(msg: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid & 0xFFFF) + msg[2:]


def _arp(
    dst: bytes, src: bytes, tags: bytes, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes
) -> bytes:
    fr = (
        dst
        + src
        + tags
        + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + sha
        + spa
        + tha
        + tpa
    )
    return fr + _ZEROS[: max(0, 60 - len(fr))]


@functools.lru_cache(maxsize=4096)
def _dns_name(name: str) -> bytes:
    return b"".join(bytes((len(lab),)) + lab.encode() for lab in name.split(".")) + b"\x00"


class _DnsWriter:
    """Builds a DNS message with RFC 1035 name compression (pointers to earlier suffixes)."""

    __slots__ = ("buf", "suffixes")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.suffixes: dict[str, int] = {}

    def name(self, name: str) -> None:
        labels = name.split(".")
        for i in range(len(labels)):
            off = self.suffixes.get(".".join(labels[i:]))
            if off is not None:
                self.buf += struct.pack("!H", 0xC000 | off)
                return
            if len(self.buf) < 0x3FFF:
                self.suffixes[".".join(labels[i:])] = len(self.buf)
            lab = labels[i].encode()
            self.buf.append(len(lab))
            self.buf += lab
        self.buf.append(0)

    def record(self, owner: str, rtype: int, ttl: int, rdata: bytes | str) -> None:
        self.name(owner)
        self.buf += struct.pack("!HHI", rtype, 1, ttl)
        at = len(self.buf)
        self.buf += b"\x00\x00"
        if isinstance(rdata, str):
            self.name(rdata)
        else:
            self.buf += rdata
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)

    def mx(self, owner: str, ttl: int, preference: int, exchange: str) -> None:
        """An MX record; the exchange name is compressed like any other name."""
        self.name(owner)
        self.buf += struct.pack("!HHIHH", 15, 1, ttl, 0, preference)
        at = len(self.buf) - 4
        self.name(exchange)
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)

    def soa(self, zone: str) -> None:
        self.name(zone)
        self.buf += struct.pack("!HHI", 6, 1, 900)
        at = len(self.buf)
        self.buf += b"\x00\x00"
        self.name("ns1." + zone)
        self.name("hostmaster." + zone)
        self.buf += struct.pack("!IIIII", 2024010101, 7200, 3600, 1209600, 300)
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)


# ------------------------------------------------------------------------------ scheduler


def iter_frames(
    packets: int, seed: int, profile: str = "mixed", *, flows: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield `packets` (timestamp_ns, Ethernet frame) pairs of the named workload profile.

    `mixed` (the default) is the traffic mix this module describes; the other profiles and
    what `flows` means for each are in `pipeline.gen.profiles`. Unknown profiles and
    arguments a profile cannot honour raise ValueError here, before the first frame.
    """
    # Imported here, not at the top: profiles builds on this module's classes.
    from pipeline.gen.profiles import profile_frames

    return profile_frames(profile, packets, seed, flows)


def mixed_frames(packets: int, seed: int) -> Iterator[tuple[int, bytes]]:
    """Exactly `packets` frames of the mix; flows still open at the end are cut off."""
    g = _Gen(seed)
    factories: dict[str, Callable[[], Iterator[bytes]]] = {
        "tls": g.tls_flow,
        "http": g.http_flow,
        "bulk": g.bulk_flow,
        "dns": g.dns_flow,
        "icmp": g.icmp_flow,
        "arp": g.arp_flow,
    }
    conc = max(32, min(4000, packets // 400))
    slots = {"tls": 0.40, "http": 0.22, "dns": 0.10, "icmp": 0.05, "arp": 0.02}
    names = [name for name, _ in CATEGORY_SHARES]
    # Bulk gets at least 20 slots so that its IPv6/VLAN rounding stays fair (see placement).
    targets = [
        max(20, conc // 50) if n == "bulk" else max(1, round(conc * slots[n])) for n in names
    ]
    g.pool_size = dict(zip(names, targets, strict=True))
    table = share_table([share for _, share in CATEGORY_SHARES])
    return interleave(g, packets, [factories[n] for n in names], targets, table)


def share_table(shares: Sequence[float]) -> list[int]:
    """A 4096-entry table that turns one getrandbits(12) into a category with these shares."""
    table: list[int] = []
    acc = 0.0
    for k, share in enumerate(shares):
        acc += share
        table += [k] * (round(acc * 4096) - len(table))
    table += [len(shares) - 1] * (4096 - len(table))
    return table


def interleave(
    g: _Gen,
    packets: int,
    make: Sequence[Callable[[], Iterator[bytes]]],
    targets: Sequence[int],
    table: Sequence[int],
    mean_gap_ns: float = MEAN_GAP_NS,
) -> Iterator[tuple[int, bytes]]:
    """Yield `packets` frames, each from a random open flow of a category drawn from `table`.

    Category k keeps up to `targets[k]` open flows made by `make[k]`; a flow that ends gives
    back its placement ticket (see `_Gen.placement`). Timestamps advance by exponential gaps
    of mean `mean_gap_ns`. Flows still open after the last packet are cut off.
    """
    rng = g.rng
    pools: list[list[Iterator[bytes]]] = [[] for _ in make]
    tickets: list[list[tuple[list[int], bool, bool]]] = [[] for _ in make]
    fill_p = 0.3  # pools ramp up instead of opening every flow in the first packets
    ts = EPOCH_NS
    rand = rng.random
    expo = rng.expovariate
    lam = 1.0 / mean_gap_ns
    for n in range(packets):
        ts += int(expo(lam)) + 1
        g.now_ns = ts
        k = table[rng.getrandbits(12)]
        pool = pools[k]
        while True:
            new = len(pool) < targets[k] and (not pool or rand() < fill_p)
            if new:
                # A flow that takes no placement ticket must not give back its predecessor's.
                g.ticket = ([1, 0, 0], False, False)
                flow = make[k]()
                frame = next(flow, None)  # runs the flow's set-up, which takes a ticket
                pool.append(flow)
                tickets[k].append(g.ticket)
                i = len(pool) - 1
            else:
                i = int(rand() * len(pool))
                frame = next(pool[i], None)
            if frame is not None:
                break
            held = tickets[k]
            g.release(held[i])
            pool[i] = pool[-1]
            pool.pop()
            held[i] = held[-1]
            held.pop()
            if new and not pool:  # the factory makes only empty flows: it has run dry
                raise RuntimeError(f"no more flows in category {k} after {n} packets")
        yield ts, frame


# -------------------------------------------------------------------------------- writers


def write_capture(
    path: str,
    packets: int,
    seed: int,
    fmt: str = "pcap",
    nanosecond: bool = False,
    profile: str = "mixed",
    *,
    flows: int | None = None,
    stretch: float = 1.0,
) -> None:
    """Write `packets` frames of `profile` (default the mix) to `path` as pcap (LE) or pcapng.

    `nanosecond` gives a nanosecond pcap (magic a1b23c4d) or, for pcapng, an interface
    with if_tsresol 9; otherwise timestamps are in microseconds. `flows` sets the number of
    connections of the profiles that take one (see `pipeline.gen.profiles`). `stretch`
    multiplies capture time from the first frame: the same packets on a slower link, every
    gap and round trip longer (the mix runs at ~100k packets/s, so its finished flows
    outlive the capture unless it spans more than the flow timeouts).
    """
    if fmt not in ("pcap", "pcapng"):
        raise ValueError(f"unknown format {fmt!r} (pcap or pcapng)")
    if packets < 0:
        raise ValueError("packets must be >= 0")
    if not stretch > 0:
        raise ValueError("stretch must be positive")
    frames = iter_frames(packets, seed, profile, flows=flows)  # checks before creating the file
    if stretch != 1.0:
        frames = _stretched(frames, stretch)
    with open(path, "wb") as f:
        _write(f, frames, fmt, nanosecond)


def _stretched(frames: Iterator[tuple[int, bytes]], stretch: float) -> Iterator[tuple[int, bytes]]:
    start: int | None = None
    for ts, frame in frames:
        if start is None:
            start = ts
        yield start + round((ts - start) * stretch), frame


def _write(f: BinaryIO, frames: Iterator[tuple[int, bytes]], fmt: str, nanosecond: bool) -> None:
    batch: list[bytes] = []
    if fmt == "pcap":
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, SNAPLEN, 1))
        rec = struct.Struct("<IIII").pack
        div = 1_000_000_000 if nanosecond else 1_000_000
        scale = 1 if nanosecond else 1000
        for ts, fr in frames:
            sec, frac = divmod(ts // scale, div)
            n = len(fr)
            batch.append(rec(sec, frac, n, n))
            batch.append(fr)
            if len(batch) >= 8192:
                f.write(b"".join(batch))
                batch.clear()
    else:
        app = b"pcap-ingest gen_capture"
        shb_opts = _opt(4, app) + b"\x00\x00\x00\x00"
        f.write(struct.pack("<IIIHHq", 0x0A0D0D0A, 28 + len(shb_opts), 0x1A2B3C4D, 1, 0, -1))
        f.write(shb_opts + struct.pack("<I", 28 + len(shb_opts)))
        idb_opts = (
            _opt(2, b"span0") + (_opt(9, b"\x09") if nanosecond else b"") + b"\x00\x00\x00\x00"
        )
        idb_len = 20 + len(idb_opts)
        f.write(
            struct.pack("<IIHHI", 1, idb_len, 1, 0, SNAPLEN) + idb_opts + struct.pack("<I", idb_len)
        )
        head = struct.Struct("<IIIIIII").pack
        tail = struct.Struct("<I").pack
        scale = 1 if nanosecond else 1000
        for ts, fr in frames:
            t = ts // scale
            n = len(fr)
            pad = -n & 3
            total = 32 + n + pad
            batch.append(head(6, total, 0, t >> 32, t & 0xFFFFFFFF, n, n))
            batch.append(fr + _ZEROS[:pad] + tail(total) if pad else fr + tail(total))
            if len(batch) >= 8192:
                f.write(b"".join(batch))
                batch.clear()
    f.write(b"".join(batch))


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + _ZEROS[: -len(value) & 3]


# ------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`gen_capture --packets N --seed S -o FILE [--profile P] [--flows F] [--format pcap|pcapng]
    [--nanosecond] [--stretch FACTOR]`."""
    from pipeline.gen.profiles import PROFILES  # see iter_frames

    p = argparse.ArgumentParser(
        prog="gen_capture",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="profiles: "
        + "; ".join(f"{name}: {prof.summary}" for name, prof in PROFILES.items()),
    )
    p.add_argument(
        "--packets", "-n", type=int, required=True, help="exact number of packets to write"
    )
    p.add_argument("--seed", "-s", type=int, default=1, help="random seed (default 1)")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="mixed",
        metavar="NAME",
        help="named workload (default mixed, the realistic mix): one of those below",
    )
    p.add_argument(
        "--flows",
        type=int,
        default=None,
        help="number of connections, for the profiles that take one (ooo-holes, small-flood)",
    )
    p.add_argument(
        "--format",
        choices=("pcap", "pcapng"),
        default="pcap",
        help="classic little-endian pcap (default) or pcapng (SHB, IDB, EPBs)",
    )
    p.add_argument(
        "--nanosecond",
        action="store_true",
        help="nanosecond timestamps (pcap magic a1b23c4d; pcapng if_tsresol 9)",
    )
    p.add_argument(
        "--stretch",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="multiply capture time by FACTOR: a slower link (the mix runs at ~100k "
        "packets/s; 50 gives ~2k, where finished flows time out within the capture)",
    )
    args = p.parse_args(argv)
    if args.packets < 0:
        p.error("--packets must be >= 0")
    if not args.stretch > 0:
        p.error("--stretch must be positive")
    t0 = time.perf_counter()
    try:
        write_capture(
            args.output,
            args.packets,
            args.seed,
            args.format,
            args.nanosecond,
            args.profile,
            flows=args.flows,
            stretch=args.stretch,
        )
    except ValueError as e:  # a profile refusing its arguments: say so as argparse would
        p.error(str(e))
    dt = time.perf_counter() - t0
    print(
        f"wrote {args.packets} {args.profile} packets to {args.output} in {dt:.1f}s "
        f"({args.packets / max(dt, 1e-9):,.0f} packets/s)",
        file=sys.stderr,
    )
    return 0
