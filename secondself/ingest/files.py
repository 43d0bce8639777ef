"""Finding, naming and opening the files of a source, safely.

Only regular files are ever opened: a FIFO would block `open` forever and a link to `/dev/zero` reads forever,
so the type is checked with `stat` before any open, and again on the open descriptor (`fstat`) in case the file
was swapped in between. Names are stored as text: a name that is not valid UTF-8 keeps its bytes visible as
`\\xNN` escapes, the same on every run, so a re-ingest finds the file again.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import UnreadableFileError

__all__ = ["walk_files", "relative_name", "check_regular", "open_regular", "file_hash", "text_safe"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def walk_files(root: Path) -> Iterator[Path]:
    """Files under root (or root itself if it is no folder), sorted, skipping hidden names; follows symlinks
    without looping. Everything that is not a folder is yielded, so FIFOs and dangling links get a reason."""
    if not root.is_dir():
        yield root
        return
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a second link to a folder already walked
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def relative_name(path: Path, base: Path) -> str:
    """The stored name of `path` below `base` ("notes/a.md"); bytes that are not UTF-8 become `\\xNN`."""
    return text_safe(path.relative_to(base).as_posix(), escape=True)


def text_safe(text: str, escape: bool = False) -> str:
    """`text` without lone surrogates (which cannot be stored as UTF-8): an undecodable byte from a file name
    becomes `\\xNN` with `escape`, else U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    if escape:
        return os.fsencode(text).decode("utf-8", errors="backslashreplace")
    return _SURROGATE.sub("\ufffd", text)


def check_regular(path: Path, st: os.stat_result) -> None:
    """Raise UnreadableFileError ("io") unless `st` (of `path`, links followed) is a regular file."""
    if stat.S_ISREG(st.st_mode):
        return
    what = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
    raise UnreadableFileError(path, f"not a regular file ({what})", "io")


def open_regular(path: Path) -> BinaryIO:
    """Open `path` for binary reading, only if it is a regular file; never blocks on a FIFO."""
    check_regular(path, os.stat(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        check_regular(path, os.fstat(fd))  # swapped for a FIFO or device since the stat above
    except UnreadableFileError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def file_hash(path: Path) -> str:
    """SHA-256 of a regular file's bytes; UnreadableFileError for anything else, OSError when unreadable."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
