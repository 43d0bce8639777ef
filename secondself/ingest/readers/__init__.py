"""The reader registry: `read_file` picks a reader by suffix and guarantees a clean failure mode.

Contract of `read_file(path)`: it returns one or more ParsedDocuments with text, or raises
`UnreadableFileError` whose `kind` says why ("unsupported", "empty", "too_large", "corrupt",
"encrypted", "io"). No library exception escapes, and no document without blocks is returned
(except `.txt`, whose blocks are streamed lazily; I/O errors while streaming still arrive as
UnreadableFileError). Only regular files are opened (FIFOs and devices are "io" failures), every
string returned can be stored as UTF-8 (lone surrogates, from JSON escapes or a file name, become
U+FFFD), and every date is in range (`dates.in_range`).
"""

from __future__ import annotations

import errno
import json
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from secondself.errors import UnreadableFileError
from secondself.ingest.files import check_regular, text_safe
from secondself.ingest.readers.chat import read_json, read_jsonl
from secondself.ingest.readers.mail import read_eml, read_mbox
from secondself.ingest.readers.office import read_docx, read_html, read_pdf
from secondself.ingest.readers.text import HEAD_BYTES, decode_bytes, read_markdown, read_text
from secondself.types import Block, ParsedDocument

__all__ = ["read_file", "is_supported", "SUPPORTED_SUFFIXES", "MAX_FILE_BYTES"]

Reader = Callable[[Path], list[ParsedDocument]]

_READERS: dict[str, Reader] = {
    ".txt": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".html": read_html,
    ".htm": read_html,
    ".eml": read_eml,
    ".mbox": read_mbox,
    ".json": read_json,
    ".jsonl": read_jsonl,
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_READERS)
MAX_FILE_BYTES = 512 * 1024 * 1024
# These never hold the whole file in memory, so the size cap does not apply to them.
_STREAMED = frozenset({".txt", ".mbox"})


def is_supported(path: str | Path) -> bool:
    """True if a reader exists for the file's suffix (case-insensitive)."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def read_file(path: str | Path) -> list[ParsedDocument]:
    """Read one file into documents, or raise UnreadableFileError (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise UnreadableFileError(path, f"unsupported file type {suffix or '(no suffix)'!r}", "unsupported")
    try:
        stat = path.stat()
        check_regular(path, stat)
        if stat.st_size == 0:
            raise UnreadableFileError(path, "empty file", "empty")
        if stat.st_size <= HEAD_BYTES and not decode_bytes(path.read_bytes()).strip():
            raise UnreadableFileError(path, "file contains only whitespace", "empty")
        if stat.st_size > MAX_FILE_BYTES and suffix not in _STREAMED:
            size_mib = stat.st_size // (1024 * 1024)
            raise UnreadableFileError(
                path, f"file too large ({size_mib} MiB; limit {MAX_FILE_BYTES >> 20} MiB)", "too_large"
            )
        docs = reader(path)
    except UnreadableFileError:
        raise
    except Exception as exc:  # the contract: no library exception escapes a reader
        kind, reason = _describe(exc, suffix)
        raise UnreadableFileError(path, reason, kind) from exc
    # Drop documents that came out without text; lazy block streams are kept as they are.
    docs = [_storable(d) for d in docs if not isinstance(d.blocks, list | tuple) or d.blocks]
    if not docs:
        raise UnreadableFileError(path, "no text content", "empty")
    return docs


def _storable(doc: ParsedDocument) -> ParsedDocument:
    """`doc` with every string UTF-8 encodable (a lazy block stream stays lazy)."""
    blocks: Iterable[Block] = doc.blocks
    blocks = [_storable_block(b) for b in blocks] if isinstance(blocks, list | tuple) else _stream(blocks)
    return replace(doc, key=text_safe(doc.key), title=text_safe(doc.title), blocks=blocks,
                   metadata={text_safe(k): text_safe(str(v)) for k, v in doc.metadata.items()})


def _stream(blocks: Iterable[Block]) -> Iterator[Block]:
    for block in blocks:
        yield _storable_block(block)


def _storable_block(b: Block) -> Block:
    text, heading = text_safe(b.text), text_safe(b.heading)
    speaker = text_safe(b.speaker) if b.speaker is not None else None
    if text is b.text and heading is b.heading and speaker is b.speaker:
        return b
    return replace(b, text=text, heading=heading, speaker=speaker)


def _describe(exc: Exception, suffix: str) -> tuple[str, str]:
    """(kind, short human reason) for an exception raised inside a reader."""
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    detail = " ".join(str(exc).split())[:160]
    if isinstance(exc, FileNotFoundError):
        return "io", "file not found"
    if isinstance(exc, PermissionError):
        return "io", "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "io", "not a regular file"
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:  # a seek to an offset the file itself gave
        return "corrupt", f"damaged {suffix} file (an internal offset points outside it)"
    if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile):
        return "io", f"read error: {exc.strerror or detail or name}"
    if isinstance(exc, MemoryError):
        return "too_large", "not enough memory to read this file"
    if module.startswith("pypdf"):
        if name in ("FileNotDecryptedError", "WrongPasswordError"):
            return "encrypted", "encrypted PDF (password required)"
        if name == "DependencyError":
            return "encrypted", f"encrypted PDF (cannot decrypt: {detail})"
        return "corrupt", f"corrupt PDF: {detail or name}"
    if isinstance(exc, zipfile.BadZipFile) or name == "PackageNotFoundError":
        return "corrupt", f"not a valid {suffix} (not a zip archive)"
    if suffix == ".pdf" and not isinstance(exc, RecursionError):  # pypdf meets broken structure as TypeError...
        return "corrupt", f"corrupt PDF ({name}: {detail})"
    if suffix == ".docx" and not isinstance(exc, RecursionError):  # ... and python-docx as lxml or zlib errors
        return "corrupt", f"not a valid .docx ({name}: {detail})" if detail else f"not a valid .docx ({name})"
    if isinstance(exc, json.JSONDecodeError):
        return "corrupt", f"invalid JSON at line {exc.lineno}: {exc.msg}"
    if isinstance(exc, UnicodeError):
        return "corrupt", "text could not be decoded"
    if isinstance(exc, RecursionError):
        return "corrupt", f"file structure too deeply nested ({suffix})"
    return (
        "corrupt",
        f"could not read {suffix} file: {name}: {detail}"
        if detail
        else f"could not read {suffix} file: {name}",
    )
