"""Capture sets (`--one-capture`): rotated files converted as one capture.

A capture cut into files must give the flows of the uncut capture — one flow where a
connection crosses a file boundary — whatever order the files are named in, while every
packet event keeps its own file's name, frame number and event id.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline import convert
from tests.conftest import SHARED, needs_shared
from tests.test_convert import as_pcap, frames_of
from tests.test_truth_packets import read_ndjson_zst

FLOW_FIELDS = ("source", "destination", "network")


def flow_view(event: dict[str, Any]) -> tuple[Any, ...]:
    flow = event["pcap"]["flow"]
    return (
        event["event"]["start"],
        event["event"]["end"],
        repr([event[k] for k in FLOW_FIELDS]),
        flow["state"],
        flow.get("history"),
        flow["end_reason"],
    )


def split(capture: Path, cuts: list[int], directory: Path) -> list[Path]:
    frames = frames_of(capture)
    bounds = [0, *cuts, len(frames)]
    parts = []
    for n, (a, b) in enumerate(itertools.pairwise(bounds)):
        part = directory / f"part{n}.pcap"
        part.write_bytes(as_pcap(frames[a:b]))
        parts.append(part)
    return parts


@needs_shared
@pytest.mark.parametrize("reverse", [False, True])
def test_a_cut_capture_has_the_flows_of_the_whole(tmp_path: Path, reverse: bool) -> None:
    whole = SHARED / "dpkt__http.pcap"  # 43 frames: a long HTTP connection, DNS, another
    (tmp_path / "in").mkdir()
    parts = split(whole, [10, 30], tmp_path / "in")
    named = list(reversed(parts)) if reverse else parts
    run = convert([str(p) for p in named], str(tmp_path / "set"), one_capture=True)
    assert [s.status for s in run.files] == ["ok"] * 3
    assert sum(s.frames for s in run.files) == 43
    (output,) = {o for s in run.files for o in s.outputs}
    assert Path(output).name == f"{named[0].name}.set.ndjson.zst"
    events = read_ndjson_zst(Path(output))
    convert([str(whole)], str(tmp_path / "whole"))
    reference = read_ndjson_zst(tmp_path / "whole" / "dpkt__http.pcap.ndjson.zst")

    flows = [e for e in events if e["event"]["dataset"] == "pcap_ingest.flow"]
    expected = [e for e in reference if e["event"]["dataset"] == "pcap_ingest.flow"]
    assert sorted(map(flow_view, flows)) == sorted(map(flow_view, expected))
    crossing = [f for f in flows if "last_file" in f["pcap"]]
    assert crossing, "the HTTP connection runs through all three files"
    http = next(f for f in crossing if f["pcap"]["file"].endswith("part0.pcap"))
    assert http["pcap"]["last_file"].endswith("part2.pcap")
    assert http["pcap"]["frame"] == 1  # numbered in its own file
    assert http["event"]["id"].endswith("-flow-1")

    packets = [e for e in events if e["event"]["dataset"] == "pcap_ingest.packet"]
    assert [Path(e["pcap"]["file"]).name for e in packets] == (
        ["part0.pcap"] * 10 + ["part1.pcap"] * 20 + ["part2.pcap"] * 13
    )
    assert [e["pcap"]["frame"] for e in packets] == [
        *range(1, 11),
        *range(1, 21),
        *range(1, 14),
    ]
    assert len({e["event"]["id"] for e in events}) == len(events)

    # Without --one-capture the connection is cut into one flow per file.
    apart = convert([str(p) for p in parts], str(tmp_path / "apart"))
    assert sum(s.events["flow"] for s in apart.files) > len(expected)


def test_one_capture_refuses_stdin_and_an_existing_output(tmp_path: Path) -> None:
    from pipeline.inputs import InputError

    with pytest.raises(InputError, match="standard input"):
        convert(["-"], str(tmp_path / "o"), one_capture=True)
    from pipeline.gen.capture_mix import write_capture

    path = tmp_path / "a.pcap"
    write_capture(str(path), 100, seed=3)
    convert([str(path)], str(tmp_path / "o"), one_capture=True)
    with pytest.raises(InputError, match="output exists"):
        convert([str(path)], str(tmp_path / "o"), one_capture=True)
    counts = Counter(
        s.status
        for s in convert([str(path)], str(tmp_path / "o"), one_capture=True, force=True).files
    )
    assert counts == {"ok": 1}
