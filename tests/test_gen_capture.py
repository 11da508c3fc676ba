"""Tests of the synthetic capture generator (pipeline.gen.capture_mix).

The generator feeds every benchmark and many tests, so these check what they rely on: the
same seed gives the same bytes, the packet count is exact, every frame parses with dpkt and
the protocol mix is there, and the checksums, lengths and TCP sequence numbers are right.
Captures are a few thousand packets so the whole file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from pipeline.decode.packet import decode_packet
from pipeline.gen import capture_mix
from pipeline.gen.capture_mix import EPOCH_NS, iter_frames, main, write_capture
from pipeline.gen.profiles import PROFILES

N = 4000
SEED = 7
REPO = Path(__file__).resolve().parent.parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> list[tuple[float, bytes]]:
    """All (timestamp, frame) pairs of a pcap or pcapng file, read with dpkt."""
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        return [(float(ts), bytes(buf)) for ts, buf in reader]


def _ones_complement_ok(data: bytes) -> bool:
    """True when `data` (checksum field included) sums to 0xFFFF, i.e. the checksum is right."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@pytest.fixture(scope="module")
def pcap_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "mix.pcap"
    write_capture(str(path), N, SEED)
    return path


@pytest.fixture(scope="module")
def frames(pcap_file: Path) -> list[tuple[float, bytes]]:
    return _read(pcap_file)


@pytest.fixture(scope="module")
def mix(frames: list[tuple[float, bytes]]) -> Counter[str]:
    """Parse every frame with dpkt (any exception fails) and count what is in the mix."""
    c: Counter[str] = Counter()
    names = capture_mix._Gen(SEED).site_by_name
    for _, buf in frames:
        eth = dpkt.ethernet.Ethernet(buf)
        if buf[12:14] == b"\x81\x00":
            c["vlan"] += 1
        elif buf[12:14] == b"\x88\xa8":
            c["qinq"] += 1
        net = eth.data
        if isinstance(net, dpkt.arp.ARP):
            c["arp"] += 1
            continue
        if isinstance(net, dpkt.ip6.IP6):
            c["ipv6"] += 1
        else:
            assert isinstance(net, dpkt.ip.IP), type(net)
            c["ipv4"] += 1
        l4 = net.data
        if isinstance(l4, dpkt.tcp.TCP):
            c["tcp"] += 1
            if l4.flags & dpkt.tcp.TH_SYN and not l4.flags & dpkt.tcp.TH_ACK:
                c["syn"] += 1
            payload = bytes(l4.data)
            if payload[:4] in (b"GET ", b"POST"):
                req = dpkt.http.Request(payload)
                assert req.headers["host"]
                assert "user-agent" in req.headers
                c["http_request"] += 1
                c["http_" + req.method] += 1
                c["http_query"] += "?" in req.uri
            elif payload[:5] == b"HTTP/":
                c["http_response_" + payload[9:12].decode()] += 1
                c["http_chunked"] += b"Transfer-Encoding: chunked" in payload
            elif payload[:3] == b"\x16\x03\x01":
                try:
                    record = dpkt.ssl.TLSRecord(payload)
                except dpkt.NeedData:  # a post-quantum ClientHello spans two segments
                    c["tls_client_hello_split"] += 1
                    continue
                hello = dpkt.ssl.TLSHandshake(record.data).data
                assert isinstance(hello, dpkt.ssl.TLSClientHello)
                exts = dict(hello.extensions)
                sni = exts[0][5:].decode()  # list length, name type, name length, name
                assert sni in names
                assert b"http/1.1" in exts[16]  # ALPN (h2 too, mostly)
                assert 43 in exts and 51 in exts  # supported_versions, key_share
                c["tls_alpn_h2"] += b"\x02h2" in exts[16]
                c["tls_client_hello"] += 1
                c["tls_grease"] += any(cs.code & 0x0F0F == 0x0A0A for cs in hello.ciphersuites)
        elif isinstance(l4, dpkt.udp.UDP):
            c["udp"] += 1
            if 53 in (l4.sport, l4.dport):
                msg = dpkt.dns.DNS(bytes(l4.data))
                c["dns"] += 1
                if msg.qr == dpkt.dns.DNS_R and msg.an:
                    c["dns_answers"] += 1
                    for rr in msg.an:
                        c[f"dns_rr_{rr.type}"] += 1
                c["dns_compressed"] += b"\xc0\x0c" in bytes(l4.data)
        elif isinstance(l4, dpkt.icmp.ICMP):
            c["icmp"] += 1
            if l4.type == dpkt.icmp.ICMP_UNREACH:
                c["icmp_unreach"] += 1
                quoted = l4.data.data  # the original IP packet with its UDP header
                assert isinstance(quoted, dpkt.ip.IP)
                assert quoted.p == dpkt.ip.IP_PROTO_UDP
        elif isinstance(l4, dpkt.icmp6.ICMP6):
            c["icmp6"] += 1
    return c


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, pcap_file: Path) -> None:
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    write_capture(str(again), N, SEED)
    write_capture(str(other), N, SEED + 1)
    assert _sha256(again) == _sha256(pcap_file)
    assert _sha256(other) != _sha256(pcap_file)


def test_pcapng_and_nanosecond_are_deterministic(tmp_path: Path) -> None:
    for fmt, ns in (("pcapng", False), ("pcapng", True), ("pcap", True)):
        a, b = tmp_path / f"a-{fmt}-{ns}", tmp_path / f"b-{fmt}-{ns}"
        write_capture(str(a), 500, 3, fmt, ns)
        write_capture(str(b), 500, 3, fmt, ns)
        assert _sha256(a) == _sha256(b)


def test_packet_count_is_exact(tmp_path: Path, frames: list[tuple[float, bytes]]) -> None:
    assert len(frames) == N
    for n in (0, 1, 2, 3, 999):
        path = tmp_path / f"{n}.pcap"
        write_capture(str(path), n, 1)
        assert len(_read(path)) == n


def test_classic_pcap_header(pcap_file: Path) -> None:
    magic, major, minor, _, _, snaplen, linktype = struct.unpack(
        "<IHHiIII", pcap_file.read_bytes()[:24]
    )
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    assert snaplen >= 1518


def test_every_protocol_of_the_mix_is_present(mix: Counter[str]) -> None:
    for key in (
        "syn",
        "http_request",
        "http_GET",
        "http_query",
        "http_response_200",
        "tls_client_hello",
        "tls_grease",
        "tls_alpn_h2",
        "dns_answers",
        "dns_rr_1",  # A
        "dns_rr_28",  # AAAA
        "dns_rr_5",  # CNAME
        "dns_compressed",
        "ipv6",
        "icmp",
        "arp",
        "vlan",
    ):
        assert mix[key] > 0, key


def test_mix_proportions_are_roughly_as_documented(mix: Counter[str]) -> None:
    assert 0.75 < mix["tcp"] / N < 0.95
    assert 0.07 < mix["dns"] / N < 0.15
    assert 0.01 < mix["icmp"] / N + mix["icmp6"] / N < 0.06
    assert 0.002 < mix["arp"] / N < 0.03
    assert 0.04 < mix["ipv6"] / N < 0.18
    assert 0.005 < mix["vlan"] / N < 0.12  # per flow, so noisy on a small capture


def test_rare_frames_parse() -> None:
    """QinQ (0.2 % of flows), ICMPv6 echo and port unreachable are rare: find them in 60k."""
    found: Counter[str] = Counter()
    for _, fr in iter_frames(60_000, SEED):
        if fr[12:14] == b"\x88\xa8":
            eth = dpkt.ethernet.Ethernet(fr)
            assert eth.type == 0x88A8
            assert len(eth.vlan_tags) == 2  # dpkt keeps, per tag, the type that follows it
            assert eth.vlan_tags[0].type == 0x8100
            assert isinstance(eth.data, (dpkt.ip.IP, dpkt.ip6.IP6, dpkt.arp.ARP))
            found["qinq"] += 1
        elif fr[12:14] == b"\x86\xdd" and fr[20] == 58:
            icmp6 = dpkt.ethernet.Ethernet(fr).data.data
            assert isinstance(icmp6, dpkt.icmp6.ICMP6)
            assert icmp6.type in (dpkt.icmp6.ICMP6_ECHO_REQUEST, dpkt.icmp6.ICMP6_ECHO_REPLY)
            found["icmp6"] += 1
        elif fr[12:14] == b"\x08\x00" and fr[23] == 1 and fr[34] == 3:
            icmp = dpkt.ethernet.Ethernet(fr).data.data
            quoted = icmp.data.data  # the probe's IP header and UDP datagram
            assert isinstance(quoted, dpkt.ip.IP)
            assert isinstance(quoted.data, dpkt.udp.UDP)
            found["unreach"] += 1
    assert found["qinq"] and found["icmp6"] and found["unreach"], found


def test_headers_checksums_and_tcp_sequence(frames: list[tuple[float, bytes]]) -> None:
    """IPv4 header, TCP, UDP and ICMP(v6) checksums, IP/UDP lengths, and per-flow seq/ack."""
    next_seq: dict[tuple[bytes, bytes, int, int], int] = {}
    macs: dict[bytes, bytes] = {}
    for _, buf in frames:
        assert len(buf) >= 60
        off = 12
        ethertype = int.from_bytes(buf[off : off + 2], "big")
        while ethertype in (0x8100, 0x88A8):
            off += 4
            ethertype = int.from_bytes(buf[off : off + 2], "big")
        off += 2
        if ethertype == 0x0806:
            spa, sha = buf[off + 14 : off + 18], buf[off + 8 : off + 14]
            assert macs.setdefault(spa, sha) == sha, "one MAC per IPv4 address"
            continue
        if ethertype == 0x0800:
            ihl = (buf[off] & 15) * 4
            total = int.from_bytes(buf[off + 2 : off + 4], "big")
            assert off + total <= len(buf)
            assert _ones_complement_ok(buf[off : off + ihl])
            proto, src, dst = buf[off + 9], buf[off + 12 : off + 16], buf[off + 16 : off + 20]
            l4 = buf[off + ihl : off + total]
            pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
            if src[:2] == b"\x0a\x14":  # a local host: its frames carry its own MAC
                assert macs.setdefault(src, buf[6:12]) == buf[6:12]
        else:
            assert ethertype == 0x86DD
            plen = int.from_bytes(buf[off + 4 : off + 6], "big")
            proto, src, dst = buf[off + 6], buf[off + 8 : off + 24], buf[off + 24 : off + 40]
            l4 = buf[off + 40 : off + 40 + plen]
            assert len(l4) == plen
            pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
        if proto == 1:
            assert _ones_complement_ok(l4)
        else:
            assert proto in (6, 17, 58)
            assert _ones_complement_ok(pseudo + l4), proto
        if proto == 17:
            assert int.from_bytes(l4[4:6], "big") == len(l4)
        if proto != 6:
            continue
        sport, dport, seq, ack, hlen, flags = struct.unpack("!HHIIBB", l4[:14])
        key, back = (src, dst, sport, dport), (dst, src, dport, sport)
        payload = len(l4) - (hlen >> 4) * 4
        if flags & 0x02:  # SYN (or a retransmitted SYN)
            next_seq[key] = (seq + 1) & 0xFFFFFFFF
            continue
        if key in next_seq:
            assert seq == next_seq[key]
            next_seq[key] = (seq + payload + (flags & 0x01)) & 0xFFFFFFFF
        if flags & 0x10 and back in next_seq:
            assert ack == next_seq[back]


def test_timestamps_start_at_epoch_and_never_go_back(frames: list[tuple[float, bytes]]) -> None:
    stamps = [ts for ts, _ in frames]
    assert stamps == sorted(stamps)
    assert EPOCH_NS / 1e9 <= stamps[0] < EPOCH_NS / 1e9 + 1
    # ~100k packets/s of capture time, so N packets span about N / 100k seconds.
    assert 0.5 * N / 100_000 < stamps[-1] - stamps[0] < 2 * N / 100_000


@pytest.mark.parametrize(
    ("fmt", "nanosecond"), [("pcapng", False), ("pcapng", True), ("pcap", True)]
)
def test_other_formats_hold_the_same_frames(
    tmp_path: Path, frames: list[tuple[float, bytes]], fmt: str, nanosecond: bool
) -> None:
    path = tmp_path / f"mix.{fmt}"
    write_capture(str(path), N, SEED, fmt, nanosecond)
    if fmt == "pcap":
        assert path.read_bytes()[:4] == struct.pack("<I", 0xA1B23C4D)
    got = _read(path)
    assert [fr for _, fr in got] == [fr for _, fr in frames]
    for (ts, _), (ref, _) in zip(got, frames, strict=True):
        assert abs(ts - ref) < 2e-6


def test_nanosecond_timestamps_keep_nanoseconds(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    write_capture(str(path), 200, 5, "pcap", True)
    data = path.read_bytes()
    fracs, off = [], 24
    while off < len(data):
        _, frac, caplen, _ = struct.unpack("<IIII", data[off : off + 16])
        fracs.append(frac)
        off += 16 + caplen
    assert all(f < 1_000_000_000 for f in fracs)
    assert any(f % 1000 for f in fracs)  # not just microseconds times 1000
    want = [ts % 1_000_000_000 for ts, _ in iter_frames(200, 5)]
    assert fracs == want


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_capture(str(tmp_path / "x"), 10, 1, fmt="erf")
    with pytest.raises(ValueError):
        write_capture(str(tmp_path / "x"), -1, 1)


def test_stretch_multiplies_capture_time_and_keeps_the_frames(tmp_path: Path) -> None:
    """`stretch` (the constant-memory benchmark's slower link): the same frames, each gap
    from the first frame multiplied, to the nanosecond."""
    plain, slow = tmp_path / "plain.pcap", tmp_path / "slow.pcap"
    write_capture(str(plain), 500, SEED, nanosecond=True)
    write_capture(str(slow), 500, SEED, nanosecond=True, stretch=50)
    ts_plain, ts_slow = _read_ns(plain), _read_ns(slow)
    assert [frame for _, frame in ts_plain] == [frame for _, frame in ts_slow]
    first = ts_plain[0][0]
    assert ts_slow[0][0] == first
    assert [ts for ts, _ in ts_slow] == [first + (ts - first) * 50 for ts, _ in ts_plain]
    assert ts_slow[-1][0] - first > 40 * (ts_plain[-1][0] - first)
    with pytest.raises(ValueError):
        write_capture(str(tmp_path / "x"), 10, 1, stretch=0)
    with pytest.raises(SystemExit) as refused:
        main(["-n", "10", "-o", str(tmp_path / "y"), "--stretch", "-1"])
    assert refused.value.code == 2


def _read_ns(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp ns, frame) of a nanosecond little-endian pcap, read with struct."""
    data = path.read_bytes()
    assert data[:4] == struct.pack("<I", 0xA1B23C4D)
    records, at = [], 24
    while at < len(data):
        seconds, nanos, caplen, _ = struct.unpack_from("<IIII", data, at)
        records.append((seconds * 10**9 + nanos, data[at + 16 : at + 16 + caplen]))
        at += 16 + caplen
    return records


def test_cli_and_module_entry_points(tmp_path: Path, pcap_file: Path) -> None:
    via_main = tmp_path / "main.pcap"
    assert main(["--packets", str(N), "--seed", str(SEED), "-o", str(via_main)]) == 0
    assert _sha256(via_main) == _sha256(pcap_file)
    script = tmp_path / "script.pcapng"
    run = [sys.executable, str(REPO / "scripts" / "gen_capture.py"), "--packets", "300"]
    subprocess.run([*run, "--seed", "2", "-o", str(script), "--format", "pcapng"], check=True)
    module = tmp_path / "module.pcapng"
    fmt = ("--format", "pcapng")
    subprocess.run(
        [sys.executable, "-m", "pipeline.gen", "-n", "300", "-s", "2", "-o", str(module), *fmt],
        check=True,
        cwd=REPO,
    )
    assert _sha256(script) == _sha256(module)
    assert len(_read(module)) == 300


# ------------------------------------------------------------------------- named profiles

P_N = 3000  # packets per profile capture: enough for every feature, a second or less each
OTHER_PROFILES = [name for name in PROFILES if name != "mixed"]
# sha256 of write_capture(path, 2000, 7): the mix must not change when profiles are added or
# tuned. Change it only on purpose, and say why in the commit.
MIXED_2000_SEED7_SHA256 = "0450dd020083b627d91ae3563679d0cb4afe682b928e9840107f5fcdfe480ca0"


@pytest.fixture(scope="module")
def profile_frames() -> dict[str, list[tuple[int, bytes]]]:
    """P_N frames of every profile with SEED, made once for the module."""
    return {name: list(iter_frames(P_N, SEED, name)) for name in PROFILES}


def _ip_l4_checked(buf: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(protocol, src, dst, L4 bytes) of an IP frame whose IPv4 header, TCP/UDP/ICMP checksums
    and lengths have been checked."""
    off = 12
    ethertype = int.from_bytes(buf[off : off + 2], "big")
    while ethertype in (0x8100, 0x88A8):
        off += 4
        ethertype = int.from_bytes(buf[off : off + 2], "big")
    off += 2
    if ethertype == 0x0800:
        ihl = (buf[off] & 15) * 4
        total = int.from_bytes(buf[off + 2 : off + 4], "big")
        assert off + total <= len(buf)
        assert _ones_complement_ok(buf[off : off + ihl])
        proto, src, dst = buf[off + 9], buf[off + 12 : off + 16], buf[off + 16 : off + 20]
        l4 = buf[off + ihl : off + total]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    else:
        assert ethertype == 0x86DD
        plen = int.from_bytes(buf[off + 4 : off + 6], "big")
        proto, src, dst = buf[off + 6], buf[off + 8 : off + 24], buf[off + 24 : off + 40]
        l4 = buf[off + 40 : off + 40 + plen]
        assert len(l4) == plen
        pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
    assert _ones_complement_ok(l4 if proto == 1 else pseudo + l4), proto
    if proto == 17:
        assert int.from_bytes(l4[4:6], "big") == len(l4)
    return proto, src, dst, l4


def _transport(buf: bytes) -> tuple[dpkt.Packet, dpkt.Packet]:
    """(IP, TCP/UDP) of a frame, through dpkt (any VLAN tags skipped)."""
    ip = dpkt.ethernet.Ethernet(buf).data
    return ip, ip.data


def test_mixed_profile_is_byte_identical_to_the_mix(tmp_path: Path) -> None:
    default, named = tmp_path / "default.pcap", tmp_path / "named.pcap"
    write_capture(str(default), 2000, SEED)
    write_capture(str(named), 2000, SEED, profile="mixed")
    assert _sha256(default) == _sha256(named) == MIXED_2000_SEED7_SHA256


@pytest.mark.parametrize("profile", OTHER_PROFILES)
def test_profile_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, profile: str) -> None:
    a, b, c = (tmp_path / f"{k}.pcap" for k in "abc")
    write_capture(str(a), 1000, SEED, profile=profile)
    write_capture(str(b), 1000, SEED, profile=profile)
    write_capture(str(c), 1000, SEED + 1, profile=profile)
    assert _sha256(a) == _sha256(b)
    assert _sha256(c) != _sha256(a)


@pytest.mark.parametrize("profile", OTHER_PROFILES)
def test_profile_count_decode_checksums_and_clock(
    tmp_path: Path, profile: str, profile_frames: dict[str, list[tuple[int, bytes]]]
) -> None:
    """Exact count (also tiny ones), every frame decodes with no error, checksums hold, the
    clock starts at the epoch and always moves forward."""
    frames = profile_frames[profile]
    assert len(frames) == P_N
    for n in (0, 1, 7, 100):
        path = tmp_path / f"{n}.pcap"
        write_capture(str(path), n, 1, profile=profile)
        assert len(_read(path)) == n
    stamps = [ts for ts, _ in frames]
    assert EPOCH_NS <= stamps[0] < EPOCH_NS + 10**9
    assert all(b > a for a, b in itertools.pairwise(stamps))
    for _, buf in frames:
        assert len(buf) >= 60
        pkt = decode_packet(1, buf)
        assert pkt.error is None, (pkt.error, pkt.error_layer, pkt.error_detail)
        _ip_l4_checked(buf)


def test_dns_heavy_is_mostly_dns_of_many_kinds(
    profile_frames: dict[str, list[tuple[int, bytes]]],
) -> None:
    c: Counter[str] = Counter()
    tcp53: dict[tuple[bytes, int], bytes] = {}
    for _, buf in profile_frames["dns-heavy"]:
        _, l4 = _transport(buf)
        if isinstance(l4, dpkt.udp.UDP) and 53 in (l4.sport, l4.dport):
            c["udp53"] += 1
            msg = dpkt.dns.DNS(bytes(l4.data))
            c[f"qtype_{msg.qd[0].type}"] += 1
            if msg.qr == dpkt.dns.DNS_R:
                c[f"rcode_{msg.rcode}"] += 1
                c["truncated"] += bool(msg.op & 0x0200)  # dpkt keeps TC inside `op`
        elif isinstance(l4, dpkt.tcp.TCP) and 53 in (l4.sport, l4.dport):
            c["tcp53"] += 1
            if l4.data:  # a DNS-over-TCP stream: 2-byte length, then the message
                key = (bytes(_transport(buf)[0].src), l4.sport)
                tcp53[key] = tcp53.get(key, b"") + bytes(l4.data)
    assert c["udp53"] > 0.75 * P_N, c
    for t in (1, 28, 5, 15, 16, 12):  # A, AAAA, CNAME, MX, TXT, PTR
        assert c[f"qtype_{t}"] > 0, t
    assert c["rcode_3"] > 0 and c["rcode_0"] > 0 and c["truncated"] > 0, c
    assert 0 < c["tcp53"] < 0.1 * P_N, c
    parsed = 0
    for stream in tcp53.values():
        while len(stream) >= 2:
            n = int.from_bytes(stream[:2], "big")
            if len(stream) < 2 + n:
                break  # cut off by the end of the capture
            dpkt.dns.DNS(stream[2 : 2 + n])
            parsed += 1
            stream = stream[2 + n :]
    assert parsed > 0


def test_http_heavy_is_keep_alive_http(
    profile_frames: dict[str, list[tuple[int, bytes]]],
) -> None:
    c: Counter[str] = Counter()
    per_conn: Counter[tuple[bytes, int]] = Counter()
    for _, buf in profile_frames["http-heavy"]:
        ip, l4 = _transport(buf)
        if not isinstance(l4, dpkt.tcp.TCP):
            continue
        c["tcp80"] += 80 in (l4.sport, l4.dport)
        c["syn"] += l4.flags == dpkt.tcp.TH_SYN
        c["fin"] += bool(l4.flags & dpkt.tcp.TH_FIN)
        payload = bytes(l4.data)
        if payload[:4] in (b"GET ", b"POST"):
            req = dpkt.http.Request(payload)
            assert req.headers["host"]
            c["request_" + req.method] += 1
            per_conn[(bytes(ip.src), l4.sport)] += 1
        elif payload[:5] == b"HTTP/":
            head = payload.split(b"\r\n\r\n", 1)[0]
            c["chunked"] += b"Transfer-Encoding: chunked" in head
            c["content_length"] += b"Content-Length:" in head
    assert c["tcp80"] > 0.8 * P_N, c
    for key in ("syn", "fin", "request_GET", "request_POST", "chunked", "content_length"):
        assert c[key] > 0, key
    assert max(per_conn.values()) >= 3  # keep-alive: several requests on one connection
    assert sum(per_conn.values()) > 1.5 * len(per_conn)


def test_tls_heavy_client_hellos_parse_and_carry_sni(
    profile_frames: dict[str, list[tuple[int, bytes]]],
) -> None:
    names = capture_mix._Gen(SEED).site_by_name
    client_data: dict[tuple[bytes, int], list[bytes]] = {}
    tcp443 = server_hellos = 0
    for _, buf in profile_frames["tls-heavy"]:
        ip, l4 = _transport(buf)
        if not isinstance(l4, dpkt.tcp.TCP) or 443 not in (l4.sport, l4.dport):
            continue
        tcp443 += 1
        payload = bytes(l4.data)
        if l4.dport == 443 and payload:
            client_data.setdefault((bytes(ip.src), l4.sport), []).append(payload)
        elif payload[:3] == b"\x16\x03\x03" and payload[5] == 2:
            server_hellos += 1
    hellos = split = 0
    for segments in client_data.values():
        assert segments[0][:3] == b"\x16\x03\x01"  # every connection opens in the capture
        try:
            record = dpkt.ssl.TLSRecord(segments[0])
        except dpkt.NeedData:  # a post-quantum hello spans two segments
            if len(segments) < 2:
                continue  # its second segment is after the end of the capture
            split += 1
            record = dpkt.ssl.TLSRecord(segments[0] + segments[1])
        hello = dpkt.ssl.TLSHandshake(record.data).data
        assert isinstance(hello, dpkt.ssl.TLSClientHello)
        exts = dict(hello.extensions)
        assert exts[0][5:].decode() in names  # SNI: list length, name type, name length, name
        assert b"http/1.1" in exts[16] and 43 in exts and 51 in exts  # ALPN, versions, share
        hellos += 1
    assert tcp443 > 0.8 * P_N
    assert hellos > 20 and split > 0 and server_hellos > 0, (hellos, split, server_hellos)


def test_small_flood_is_minimum_frames_from_few_flows(
    tmp_path: Path, profile_frames: dict[str, list[tuple[int, bytes]]]
) -> None:
    def flows(frames: list[tuple[int, bytes]]) -> set[tuple[int, frozenset[tuple[bytes, int]]]]:
        out = set()
        for _, buf in frames:
            assert len(buf) == 60  # 64 on the wire with the FCS
            ip, l4 = _transport(buf)
            ends = frozenset(((bytes(ip.src), l4.sport), (bytes(ip.dst), l4.dport)))
            out.add((ip.p, ends))
        return out

    default = flows(profile_frames["small-flood"])
    assert len(default) == 16
    assert {p for p, _ in default} == {6, 17}
    path = tmp_path / "flood.pcap"
    write_capture(str(path), 2000, SEED, profile="small-flood", flows=5)
    assert len(flows([(0, fr) for _, fr in _read(path)])) == 5


def test_syn_flood_is_distinct_syn_only_flows(
    profile_frames: dict[str, list[tuple[int, bytes]]],
) -> None:
    seen = set()
    for _, buf in profile_frames["syn-flood"]:
        ip, l4 = _transport(buf)
        assert isinstance(l4, dpkt.tcp.TCP)
        assert l4.flags == dpkt.tcp.TH_SYN and not l4.data
        seen.add((bytes(ip.src), l4.sport, bytes(ip.dst), l4.dport))
    assert len(seen) == P_N


def test_ooo_holes_reorders_repeats_and_leaves_holes(
    tmp_path: Path, profile_frames: dict[str, list[tuple[int, bytes]]]
) -> None:
    """packets // 50 connections that all open and close; in most directions the data comes
    out of order, some segments come twice, and some streams have bytes never sent."""
    # Per direction: the first data byte (ISN + 1), data ranges relative to it in the order
    # sent, and the FIN's relative sequence number (the stream's length).
    start: dict[tuple[bytes, int, bytes, int], int] = {}
    sent: dict[tuple[bytes, int, bytes, int], list[tuple[int, int]]] = {}
    end: dict[tuple[bytes, int, bytes, int], int] = {}
    for _, buf in profile_frames["ooo-holes"]:
        ip, l4 = _transport(buf)
        key = (bytes(ip.src), l4.sport, bytes(ip.dst), l4.dport)
        if l4.flags & dpkt.tcp.TH_SYN:
            assert key not in start
            start[key] = l4.seq + 1
            continue
        rel = (l4.seq - start[key]) & 0xFFFFFFFF
        if l4.data:
            sent.setdefault(key, []).append((rel, rel + len(l4.data)))
        if l4.flags & dpkt.tcp.TH_FIN:
            end[key] = rel
    assert len(start) == 2 * (P_N // 50)  # both directions of packets // 50 connections
    assert len(end) == len(start)  # every connection closes both ways
    reordered = repeated = holed = 0
    for key, ranges in sent.items():
        firsts = [a for a, _ in ranges]
        reordered += firsts != sorted(firsts)
        repeated += len(set(ranges)) < len(ranges)
        covered = reach = 0  # bytes sent at least once; the end of the union so far
        for a, b in sorted(set(ranges)):
            assert b <= end[key]
            if b > reach:
                covered += b - max(a, reach)
                reach = b
        holed += covered < end[key]  # some bytes before the FIN were never sent
    assert reordered > len(sent) // 2 and repeated > 0 and holed > 0, (reordered, holed)
    path = tmp_path / "ooo.pcap"
    write_capture(str(path), 1000, SEED, profile="ooo-holes", flows=7)
    syns = sum(1 for _, fr in _read(path) if _transport(fr)[1].flags == dpkt.tcp.TH_SYN)
    assert syns == 7


def test_many_flows_is_many_short_complete_flows(
    profile_frames: dict[str, list[tuple[int, bytes]]],
) -> None:
    flows: set[tuple[int, bytes, int]] = set()
    hosts: set[bytes] = set()
    c: Counter[str] = Counter()
    for _, buf in profile_frames["many-flows"]:
        ip, l4 = _transport(buf)
        if isinstance(l4, dpkt.tcp.TCP):
            c["syn"] += l4.flags == dpkt.tcp.TH_SYN
            c["fin"] += bool(l4.flags & dpkt.tcp.TH_FIN)
            c["request"] += bytes(l4.data[:4]) == b"GET "
        elif l4.dport == 53:
            dpkt.dns.DNS(bytes(l4.data))
        elif l4.dport == 123:
            assert len(l4.data) == 48
        client = (ip.src, l4.sport) if l4.sport > 1023 else (ip.dst, l4.dport)
        flows.add((ip.p, bytes(client[0]), client[1]))
        hosts.add(bytes(client[0]))
    assert len(flows) > P_N // 8  # short flows: about 200 per 1000 packets
    assert len(hosts) > 0.8 * len(flows)  # from many hosts
    assert c["syn"] > 0 and c["request"] > 0.8 * c["syn"] and c["fin"] > c["syn"]


def test_profile_arguments_are_checked_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with pytest.raises(ValueError, match="unknown profile"):
        write_capture(str(path), 10, 1, profile="nope")
    with pytest.raises(ValueError, match="flows"):
        write_capture(str(path), 10, 1, profile="tls-heavy", flows=3)
    with pytest.raises(ValueError, match="flows"):
        write_capture(str(path), 10, 1, profile="ooo-holes", flows=11)
    with pytest.raises(ValueError, match="per connection"):
        iter_frames(10**6, 1, "ooo-holes", flows=1)
    assert not path.exists()


def test_cli_profile_and_flows(tmp_path: Path) -> None:
    via_cli, via_api = tmp_path / "cli.pcap", tmp_path / "api.pcap"
    args = ["-n", "500", "-s", "3", "--profile", "ooo-holes", "--flows", "4"]
    assert main([*args, "-o", str(via_cli)]) == 0
    write_capture(str(via_api), 500, 3, profile="ooo-holes", flows=4)
    assert _sha256(via_cli) == _sha256(via_api)
    with pytest.raises(SystemExit):
        main(["-n", "5", "--profile", "dns-heavy", "--flows", "2", "-o", str(tmp_path / "y")])
