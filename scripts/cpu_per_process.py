#!/usr/bin/env python3
"""Run a command and print the CPU seconds (user + system) each process of its tree used.

    python scripts/cpu_per_process.py -- python -m pipeline convert CAP -o OUT -w 2

Why: on a shared 2-core machine wall time moves with the neighbours, CPU time much less; and
the engine's processes (coordinator, reader, workers) each get a line, so an imbalance
between workers or a busy reader shows. Processes are sampled every 50 ms (psutil), so one
that lives less than that may be missed; a process's last sample is what it used up to then.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

SAMPLE_S = 0.05


def main() -> int:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("usage: cpu_per_process.py -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    started = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    used: dict[int, tuple[str, float]] = {}
    while child.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for process in tree:
            try:
                times = process.cpu_times()
                name = "coordinator" if process.pid == child.pid else process.name()
                used[process.pid] = (name, times.user + times.system)
            except psutil.Error:
                pass
        time.sleep(SAMPLE_S)
    wall = time.monotonic() - started
    for pid, (name, cpu) in sorted(used.items()):
        print(f"{cpu:8.2f} s CPU  pid {pid}  {name}")
    total = sum(cpu for _, cpu in used.values())
    print(f"{total:8.2f} s CPU in all, {wall:.2f} s wall, exit {child.returncode}")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
