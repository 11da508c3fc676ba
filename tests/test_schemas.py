"""The event schemas: every event of every reference capture, in ECS and in OCSF, validates
against the JSON Schema kept in pipeline/events/schemas/; hand-checked OCSF values for one
flow, one DNS, one HTTP and one TLS event; a mutated event fails; OCSF output is the same at
-w 2 as at -w 0.

Runtime: ~70 s on 2 cores, most of it JSON Schema validation of the corpus's ~73k events per
schema (jsonschema costs ~0.2–0.5 ms an event with `$ref` successes memoised); each capture
is converted once per schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from jsonschema import _keywords, validators

from pipeline.convert import DATASETS, convert
from pipeline.events import ocsf
from pipeline.gen import write_capture
from pipeline.inputs import InputError
from tests.conftest import HAVE_SHARED, SHARED, needs_shared

SCHEMAS_DIR = Path(ocsf.__file__).resolve().parent / "schemas"
OCSF_CLASS_FILES = {
    0: "base_event",
    4001: "network_activity",
    4002: "http_activity",
    4003: "dns_activity",
}
ECS_DATASETS = DATASETS
OCSF_DATASETS = tuple(d for d in DATASETS if d != "stats")  # stats: no OCSF class (refused)


def _cached_ref(validator: Any, ref: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """``$ref`` with its successes memoised by (ref, instance): endpoints, connection parts
    and metadata recur across events, and jsonschema's per-keyword overhead dominates."""
    key = (ref, orjson.dumps(instance, option=orjson.OPT_SORT_KEYS))
    if key in _REF_OK:
        return
    errors = list(_keywords.ref(validator, ref, instance, schema))
    if not errors:
        _REF_OK.add(key)
    yield from errors


_REF_OK: set[tuple[str, bytes]] = set()
_FastValidator = validators.extend(jsonschema.Draft202012Validator, {"$ref": _cached_ref})


@cache
def validator(relative: str) -> Any:
    """One compiled validator per schema file (checked against the draft first)."""
    schema = json.loads((SCHEMAS_DIR / relative).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return _FastValidator(schema)


def schema_file(schema: str, event: dict[str, Any]) -> str:
    if schema == "ecs":
        return f"ecs/{event['event']['dataset'].removeprefix('pcap_ingest.')}.json"
    return f"ocsf/{OCSF_CLASS_FILES[event['class_uid']]}.json"


def corpus() -> list[str]:
    """Every capture file of the shared corpus, malformed/ included."""
    files = [*SHARED.iterdir(), *(SHARED / "malformed").iterdir()] if HAVE_SHARED else []
    return sorted(str(p) for p in files if p.is_file() and p.suffix not in (".md", ".tsv", ".json"))


def read_outputs(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [orjson.loads(line) for line in path.read_bytes().splitlines()]
        for path in sorted(out.glob("*.ndjson"))
    }


@pytest.fixture(scope="module", params=["ecs", "ocsf"])
def corpus_events(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """The events of every capture, all datasets, in one schema (converted once, -w 0)."""
    schema = request.param
    out = tmp_path_factory.mktemp(f"corpus-{schema}")
    extract = ECS_DATASETS if schema == "ecs" else OCSF_DATASETS
    convert(corpus(), str(out), extract=extract, compression="none", workers=0, schema=schema)
    return schema, read_outputs(out)


@needs_shared
def test_every_event_of_the_corpus_validates(
    corpus_events: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    schema, outputs = corpus_events
    failures: list[str] = []
    seen: dict[str, int] = {}
    for name, events in outputs.items():
        for event in events:
            file = schema_file(schema, event)
            seen[file] = seen.get(file, 0) + 1
            for error in validator(file).iter_errors(event):
                failures.append(f"{name}: {file} {error.json_path}: {error.message[:200]}")
    assert not failures, f"{len(failures)} failures, first: " + "\n".join(failures[:10])
    expected = (
        {f"ecs/{d}.json" for d in ECS_DATASETS}
        if schema == "ecs"
        else {f"ocsf/{c}.json" for c in OCSF_CLASS_FILES.values()}
    )
    assert set(seen) == expected  # every schema was exercised by the corpus
    assert sum(seen.values()) > 70_000  # ~73k: every event, packets included


@needs_shared
def test_ocsf_classification_is_consistent(
    corpus_events: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    """What JSON Schema cannot say: type_uid arithmetic, time against original_time, and
    that the dataset decides the class."""
    schema, outputs = corpus_events
    if schema != "ocsf":
        pytest.skip("OCSF only")
    classes = {
        "pcap_ingest.packet": {4001, 0},
        "pcap_ingest.anomaly": {4001, 0},
        "pcap_ingest.flow": {4001},
        "pcap_ingest.tls": {4001},
        "pcap_ingest.http": {4002},
        "pcap_ingest.dns": {4003},
    }
    for events in outputs.values():
        for event in events:
            assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
            assert event["class_uid"] in classes[event["metadata"]["log_name"]]
            original = event["metadata"]["original_time"]
            seconds = _epoch_seconds(original[:19])
            assert event["time"] == seconds * 1000 + int(original[20:23])
            if event["metadata"]["log_name"] == "pcap_ingest.anomaly":
                assert event["status_id"] == ocsf.STATUS_FAILURE and event["status_detail"]


def _epoch_seconds(text: str) -> int:
    from datetime import datetime, timezone

    stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(stamp.timestamp())


def _ocsf_events(capture: str, tmp_path: Path, extract: tuple[str, ...]) -> list[dict[str, Any]]:
    convert([str(SHARED / capture)], str(tmp_path), extract=extract, compression="none",
            workers=0, schema="ocsf")  # fmt: skip
    (events,) = read_outputs(tmp_path).values()
    return events


@needs_shared
def test_ocsf_flow_and_http_by_hand(tmp_path: Path) -> None:
    """dpkt's http.cap: the well-known 34-packet HTTP connection (tshark -z conv,tcp: 16
    frames / 1351 bytes from the client, 18 / 19344 back) and its GET of /download.html."""
    events = _ocsf_events("dpkt__http.pcap", tmp_path, ("flow", "http"))
    flow = next(e for e in events if e["metadata"]["uid"].endswith("-flow-1"))
    assert (flow["class_uid"], flow["category_uid"], flow["activity_id"]) == (4001, 4, 6)
    assert flow["type_uid"] == 400106 and flow["severity_id"] == 1
    assert flow["src_endpoint"] == {"ip": "145.254.160.237", "port": 3372}
    assert flow["dst_endpoint"] == {"ip": "65.208.228.223", "port": 80}
    assert flow["traffic"] == {
        "bytes": 20695, "packets": 34, "bytes_out": 1351, "packets_out": 16,
        "bytes_in": 19344, "packets_in": 18, "bytes_missed": 0,
    }  # fmt: skip
    info = flow["connection_info"]
    assert (info["protocol_num"], info["protocol_name"], info["protocol_ver_id"]) == (6, "tcp", 4)
    assert info["direction_id"] == 0 and info["flag_history"] == "ShADadfF"
    assert info["community_uid"] == "1:D0Hb5PnRilB52ktTszXCb9PSY8M="
    assert flow["time"] == flow["start_time"] == 1084443427311  # 2004-05-13T10:17:07.311Z
    assert flow["duration"] == flow["end_time"] - flow["start_time"] == 30393
    assert flow["metadata"]["version"] == "1.5.0"
    assert flow["metadata"]["product"]["name"] == "pcap-ingest"
    assert flow["metadata"]["log_name"] == "pcap_ingest.flow"
    assert flow["unmapped"]["flow"]["state"] == "SF"

    http = next(
        e
        for e in events
        if e["class_uid"] == 4002 and e["http_request"]["url"]["hostname"] == "www.ethereal.com"
    )
    assert (http["activity_id"], http["activity_name"], http["type_uid"]) == (3, "Get", 400203)
    request, response = http["http_request"], http["http_response"]
    assert request["http_method"] == "GET" and request["version"] == "1.1"
    assert request["url"]["path"] == "/download.html"
    assert request["url"]["url_string"] == "http://www.ethereal.com/download.html"
    assert request["user_agent"].startswith("Mozilla/5.0 (Windows; U; Windows NT 5.1; en-US")
    assert request["referrer"] == "http://www.ethereal.com/development.html"
    assert response["code"] == 200 and response["message"] == "OK"
    assert response["content_type"].startswith("text/html")
    assert response["body_length"] == 18070  # the Content-Length of the page
    assert http["status_id"] == 1
    # The transaction belongs to the flow above: same connection uid and community id.
    assert http["connection_info"]["uid"] == flow["metadata"]["uid"]
    assert http["connection_info"]["community_uid"] == info["community_uid"]
    assert http["src_endpoint"] == flow["src_endpoint"]


@needs_shared
def test_ocsf_dns_by_hand(tmp_path: Path) -> None:
    """nDPI's dns.pcap: e7.whatsapp.net A, answered with 8 addresses (tshark's truth)."""
    events = _ocsf_events("ndpi__dns.pcap", tmp_path, ("dns",))
    dns = next(e for e in events if e["query"]["hostname"] == "e7.whatsapp.net")
    assert (dns["class_uid"], dns["category_uid"], dns["activity_id"]) == (4003, 4, 6)
    assert dns["type_uid"] == 400306 and dns["activity_name"] == "Traffic"
    assert dns["query"] == {
        "hostname": "e7.whatsapp.net", "type": "A", "class": "IN", "opcode_id": 0,
        "opcode": "Query", "packet_uid": 30787,
    }  # fmt: skip
    truth = json.loads((SHARED / "truth" / "ndpi__dns.pcap.json").read_text())
    expected = sorted(ip for name, ip in truth["dns_answers_a"] if name == "e7.whatsapp.net")
    assert sorted(a["rdata"] for a in dns["answers"]) == expected
    assert {(a["type"], a["class"], a["ttl"]) for a in dns["answers"]} == {("A", "IN", 491)}
    assert dns["answers"][0]["flag_ids"] == [3, 4]  # RD, RA
    assert (dns["rcode_id"], dns["rcode"]) == (0, "NoError")
    assert dns["src_endpoint"] == {"ip": "82.178.113.245", "port": 47255}
    assert dns["dst_endpoint"]["port"] == 53
    assert dns["connection_info"]["protocol_name"] == "udp"
    assert dns["query_time"] <= dns["response_time"]
    unsolicited = next(e for e in events if e["query"]["hostname"] == "www.l.google.com")
    assert (unsolicited["activity_id"], unsolicited["type_uid"]) == (2, 400302)  # a response


@needs_shared
def test_ocsf_tls_by_hand(tmp_path: Path) -> None:
    """Zeek's chrome-34-google.pcap: SNI google.de, TLS 1.2, ECDHE-RSA-AES128-GCM-SHA256
    (0xc02f) chosen, spdy/3.1 negotiated — as Zeek's own ssl.log baseline has it."""
    events = _ocsf_events("zeek__chrome-34-google.pcap", tmp_path, ("tls",))
    (tls_event,) = events
    assert (tls_event["class_uid"], tls_event["activity_id"], tls_event["type_uid"]) == (
        4001, 6, 400106,
    )  # fmt: skip
    tls = tls_event["tls"]
    assert tls["sni"] == "google.de" and tls["version"] == "1.2" and tls["cipher"] == "0xc02f"
    assert tls["client_ciphers"][:2] == ["0xc02b", "0xc02f"]
    detail = tls_event["unmapped"]["tls"]
    assert tls["ja3_hash"] == {
        "algorithm_id": 1,
        "algorithm": "MD5",
        "value": hashlib.md5(detail["ja3_string"].encode()).hexdigest(),
    }
    assert tls["ja3s_hash"]["value"] == hashlib.md5(detail["ja3s_string"].encode()).hexdigest()
    assert detail["next_protocol"] == "spdy/3.1"
    (ja4,) = tls_event["ja4_fingerprint_list"]
    assert ja4["type_id"] == 1 and ja4["value"].startswith("t12d")
    assert "_".join((ja4["section_a"], ja4["section_b"], ja4["section_c"])) == ja4["value"]
    assert tls_event["src_endpoint"] == {"ip": "192.168.4.149", "port": 55881}
    assert tls_event["dst_endpoint"] == {"ip": "74.125.239.152", "port": 443}


def _valid_event(schema: str) -> dict[str, Any]:
    """A real event of each schema (a flow record of a generated capture)."""
    return _generated_events(schema)[0]


@cache
def _generated_events(schema: str) -> list[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "g.pcap"
        write_capture(str(capture), 300, seed=2)
        out = Path(tmp) / "out"
        convert([str(capture)], str(out), extract=("flow",), compression="none", schema=schema)
        (events,) = read_outputs(out).values()
    return events


@pytest.mark.parametrize(
    ("schema", "mutate"),
    [
        ("ecs", lambda e: e["source"].__setitem__("port", "80")),  # a wrong type
        ("ecs", lambda e: e.__setitem__("@timestmap", e.pop("@timestamp"))),  # misspelt, required
        ("ecs", lambda e: e.__setitem__("severity", 3)),  # unknown top-level field
        ("ecs", lambda e: e["event"].__setitem__("dataset", "pcap_ingest.flows")),
        ("ocsf", lambda e: e.__setitem__("time", str(e["time"]))),  # a wrong type
        ("ocsf", lambda e: e.__setitem__("classuid", e.pop("class_uid"))),  # misspelt, required
        ("ocsf", lambda e: e.__setitem__("network", {})),  # unknown top-level field
        ("ocsf", lambda e: e.__setitem__("type_uid", 400199)),  # type_uid != class*100+activity
        ("ocsf", lambda e: e["connection_info"].pop("direction_id")),  # required in the object
        ("ocsf", lambda e: [e.pop("src_endpoint"), e.pop("dst_endpoint")]),  # no endpoint
    ],
    ids=[
        "ecs-type", "ecs-misspelt", "ecs-unknown", "ecs-dataset", "ocsf-type",
        "ocsf-misspelt", "ocsf-unknown", "ocsf-type-uid", "ocsf-direction", "ocsf-endpoints",
    ],
)  # fmt: skip
def test_a_mutated_event_fails_validation(schema: str, mutate: Any) -> None:
    event = copy.deepcopy(_valid_event(schema))
    file = schema_file(schema, event)
    assert validator(file).is_valid(event)
    mutate(event)
    assert not jsonschema.Draft202012Validator(
        json.loads((SCHEMAS_DIR / file).read_text())
    ).is_valid(event)


def test_ocsf_output_is_the_same_with_two_workers(tmp_path: Path) -> None:
    """Workers receive ConvertOptions: -w 2 --ordered gives -w 0's bytes, in OCSF too."""
    capture = tmp_path / "mix.pcap"
    write_capture(str(capture), 6000, seed=11)
    extract = OCSF_DATASETS
    outputs = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        convert([str(capture)], str(out), extract=extract, compression="none",
                workers=workers, ordered=True, schema="ocsf")  # fmt: skip
        outputs.append((out / "mix.pcap.ndjson").read_bytes())
    assert outputs[0] == outputs[1]
    events = [orjson.loads(line) for line in outputs[0].splitlines()]
    assert {e["class_uid"] for e in events} >= {4001, 4002, 4003}
    for event in events:
        assert validator(schema_file("ocsf", event)).is_valid(event)


def test_ocsf_refuses_stats_with_one_line(tmp_path: Path) -> None:
    capture = tmp_path / "g.pcap"
    write_capture(str(capture), 50, seed=1)
    with pytest.raises(InputError, match="no OCSF event class for dataset"):
        convert([str(capture)], str(tmp_path / "o"), extract=("flow", "stats"), schema="ocsf")
    with pytest.raises(InputError, match="unknown --schema"):
        convert([str(capture)], str(tmp_path / "o"), schema="cef")
    cli = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", str(capture), "-o", str(tmp_path / "o"),
         "--schema", "ocsf", "--extract", "flow,stats"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 1
    assert len(cli.stderr.strip().splitlines()) == 1 and "stats" in cli.stderr
    assert not (tmp_path / "o").exists()


def test_cli_schema_option_writes_ocsf(tmp_path: Path) -> None:
    capture = tmp_path / "g.pcap"
    write_capture(str(capture), 200, seed=5)
    cli = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", str(capture), "-o", "-", "-w", "0",
         "--schema", "ocsf", "-q"],
        capture_output=True, check=True,
    )  # fmt: skip
    events = [orjson.loads(line) for line in cli.stdout.splitlines()]
    assert len(events) > 200
    assert {e["metadata"]["log_name"] for e in events} == {
        "pcap_ingest.packet", "pcap_ingest.flow",
    }  # fmt: skip
    for event in events:
        assert validator(schema_file("ocsf", event)).is_valid(event)
