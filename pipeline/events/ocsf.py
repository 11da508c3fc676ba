"""Map the same records as `pipeline.events.ecs` to OCSF 1.5.0 event dicts (``--schema ocsf``).

Open Cybersecurity Schema Framework, version 1.5.0 (schema.ocsf.io/1.5.0; the attribute
names, requirements and enums below were checked against that version's class and object
definitions). `OcsfMapper` has the methods of `EcsMapper` and maps from the records, never
from ECS dicts. The classes:

* **Network Activity** (``class_uid`` 4001) for packets (activity 6 "Traffic", one per
  frame), flow records (activity from how the connection ended: 2 Close after FINs, 3 Reset,
  5 Refuse for Zeek's REJ, 4 Fail for an unanswered attempt that timed out (S0), else
  6 Traffic) and TLS handshakes (6 Traffic with the ``tls`` object);
* **HTTP Activity** (4002) per HTTP transaction; ``activity_id`` is the method (1 Connect …
  8 Trace; 99 Other for the rest, 0 Unknown when only a response was seen);
* **DNS Activity** (4003) per DNS transaction: 6 Traffic (query and response), 1 Query
  (unanswered, evicted) or 2 Response (unsolicited);
* anomalies: a frame that decoded only partly, or an extractor anomaly, is a Network Activity
  event (6 Traffic) with ``status_id`` 2 (Failure), ``status_code`` our ``error.type``,
  ``status_detail`` the message and ``severity_id`` 2 (Low). An event with no endpoint at all
  (a capture framing error, a frame whose link layer did not decode) cannot be a Network
  event (OCSF requires ``src_endpoint`` or ``dst_endpoint``): it is a **Base Event**
  (``class_uid`` 0, activity 99 Other) with the same status fields (severity 3, Medium, when
  the reader had to stop);
* traffic statistics have no OCSF class: ``--schema ocsf`` with the ``stats`` dataset is a
  usage error (`pipeline.convert.ConvertOptions.validate`).

Every event has ``category_uid`` 4 (0 for Base Event), ``type_uid`` = class_uid * 100 +
activity_id, ``severity_id``, ``time`` (ms since the epoch; the nanosecond RFC 3339 text is
``metadata.original_time``), and ``metadata`` {version, product, uid (our ``event.id``),
log_name (the dataset)}. An endpoint known only by its MAC address carries it as ``uid``
too (OCSF asks an endpoint for at least one of ip, uid, name, hostname, …). OCSF has no
field for capture provenance and our packet detail (frame number, offset, TTL, TCP
sequence numbers, Zeek's conn_state, JA3 strings, …): those go under ``unmapped``, with the
names the ECS events use under ``pcap``. ``connection_info.uid`` of flows, TLS and HTTP
events is the flow record's ``event.id``, so they join on it.
"""

from __future__ import annotations

from typing import Any

from pipeline.capture.frame import Frame, FramingError
from pipeline.decode.icmp import QUOTE_OFFSET, quoted_flow
from pipeline.decode.icmp import is_error as is_icmp_error
from pipeline.decode.packet import Packet
from pipeline.decode.transport import TRANSPORT_NAMES
from pipeline.events.ecs import (
    DATASET_ANOMALY,
    DATASET_FLOW,
    DATASET_HTTP,
    DATASET_PACKET,
    DATASET_TLS,
    MEMO_SIZE,
    TCP_FLAG_NAME_SETS,
    EndpointTexts,
    FrameLocator,
    clamp_ns,
    format_timestamp,
    http_flags,
    memo_timestamp,
    request_url,
    tls_version_text,
    wire_text,
)
from pipeline.extract import ExtractorAnomaly, tcp_sides
from pipeline.extract.dns import DATASET_DNS, RCODE_NAMES, DnsMessage, DnsTransaction
from pipeline.extract.http import HttpMessage, HttpTransaction, sniff_mime_type
from pipeline.extract.tls import TlsHandshake, ja3, ja3s, ja4
from pipeline.flows.table import Flow

OCSF_VERSION = "1.5.0"
PRODUCT_NAME = "pcap-ingest"

CATEGORY_NETWORK = 4  # "Network Activity"
CLASS_BASE_EVENT = 0
CLASS_NETWORK_ACTIVITY = 4001
CLASS_HTTP_ACTIVITY = 4002
CLASS_DNS_ACTIVITY = 4003
CLASS_NAMES = {
    CLASS_BASE_EVENT: "Base Event",
    CLASS_NETWORK_ACTIVITY: "Network Activity",
    CLASS_HTTP_ACTIVITY: "HTTP Activity",
    CLASS_DNS_ACTIVITY: "DNS Activity",
}
CATEGORY_NAMES = {0: "Uncategorized", CATEGORY_NETWORK: "Network Activity"}

# activity_id captions per class (0 Unknown and 99 Other come from the base event).
ACTIVITY_UNKNOWN = 0
ACTIVITY_OTHER = 99
NETWORK_OPEN, NETWORK_CLOSE, NETWORK_RESET, NETWORK_FAIL, NETWORK_REFUSE, NETWORK_TRAFFIC = range(
    1, 7
)
DNS_QUERY, DNS_RESPONSE, DNS_TRAFFIC = 1, 2, 6
_COMMON_ACTIVITIES = {ACTIVITY_UNKNOWN: "Unknown", ACTIVITY_OTHER: "Other"}
ACTIVITY_NAMES: dict[int, dict[int, str]] = {
    CLASS_BASE_EVENT: _COMMON_ACTIVITIES,
    CLASS_NETWORK_ACTIVITY: {
        **_COMMON_ACTIVITIES,
        1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 6: "Traffic", 7: "Listen",
    },
    CLASS_HTTP_ACTIVITY: {
        **_COMMON_ACTIVITIES,
        1: "Connect", 2: "Delete", 3: "Get", 4: "Head", 5: "Options", 6: "Post", 7: "Put",
        8: "Trace",
    },
    CLASS_DNS_ACTIVITY: {**_COMMON_ACTIVITIES, 1: "Query", 2: "Response", 6: "Traffic"},
}  # fmt: skip
# HTTP Activity's activity_id is the request method.
HTTP_METHOD_ACTIVITIES = {
    b"CONNECT": 1, b"DELETE": 2, b"GET": 3, b"HEAD": 4, b"OPTIONS": 5, b"POST": 6, b"PUT": 7,
    b"TRACE": 8,
}  # fmt: skip

SEVERITY_INFORMATIONAL, SEVERITY_LOW, SEVERITY_MEDIUM = 1, 2, 3
SEVERITY_NAMES = {1: "Informational", 2: "Low", 3: "Medium"}
STATUS_SUCCESS, STATUS_FAILURE = 1, 2
STATUS_NAMES = {1: "Success", 2: "Failure"}

# connection_info: we observe traffic from the wire, not from either host, so the direction
# relative to a network boundary is not known (direction_id is required).
DIRECTION_UNKNOWN = 0
# DNS rcode_id: the RFC 6895 codes OCSF lists, by our rcode names; 16 is BADVERS/BADSIG.
RCODE_IDS: dict[str, int] = {name: code for code, name in RCODE_NAMES.items()}
RCODE_CAPTIONS = {
    0: "NoError", 1: "FormError", 2: "ServError", 3: "NXDomain", 4: "NotImp", 5: "Refused",
    6: "YXDomain", 7: "YXRRSet", 8: "NXRRSet", 9: "NotAuth", 10: "NotZone", 11: "DSOTYPENI",
    16: "BADSIG_VERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME",
    21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE", 24: "Unassigned", 25: "Reserved",
    99: "Other",
}  # fmt: skip
RCODE_UNASSIGNED, RCODE_RESERVED, RCODE_OTHER = 24, 25, 99
# dns_query.opcode_id by our opcode names (OCSF 3 is "Reserved": our "3").
OPCODE_IDS = {"QUERY": 0, "IQUERY": 1, "STATUS": 2, "3": 3, "NOTIFY": 4, "UPDATE": 5, "DSO": 6}
OPCODE_CAPTIONS = {
    0: "Query", 1: "Inverse Query", 2: "Status", 3: "Reserved", 4: "Notify", 5: "Update",
    6: "DSO Message", 99: "Other",
}  # fmt: skip
# dns_answer.flag_ids by our header flag names (DO has no OCSF id).
DNS_FLAG_IDS = {"AA": 1, "TC": 2, "RD": 3, "RA": 4, "AD": 5, "CD": 6}
DNS_FLAG_CAPTIONS = {
    1: "Authoritative Answer", 2: "Truncated Response", 3: "Recursion Desired",
    4: "Recursion Available", 5: "Authentic Data", 6: "Checking Disabled",
}  # fmt: skip
# fingerprint.algorithm_id: JA3 and JA3S are MD5 digests.
ALGORITHM_MD5 = 1
JA4_TYPE_ID = 1  # ja4_fingerprint.type_id "JA4" (the TLS client fingerprint)
_PROTOCOL_VER_IDS = {4: 4, 6: 6}  # connection_info.protocol_ver_id: IPv4, IPv6
_PORTED = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite: ports to show
_ICMP = (1, 58)

_NS_PER_MS = 1_000_000
# The seconds format_timestamp (pipeline.events.ecs) clamps RFC 3339 text to: 0001–9999.
MAX_SECONDS = 253402300799
MIN_SECONDS = -62135596800


def ms(ts_ns: int) -> int:
    """OCSF timestamp_t: milliseconds since the epoch, floored; a corrupt capture time is
    clamped to years 1–9999 as ``metadata.original_time`` (RFC 3339) is, so the two agree."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    seconds = max(min(seconds, MAX_SECONDS), MIN_SECONDS)
    return seconds * 1000 + nanos // _NS_PER_MS


def duration_ms(duration_ns: int) -> int:
    """A duration in milliseconds, floored, within 64 bits."""
    return clamp_ns(duration_ns) // _NS_PER_MS


def rcode_id(rcode: str) -> int:
    """OCSF ``rcode_id`` of our rcode text (a name, or the number when it has none)."""
    code = RCODE_IDS.get(rcode)
    if code is None:
        if not rcode.isdigit():
            return RCODE_OTHER
        code = int(rcode)
    if code in RCODE_CAPTIONS and code < RCODE_UNASSIGNED:
        return code
    if 3841 <= code <= 4095 or code == 65535:
        return RCODE_RESERVED
    return RCODE_UNASSIGNED  # 12-15, 24-3840, 4096-65534


def flow_activity(conn_state: str, end_reason: str) -> int:
    """Network Activity ``activity_id`` of a flow record: how its connection ended."""
    if conn_state == "REJ":
        return NETWORK_REFUSE
    if end_reason == "rst":
        return NETWORK_RESET
    if end_reason == "fin":
        return NETWORK_CLOSE
    if conn_state == "S0" and end_reason == "idle_timeout":
        return NETWORK_FAIL  # an attempt never answered
    return NETWORK_TRAFFIC


class OcsfMapper:
    """Turns the records of one capture into OCSF 1.5.0 event dicts (see the module doc).

    The same methods and signatures as `pipeline.events.ecs.EcsMapper`. `packet` memoises
    the endpoint and connection parts per flow direction, as the ECS mapper does; there is
    no byte-level fast path for OCSF (each event is a dict serialised by orjson).
    """

    def __init__(self, capture_path: str, capture_key: str) -> None:
        import pipeline  # here: pipeline/__init__.py imports the converter, which imports us

        self.capture_path = capture_path
        self.capture_key = capture_key
        self.texts = EndpointTexts()
        self.product = {
            "name": PRODUCT_NAME,
            "vendor_name": PRODUCT_NAME,
            "version": pipeline.__version__,
        }
        self._endpoints: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}

    # --- the parts every event shares ------------------------------------------------------
    def _event(
        self,
        class_uid: int,
        activity_id: int,
        ts_ns: int,
        dataset: str,
        uid: str,
        severity_id: int = SEVERITY_INFORMATIONAL,
        original_time: str | None = None,
    ) -> dict[str, Any]:
        category_uid = 0 if class_uid == CLASS_BASE_EVENT else CATEGORY_NETWORK
        activity_name = ACTIVITY_NAMES[class_uid][activity_id]
        class_name = CLASS_NAMES[class_uid]
        return {
            "class_uid": class_uid,
            "class_name": class_name,
            "category_uid": category_uid,
            "category_name": CATEGORY_NAMES[category_uid],
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": class_uid * 100 + activity_id,
            "type_name": f"{class_name}: {activity_name}",
            "severity_id": severity_id,
            "severity": SEVERITY_NAMES[severity_id],
            "time": ms(ts_ns),
            "metadata": {
                "version": OCSF_VERSION,
                "product": self.product,
                "uid": uid,
                "log_name": dataset,
                "original_time": original_time or memo_timestamp(ts_ns),
            },
        }

    def _connection(
        self,
        protocol: int,
        ip_version: int | None,
        src: bytes,
        dst: bytes,
        src_port: int | None,
        dst_port: int | None,
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "protocol_num": protocol,
            "protocol_name": TRANSPORT_NAMES.get(protocol, str(protocol)),
            "direction_id": DIRECTION_UNKNOWN,
            "direction": "Unknown",
        }
        version_id = _PROTOCOL_VER_IDS.get(ip_version)  # type: ignore[arg-type]
        if version_id is not None:
            info["protocol_ver_id"] = version_id
        cid = self.texts.community_id(protocol, src, dst, src_port, dst_port)
        if cid is not None:
            info["community_uid"] = cid
        return info

    def _endpoint(self, ip: bytes, port: int | None) -> dict[str, Any]:
        endpoint: dict[str, Any] = {"ip": self.texts.ip(ip)}
        if port is not None:
            endpoint["port"] = port
        return endpoint

    @staticmethod
    def _failure(event: dict[str, Any], code: str, detail: str, severity_id: int) -> None:
        event["severity_id"] = severity_id
        event["severity"] = SEVERITY_NAMES[severity_id]
        event["status_id"] = STATUS_FAILURE
        event["status"] = STATUS_NAMES[STATUS_FAILURE]
        event["status_code"] = code
        event["status_detail"] = detail

    # --- packets and anomalies -------------------------------------------------------------
    def _packet_parts(self, key: tuple[Any, ...], ip_version: int) -> tuple[dict[str, Any], ...]:
        """(src_endpoint, dst_endpoint, connection_info) of one flow direction, memoised."""
        parts = self._endpoints.get(key)
        if parts is None:
            protocol, src_ip, dst_ip, src_port, dst_port, src_mac, dst_mac, has_ports, vlan = key
            texts = self.texts
            src: dict[str, Any] = {"ip": texts.ip(src_ip)}
            dst: dict[str, Any] = {"ip": texts.ip(dst_ip)}
            if has_ports:
                src["port"] = src_port
                dst["port"] = dst_port
            if src_mac is not None:
                src["mac"] = texts.mac(src_mac)
            if dst_mac is not None:
                dst["mac"] = texts.mac(dst_mac)
            if vlan is not None:
                src["vlan_uid"] = dst["vlan_uid"] = str(vlan)
            info = self._connection(protocol, ip_version, src_ip, dst_ip, src_port, dst_port)
            if len(self._endpoints) >= MEMO_SIZE:
                self._endpoints.clear()
            parts = self._endpoints[key] = (src, dst, info)
        return parts

    def packet(self, frame: Frame, pkt: Packet) -> dict[str, Any]:
        """The packet event of a decoded frame (Network Activity: Traffic), or its anomaly
        event if decoding stopped (the same with a Failure status; a Base Event when not
        even the link layer's addresses decoded)."""
        index, ts_ns, offset, caplen, origlen, interface, _, _ = frame
        error = pkt.error
        texts = self.texts
        unmapped: dict[str, Any] = {
            "file": self.capture_path,
            "frame": index,
            "offset": offset,
            "interface": interface,
            "caplen": caplen,
        }
        src_ip, src_mac, dst_mac = pkt.src_ip, pkt.src_mac, pkt.dst_mac
        has_endpoint = src_ip is not None or src_mac is not None or dst_mac is not None
        event = self._event(
            CLASS_NETWORK_ACTIVITY if has_endpoint else CLASS_BASE_EVENT,
            NETWORK_TRAFFIC if has_endpoint else ACTIVITY_OTHER,
            ts_ns,
            DATASET_PACKET if error is None else DATASET_ANOMALY,
            f"{self.capture_key}-{index}",
        )
        protocol = pkt.protocol
        if src_ip is not None:
            src_port, dst_port = pkt.src_port, pkt.dst_port
            if src_port is not None:
                key = (protocol, src_ip, pkt.dst_ip, src_port, dst_port, src_mac, dst_mac, True,
                       pkt.vlan_id)  # fmt: skip
                if pkt.tcp_flags is not None:
                    unmapped["tcp_flags"] = TCP_FLAG_NAME_SETS[pkt.tcp_flags]
                    unmapped["tcp_seq"] = pkt.tcp_seq
                    unmapped["tcp_ack"] = pkt.tcp_ack
                    unmapped["tcp_window"] = pkt.tcp_window
            else:
                # ICMP type and code stand in for the ports in the community id (its spec).
                key = (protocol, src_ip, pkt.dst_ip, pkt.icmp_type, pkt.icmp_code, src_mac,
                       dst_mac, False, pkt.vlan_id)  # fmt: skip
                if pkt.icmp_type is not None:
                    unmapped["icmp_type"] = pkt.icmp_type
                    unmapped["icmp_code"] = pkt.icmp_code
                    payload_offset = pkt.payload_offset
                    if is_icmp_error(protocol, pkt.icmp_type) and payload_offset is not None:
                        # The connection an ICMP error is about, as on ECS packet events.
                        quoted = quoted_flow(frame.data, payload_offset + QUOTE_OFFSET,
                                             pkt.payload_end)  # type: ignore[arg-type]  # fmt: skip
                        if quoted is not None:
                            unmapped["icmp_quoted"] = texts.quoted_flow(quoted)
            src, dst, info = self._packet_parts(key, pkt.ip_version)  # type: ignore[arg-type]
            event["src_endpoint"] = src.copy()
            event["dst_endpoint"] = dst.copy()
            info = info.copy()
            if pkt.tcp_flags is not None:
                info["tcp_flags"] = pkt.tcp_flags
            event["connection_info"] = info
            unmapped["ttl"] = pkt.ttl
            if pkt.fragment_offset or pkt.more_fragments:
                unmapped["ip_id"] = pkt.ip_id
                unmapped["fragment_offset"] = pkt.fragment_offset
                unmapped["more_fragments"] = pkt.more_fragments
        else:
            if pkt.ethertype is not None:
                unmapped["ethertype"] = pkt.ethertype
            if src_mac is not None:
                mac = texts.mac(src_mac)
                event["src_endpoint"] = {"uid": mac, "mac": mac}
            if dst_mac is not None:
                mac = texts.mac(dst_mac)
                event["dst_endpoint"] = {"uid": mac, "mac": mac}
            if pkt.vlan_id is not None:
                for side in ("src_endpoint", "dst_endpoint"):
                    if side in event:
                        event[side]["vlan_uid"] = str(pkt.vlan_id)
        if has_endpoint:
            event["traffic"] = {"bytes": origlen, "packets": 1}
        else:
            unmapped["bytes"] = origlen
        if pkt.inner_vlan_id is not None:
            unmapped["inner_vlan_id"] = str(pkt.inner_vlan_id)
        if error is not None:
            self._failure(event, error, pkt.error_detail or error, SEVERITY_LOW)
            unmapped["anomaly_layer"] = pkt.error_layer
        event["unmapped"] = unmapped
        return event

    def framing_error(self, err: FramingError, ts_ns: int) -> dict[str, Any]:
        """A record the capture reader could not read: a Base Event with a Failure status,
        at the last good frame's time (the caller passes it)."""
        event = self._event(
            CLASS_BASE_EVENT,
            ACTIVITY_OTHER,
            ts_ns,
            DATASET_ANOMALY,
            f"{self.capture_key}-{err.index}",
            original_time=format_timestamp(ts_ns),
        )
        self._failure(event, err.reason, err.detail, SEVERITY_MEDIUM if err.fatal else SEVERITY_LOW)
        event["unmapped"] = {
            "file": self.capture_path,
            "frame": err.index,
            "offset": err.offset,
            "anomaly_layer": "capture",
            "anomaly_fatal": err.fatal,
        }
        return event

    def extractor_anomaly(
        self, anomaly: ExtractorAnomaly, where: FrameLocator | None = None
    ) -> dict[str, Any]:
        """What an extractor could not read: Network Activity (Traffic) with a Failure status
        (``status_code`` ``<extractor>_<kind>``) between the connection's endpoints."""
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, anomaly.frame_index
        else:
            file, key, frame = where(anomaly.frame_index)
        ip_version, src, sport, dst, dport, protocol = anomaly.endpoints
        extractor = anomaly.extractor
        event = self._event(
            CLASS_NETWORK_ACTIVITY,
            NETWORK_TRAFFIC,
            anomaly.ts_ns,
            DATASET_ANOMALY,
            f"{key}-{extractor}-anomaly-{frame}-{anomaly.number}",
            original_time=format_timestamp(anomaly.ts_ns),
        )
        self._failure(event, f"{extractor}_{anomaly.kind}", anomaly.detail, SEVERITY_LOW)
        event["src_endpoint"] = self._endpoint(src, sport)
        event["dst_endpoint"] = self._endpoint(dst, dport)
        event["connection_info"] = self._connection(protocol, ip_version, src, dst, sport, dport)
        event["unmapped"] = {"file": file, "frame": frame, "anomaly_layer": extractor}
        return event

    # --- flows and application transactions ------------------------------------------------
    def flow(self, flow: Flow, where: FrameLocator | None = None) -> dict[str, Any]:
        """The connection record of a flow that ended: Network Activity, originator as
        ``src_endpoint``; ``traffic`` out = originator → responder (frame bytes on the wire),
        ``bytes_missed`` Zeek's missed_bytes; ``connection_info.flag_history`` Zeek's
        history letters; conn_state and the rest under ``unmapped``."""
        if where is None:
            first_file, first_key = self.capture_path, self.capture_key
            first_frame, last_file, last_frame = flow.first_index, first_file, flow.last_index
        else:
            first_file, first_key, first_frame = where(flow.first_index)
            last_file, _, last_frame = where(flow.last_index)
        protocol = flow.protocol
        has_ports = protocol in _PORTED
        is_icmp = protocol in _ICMP
        state = flow.conn_state
        flow_id = f"{first_key}-flow-{first_frame}"
        start = memo_timestamp(flow.start_ns)
        event = self._event(
            CLASS_NETWORK_ACTIVITY,
            flow_activity(state, flow.end_reason),
            flow.start_ns,
            DATASET_FLOW,
            flow_id,
            original_time=start,
        )
        event["start_time"] = ms(flow.start_ns)
        event["end_time"] = ms(flow.last_ns)
        event["duration"] = duration_ms(flow.last_ns - flow.start_ns)
        src = self._endpoint(flow.orig_ip, flow.orig_port if has_ports else None)
        dst = self._endpoint(flow.resp_ip, flow.resp_port if has_ports else None)
        if flow.vlan_id is not None:
            src["vlan_uid"] = dst["vlan_uid"] = str(flow.vlan_id)
        event["src_endpoint"] = src
        event["dst_endpoint"] = dst
        info = self._connection(
            protocol,
            flow.ip_version,
            flow.orig_ip,
            flow.resp_ip,
            flow.orig_port if has_ports or is_icmp else None,
            flow.resp_port if has_ports or is_icmp else None,
        )
        info["uid"] = flow_id
        if protocol == 6 and flow.history:
            info["flag_history"] = flow.history
        event["connection_info"] = info
        traffic: dict[str, Any] = {
            "bytes": flow.orig_bytes + flow.resp_bytes,
            "packets": flow.orig_packets + flow.resp_packets,
            "bytes_out": flow.orig_bytes,
            "packets_out": flow.orig_packets,
            "bytes_in": flow.resp_bytes,
            "packets_in": flow.resp_packets,
        }
        if protocol == 6:
            traffic["bytes_missed"] = flow.missed_bytes
        event["traffic"] = traffic
        unmapped: dict[str, Any] = {
            "file": first_file,
            "frame": first_frame,
            "last_frame": last_frame,
            "flow": self._flow_detail(flow, state),
        }
        if last_file != first_file:
            unmapped["last_file"] = last_file
        if is_icmp:
            unmapped["icmp_type"] = flow.orig_port
            unmapped["icmp_code"] = flow.icmp_code
        if flow.inner_vlan_id is not None:
            unmapped["inner_vlan_id"] = str(flow.inner_vlan_id)
        if flow.tunnels:
            texts = self.texts
            unmapped["tunnel"] = [
                {
                    "type": tunnel[0],
                    "id": tunnel[1],
                    "source_ip": texts.ip(tunnel[2]),
                    "destination_ip": texts.ip(tunnel[3]),
                }
                for tunnel in flow.tunnels
            ]
        event["unmapped"] = unmapped
        return event

    @staticmethod
    def _flow_detail(flow: Flow, state: str) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "state": state,
            "end_reason": flow.end_reason,
            "source_payload_bytes": flow.orig_payload,
            "destination_payload_bytes": flow.resp_payload,
        }
        if flow.protocol == 6:
            detail["retransmitted_bytes"] = flow.retransmitted_bytes
            detail["out_of_order_bytes"] = flow.out_of_order_bytes
        if flow.continued:
            detail["continued"] = True
        if flow.reassembly_capped:
            detail["reassembly_capped"] = True
        spreads = flow.spread_summaries()
        if spreads is not None:
            detail.update((name, value) for name, value in spreads.items() if value is not None)
        return detail

    def _tcp_parts(
        self, event: dict[str, Any], flow: Flow, client_is_originator: bool, flow_key: str,
        flow_frame: int,
    ) -> None:  # fmt: skip
        """Client and server endpoints and the connection of a TCP extractor's event."""
        client, client_port, server, server_port = tcp_sides(flow, client_is_originator)
        event["src_endpoint"] = self._endpoint(client, client_port)
        event["dst_endpoint"] = self._endpoint(server, server_port)
        info = self._connection(6, flow.ip_version, client, server, client_port, server_port)
        info["uid"] = f"{flow_key}-flow-{flow_frame}"
        event["connection_info"] = info

    def tls(self, hs: TlsHandshake, where: FrameLocator | None = None) -> dict[str, Any]:
        """A TLS handshake: Network Activity (Traffic) with the ``tls`` object — ``sni``,
        ``version`` (negotiated; the highest offered when no ServerHello came: OCSF requires
        a version), ``cipher`` and ``client_ciphers`` (IANA numbers in hex: we keep no name
        table), ``ja3_hash``/``ja3s_hash`` (MD5 fingerprints) — and JA4 in
        ``ja4_fingerprint_list``. Source = the client."""
        flow, ch, sh = hs.flow, hs.client_hello, hs.server_hello
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, flow.first_index
        else:
            file, key, frame = where(flow.first_index)
        event = self._event(
            CLASS_NETWORK_ACTIVITY,
            NETWORK_TRAFFIC,
            flow.start_ns,
            DATASET_TLS,
            f"{key}-tls-{frame}-{hs.number}",
        )
        self._tcp_parts(event, flow, hs.client_is_originator, key, frame)
        ja3_text, ja3_hash = ja3(ch)
        tls: dict[str, Any] = {
            "version": tls_version_text(sh.version if sh is not None else ch.version),
            "client_ciphers": ["%#06x" % c for c in ch.cipher_suites],
            "ja3_hash": {"algorithm_id": ALGORITHM_MD5, "algorithm": "MD5", "value": ja3_hash},
        }
        if ch.server_name is not None:
            tls["sni"] = ch.server_name.decode("ascii", "backslashreplace")
        detail: dict[str, Any] = {
            "ja3_string": ja3_text,
            "client_version": tls_version_text(ch.version),
            "offered_versions": [tls_version_text(v) for v in ch.supported_versions],
            "alpn_offered": [p.decode("ascii", "backslashreplace") for p in ch.alpn],
            "handshake": hs.number,
        }
        if sh is not None:
            ja3s_text, ja3s_hash = ja3s(sh)
            tls["cipher"] = "%#06x" % sh.cipher_suite
            tls["ja3s_hash"] = {
                "algorithm_id": ALGORITHM_MD5,
                "algorithm": "MD5",
                "value": ja3s_hash,
            }
            detail["ja3s_string"] = ja3s_text
            if sh.alpn is not None:
                detail["next_protocol"] = sh.alpn.decode("ascii", "backslashreplace")
            if sh.hello_retry_request:
                detail["hello_retry_request"] = True
        if hs.errors:
            detail["errors"] = [{"type": e.kind, "message": e.detail} for e in hs.errors[:4]]
        event["tls"] = tls
        fingerprint = ja4(ch)
        sections = fingerprint.split("_")
        ja4_entry: dict[str, Any] = {"type_id": JA4_TYPE_ID, "type": "JA4", "value": fingerprint}
        for name, section in zip(("section_a", "section_b", "section_c"), sections, strict=False):
            ja4_entry[name] = section
        event["ja4_fingerprint_list"] = [ja4_entry]
        event["unmapped"] = {"file": file, "frame": frame, "tls": detail}
        return event

    def http(self, tx: HttpTransaction, where: FrameLocator | None = None) -> dict[str, Any]:
        """An HTTP/1.x transaction: HTTP Activity, ``activity_id`` the method; the request
        and the response, either possibly missing (OCSF asks for at least one).

        ``length`` counts head and body as on the wire, ``body_length`` the body (chunk
        framing excluded); ``content_type`` is the declared Content-Type (the sniffed types
        are under ``unmapped``). ``traffic`` out = request bytes, in = response bytes.
        ``status_id`` is Failure for a status ≥ 400, Success below, absent unanswered."""
        flow, request, response = tx.flow, tx.request, tx.response
        first_index = tx.first_index
        if where is None:
            file, key, frame = self.capture_path, self.capture_key, first_index
        else:
            file, key, frame = where(first_index)
        if request is None:
            activity = ACTIVITY_UNKNOWN
        else:
            activity = HTTP_METHOD_ACTIVITIES.get(request.method, ACTIVITY_OTHER)
        event = self._event(
            CLASS_HTTP_ACTIVITY,
            activity,
            tx.start_ns,
            DATASET_HTTP,
            f"{key}-http-{flow.first_index}-{tx.number}",
        )
        self._tcp_parts(event, flow, tx.client_is_originator, key, flow.first_index)
        detail: dict[str, Any] = {"transaction": tx.number}
        traffic: dict[str, Any] = {}
        if request is not None:
            http_request: dict[str, Any] = {
                "http_method": wire_text(request.method),
                "version": wire_text(request.version),
                "url": _url(request),
                "length": request.head_bytes + request.body_bytes,
                "body_length": request.body_bytes,
            }
            agent = request.header(b"user-agent")
            if agent is not None:
                http_request["user_agent"] = wire_text(agent)
            referrer = request.header(b"referer")
            if referrer is not None:
                http_request["referrer"] = wire_text(referrer)
            event["http_request"] = http_request
            traffic["bytes_out"] = http_request["length"]
            mime = sniff_mime_type(request.body_prefix)
            if mime is not None:
                detail["request_mime_type"] = mime
            if not request.complete:
                detail["request_incomplete"] = True
        if response is not None:
            http_response: dict[str, Any] = {
                "code": response.status,
                "length": response.head_bytes + response.body_bytes,
                "body_length": response.body_bytes,
            }
            if response.reason:
                http_response["message"] = wire_text(response.reason)
            content_type = response.header(b"content-type")
            if content_type is not None:
                http_response["content_type"] = wire_text(content_type)
            event["http_response"] = http_response
            traffic["bytes_in"] = http_response["length"]
            mime = sniff_mime_type(response.body_prefix)
            if mime is not None:
                detail["response_mime_type"] = mime
            if not response.complete:
                detail["response_incomplete"] = True
            status = STATUS_FAILURE if response.status >= 400 else STATUS_SUCCESS
            event["status_id"] = status
            event["status"] = STATUS_NAMES[status]
            start = request.start_ns if request is not None else response.start_ns
            event["start_time"] = ms(start)
            event["end_time"] = ms(max(start, response.end_ns))
            event["duration"] = duration_ms(max(0, response.end_ns - start))
        if traffic:
            traffic["bytes"] = traffic.get("bytes_out", 0) + traffic.get("bytes_in", 0)
            event["traffic"] = traffic
        http_flags(tx, detail)
        event["unmapped"] = {"file": file, "frame": frame, "http": detail}
        return event

    def dns(self, tx: DnsTransaction) -> dict[str, Any]:
        """A DNS transaction: DNS Activity — Traffic (query and response), Query (no
        response) or Response (no query); ``query`` the question, ``answers`` the answer
        records (OCSF's dns_answer has no owner name: the names are under ``unmapped``),
        ``rcode``/``rcode_id``, ``query_time``/``response_time``. Source = the client."""
        context = tx.query_context or tx.response_context
        frame, ip_version, client, client_port, server, server_port = context[:6]
        protocol = 6 if len(context) > 6 else 17
        query, response = tx.query, tx.response
        if query is not None and response is not None:
            activity = DNS_TRAFFIC
        elif response is not None:
            activity = DNS_RESPONSE
        else:
            activity = DNS_QUERY
        event = self._event(
            CLASS_DNS_ACTIVITY,
            activity,
            tx.start_ns,
            DATASET_DNS,
            f"{self.capture_key}-dns-{frame}",
        )
        event["start_time"] = ms(tx.start_ns)
        event["end_time"] = ms(tx.end_ns)
        if tx.duration_ns is not None:
            event["duration"] = duration_ms(tx.duration_ns)
        event["src_endpoint"] = self._endpoint(client, client_port)
        event["dst_endpoint"] = self._endpoint(server, server_port)
        event["connection_info"] = self._connection(
            protocol, ip_version, client, server, client_port, server_port
        )
        msg = response or query
        assert msg is not None
        question = (query or msg).question or msg.question
        if question is not None:
            opcode_id = OPCODE_IDS.get(msg.opcode, ACTIVITY_OTHER)
            event["query"] = {
                "hostname": question[0],
                "type": question[1],
                "class": question[2],
                "opcode_id": opcode_id,
                "opcode": OPCODE_CAPTIONS[opcode_id],
                "packet_uid": msg.id,
            }
        if query is not None:
            event["query_time"] = ms(tx.start_ns)
        detail: dict[str, Any] = {"status": tx.status, "id": msg.id}
        if response is not None:
            event["response_time"] = ms(tx.end_ns)
            code = rcode_id(response.rcode)
            event["rcode_id"] = code
            event["rcode"] = RCODE_CAPTIONS[code]
            event["status_id"] = STATUS_SUCCESS
            event["status"] = STATUS_NAMES[STATUS_SUCCESS]
            if response.answers:
                event["answers"] = _answers(response)
                detail["answer_names"] = [a[0] for a in response.answers]
            if response.resolved_ips:
                detail["resolved_ip"] = list(response.resolved_ips)
        detail["header_flags"] = list(msg.flags)
        if tx.retransmits:
            detail["retransmits"] = tx.retransmits
        flags = sorted({f for m in (query, response) if m is not None for f in m.limits})
        if flags:
            detail["limits"] = flags
        errors = [m.error for m in (query, response) if m is not None and m.error is not None]
        if errors:
            detail["error"] = {"reason": errors[0].reason, "detail": errors[0].detail}
        unmapped: dict[str, Any] = {"file": self.capture_path, "frame": frame, "dns": detail}
        if query is not None and response is not None:
            unmapped["response_frame"] = tx.response_context[0]
        event["unmapped"] = unmapped
        return event


def _answers(response: DnsMessage) -> list[dict[str, Any]]:
    flag_ids = [DNS_FLAG_IDS[f] for f in response.flags if f in DNS_FLAG_IDS]
    flags = [DNS_FLAG_CAPTIONS[f] for f in flag_ids]
    return [
        {
            "rdata": a[4],
            "type": a[1],
            "class": a[2],
            "ttl": a[3],
            "flag_ids": flag_ids,
            "flags": flags,
            "packet_uid": response.id,
        }
        for a in response.answers
    ]


def _url(request: HttpMessage) -> dict[str, Any]:
    """OCSF ``url`` of a request: hostname, port, path, query_string, scheme from the target
    and the Host header (as ECS ``url.*``), and ``url_string`` the absolute URL they make
    (the target as sent when no host is known)."""
    parts = request_url(request)  # ECS's url.*: the one parser of request targets
    url: dict[str, Any] = {}
    host = parts.get("domain")
    if host is not None:
        url["hostname"] = host
    port = parts.get("port")
    if port is not None:
        url["port"] = port
    scheme = parts.get("scheme")
    if scheme is not None:
        url["scheme"] = scheme
    path = parts.get("path")
    if path is not None:
        url["path"] = path
    query = parts.get("query")
    if query is not None:
        url["query_string"] = query
    if host is None:
        url["url_string"] = parts["original"]
    else:
        authority = f"[{host}]" if ":" in host else host
        if port is not None:
            authority = f"{authority}:{port}"
        target = path or ""
        if query is not None:
            target += "?" + query
        url["url_string"] = f"{scheme or 'http'}://{authority}{target}"
    return url
