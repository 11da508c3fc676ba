"""Turn the INPUT arguments (files, directories, globs, ``-``) into a list of captures.

Explicitly named files must exist (a missing one is a usage error before anything is read);
directories contribute the files in them whose first bytes are a capture or a compressed
stream (format by magic number, never by extension), in sorted order so runs are repeatable.
"""

from __future__ import annotations

import glob
import os
import stat

from pipeline.capture import CaptureOpenError, open_capture

STDIN = "-"


class InputError(Exception):
    """A usage error in the inputs: printed as one line, exit code 1."""


def capture_problem(path: str) -> str | None:
    """Why the capture reader cannot open `path` (by magic, through compression), or None."""
    try:
        with open_capture(path):
            return None
    except CaptureOpenError as exc:
        return str(exc)


def looks_like_capture(path: str) -> bool:
    return capture_problem(path) is None


def _directory_captures(directory: str, recursive: bool) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.isfile(path) and looks_like_capture(path):
                found.append(path)
        if not recursive:
            break
    return found


def expand_inputs(args: list[str], recursive: bool = False) -> list[str]:
    """Every capture the arguments name, in order, each once. Raises InputError."""
    if not args:
        raise InputError("no input given (a file, a directory, a glob, or - for stdin)")
    paths: list[str] = []
    for arg in args:
        if arg == STDIN:
            if STDIN in paths:
                raise InputError("stdin (-) can be read only once")
            paths.append(STDIN)
        elif os.path.isdir(arg):
            found = _directory_captures(arg, recursive)
            if not found:
                raise InputError(f"no capture files in directory: {arg}")
            paths.extend(found)
        elif os.path.exists(arg):
            if not os.path.isfile(arg) and not _is_fifo(arg):
                raise InputError(f"not a regular file: {arg}")
            if os.path.isfile(arg):
                _check_capture(arg)
            paths.append(arg)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=recursive))
            files = [m for m in matches if os.path.isfile(m) and looks_like_capture(m)]
            if not files:
                raise InputError(f"no capture file matches: {arg}")
            paths.extend(files)
        else:
            raise InputError(f"capture not found: {arg}")
    unique: list[str] = []
    seen: set[str] = set()
    for path in paths:
        key = path if path == STDIN else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _check_capture(path: str) -> None:
    """Fail fast, before any output, on a named file that is not a capture we can read."""
    problem = capture_problem(path)
    if problem is not None:
        raise InputError(problem)


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False
