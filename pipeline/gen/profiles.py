"""Named, deterministic workload profiles: one traffic shape each, for benchmarks and tests.

`iter_frames(packets, seed, profile)` and `write_capture(..., profile=...)` in `capture_mix`
and ``scripts/gen_capture.py --profile NAME`` pick one of these. Every profile builds on the
mix's simulated network (`capture_mix._Gen`: the same hosts, sites, MACs, TTLs and TCP
habits for the same seed) and its packet builders (`_TcpFlow`, `_Path`, `_DnsWriter`), so
checksums, lengths and sequence numbers are right as there.

=============  ==========================================================================
profile        what (shares by packets)
=============  ==========================================================================
mixed          the realistic office mix of `capture_mix` (its docstring has the shares)
dns-heavy      ~86 % UDP/53 lookups: A, AAAA (CNAME chains), CNAME, MX, TXT (SPF, DMARC,
               DKIM split into 255-byte strings, verification tokens), PTR, unique CDN
               names, NXDOMAIN for typos and DGA-like names; answers too big for 512
               bytes (or EDNS 1232) come back truncated (TC) and are asked again over
               TCP, and ~3 % of packets are DNS-over-TCP sessions; ~11 % background
               TLS/HTTP
http-heavy     ~93 % HTTP/1.1 on TCP/80: handshake, 2-8 keep-alive GET/POST requests per
               connection, Content-Length and (25 % of text) chunked bodies capped at
               64 KiB so requests stay dense, FIN (3 % RST) close; ~7 % DNS
tls-heavy      ~93 % TLS 1.3 on TCP/443: ClientHello with SNI, ALPN, supported_versions,
               key_share (15 % post-quantum hellos span two segments), ServerHello + CCS
               + encrypted flight, 1-4 application-data rounds (median 3 kB responses),
               close_notify, FIN (5 % RST); ~7 % DNS
small-flood    60-byte frames only (64 on the wire with the FCS): pktgen-style UDP to
               port 9 and TCP/9 streams of 6-byte segments with an ACK every second one,
               all IPv4 and untagged, from `flows` flows (default 16, 1/4 of them TCP)
               open throughout, at ~1.25 M packets/s of capture time
syn-flood      one SYN per flow from spoofed public sources to one internal web server
               (ports 80/443): every (src ip, src port) is distinct, so `packets` is the
               number of flows; SYN options of Linux, Windows, macOS or none (hping3)
ooo-holes      exactly `flows` TCP connections (default packets // 50, packets split evenly
               among them) to port 445/873/2049: handshake, data both ways delivered out
               of order (a per-connection shuffle window of 2-128 segments), ~1/12 of
               the packets retransmissions of earlier segments, half the server streams
               and 30 % of the client ones with a 10-30 segment hole (14-43 KB) that is
               never sent, cumulative ACKs stuck at the hole, FIN both ways
many-flows     short complete flows from 256k routed hosts (10.64.0.0/14, ~9 % IPv6): ~75 %
               TCP/80 (handshake, one GET, a reply of at most 1200 body bytes, FIN), ~25 %
               UDP (DNS query + answer, NTP request + reply); every flow has its own
               (src ip, src port); ~200 flows per 1000 packets, 2/5 of them TCP
=============  ==========================================================================

Counting: every profile writes exactly `packets` frames. syn-flood's frames are its flows.
ooo-holes writes exactly `flows` connections whose packets add up to `packets` (a connection
of fewer than 7 packets is cut short of its FIN). small-flood keeps its `flows` open from
the first packet to the last. The others, like the mix, cut off whatever flows are still
open when the count is reached. `flows` is refused by the profiles that do not take it.

Determinism and memory: as the mix, everything comes from one ``random.Random(seed)`` and
the capture clock, so (profile, packets, seed, flows) gives the same bytes every time; no
profile holds anything per packet or per finished flow. syn-flood and many-flows get their
distinct addresses from a keyed bijection of the flow's index (`_permute`), not from a set
of addresses already used, so 1M SYN-only flows take constant memory. ooo-holes holds the
delivery plan (one int per packet) of each open connection: at most
`OOO_MAX_FLOW_PACKETS` per connection and 2000 connections open at once.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from pipeline.gen.capture_mix import (
    _NX_NAMES,
    _UA,
    ACK,
    EPOCH_NS,
    FIN,
    MEAN_GAP_NS,
    P_V6,
    PSH,
    SYN,
    _bin_pool,
    _dns_name,
    _DnsWriter,
    _Gen,
    _Host,
    _Path,
    _Site,
    _slice,
    _TcpFlow,
    _v6,
    _with_id,
    interleave,
    mixed_frames,
    share_table,
)

Frames = Iterator[tuple[int, bytes]]
# A category of flows: (name, share of packets, share of the open-flow pool, flow factory).
Category = tuple[str, float, float, Callable[[], Iterator[bytes]]]

SEQ_MASK = 0xFFFFFFFF

# Capture-clock pace of each profile (mean gap between packets). A resolver or a SYN flood
# runs at a different rate from an office uplink; benchmarks only see the timestamps.
DNS_GAP_NS = 20_000  # ~50k packets/s: a busy site resolver
SYN_GAP_NS = 2_000  # ~500k SYNs/s
# 1 GbE line rate for minimum frames is one per 672 ns (64 bytes + 20 of preamble and gap);
# the flood runs a little under it, with jitter, as a software generator does.
FLOOD_MIN_GAP_NS = 672
FLOOD_JITTER_NS = 128

# small-flood opens every flow up front, so its flow count is memory: cap it.
MAX_FLOOD_FLOWS = 65_536
DEFAULT_FLOOD_FLOWS = 16

# ooo-holes: the default connection size, the cap on one connection's plan (it is held in
# memory while the connection is open), and how many connections are open at once.
OOO_PACKETS_PER_FLOW = 50
OOO_MAX_FLOW_PACKETS = 1 << 16
OOO_MAX_OPEN = 2000
OOO_HOLE_SEGMENTS = (10, 30)  # a never-filled hole: 14-43 KB at a 1448-byte MSS
OOO_P_HOLE = (0.3, 0.5)  # share of client and of server streams with such a hole
OOO_SHUFFLE_WIDTHS = (2, 8, 32, 128)  # how far (in segments) a segment may arrive early

# Distinct-address spaces. syn-flood: 4 bits pick the first octet of a public /8, 24 bits the
# rest of the address, 15 bits the source port (32768-65535). many-flows: 18 bits pick a host
# of 10.64.0.0/14 (or its IPv6 twin), 15 bits the source port.
SYN_FLOW_BITS = 4 + 24 + 15
MANY_FLOW_BITS = 18 + 15
_SPOOF_FIRST = (13, 20, 23, 31, 34, 35, 40, 52, 54, 64, 69, 74, 104, 140, 146, 185)

MANY_BODY_CAP = 1200  # many-flows replies fit a segment or two: the point is flow count
HTTP_BODY_CAP = 65_536  # http-heavy: keep requests dense among the body segments
_KEEPALIVE = (2, 3, 3, 4, 5, 6, 8)  # requests per http-heavy connection
_TLS_ROUNDS = (1, 1, 2, 2, 3, 4)  # request/response rounds per tls-heavy session
# tls-heavy response sizes (log-normal median and cap, bytes): smaller than the mix's 8 kB
# median and 2 MB cap, so handshakes are a larger share of the packets.
TLS_MEDIAN = 3_000
TLS_CAP = 262_144

# Odd multipliers for `_permute` (odd, so multiplication is a bijection mod 2**bits).
_PERM_MULS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _permute(i: int, bits: int, key: int) -> int:
    """A keyed bijection of [0, 2**bits): distinct flow indices give distinct, scattered ids.

    Each step (multiply by an odd number, add, xor with a right shift) is invertible modulo
    2**bits, so the whole is; this is how syn-flood and many-flows get a million distinct
    (address, port) pairs without remembering the ones already used.
    """
    mask = (1 << bits) - 1
    shift = bits // 2 + 1
    x = i
    for k, mul in enumerate(_PERM_MULS):
        x = (x * mul + (key >> (16 * k))) & mask
        x ^= x >> shift
    return x


def _run(g: _Gen, packets: int, cats: Sequence[Category], mean_gap_ns: float) -> Frames:
    """Interleave flows of `cats` as the mix does, with pools sized as the mix's."""
    conc = max(32, min(4000, packets // 400))
    targets = [max(1, round(conc * slot)) for _, _, slot, _ in cats]
    g.pool_size = {c[0]: t for c, t in zip(cats, targets, strict=True)}
    table = share_table([share for _, share, _, _ in cats])
    return interleave(g, packets, [make for *_, make in cats], targets, table, mean_gap_ns)


def _plain_http_sites(g: _Gen) -> list[_Site]:
    """The mix's HTTP sites but OCSP: its request bodies are random bytes in a DER wrapper,
    which tshark reports as malformed, and profiles are kept free of tshark errors."""
    return [s for s in g.http_sites if s.http_kind != "ocsp"]


def _seg_at(f: _TcpFlow, d: int, flags: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    """A segment of `f` with an explicit seq and ack: for out-of-order and repeated data,
    which `_TcpFlow.seg` (always the next byte, acknowledging everything) cannot send."""
    f.seq[d] = seq & SEQ_MASK
    f.seq[1 - d] = ack & SEQ_MASK
    return f.seg(d, flags, payload)


# ----------------------------------------------------------------------------- dns-heavy

# Mail domains: their MX records (preference, exchange), asked for MX and TXT.
_MAIL: dict[str, tuple[tuple[int, str], ...]] = {
    "corp.example": ((10, "mx1.corp.example"), (20, "mx2.corp.example")),
    "gmail.com": (
        (5, "gmail-smtp-in.l.google.com"),
        (10, "alt1.gmail-smtp-in.l.google.com"),
        (20, "alt2.gmail-smtp-in.l.google.com"),
        (30, "alt3.gmail-smtp-in.l.google.com"),
        (40, "alt4.gmail-smtp-in.l.google.com"),
    ),
    "outlook.com": ((5, "outlook-com.olc.protection.outlook.com"),),
    "github.com": (
        (1, "aspmx.l.google.com"),
        (5, "alt1.aspmx.l.google.com"),
        (5, "alt2.aspmx.l.google.com"),
        (10, "alt3.aspmx.l.google.com"),
        (10, "alt4.aspmx.l.google.com"),
    ),
    "python.org": ((50, "mail.python.org"),),
    "wikipedia.org": ((10, "mx1001.wikimedia.org"), (50, "mx2001.wikimedia.org")),
    "example.com": ((10, "mail.example.com"),),
}
_MAIL_DOMAINS = tuple(_MAIL)
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_LOWER = b"abcdefghijklmnopqrstuvwxyz0123456789"
_TLDS = ("com", "net", "info", "xyz", "top")
_CDN_ZONES = ("a.akamaiedge.net", "cdn.cloudflare.net", "edgekey.net", "fastly.net")
_TC_LIMIT = (512, 1232)  # the largest UDP answer without, and with, our EDNS buffer size
_RD_RA, _RD_RA_TC = 0x8180, 0x8380  # response flags: recursion desired + available (+TC)


def _query(name: str, qtype: int, edns: bool) -> bytes:
    """A stub resolver's query with id 0, as `_Gen.dns_messages` builds it."""
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
    head = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1 if edns else 0)
    return head + _dns_name(name) + struct.pack("!HH", qtype, 1) + opt


def _txt(*strings: bytes) -> bytes:
    """TXT rdata: each string length-prefixed, long ones split at 255 bytes as DNS needs."""
    out = bytearray()
    for s in strings:
        for o in range(0, len(s), 255):
            part = s[o : o + 255]
            out.append(len(part))
            out += part
    return bytes(out)


class _Resolver:
    """The answers dns-heavy's resolvers give, and its lookup flows.

    A and AAAA for the mix's names come from `_Gen.dns_messages`; the other types are
    built here with the same `_DnsWriter`. Answers for a fixed set of names are cached (as
    the mix's are), unique names (CDN labels, DGA-like typos) are not.
    """

    def __init__(self, g: _Gen) -> None:
        self.g = g
        self.cache: dict[tuple[str, int, bool], tuple[bytes, bytes]] = {}
        self.by_ptr = {
            ".".join(str(b) for b in reversed(h.ip4)) + ".in-addr.arpa": f"{h.name}.corp.example"
            for h in (*g.clients, *g.internal_hosts)
        }
        self.ptr_names = tuple(self.by_ptr)

    def token(self, alphabet: bytes, n: int) -> bytes:
        rng = self.g.rng
        return bytes(alphabet[int(rng.random() * len(alphabet))] for _ in range(n))

    def answer(self, name: str, qtype: int, edns: bool) -> tuple[bytes, bytes]:
        """(query, full response) with id 0 for one question."""
        g = self.g
        if qtype in (1, 28) and (name in g.site_by_name or name in _NX_NAMES):
            return g.dns_messages(name, qtype, edns)
        key = (name, qtype, edns)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        rng = g.rng
        w = _DnsWriter()
        w.buf += bytes(12)
        w.name(name)
        w.buf += struct.pack("!HH", qtype, 1)
        an = ns = ar = rcode = 0
        cacheable = True
        labels = name.split(".")
        site = g.site_by_name.get(name)
        if qtype == 5 and site is not None:  # CNAME: the first link of the chain, or NODATA
            if site.chain:
                w.record(name, 5, site.ttl, site.chain[0])
                an = 1
            else:
                w.soa(".".join(labels[-2:]))
                ns = 1
        elif qtype == 15:
            for pref, exchange in _MAIL[name]:
                w.mx(name, 3600, pref, exchange)
                an += 1
            if name == "corp.example":  # the internal resolver adds its own mail hosts' A
                for k, (_, exchange) in enumerate(_MAIL[name]):
                    w.record(exchange, 1, 3600, bytes((10, 20, 10, 25 + k)))
                    ar += 1
        elif qtype == 16:
            an = self.txt_records(w, name)
        elif qtype == 12:
            target = self.by_ptr.get(name)
            if target is None:  # an address nobody registered
                rcode = 3
                w.soa(".".join(labels[-4:]))
                ns = 1
            else:
                w.record(name, 12, 1200, target)
                an = 1
        elif name.endswith(_CDN_ZONES):
            # A unique CDN name: a short-TTL A record or two; never asked twice.
            cacheable = False
            for _ in range(1 + (rng.random() < 0.4)):
                ip = bytes((rng.choice((23, 104, 151, 184)), *rng.randbytes(3)))
                w.record(name, 1, 20, ip)
                an += 1
        else:  # a DGA-like name: NXDOMAIN from its TLD
            cacheable = False
            rcode = 3
            w.soa(labels[-1])
            ns = 1
        if edns:
            w.buf += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
            ar += 1
        struct.pack_into("!HHHHH", w.buf, 2, _RD_RA | rcode, 1, an, ns, ar)
        out = (_query(name, qtype, edns), bytes(w.buf))
        if cacheable:
            self.cache[key] = out
        return out

    def txt_records(self, w: _DnsWriter, name: str) -> int:
        """SPF and verification tokens at a mail domain, DMARC and DKIM under it."""
        rng = self.g.rng
        domain = name.split(".", 1)[1] if name.startswith("_dmarc.") else name
        if name.startswith("_dmarc."):
            w.record(
                name, 16, 3600, _txt(b"v=DMARC1; p=reject; rua=mailto:dmarc@" + domain.encode())
            )
            return 1
        if "._domainkey." in name:
            key = (
                b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + self.token(_B64, 348) + b"IDAQAB"
            )
            w.record(name, 16, 3600, _txt(b"v=DKIM1; k=rsa; p=" + key))
            return 1
        w.record(name, 16, 3600, _txt(b"v=spf1 include:_spf.google.com ~all"))
        n = 1 + rng.randint(0, 12)  # big apexes carry a dozen verification tokens
        for k in range(1, n):
            kind = k % 4
            if kind == 0:
                s = b"google-site-verification=" + self.token(_B64[:62], 43)
            elif kind == 1:
                s = b"MS=ms" + self.token(b"0123456789", 8)
            elif kind == 2:
                s = b"facebook-domain-verification=" + self.token(_LOWER, 30)
            else:
                s = b"atlassian-domain-verification=" + self.token(_B64, 64)
            w.record(name, 16, 3600, _txt(s))
        return n

    def questions(self) -> list[tuple[str, int]]:
        """What one client socket asks: mostly A/AAAA of the mix's sites, then the rest."""
        g = self.g
        rng = g.rng
        r = rng.random()
        if r < 0.50:
            name = rng.choice(g.sites).name
            t = rng.random()
            return [(name, q) for q in ((1, 28) if t < 0.45 else (1,) if t < 0.85 else (28,))]
        if r < 0.56:
            return [(rng.choice(g.sites).name, 5)]
        if r < 0.64:
            return [(rng.choice(_MAIL_DOMAINS), 15)]
        if r < 0.72:
            domain = rng.choice(_MAIL_DOMAINS)
            t = rng.random()
            prefix = "" if t < 0.5 else "_dmarc." if t < 0.75 else "selector1._domainkey."
            return [(prefix + domain, 16)]
        if r < 0.79:
            if rng.random() < 0.8:
                return [(rng.choice(self.ptr_names), 12)]
            return [(f"{rng.randint(1, 254)}.{rng.randint(0, 255)}.20.10.in-addr.arpa", 12)]
        if r < 0.89:
            label = f"e{rng.getrandbits(24)}.{rng.getrandbits(32):08x}"
            return [(f"{label}.{rng.choice(_CDN_ZONES)}", 1)]
        if rng.random() < 0.5:
            return [(rng.choice(_NX_NAMES), 1)]
        dga = self.token(_LOWER[:26], rng.randint(10, 18)).decode()
        return [(f"{dga}.{rng.choice(_TLDS)}", 1)]

    def lookup_flow(self) -> Iterator[bytes]:
        """Queries from one UDP socket and their answers; truncated ones asked again on TCP."""
        g = self.g
        rng = g.rng
        client = g.pick_client()
        v6, tags = g.placement("dns", client)
        resolver = g.resolver_int if rng.random() < 0.7 else rng.choice(g.resolvers_ext)
        label = rng.getrandbits(20)
        q = _Path(client, resolver, v6, tags, 17, df=client.os == "linux", flow_label=label)
        a = _Path(resolver, client, v6, tags, 17, df=False)
        sport = client.ephemeral() if client.os == "windows" else rng.randint(32768, 60999)
        edns = client.os != "windows" or rng.random() < 0.5
        qid = rng.getrandbits(16)
        msgs = [self.answer(name, t, edns) for name, t in self.questions()]
        for i, (query, _) in enumerate(msgs):
            yield q.udp(sport, 53, _with_id(query, qid + i))
        if rng.random() < 0.03:  # a lost reply: the stub resolver asks again
            yield q.udp(sport, 53, _with_id(msgs[0][0], qid))
        retry: list[tuple[bytes, bytes]] = []
        for i, (query, reply) in enumerate(msgs):
            if len(reply) > _TC_LIMIT[edns]:
                # Too big for UDP: the question comes back with TC set and no records.
                retry.append((query, reply))
                reply = query[:2] + struct.pack("!H", _RD_RA_TC) + query[4:]
            yield a.udp(53, sport, _with_id(reply, qid + i))
        if retry:
            yield from self.tcp_session(client, resolver, v6, tags, retry)

    def tcp_flow(self) -> Iterator[bytes]:
        """DNS over TCP from the start: zone checks and mail servers asking for MX and TXT."""
        g = self.g
        rng = g.rng
        client = g.pick_client()
        v6, tags = g.placement("dns_tcp", client)
        pairs = []
        for _ in range(rng.randint(1, 3)):
            domain = rng.choice(_MAIL_DOMAINS)
            pairs.append(self.answer(domain, 15 if rng.random() < 0.5 else 16, True))
        yield from self.tcp_session(client, g.resolver_int, v6, tags, pairs)

    def tcp_session(
        self,
        client: _Host,
        resolver: _Host,
        v6: bool,
        tags: bytes,
        pairs: Sequence[tuple[bytes, bytes]],
    ) -> Iterator[bytes]:
        """Handshake, length-prefixed queries and answers in turn (RFC 7766), FIN close."""
        g = self.g
        f = _TcpFlow(g, client, resolver, 53, v6, tags)
        yield from f.handshake(client.os, resolver.os)
        qid = g.rng.getrandbits(16)
        msgs = []
        for i, (query, reply) in enumerate(pairs):
            qm, rm = _with_id(query, qid + i), _with_id(reply, qid + i)
            msgs.append((0, len(qm) + 2, (struct.pack("!H", len(qm)), qm)))
            msgs.append((1, len(rm) + 2, (struct.pack("!H", len(rm)), rm)))
        yield from f.exchange(msgs)
        yield from f.close(p_rst=0.0)


def _dns_heavy(packets: int, seed: int, flows: int | None) -> Frames:
    g = _Gen(seed)
    dns = _Resolver(g)
    sites = _plain_http_sites(g)
    cats: list[Category] = [
        ("dns", 0.86, 0.80, dns.lookup_flow),
        ("dns_tcp", 0.03, 0.04, dns.tcp_flow),
        ("tls", 0.07, 0.10, lambda: g.tls_flow(_TLS_ROUNDS, TLS_MEDIAN, TLS_CAP)),
        ("http", 0.04, 0.06, lambda: g.http_flow(body_cap=HTTP_BODY_CAP, sites=sites)),
    ]
    return _run(g, packets, cats, DNS_GAP_NS)


# ------------------------------------------------------------------- http- and tls-heavy


def _http_heavy(packets: int, seed: int, flows: int | None) -> Frames:
    g = _Gen(seed)
    sites = _plain_http_sites(g)
    cats: list[Category] = [
        ("http", 0.93, 0.85, lambda: g.http_flow(_KEEPALIVE, HTTP_BODY_CAP, sites, p_rst=0.03)),
        ("dns", 0.07, 0.15, g.dns_flow),
    ]
    return _run(g, packets, cats, MEAN_GAP_NS)


def _tls_heavy(packets: int, seed: int, flows: int | None) -> Frames:
    g = _Gen(seed)
    cats: list[Category] = [
        ("tls", 0.93, 0.85, lambda: g.tls_flow(_TLS_ROUNDS, TLS_MEDIAN, TLS_CAP, p_rst=0.05)),
        ("dns", 0.07, 0.15, g.dns_flow),
    ]
    return _run(g, packets, cats, MEAN_GAP_NS)


# --------------------------------------------------------------------------- small-flood


def _pktgen_udp(g: _Gen, client: _Host, server: _Host) -> Iterator[bytes]:
    """Linux pktgen's UDP: to the discard port, 18 bytes of magic, sequence and send time."""
    path = _Path(client, server, False, b"", 17, df=False)
    sport = client.ephemeral()
    for seq in itertools.count():
        t = g.now_ns
        payload = struct.pack("!IIII2x", 0xBE9BE955, seq & SEQ_MASK, t // 10**9, t // 1000 % 10**6)
        yield path.udp(sport, 9, payload)


def _tiny_tcp(g: _Gen, client: _Host, server: _Host) -> Iterator[bytes]:
    """A TCP stream of 6-byte segments to the discard port, ACKed every second segment."""
    f = _TcpFlow(g, client, server, 9, False, b"")
    # No timestamps and an MSS-only SYN: anything more would push frames past 60 bytes.
    f.use_ts = False
    mss = struct.pack("!BBH", 2, 4, f.syn_mss[0])
    yield f.seg(0, SYN, b"", mss)
    yield f.seg(1, SYN | ACK, b"", struct.pack("!BBH", 2, 4, f.syn_mss[1]))
    yield f.seg(0, ACK)
    pool = _bin_pool()
    rng = g.rng
    while True:
        yield f.seg(0, PSH | ACK, _slice(rng, pool, 6))
        yield f.seg(0, PSH | ACK, _slice(rng, pool, 6))
        yield f.seg(1, ACK)


def _small_flood(packets: int, seed: int, flows: int | None) -> Frames:
    n = DEFAULT_FLOOD_FLOWS if flows is None else flows
    if n > MAX_FLOOD_FLOWS:
        raise ValueError(f"small-flood: at most {MAX_FLOOD_FLOWS} flows (all are open at once)")
    return _small_flood_frames(packets, seed, n)


def _small_flood_frames(packets: int, seed: int, n: int) -> Frames:
    g = _Gen(seed)
    rng = g.rng
    servers = g.internal_hosts
    open_flows: list[Iterator[bytes]] = []
    for i in range(n):
        client = g.pick_client()
        server = servers[i % len(servers)]
        tcp = i % 4 == 3  # a quarter of the flows are TCP
        open_flows.append(_tiny_tcp(g, client, server) if tcp else _pktgen_udp(g, client, server))
    ts = EPOCH_NS
    lam = 1.0 / FLOOD_JITTER_NS
    for _ in range(packets):
        ts += FLOOD_MIN_GAP_NS + int(rng.expovariate(lam))
        g.now_ns = ts
        yield ts, next(open_flows[int(rng.random() * n)])


# ----------------------------------------------------------------------------- syn-flood


def _syn_flood(packets: int, seed: int, flows: int | None) -> Frames:
    if packets > 1 << SYN_FLOW_BITS:
        raise ValueError(f"syn-flood: at most 2**{SYN_FLOW_BITS} distinct flows")
    return _syn_flood_frames(packets, seed)


def _syn_flood_frames(packets: int, seed: int) -> Frames:
    g = _Gen(seed)
    rng = g.rng
    victim = g.site_by_name["intranet.corp.example"].host
    key = rng.getrandbits(64)
    # One sender template per SYN style; each packet gives it a new address and port. The
    # flow objects are reused so a SYN costs one _Path and one segment, not a connection.
    styles = ("linux", "windows", "macos", "raw")  # raw: hping3, no options, window 512
    senders = []
    for os in styles:
        h = _Host(rng, os, b"\x00" * 4, None, g.gateway.mac, "linux" if os == "raw" else os, 64)
        f = _TcpFlow(g, h, victim, 80, False, b"")
        if os == "raw":
            f.win[0] = 512
        senders.append((os, h, f))
    ts = EPOCH_NS
    lam = 1.0 / SYN_GAP_NS
    for i in range(packets):
        ts += int(rng.expovariate(lam)) + 1
        g.now_ns = ts
        x = _permute(i, SYN_FLOW_BITS, key)
        sport = 32768 + (x & 0x7FFF)
        x >>= 15
        os, h, f = senders[int(rng.random() * 4)]
        h.ip4 = bytes((_SPOOF_FIRST[x >> 24], x >> 16 & 255, x >> 8 & 255, x & 255))
        h.ttl = (128 if os == "windows" else 64) - rng.randint(6, 24)
        dport = 443 if rng.random() < 0.25 else 80
        f.paths = (_Path(h, victim, False, b"", 6), f.paths[1])
        f.ports = ((sport, dport), (dport, sport))
        f.seq[0] = rng.getrandbits(32)
        yield ts, f.seg(0, SYN, b"", b"") if os == "raw" else f.syn(os)


# ----------------------------------------------------------------------------- ooo-holes


def _ooo_holes(packets: int, seed: int, flows: int | None) -> Frames:
    n = max(1, packets // OOO_PACKETS_PER_FLOW) if flows is None else flows
    if packets and n > packets:
        raise ValueError(f"ooo-holes: {n} flows need at least {n} packets")
    if -(-packets // n) > OOO_MAX_FLOW_PACKETS:
        raise ValueError(
            f"ooo-holes: at most {OOO_MAX_FLOW_PACKETS} packets per connection (a "
            f"connection's plan is held in memory); ask for at least "
            f"{-(-packets // OOO_MAX_FLOW_PACKETS)} flows"
        )
    return _ooo_frames(packets, seed, n)


def _ooo_frames(packets: int, seed: int, n: int) -> Frames:
    g = _Gen(seed)
    opened = itertools.count()
    base, extra = divmod(packets, n)

    def make() -> Iterator[bytes]:
        k = next(opened)
        if k >= n:
            return iter(())
        budget = base + (k < extra)  # the budgets add up to exactly `packets`
        return itertools.islice(_ooo_flow(g, budget), budget)

    conc = min(n, max(32, min(OOO_MAX_OPEN, packets // 400)))
    g.pool_size = {"ooo": conc}
    return interleave(g, packets, [make], [conc], [0] * 4096, MEAN_GAP_NS)


def _ooo_plan(g: _Gen, n: int, dups: int, acks: int, p_hole: float) -> tuple[int, list[int], int]:
    """Delivery order of one direction's `n` sent segments, with `dups` repeats and `acks`
    receiver ACKs mixed in.

    Returns (segments in the stream, counting the never-sent hole; events; segments the
    receiver holds in order at the end). Events are ints: ``index << 1`` sends segment
    `index`, ``prefix << 1 | 1`` is the receiver's ACK of its first `prefix` segments.
    """
    rng = g.rng
    rand = rng.random
    hole = rng.randint(*OOO_HOLE_SEGMENTS) if n >= 4 and rand() < p_hole else 0
    at = rng.randint(1, n - 1) if hole else n  # sent segments on both sides of the hole
    total = n + hole
    width = rng.choice(OOO_SHUFFLE_WIDTHS)
    # Sorting by index plus a random lead of up to `width` segments: each segment arrives up
    # to `width` places early, which makes holes that later segments fill.
    order = sorted(
        itertools.chain(range(at), range(at + hole, total)), key=lambda i: i + rand() * width
    )
    dup_at = sorted(rng.randint(1, n) for _ in range(dups))  # after which send, a repeat
    every = (n + dups) / acks if acks else 0.0
    due = every
    have = bytearray(total)
    prefix = 0
    events: list[int] = []
    sent = acked = 0
    j = 0
    for pos, idx in enumerate(order, 1):
        batch = [idx]
        while j < dups and dup_at[j] == pos:
            batch.append(order[int(rand() * pos)])  # a retransmission of an earlier send
            j += 1
        for seg in batch:
            events.append(seg << 1)
            have[seg] = 1
            while prefix < total and have[prefix]:
                prefix += 1
            sent += 1
            while acked < acks and sent >= due:
                events.append(prefix << 1 | 1)
                acked += 1
                due += every
    events.extend([prefix << 1 | 1] * (acks - acked))
    return total, events, prefix


def _ooo_flow(g: _Gen, budget: int) -> Iterator[bytes]:
    """One connection of exactly `budget` packets (cut short when under 7): handshake, the
    client's then the server's data out of order with repeats and holes, FIN both ways."""
    rng = g.rng
    client = g.pick_client()
    server, port = rng.choice(((g.fileserver, 445), (g.backup, 873), (g.nfs, 2049)))
    v6, tags = g.placement("ooo", client, qinq=False)
    f = _TcpFlow(g, client, server, port, v6, tags)
    yield from f.handshake(client.os, server.os)
    # What is left after 3 handshake and 4 teardown packets: about 1/6 receiver ACKs, 1/12
    # repeats, the rest first sends, 30 % of them the client's and 70 % the server's.
    room = max(0, budget - 7)
    acks, dups = room // 6, room // 12
    data = room - acks - dups
    sent = (data - data * 7 // 10, data * 7 // 10)
    start = (f.seq[0], f.seq[1])  # the first data byte of each direction
    length = [0, 0]  # bytes of each stream (holes included)
    got = [0, 0]  # bytes of each stream the receiver holds in order
    pool = _bin_pool()
    mss = f.mss[0]
    span = len(pool) - mss
    left_dups, left_acks = dups, acks
    for d in (0, 1):
        n = sent[d]
        if not n:
            continue
        # Repeats and ACKs in proportion to the direction's sends; the last one takes the rest.
        rest = d == 1 or not sent[1]
        dd = left_dups if rest else dups * n // data
        da = left_acks if rest else acks * n // data
        left_dups -= dd
        left_acks -= da
        total, events, prefix = _ooo_plan(g, n, dd, da, OOO_P_HOLE[d])
        last = rng.randint(1, mss)  # the last segment is short; all others are full
        length[d] = (total - 1) * mss + last
        e = 1 - d
        their_ack = start[e] + got[e]
        own = start[e] + length[e]  # where the receiver's own stream is: its ACKs' seq
        first = rng.randrange(span)  # where this stream's bytes start in the payload pool
        for ev in events:
            v = ev >> 1
            if ev & 1:
                yield _seg_at(f, e, ACK, own, start[d] + min(v * mss, length[d]))
            else:
                o = (first + v * mss) % span  # the same bytes every time a segment is sent
                k = last if v == total - 1 else mss
                flags = ACK | PSH if v == total - 1 else ACK
                yield _seg_at(f, d, flags, start[d] + v * mss, their_ack, pool[o : o + k])
        got[d] = min(prefix * mss, length[d])
    # The FIN of a stream with a hole is not acknowledged: the receiver still waits.
    fin_ok = [got[d] == length[d] for d in (0, 1)]
    c_end, s_end = start[0] + length[0], start[1] + length[1]
    yield _seg_at(f, 0, FIN | ACK, c_end, start[1] + got[1])
    yield _seg_at(f, 1, ACK, s_end, start[0] + got[0] + fin_ok[0])
    yield _seg_at(f, 1, FIN | ACK, s_end, start[0] + got[0] + fin_ok[0])
    yield _seg_at(f, 0, ACK, c_end + 1, start[1] + got[1] + fin_ok[1])


# ---------------------------------------------------------------------------- many-flows


def _ntp(mode: int, t_ns: int, stratum: int, orig: bytes = bytes(8)) -> bytes:
    """A 48-byte NTPv4 packet (mode 3 client, 4 server) stamped with the capture clock."""
    sec, frac = divmod(t_ns, 10**9)
    now = struct.pack("!II", (sec + 2_208_988_800) & SEQ_MASK, (frac << 32) // 10**9)
    if mode == 3:  # a client leaves everything but its transmit time zero (RFC 5905 9.1)
        return struct.pack("!BBbb", 0x23, 0, 6, -20) + bytes(36) + now
    head = struct.pack("!BBbbIII", 0x24, stratum, 6, -23, 0x1A, 0x2F, 0xC0A80001)
    return head + now + orig + now + now


def _many_flows(packets: int, seed: int, flows: int | None) -> Frames:
    if packets > 1 << MANY_FLOW_BITS:
        raise ValueError(f"many-flows: at most 2**{MANY_FLOW_BITS} packets")
    return _many_frames(packets, seed)


def _many_frames(packets: int, seed: int) -> Frames:
    g = _Gen(seed)
    rng = g.rng
    key = rng.getrandbits(64)
    opened = itertools.count()
    sites = _plain_http_sites(g)
    # Two public pools and the domain controller, which answers NTP as well as DNS.
    ntp_servers = [
        _Host(rng, "time.cloudflare.com", b"\xa2\x9f\xc8\x01", None, g.gateway.mac, "linux", 57),
        _Host(rng, "time.google.com", b"\xd8\xef\x23\x00", None, g.gateway.mac, "linux", 52),
        g.resolver_int,
    ]

    def new_client() -> tuple[_Host, int]:
        """The next flow's client and source port: distinct pairs, see `_permute`."""
        x = _permute(next(opened), MANY_FLOW_BITS, key)
        h = x >> 15
        os = "windows" if h % 20 < 9 else "macos" if h % 20 < 15 else "linux"
        ip4 = bytes((10, 64 | h >> 16, h >> 8 & 255, h & 255))
        host = _Host(
            rng,
            f"h{h}",
            ip4,
            _v6(0x40, h >> 16, h),
            g.gateway.mac,
            os,
            127 if os == "windows" else 63,
        )
        host.ua = rng.choice(_UA[os])
        return host, 32768 + (x & 0x7FFF)

    def tcp_flow() -> Iterator[bytes]:
        client, sport = new_client()
        site = rng.choice(sites)
        server = site.host
        v6 = server.ip6 is not None and rng.random() < P_V6
        f = _TcpFlow(g, client, server, 80, v6, b"")
        f.ports = ((sport, 80), (80, sport))
        yield from f.handshake(client.os, server.os)
        req, kind, path = g.http_request(site, client)
        size = min(g.body_size(kind), MANY_BODY_CAP)
        yield from f.exchange(
            [(0, len(req), (req,)), (1, *g.http_response(site, kind, path, size))]
        )
        yield from f.close(p_rst=0.0)

    def udp_flow() -> Iterator[bytes]:
        client, sport = new_client()
        if rng.random() < 0.7:
            server = g.resolver_int if rng.random() < 0.7 else rng.choice(g.resolvers_ext)
            dport = 53
            v6 = rng.random() < P_V6
            query, reply = g.dns_messages(
                rng.choice(g.sites).name, rng.choice((1, 28)), client.os != "windows"
            )
            qid = rng.getrandbits(16)
            request, response = _with_id(query, qid), _with_id(reply, qid)
        else:
            server, dport, v6 = rng.choice(ntp_servers), 123, False
            request = _ntp(3, g.now_ns, 0)
            response = b""
        out = _Path(
            client, server, v6, b"", 17, df=client.os == "linux", flow_label=rng.getrandbits(20)
        )
        back = _Path(server, client, v6, b"", 17, df=False)
        yield out.udp(sport, dport, request)
        if not response:  # the NTP server stamps its reply when it answers
            response = _ntp(4, g.now_ns, 2 if server.ip4[0] != 10 else 3, request[40:48])
        yield back.udp(dport, sport, response)

    cats: list[Category] = [("tcp", 0.75, 0.6, tcp_flow), ("udp", 0.25, 0.4, udp_flow)]
    return _run(g, packets, cats, MEAN_GAP_NS)


# ------------------------------------------------------------------------------ registry


class Profile(NamedTuple):
    """One named workload: a one-line summary, and its frames as a function of
    (packets, seed, flows); `takes_flows` says whether it honours `flows`."""

    summary: str
    frames: Callable[[int, int, int | None], Frames]
    takes_flows: bool = False


def _mixed(packets: int, seed: int, flows: int | None) -> Frames:
    return mixed_frames(packets, seed)


PROFILES: dict[str, Profile] = {
    "mixed": Profile("the realistic office mix (TLS, HTTP, bulk, DNS, ICMP, ARP)", _mixed),
    "dns-heavy": Profile(
        "mostly DNS over UDP (many types, NXDOMAIN, TC + TCP retries)", _dns_heavy
    ),
    "http-heavy": Profile("mostly HTTP/1.1 keep-alive connections on TCP/80", _http_heavy),
    "tls-heavy": Profile("mostly TLS 1.3 sessions on TCP/443", _tls_heavy),
    "small-flood": Profile(
        "60-byte UDP/TCP frames from FLOWS flows (default 16)", _small_flood, True
    ),
    "syn-flood": Profile("one SYN per flow, all (src ip, src port) distinct", _syn_flood),
    "ooo-holes": Profile(
        "FLOWS TCP connections (default packets/50), out of order, repeats, holes",
        _ooo_holes,
        True,
    ),
    "many-flows": Profile("short complete TCP/UDP flows from many hosts", _many_flows),
}


def profile_frames(profile: str, packets: int, seed: int, flows: int | None = None) -> Frames:
    """Frames of the named profile; ValueError for an unknown name or unusable arguments."""
    prof = PROFILES.get(profile)
    if prof is None:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    if flows is not None:
        if not prof.takes_flows:
            raise ValueError(f"profile {profile!r} does not take a number of flows")
        if flows < 1:
            raise ValueError("flows must be >= 1")
    return prof.frames(packets, seed, flows)
