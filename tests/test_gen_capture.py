"""Tests of the synthetic capture generator (pipeline.gen.capture_mix).

The generator feeds every benchmark and many tests, so these check what they rely on: the
same seed gives the same bytes, the packet count is exact, every frame parses with dpkt and
the protocol mix is there, and the checksums, lengths and TCP sequence numbers are right.
Captures are a few thousand packets so the whole file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from pipeline.gen import capture_mix
from pipeline.gen.capture_mix import EPOCH_NS, iter_frames, main, write_capture

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
