"""Map decoded frames to Elastic Common Schema event dicts (the only place that knows ECS).

Records in, dicts out, just before serialisation. Field choices:

* ECS fields where ECS has one: ``@timestamp`` (RFC 3339, nanoseconds), ``event.*``,
  ``source``/``destination`` ``ip``/``port``/``mac`` (MACs as ECS asks: upper case, hyphens),
  ``network.type``/``transport``/``iana_number``/``community_id``/``bytes``/``packets``,
  ``network.vlan.id`` and ``network.inner.vlan.id`` (keywords, so strings), ``error.type`` and
  ``error.message`` on anomalies.
* What ECS has no field for lives under the custom ``pcap`` object: provenance
  (``pcap.file``, ``pcap.frame`` — 1-based as tshark counts —, ``pcap.offset``,
  ``pcap.interface``, ``pcap.link_type``, ``pcap.caplen``, ``pcap.len``) and packet detail
  (``pcap.ethertype``, ``pcap.ttl``, ``pcap.ip_id``/``fragment_offset``/``more_fragments``,
  ``pcap.tcp_flags``/``tcp_seq``/``tcp_ack``/``tcp_window``, ``pcap.icmp_type``/``icmp_code``,
  ``pcap.anomaly_layer``). One flat custom object: every nested dict is an allocation and a
  ``dumps`` step per packet.

``event.id`` is ``<capture key>-<frame number>``: the capture key hashes the first frame's
timestamp and bytes, so the same capture gives the same ids whether it is read as pcap,
pcapng or compressed, and re-running a conversion gives the same ids.

Everything here runs once per packet, so per-value conversions (addresses, MACs, the
timestamp's seconds part) are memoised in bounded dicts, and constant sub-values (category
lists, flag-name tuples) are built once.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.capture.frame import Frame, FramingError
from pipeline.decode.icmp import QUOTE_OFFSET, QuotedFlow, quoted_flow
from pipeline.decode.icmp import is_error as is_icmp_error
from pipeline.decode.packet import Packet
from pipeline.decode.transport import TCP_FLAG_NAMES, TRANSPORT_NAMES
from pipeline.events.community_id import CommunityIdCache
from pipeline.extract import ExtractorAnomaly, tcp_sides
from pipeline.extract.dns import DnsTransaction, transaction_parts
from pipeline.extract.http import HttpMessage, HttpTransaction, sniff_mime_type
from pipeline.extract.tls import ClientHello, TlsHandshake, ja3, ja3s, ja4
from pipeline.flows.table import Flow
from pipeline.flows.traffic import NS, PROTOCOL_CLASSES, TrafficSummary

ECS_VERSION = "8.11.0"
DATASET_PACKET = "pcap_ingest.packet"
DATASET_ANOMALY = "pcap_ingest.anomaly"
DATASET_FLOW = "pcap_ingest.flow"
DATASET_STATS = "pcap_ingest.stats"
DATASET_TLS = "pcap_ingest.tls"
DATASET_HTTP = "pcap_ingest.http"
_CATEGORY_WEB = ("network", "web")
_TLS_VERSIONS = {0x0300: "3.0", 0x0301: "1.0", 0x0302: "1.1", 0x0303: "1.2", 0x0304: "1.3"}
_TYPE_PROTOCOL = ("protocol",)
MODULE = "pcap_ingest"

# Capture sets: a flow table's frame number → (file, capture key, frame number in the file).
FrameLocator = Callable[[int], tuple[str, str, int]]

# Memo tables are cleared whole when full: O(1), bounded, and the hit path is one look-up.
# 16k entries: a worker's per-direction memo reaches its size within ~150k packets of the
# mix, so peak memory does not depend on the input's length (issue #9), and misses 11.9 %
# of packets against 10.3 % with 64k entries (~1 % of the packet path's time; RESULTS.md).
MEMO_SIZE = 1 << 14
# ClientHello offers whose rendering is kept (`EcsMapper._client_hello_texts`): a few
# kilobytes each, and real captures hold a handful of client programs.
HELLO_MEMO_SIZE = 1024
# (JA3 text, JA3 hash, JA4, client version, offered versions, ciphers, ALPN)
_HelloTexts = tuple[str, str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# RFC 3339 cannot say years past 9999; a corrupt timestamp is clamped there (the frame still
# gets its event, and the raw value stays in pcap.ts_ns).
_MAX_SECONDS = 253402300799
_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z

# Built once: orjson serialises tuples as arrays, and sharing them costs no allocation.
_CATEGORY_NETWORK = ("network",)
_TYPE_INFO = ("info",)
_TYPE_ERROR = ("error",)
_TYPE_CONNECTION_END = ("connection", "end")
TCP_FLAG_NAME_SETS = tuple(
    tuple(name for bit, name in enumerate(TCP_FLAG_NAMES) if value >> bit & 1)
    for value in range(1 << len(TCP_FLAG_NAMES))
)
_IANA_NUMBERS = tuple(str(n) for n in range(256))
_NETWORK_TYPES = {4: "ipv4", 6: "ipv6"}


def capture_key(first: Frame | FramingError | None) -> str:
    """12 hex digits naming a capture by its first record, independent of container format."""
    h = hashlib.blake2b(digest_size=6)
    if isinstance(first, Frame):
        h.update(first.ts_ns.to_bytes(16, "big", signed=True))
        h.update(first.data or b"")
    elif isinstance(first, FramingError):
        h.update(f"error@{first.offset}:{first.reason}".encode())
    return h.hexdigest()


INT64_MAX = (1 << 63) - 1


def clamp_ns(value: int) -> int:
    """A nanosecond count JSON can carry: orjson (and Elasticsearch's long) stop at 64 bits,
    and a corrupt capture time far in the future can give durations past them."""
    return min(max(value, -INT64_MAX), INT64_MAX)


def format_timestamp(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    seconds = max(min(seconds, _MAX_SECONDS), _MIN_SECONDS)
    stamp = _EPOCH + timedelta(seconds=seconds)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


_SECOND_TEXTS: dict[int, str] = {}


def memo_timestamp(ts_ns: int) -> str:
    """`format_timestamp` with the date-and-seconds part memoised (flow events: ~1 µs less)."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    text = _SECOND_TEXTS.get(seconds)
    if text is None:
        if len(_SECOND_TEXTS) >= MEMO_SIZE:
            _SECOND_TEXTS.clear()
        text = _SECOND_TEXTS[seconds] = format_timestamp(seconds * 1_000_000_000)[:-10]
    return "%s%09dZ" % (text, nanos)


class EndpointTexts:
    """Memoised renderings of what recurs across flows: addresses, MACs, community ids.

    A new flow direction (every DNS query has a new source port) needs these again, but its
    hosts are seldom new: the memos make a flow's first packet cost ~3 µs instead of ~8 µs.
    The community id is kept per canonical flow, so a response reuses its query's.
    """

    def __init__(self) -> None:
        self._ips: dict[bytes, str] = {}
        self._macs: dict[bytes, str] = {}
        self._community_ids = CommunityIdCache()

    def ip(self, packed: bytes) -> str:
        text = self._ips.get(packed)
        if text is None:
            if len(self._ips) >= MEMO_SIZE:
                self._ips.clear()
            family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            text = self._ips[packed] = socket.inet_ntop(family, packed)
        return text

    def mac(self, mac: bytes) -> str:
        text = self._macs.get(mac)
        if text is None:
            if len(self._macs) >= MEMO_SIZE:
                self._macs.clear()
            text = self._macs[mac] = mac.hex("-").upper()
        return text

    def community_id(
        self,
        protocol: int,
        src_ip: bytes,
        dst_ip: bytes,
        src_port: int | None,
        dst_port: int | None,
    ) -> str | None:
        return self._community_ids.get(protocol, src_ip, dst_ip, src_port, dst_port)

    def quoted_flow(self, quoted: QuotedFlow) -> dict[str, Any]:
        """``pcap.icmp_quoted`` of an ICMP error: the connection it is about, with the
        Community ID its own events carry (the link to them)."""
        _, protocol, src_ip, dst_ip, sport, dport = quoted
        fields: dict[str, Any] = {
            "iana_number": str(protocol),
            "transport": TRANSPORT_NAMES.get(protocol, str(protocol)),
            "source": {"ip": self.ip(src_ip)},
            "destination": {"ip": self.ip(dst_ip)},
        }
        if sport is not None and protocol not in (1, 58):
            fields["source"]["port"] = sport
            fields["destination"]["port"] = dport
        if sport is not None or protocol not in (6, 17, 132, 136):
            community_id = self.community_id(protocol, src_ip, dst_ip, sport, dport)
            if community_id is not None:
                fields["community_id"] = community_id
        return fields

    def endpoint_parts(
        self, key: tuple[Any, ...], ip_version: int
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The parts of a packet event one flow direction shares: network, source, destination.

        `key` is ``(protocol, src_ip, dst_ip, src_port, dst_port, src_mac, dst_mac,
        has_ports)``; for ICMP the type and code stand in for the ports (the community id
        spec), and ``has_ports`` says whether they are ports to show.
        """
        protocol, src_ip, dst_ip, src_port, dst_port, src_mac, dst_mac, has_ports = key
        network: dict[str, Any] = {
            "packets": 1,
            "type": _NETWORK_TYPES[ip_version],
            "iana_number": _IANA_NUMBERS[protocol],
        }
        name = TRANSPORT_NAMES.get(protocol)
        if name is not None:
            network["transport"] = name
        cid = self.community_id(protocol, src_ip, dst_ip, src_port, dst_port)
        if cid is not None:
            network["community_id"] = cid
        source: dict[str, Any] = {"ip": self.ip(src_ip)}
        destination: dict[str, Any] = {"ip": self.ip(dst_ip)}
        if has_ports:
            source["port"] = src_port
            destination["port"] = dst_port
        if src_mac is not None:
            source["mac"] = self.mac(src_mac)
        if dst_mac is not None:
            destination["mac"] = self.mac(dst_mac)
        return network, source, destination


class EcsMapper:
    """Turns the records of one capture into ECS event dicts.

    `packet` is built as a closure over its memo tables: on the per-packet path a closure cell
    is cheaper to reach than an attribute, and the event dict is one literal plus the optional
    parts (measured: 2.5 µs a packet against 4 µs for the attribute-based first version).
    """

    def __init__(self, capture_path: str, capture_key: str) -> None:
        self.capture_path = capture_path
        self.capture_key = capture_key
        self.texts = EndpointTexts()
        self.packet = self._packet_mapper()
        self._hello_texts: dict[tuple[Any, ...], _HelloTexts] = {}

    def _packet_mapper(self) -> Callable[[Frame, Packet], dict[str, Any]]:
        path = self.capture_path
        key_prefix = self.capture_key + "-"
        # Per flow direction: the event parts that are the same for every packet of it —
        # network (type, transport, community id), source and destination (ip, port, mac) —
        # built once and copied per packet (a dict copy is cheaper than building it again, and
        # the copy keeps every event independent for callers who change them).
        endpoints: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        endpoints_get = endpoints.get
        texts = self.texts
        tcp_flag_names = TCP_FLAG_NAME_SETS
        ecs = {"version": ECS_VERSION}
        second_text = ["", None]  # [rendered "YYYY-MM-DDTHH:MM:SS.", its second]

        def memo_endpoint_parts(
            key: tuple[Any, ...], ip_version: int
        ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            if len(endpoints) >= MEMO_SIZE:
                endpoints.clear()
            parts = endpoints[key] = texts.endpoint_parts(key, ip_version)
            return parts

        def packet(frame: Frame, pkt: Packet) -> dict[str, Any]:
            """The packet event of a decoded frame, or its anomaly event if decoding stopped."""
            index, ts_ns, offset, caplen, origlen, interface, _, _ = frame
            (
                _,
                dst_mac,
                src_mac,
                vlan_id,
                inner_vlan_id,
                ethertype,
                ip_version,
                src_ip,
                dst_ip,
                protocol,
                ttl,
                ip_id,
                fragment_offset,
                more_fragments,
                src_port,
                dst_port,
                tcp_flags,
                tcp_seq,
                tcp_ack,
                tcp_window,
                icmp_type,
                icmp_code,
                payload_offset,
                payload_end,
                error,
                error_layer,
                error_detail,
            ) = pkt
            seconds, nanos = divmod(ts_ns, 1_000_000_000)
            if seconds != second_text[1]:
                second_text[0] = format_timestamp(seconds * 1_000_000_000)[:-10]
                second_text[1] = seconds
            pcap: dict[str, Any] = {
                "file": path,
                "frame": index,
                "offset": offset,
                "interface": interface,
                "caplen": caplen,
            }
            event: dict[str, Any] = {
                "@timestamp": "%s%09dZ" % (second_text[0], nanos),
                "ecs": ecs,
                "event": {
                    "id": key_prefix + str(index),
                    "kind": "event",
                    "category": _CATEGORY_NETWORK,
                    "type": _TYPE_INFO if error is None else _TYPE_ERROR,
                    "dataset": DATASET_PACKET if error is None else DATASET_ANOMALY,
                    "module": MODULE,
                },
                "network": None,  # keeps the key order the same for every event
                "pcap": pcap,
            }
            if src_ip is not None:
                if src_port is not None:
                    key = (protocol, src_ip, dst_ip, src_port, dst_port, src_mac, dst_mac, True)
                    if tcp_flags is not None:
                        pcap["tcp_flags"] = tcp_flag_names[tcp_flags]
                        pcap["tcp_seq"] = tcp_seq
                        pcap["tcp_ack"] = tcp_ack
                        pcap["tcp_window"] = tcp_window
                else:
                    key = (protocol, src_ip, dst_ip, icmp_type, icmp_code, src_mac, dst_mac, False)
                    if icmp_type is not None:
                        pcap["icmp_type"] = icmp_type
                        pcap["icmp_code"] = icmp_code
                        if is_icmp_error(protocol, icmp_type) and payload_offset is not None:
                            quoted = quoted_flow(frame.data, payload_offset + QUOTE_OFFSET,
                                                 payload_end)  # type: ignore[arg-type]  # fmt: skip
                            if quoted is not None:
                                pcap["icmp_quoted"] = texts.quoted_flow(quoted)
                parts = endpoints_get(key) or memo_endpoint_parts(key, ip_version)  # type: ignore[arg-type]
                network = parts[0].copy()
                event["source"] = parts[1].copy()
                event["destination"] = parts[2].copy()
                pcap["ttl"] = ttl
                if fragment_offset or more_fragments:
                    pcap["ip_id"] = ip_id
                    pcap["fragment_offset"] = fragment_offset
                    pcap["more_fragments"] = more_fragments
            else:
                network = {"packets": 1}
                if ethertype is not None:
                    pcap["ethertype"] = ethertype
                if src_mac is not None:
                    event["source"] = {"mac": src_mac.hex("-").upper()}
                if dst_mac is not None:
                    event["destination"] = {"mac": dst_mac.hex("-").upper()}
            network["bytes"] = origlen
            event["network"] = network
            if vlan_id is not None:
                network["vlan"] = {"id": str(vlan_id)}
                if inner_vlan_id is not None:
                    network["inner"] = {"vlan": {"id": str(inner_vlan_id)}}
            if error is not None:
                event["error"] = {"type": error, "message": error_detail}
                pcap["anomaly_layer"] = error_layer
            return event

        return packet

    def framing_error(self, err: FramingError, ts_ns: int) -> dict[str, Any]:
        """The anomaly event of a record the capture reader could not read.

        It has no timestamp of its own: the caller passes the last good frame's, so that a
        time-sorted index shows it where it happened.
        """
        return {
            "@timestamp": format_timestamp(ts_ns),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"{self.capture_key}-{err.index}",
                "kind": "event",
                "category": _CATEGORY_NETWORK,
                "type": _TYPE_ERROR,
                "dataset": DATASET_ANOMALY,
                "module": MODULE,
            },
            "error": {"type": err.reason, "message": err.detail},
            "pcap": {
                "file": self.capture_path,
                "frame": err.index,
                "offset": err.offset,
                "anomaly_layer": "capture",
                "anomaly_fatal": err.fatal,
            },
        }

    def extractor_anomaly(
        self, anomaly: ExtractorAnomaly, where: FrameLocator | None = None
    ) -> dict[str, Any]:
        """The anomaly event of something an extractor could not read (a malformed message, a
        cap, a parser bug): ``error.type`` ``<extractor>_<kind>``, the frame whose bytes
        completed it, and the connection's endpoints (the client as source where known)."""
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, anomaly.frame_index
        else:
            file, key, frame = where(anomaly.frame_index)
        ip_version, src, sport, dst, dport, protocol = anomaly.endpoints
        texts = self.texts
        extractor = anomaly.extractor
        return {
            "@timestamp": format_timestamp(anomaly.ts_ns),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"{key}-{extractor}-anomaly-{frame}-{anomaly.number}",
                "kind": "event",
                "category": _CATEGORY_NETWORK,
                "type": _TYPE_ERROR,
                "dataset": DATASET_ANOMALY,
                "module": MODULE,
            },
            "error": {"type": f"{extractor}_{anomaly.kind}", "message": anomaly.detail},
            "source": {"ip": texts.ip(src), "port": sport},
            "destination": {"ip": texts.ip(dst), "port": dport},
            "network": {
                "type": _NETWORK_TYPES.get(ip_version),
                "transport": TRANSPORT_NAMES.get(protocol, str(protocol)),
                "iana_number": str(protocol),
                "protocol": extractor,
                "community_id": texts.community_id(protocol, src, dst, sport, dport),
            },
            "pcap": {"file": file, "frame": frame, "anomaly_layer": extractor},
        }

    def dns(self, tx: DnsTransaction) -> dict[str, Any]:
        """The DNS transaction event (``event.dataset: pcap_ingest.dns``): the query joined
        with its response (pipeline/extract/dns.py `transaction_parts` gives the ``dns``
        part); source = the client. ``pcap.frame`` is the query's frame, else the response's;
        ``pcap.response_frame`` the response's when both were seen. One literal: the event
        `transaction_event` would make over these base fields, without its copies and merges
        (tests/test_dns_events.py checks they agree)."""
        query_context, response_context = tx.query_context, tx.response_context
        context = query_context or response_context
        frame, ip_version, client, client_port, server, server_port = context[:6]
        tcp = len(context) > 6
        texts = self.texts
        ecs_event, dns, custom = transaction_parts(tx)
        start = memo_timestamp(tx.start_ns)
        event = {
            "id": f"{self.capture_key}-dns-{frame}",
            "module": MODULE,
            "start": start,
            "end": memo_timestamp(tx.end_ns),
            **ecs_event,
        }
        pcap: dict[str, Any] = {"file": self.capture_path, "frame": frame}
        if query_context is not None and response_context is not None:
            pcap["response_frame"] = response_context[0]
        pcap["dns"] = custom
        return {
            "@timestamp": start,
            "ecs": {"version": ECS_VERSION},
            "event": event,
            "source": {"ip": texts.ip(client), "port": client_port},
            "destination": {"ip": texts.ip(server), "port": server_port},
            "network": {
                "type": _NETWORK_TYPES.get(ip_version),
                "transport": "tcp" if tcp else "udp",
                "iana_number": "6" if tcp else "17",
                "community_id": texts.community_id(
                    6 if tcp else 17, client, server, client_port, server_port
                ),
                "protocol": "dns",
            },
            "pcap": pcap,
            "dns": dns,
        }

    def tls(self, hs: TlsHandshake, where: FrameLocator | None = None) -> dict[str, Any]:
        """A TLS handshake event (``event.dataset: pcap_ingest.tls``): ECS ``tls.*`` from the
        ClientHello and ServerHello; JA4 (ECS has no field) in ``pcap.tls.ja4``; source = the
        client. Offered and chosen values by their IANA numbers where ECS wants names we do
        not keep a table of (``pcap.tls.*``)."""
        flow, ch, sh = hs.flow, hs.client_hello, hs.server_hello
        texts = self.texts
        client, client_port, server, server_port = tcp_sides(flow, hs.client_is_originator)
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, flow.first_index
        else:
            file, key, frame = where(flow.first_index)
        ja3_text, ja3_hash, ja4_text, client_version, versions, ciphers, alpn = (
            self._client_hello_texts(ch)
        )
        tls_client: dict[str, Any] = {"ja3": ja3_hash}
        if ch.server_name is not None:
            tls_client["server_name"] = ch.server_name.decode("ascii", "backslashreplace")
        tls: dict[str, Any] = {"version_protocol": "tls", "client": tls_client}
        detail: dict[str, Any] = {
            "ja4": ja4_text,
            "ja3_string": ja3_text,
            "client_version": client_version,
            "offered_versions": list(versions),
            "offered_ciphers": list(ciphers),
            "alpn_offered": list(alpn),
            "handshake": hs.number,
        }
        if sh is not None:
            ja3s_text, ja3s_hash = ja3s(sh)
            tls["server"] = {"ja3s": ja3s_hash}
            tls["version"] = tls_version_text(sh.version)
            if sh.alpn is not None:
                tls["next_protocol"] = sh.alpn.decode("ascii", "backslashreplace")
            detail["ja3s_string"] = ja3s_text
            detail["cipher"] = "%#06x" % sh.cipher_suite
            if sh.hello_retry_request:
                detail["hello_retry_request"] = True
        if hs.errors:
            detail["errors"] = [{"type": e.kind, "message": e.detail} for e in hs.errors[:4]]
        start = memo_timestamp(flow.start_ns)
        return {
            "@timestamp": start,
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"{key}-tls-{frame}-{hs.number}",
                "kind": "event",
                "category": _CATEGORY_NETWORK,
                "type": _TYPE_PROTOCOL,
                "dataset": DATASET_TLS,
                "module": MODULE,
            },
            "source": {"ip": texts.ip(client), "port": client_port},
            "destination": {"ip": texts.ip(server), "port": server_port},
            "network": {
                "type": _NETWORK_TYPES.get(flow.ip_version),
                "transport": "tcp",
                "iana_number": "6",
                "protocol": "tls",
                "community_id": texts.community_id(6, client, server, client_port, server_port),
            },
            "tls": tls,
            "pcap": {"file": file, "frame": frame, "tls": detail},
        }

    def _client_hello_texts(self, ch: ClientHello) -> _HelloTexts:
        """What a TLS event renders of a ClientHello's offer: JA3 (text, hash), JA4, the
        client version, the offered versions, ciphers and ALPN. Memoised by the offer: a
        client program sends the same one on every connection, and the fingerprints cost
        ~40 µs a hello (on a TLS-heavy capture they were a fifth of the conversion)."""
        offer = (
            ch.legacy_version,
            ch.cipher_suites,
            ch.extensions,
            ch.alpn,
            ch.supported_versions,
            ch.supported_groups,
            ch.ec_point_formats,
            ch.signature_algorithms,
        )
        texts = self._hello_texts.get(offer)
        if texts is None:
            if len(self._hello_texts) >= HELLO_MEMO_SIZE:
                self._hello_texts.clear()
            ja3_text, ja3_hash = ja3(ch)
            texts = self._hello_texts[offer] = (
                ja3_text,
                ja3_hash,
                ja4(ch),
                tls_version_text(ch.version),
                tuple(tls_version_text(v) for v in ch.supported_versions),
                tuple("%#06x" % c for c in ch.cipher_suites),
                tuple(p.decode("ascii", "backslashreplace") for p in ch.alpn),
            )
        return texts

    def http(self, tx: HttpTransaction, where: FrameLocator | None = None) -> dict[str, Any]:
        """An HTTP/1.x transaction event (``event.dataset: pcap_ingest.http``): the request and
        the response that answered it, either possibly missing; source = the client.

        ``url.*`` from the request target and the Host header; ``http.*.body.bytes`` count the
        body as framed on the wire (chunk framing excluded, content codings not undone);
        ``http.response.mime_type`` is sniffed from the body's first bytes, as ECS asks, and
        the declared Content-Type is in ``pcap.http.response_content_type``.
        ``event.duration`` runs from the request's first byte to the response's last.
        """
        flow, request, response = tx.flow, tx.request, tx.response
        texts = self.texts
        client, client_port, server, server_port = tcp_sides(flow, tx.client_is_originator)
        first_index = tx.first_index
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, first_index
        else:
            file, key, frame = where(first_index)
        http: dict[str, Any] = {}
        detail: dict[str, Any] = {"transaction": tx.number}
        event: dict[str, Any] = {
            "id": f"{key}-http-{flow.first_index}-{tx.number}",
            "kind": "event",
            "category": _CATEGORY_WEB,
            "type": _TYPE_PROTOCOL,
            "dataset": DATASET_HTTP,
            "module": MODULE,
        }
        doc: dict[str, Any] = {
            "@timestamp": memo_timestamp(tx.start_ns),
            "ecs": {"version": ECS_VERSION},
            "event": event,
            "source": {"ip": texts.ip(client), "port": client_port},
            "destination": {"ip": texts.ip(server), "port": server_port},
            "network": {
                "type": _NETWORK_TYPES.get(flow.ip_version),
                "transport": "tcp",
                "iana_number": "6",
                "protocol": "http",
                "community_id": texts.community_id(6, client, server, client_port, server_port),
            },
        }
        if request is not None:
            http["version"] = wire_text(request.version)
            http["request"] = {
                "method": wire_text(request.method),
                "bytes": request.head_bytes + request.body_bytes,
                "body": {"bytes": request.body_bytes},
            }
            referrer = request.header(b"referer")
            if referrer is not None:
                http["request"]["referrer"] = wire_text(referrer)
            mime = sniff_mime_type(request.body_prefix)
            if mime is not None:
                http["request"]["mime_type"] = mime
            doc["url"] = request_url(request)
            agent = request.header(b"user-agent")
            if agent is not None:
                doc["user_agent"] = {"original": wire_text(agent)}
            if not request.complete:
                detail["request_incomplete"] = True
        if response is not None:
            http.setdefault("version", wire_text(response.version))
            http["response"] = {
                "status_code": response.status,
                "bytes": response.head_bytes + response.body_bytes,
                "body": {"bytes": response.body_bytes},
            }
            mime = sniff_mime_type(response.body_prefix)
            if mime is not None:
                http["response"]["mime_type"] = mime
            content_type = response.header(b"content-type")
            if content_type is not None:
                detail["response_content_type"] = wire_text(content_type)
            if not response.complete:
                detail["response_incomplete"] = True
            event["outcome"] = "failure" if response.status >= 400 else "success"
            start = request.start_ns if request is not None else response.start_ns
            event["duration"] = max(0, response.end_ns - start)
        http_flags(tx, detail)
        doc["http"] = http
        doc["pcap"] = {"file": file, "frame": frame, "http": detail}
        return doc

    def flow(self, flow: Flow, where: FrameLocator | None = None) -> dict[str, Any]:
        """The connection record of a flow that ended (``event.dataset: pcap_ingest.flow``).

        `where` maps the flow's frame numbers to (file, capture key, frame in that file)
        when the flow table counted through a capture set; ``pcap.last_file`` then names
        the file of the last frame if it is another.

        Originator = ``source``. Bytes are frame bytes on the wire, as in packet events;
        payload, retransmitted, out-of-order and missed bytes count TCP/UDP payload (Zeek's
        ``orig_bytes``/``resp_bytes``/``missed_bytes``). ``pcap.flow.state`` and
        ``pcap.flow.history`` are Zeek's ``conn_state`` and ``history``.
        """
        if where is None:
            first_file, first_key = self.capture_path, self.capture_key
            first_frame, last_file, last_frame = flow.first_index, first_file, flow.last_index
        else:
            first_file, first_key, first_frame = where(flow.first_index)
            last_file, _, last_frame = where(flow.last_index)
        texts = self.texts
        protocol = flow.protocol
        has_ports = protocol in (6, 17, 132, 136)
        is_icmp = protocol in (1, 58)
        source: dict[str, Any] = {"ip": texts.ip(flow.orig_ip)}
        destination: dict[str, Any] = {"ip": texts.ip(flow.resp_ip)}
        if has_ports:
            source["port"] = flow.orig_port
            destination["port"] = flow.resp_port
        source["bytes"] = flow.orig_bytes
        source["packets"] = flow.orig_packets
        destination["bytes"] = flow.resp_bytes
        destination["packets"] = flow.resp_packets
        network: dict[str, Any] = {
            "type": _NETWORK_TYPES.get(flow.ip_version),
            "transport": TRANSPORT_NAMES.get(protocol, _IANA_NUMBERS[protocol]),
            "iana_number": _IANA_NUMBERS[protocol],
            "bytes": flow.orig_bytes + flow.resp_bytes,
            "packets": flow.orig_packets + flow.resp_packets,
        }
        network["community_id"] = texts.community_id(
            protocol,
            flow.orig_ip,
            flow.resp_ip,
            flow.orig_port if has_ports or is_icmp else None,
            flow.resp_port if has_ports or is_icmp else None,
        )
        if flow.vlan_id is not None:
            network["vlan"] = {"id": str(flow.vlan_id)}
            if flow.inner_vlan_id is not None:
                network["inner"] = {"vlan": {"id": str(flow.inner_vlan_id)}}
        detail: dict[str, Any] = {
            "state": flow.conn_state,
            "end_reason": flow.end_reason,
            "source_payload_bytes": flow.orig_payload,
            "destination_payload_bytes": flow.resp_payload,
        }
        if protocol == 6:
            detail["history"] = flow.history
            detail["retransmitted_bytes"] = flow.retransmitted_bytes
            detail["out_of_order_bytes"] = flow.out_of_order_bytes
            detail["missed_bytes"] = flow.missed_bytes
        if flow.continued:
            detail["continued"] = True
        if flow.reassembly_capped:
            detail["reassembly_capped"] = True
        spreads = flow.spread_summaries()
        if spreads is not None:
            detail.update((name, value) for name, value in spreads.items() if value is not None)
        pcap: dict[str, Any] = {
            "file": first_file,
            "frame": first_frame,
            "last_frame": last_frame,
            "flow": detail,
        }
        if last_file != first_file:
            pcap["last_file"] = last_file
        if is_icmp:  # as on packet events: the first packet's
            pcap["icmp_type"] = flow.orig_port
            pcap["icmp_code"] = flow.icmp_code
        if flow.tunnels:
            pcap["tunnel"] = [
                {
                    "type": tunnel[0],
                    "id": tunnel[1],
                    "source_ip": texts.ip(tunnel[2]),
                    "destination_ip": texts.ip(tunnel[3]),
                }
                for tunnel in flow.tunnels
            ]
        start = memo_timestamp(flow.start_ns)
        return {
            "@timestamp": start,
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": f"{first_key}-flow-{first_frame}",
                "kind": "event",
                "category": _CATEGORY_NETWORK,
                "type": _TYPE_CONNECTION_END,
                "dataset": DATASET_FLOW,
                "module": MODULE,
                "start": start,
                "end": memo_timestamp(flow.last_ns),
                "duration": clamp_ns(flow.last_ns - flow.start_ns),
                "reason": flow.end_reason,
            },
            "source": source,
            "destination": destination,
            "network": network,
            "pcap": pcap,
        }


def ip_text(ip: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(ip) == 4 else socket.AF_INET6, ip)


def transport_name(protocol: int) -> str:
    return TRANSPORT_NAMES.get(protocol, _IANA_NUMBERS[protocol])


def stats_event(summary: TrafficSummary, capture_name: str, capture_key: str) -> dict[str, Any]:
    """The traffic statistics event of one summary (``event.dataset: pcap_ingest.stats``);
    its fields are listed in pipeline/traffic_report.py's docstring."""
    start_ns = summary.start_ns if summary.start_ns is not None else 0
    end_ns = summary.end_ns if summary.end_ns is not None else start_ns
    stats: dict[str, Any] = {"scope": summary.scope}
    if summary.scope == "interval":
        assert summary.interval_ns is not None
        event_id = f"{capture_key}-stats-{summary.interval_ns}-{summary.index}"
        stats["interval_s"] = summary.interval_ns / NS
        stats["interval_index"] = summary.index
    else:
        event_id = f"{capture_key}-stats"
    stats["anomalies"] = summary.anomalies
    for name in PROTOCOL_CLASSES:
        packets, nbytes = summary.protocols[name]
        stats[f"{name}_packets"] = packets
        stats[f"{name}_bytes"] = nbytes
    if summary.pps_mean is not None:
        stats["pps_mean"] = summary.pps_mean
        stats["bps_mean"] = summary.bps_mean
    if summary.pps_peak is not None:
        stats["pps_peak"] = summary.pps_peak
        stats["peak_window_s"] = summary.peak_window_ns / NS
    if summary.packets:
        stats["packet_size_mean"] = summary.bytes / summary.packets
    stats["top_talkers"] = [
        {
            "ip": ip_text(t.ip),
            "packets": t.packets,
            "bytes": t.bytes,
            "tx_packets": t.tx_packets,
            "tx_bytes": t.tx_bytes,
            "rx_packets": t.rx_packets,
            "rx_bytes": t.rx_bytes,
        }
        for t in summary.talkers
    ]
    stats["talkers_tracked"] = summary.talkers_tracked
    stats["talkers_overflow"] = summary.talkers_overflow
    stats["talkers_untracked_packets"] = summary.talkers_untracked_packets
    stats["talkers_untracked_bytes"] = summary.talkers_untracked_bytes
    stats["top_destination_ports"] = [
        {
            "transport": transport_name(p.protocol),
            "port": p.port,
            "packets": p.packets,
            "bytes": p.bytes,
        }
        for p in summary.ports
    ]
    stats["ports_tracked"] = summary.ports_tracked
    stats["ports_overflow"] = summary.ports_overflow
    stats["ports_untracked_packets"] = summary.ports_untracked_packets
    stats["ports_untracked_bytes"] = summary.ports_untracked_bytes
    start = format_timestamp(start_ns)
    return {
        "@timestamp": start,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "id": event_id,
            "kind": "metric",
            "category": _CATEGORY_NETWORK,
            "type": _TYPE_INFO,
            "dataset": DATASET_STATS,
            "module": MODULE,
            "start": start,
            "end": format_timestamp(end_ns),
            "duration": clamp_ns(end_ns - start_ns),
        },
        "network": {"packets": summary.packets, "bytes": summary.bytes},
        "pcap": {"file": capture_name, "stats": stats},
    }


def http_flags(tx: HttpTransaction, detail: dict[str, Any]) -> None:
    """What both schemas say beside an HTTP transaction (ECS ``pcap.http``, OCSF
    ``unmapped.http``): a missing side and why, interim responses, parse errors."""
    if tx.response is None:
        # Lost in a capture gap (missed bytes), or never sent before the flow ended.
        detail["response_lost" if tx.response_lost else "unanswered"] = True
    if tx.request is None:
        detail["unsolicited"] = True
    if tx.interim:
        detail["interim_status_codes"] = tx.interim
    if tx.errors:
        detail["errors"] = [{"type": e.kind, "message": e.detail} for e in tx.errors[:4]]


def tls_version_text(version: int) -> str:
    """A TLS version number as its name ("1.3"), or hex when unknown."""
    return _TLS_VERSIONS.get(version, "%#06x" % version)


def wire_text(raw: bytes) -> str:
    """Header and request-line bytes as text: UTF-8 where valid (as browsers send), other
    bytes escaped (``\\xNN``) so the event stays valid JSON and nothing is lost."""
    return raw.decode("utf-8", "backslashreplace")


def request_url(request: HttpMessage) -> dict[str, Any]:
    """ECS ``url.*`` of a request: the target as sent, and its parts. An absolute target (a
    proxy request) names its own host; otherwise the Host header does."""
    target = request.target
    url: dict[str, Any] = {"original": wire_text(target)}
    authority = request.header(b"host")
    path = target
    scheme_end = target.find(b"://")
    if scheme_end > 0 and b"/" not in target[:scheme_end]:
        url["scheme"] = wire_text(target[:scheme_end].lower())
        rest = target[scheme_end + 3 :]
        slash = rest.find(b"/")
        authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    elif request.method == b"CONNECT" and not target.startswith(b"/"):
        authority, path = target, b""  # "CONNECT host:port"
    if authority:
        host, port = _split_authority(authority)
        url["domain"] = wire_text(host)
        if port is not None:
            url["port"] = port
    path, _, fragment = path.partition(b"#")
    path, question, query = path.partition(b"?")
    if path:
        url["path"] = wire_text(path)
    if question:
        url["query"] = wire_text(query)
    if fragment:
        url["fragment"] = wire_text(fragment)
    return url


def _split_authority(authority: bytes) -> tuple[bytes, int | None]:
    """Host and port of ``host[:port]`` (``[v6]:port`` too); userinfo dropped. The host keeps
    its case as sent (evidence: DNS names compare case-insensitively, but odd case is a
    signal)."""
    authority = authority.rpartition(b"@")[2].strip()
    if authority.startswith(b"["):
        close = authority.find(b"]")
        host, rest = authority[1 : close if close > 0 else None], authority[close + 1 :]
    else:
        host, _, port_text = authority.partition(b":")
        rest = b":" + port_text if port_text else b""
    port = rest[1:]
    if port.isdigit() and 0 < int(port) < 65536:
        return host, int(port)
    return host, None
