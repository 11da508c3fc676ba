"""How much memory a run holds: anonymous resident memory, per process and over the tree.

Not RSS and not USS: both count the pages of the memory-mapped capture (shared page cache,
or "private clean" pages that one process alone touched), which the kernel can drop at any
time. RssAnon (/proc/PID/status) is the heap and the queues — what the run's bounds are
about — and reading it is cheap, where smaps walks every page of a GiB mapping. Linux only;
elsewhere it reads 0.
"""

from __future__ import annotations


def private_memory_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_private_memory_bytes(pids: list[int]) -> int:
    return sum(private_memory_bytes(pid) for pid in pids)
