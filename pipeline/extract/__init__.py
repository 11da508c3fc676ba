"""Application extractors: pure parsers and state trackers over transport payloads.

What they share: `ExtractorAnomaly`, the record of something an extractor could not read (a
malformed message, a cap that bit, a bug caught in a parser). Each extractor appends them to
its ``anomalies`` list as they happen, with the frame that carried the bytes and the
endpoints; the converter turns them into ``pcap_ingest.anomaly`` events (``error.type`` =
``<extractor>_<kind>``) and counts them per extractor, so a failure inside an extractor is
reported with its provenance instead of vanishing or stopping the run.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ExtractorAnomaly(NamedTuple):
    extractor: str  # "http", "tls", "dns"
    kind: str  # the extractor's error kind: malformed, truncated, unsupported, limit, decoder_bug
    detail: str
    frame_index: int  # the frame whose bytes completed what could not be read
    ts_ns: int
    # (ip version, source ip, source port, destination ip, destination port, IP protocol):
    # the client side first where known.
    endpoints: tuple[int, bytes, int, bytes, int, int]
    number: int  # 1, 2, ... per flow (or per frame for UDP), for a stable event id


def tcp_sides(flow: Any, client_is_originator: bool) -> tuple[bytes, int, bytes, int]:
    """(client ip, client port, server ip, server port) of a TCP flow of the flow table, the
    client being the side an extractor saw open the conversation."""
    if client_is_originator:
        return flow.orig_ip, flow.orig_port, flow.resp_ip, flow.resp_port
    return flow.resp_ip, flow.resp_port, flow.orig_ip, flow.orig_port


def flow_endpoints(
    flow: Any, client_is_originator: bool = True
) -> tuple[int, bytes, int, bytes, int, int]:
    """The `ExtractorAnomaly.endpoints` of a TCP flow of the flow table."""
    return (flow.ip_version, *tcp_sides(flow, client_is_originator), 6)
