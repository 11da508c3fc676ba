"""TLS handshake events through the converter (`--extract tls`), against tshark truth.

Handshakes come from the flow table's reassembled streams (the flow's reassembly stops once
its handshake is read). For every reference capture the ClientHellos, their SNIs and their
offered ALPN strings equal truth `tls_client_hellos`, `tls_sni` and `tls_alpn`, except where
named below with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.convert import read_events
from tests.conftest import CAPTURE_PARAMS, SHARED, truth_for

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
