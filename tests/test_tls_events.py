"""TLS handshake events through the converter (`--extract tls`), against tshark truth.

Handshakes come from the flow table's reassembled streams (the flow's reassembly stops once
its handshake is read). For every reference capture the ClientHellos, their SNIs and their
offered ALPN strings equal truth `tls_client_hellos`, `tls_sni` and `tls_alpn`, except where
named below with the reason.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.convert import read_events
from pipeline.events import ecs
from pipeline.events.ecs import EcsMapper
from pipeline.extract.tls import ClientHello, TlsHandshake, parse_client_hello
from pipeline.gen.capture_mix import write_capture
from tests.conftest import CAPTURE_PARAMS, SHARED, truth_for
from tests.test_extract_tls import alpn_ext, client_hello_body, sni_ext

# Per file: (our ClientHello count, reason).
DIFFERENCES: dict[str, tuple[int, str]] = {
    "zeek__smtp-starttls.pcap": (0, "STARTTLS: TLS begins after SMTP plaintext (no hand-off yet)"),
    "ndpi__tls_port_80.pcapng": (1, "TLS on port 80: tshark dissects it as HTTP by port"),
    "nfstream__anydesk.pcap": (1, "AnyDesk's TLS on port 80: tshark dissects it as HTTP"),
}


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_client_hellos_sni_and_alpn_match_truth(capture: Path) -> None:
    truth = truth_for(capture)
    name = str(capture.relative_to(SHARED))
    events = list(read_events(str(capture), extract=("tls",)))
    hellos, reason = DIFFERENCES.get(name, (truth["tls_client_hellos"], ""))
    assert len(events) == hellos, f"{name}: truth {truth['tls_client_hellos']} ({reason})"
    if name not in DIFFERENCES:
        sni = [
            e["tls"]["client"]["server_name"] for e in events if "server_name" in e["tls"]["client"]
        ]
        assert sorted(sni) == sorted(truth["tls_sni"])
        alpn = [a for e in events for a in e["pcap"]["tls"]["alpn_offered"]]
        assert sorted(alpn) == sorted(truth["tls_alpn"])
    for e in events:
        assert e["event"]["dataset"] == "pcap_ingest.tls"
        assert len(e["tls"]["client"]["ja3"]) == 32 and e["pcap"]["tls"]["ja4"].startswith("t")
    assert len({e["event"]["id"] for e in events}) == len(events)


# --- The mapper's memo of ClientHello renderings -------------------------------------------
def tls_workload(tmp_path: Path) -> Path:
    """A generated TLS-heavy capture: many connections from the same few client programs."""
    path = tmp_path / "tls-heavy.pcap"
    write_capture(str(path), packets=4000, seed=3, profile="tls-heavy")
    return path


@pytest.mark.parametrize("capture", [*CAPTURE_PARAMS, "generated"])
def test_memoised_hello_renderings_change_nothing(
    capture: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events with the memo equal those made with every hello rendered afresh."""
    path = tls_workload(tmp_path) if capture == "generated" else capture
    memoised = list(read_events(str(path), extract=("tls",)))
    monkeypatch.setattr(ecs, "HELLO_MEMO_SIZE", 0)  # cleared before every hello
    assert list(read_events(str(path), extract=("tls",))) == memoised


def test_one_offer_is_rendered_once() -> None:
    """Two connections of one client program (the same offer, another SNI and session):
    one memo entry, and each event keeps its own server name."""
    extensions = [sni_ext(b"a.example"), alpn_ext(b"h2", b"http/1.1")]
    first = parse_client_hello(client_hello_body([0x1301, 0x1302], extensions))
    extensions[0] = sni_ext(b"b.example")
    second = parse_client_hello(client_hello_body([0x1301, 0x1302], extensions))
    assert isinstance(first, ClientHello) and isinstance(second, ClientHello)
    mapper = EcsMapper("capture.pcap", "key")
    flow = SimpleNamespace(
        orig_ip=b"\x0a\x00\x00\x01", orig_port=50000, resp_ip=b"\x0a\x00\x00\x02",
        resp_port=443, first_index=1, start_ns=0, ip_version=4,
    )  # fmt: skip
    events = [mapper.tls(TlsHandshake(flow, 1, hello, None, True, ())) for hello in (first, second)]
    assert len(mapper._hello_texts) == 1
    assert [e["tls"]["client"]["server_name"] for e in events] == ["a.example", "b.example"]
    assert events[0]["pcap"]["tls"] == events[1]["pcap"]["tls"]
    assert (
        events[0]["pcap"]["tls"]["offered_ciphers"]
        is not events[1]["pcap"]["tls"]["offered_ciphers"]
    )  # each event its own list
