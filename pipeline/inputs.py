"""Turn the INPUT arguments (files, directories, globs, ``-``) into a list of captures.

Explicitly named files must exist (a missing one is a usage error before anything is read);
directories contribute the files in them whose first bytes are a capture or a compressed
stream (format by magic number, never by extension), in sorted order so runs are repeatable.
"""

from __future__ import annotations

import glob
import os

STDIN = "-"

# Magic numbers of what a capture file may start with: pcap (both byte orders, µs and ns),
# pcapng's Section Header Block, and the compressed containers we stream through.
CAPTURE_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
    b"\x1f\x8b",  # gzip
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\xfd7zXZ\x00",  # xz
    b"BZh",  # bzip2
)


class InputError(Exception):
    """A usage error in the inputs: printed as one line, exit code 1."""


def looks_like_capture(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in CAPTURE_MAGICS)


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
            paths.append(arg)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=recursive))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                raise InputError(f"no file matches: {arg}")
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


def _is_fifo(path: str) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False
