"""pcap-ingest: packet captures in, SIEM-ready ECS NDJSON events out.

Scripting API:

* `read_events(path, extract=...)` yields event dicts of one capture, lazily;
* `convert(inputs, out, ...)` does what ``pcap-ingest convert`` does and returns `RunStats`.
"""

__version__ = "0.1.0"

from pipeline.convert import convert, read_events
from pipeline.stats import FileStats, RunStats

__all__ = ["FileStats", "RunStats", "__version__", "convert", "read_events"]
