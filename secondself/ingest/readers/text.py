"""Plain text (`.txt`, streamed) and Markdown (`.md`, `.markdown`) readers, plus shared text helpers.

Decoding never fails: a BOM decides (UTF-8, UTF-16, UTF-32); otherwise the first 64 KiB must be valid
UTF-8, else cp1252, else latin-1. Bytes later in the file that do not fit are replaced (U+FFFD).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

from secondself.errors import UnreadableFileError
from secondself.text.dates import date_in_heading, parse_date
from secondself.types import Block, ParsedDocument

__all__ = [
    "read_text", "read_markdown", "detect_encoding", "decode_bytes", "open_text",
    "split_paragraphs", "split_long", "HeadingStack", "MAX_PARAGRAPH",
]  # fmt: skip

HEAD_BYTES = 64 * 1024
MAX_PARAGRAPH = 20_000  # chars; longer paragraphs are yielded in pieces
_READ_LIMIT = 8192  # chars per readline call, so one giant line is never held whole


def detect_encoding(head: bytes, at_eof: bool = False) -> str:
    """Codec name for a file starting with `head`; BOM codecs ("utf-8-sig", "utf-16") consume the BOM."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for codec in ("utf-8", "cp1252"):
        try:
            # Incremental, so a multi-byte character cut at the 64 KiB boundary is not an error.
            codecs.getincrementaldecoder(codec)().decode(head, final=at_eof)
            return codec
        except UnicodeDecodeError:
            continue
    return "latin-1"  # decodes any byte


def decode_bytes(data: bytes) -> str:
    """Decode a whole file's bytes with `detect_encoding`; never raises."""
    return data.decode(detect_encoding(data[:HEAD_BYTES], at_eof=len(data) <= HEAD_BYTES), errors="replace")


def open_text(path: Path) -> TextIO:
    """Open `path` for incremental text reading with the detected encoding (universal newlines)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        at_eof = not f.read(1)
    return open(path, encoding=detect_encoding(head, at_eof), errors="replace", newline=None)


def split_long(text: str, limit: int = MAX_PARAGRAPH) -> list[str]:
    """Cut `text` into stripped pieces of at most `limit` chars, preferring whitespace in the second half."""
    pieces = []
    while len(text) > limit:
        cut = _cut_point(text, limit)
        pieces.append(text[:cut].strip())
        text = text[cut:]
    pieces.append(text.strip())
    return [p for p in pieces if p]


def _cut_point(text: str, limit: int) -> int:
    for sep in ("\n", " "):
        cut = text.rfind(sep, limit // 2, limit)
        if cut > 0:
            return cut
    return limit


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, trailing whitespace trimmed, long ones split."""
    out: list[str] = []
    for para in re.split(r"\n[ \t\r\f\v]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        out.extend(split_long("\n".join(line.rstrip() for line in para.strip("\n").split("\n"))))
    return out


class HeadingStack:
    """The current heading path; a dated heading dates everything below it until it is popped."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str, datetime | None]] = []

    def push(self, level: int, text: str) -> None:
        while self._items and self._items[-1][0] >= level:
            self._items.pop()
        self._items.append((level, text, date_in_heading(text)))

    @property
    def path(self) -> str:
        return " > ".join(text for _, text, _ in self._items if text)

    @property
    def date(self) -> datetime | None:
        return next((d for _, _, d in reversed(self._items) if d is not None), None)


# ---------------------------------------------------------------------------------------------- .txt


def read_text(path: Path) -> list[ParsedDocument]:
    """One note whose `blocks` is a generator: the file is read line by line only when consumed."""
    with open(path, "rb") as f:  # surface I/O errors now, not at first iteration
        f.read(1)
    return [ParsedDocument(key="", title=path.stem, blocks=_stream_paragraphs(path), kind="note")]


def _stream_paragraphs(path: Path) -> Iterator[Block]:
    try:
        with open_text(path) as f:
            buf: list[str] = []
            size = 0
            while True:
                line = f.readline(_READ_LIMIT)
                if not line or not line.strip():
                    if buf:
                        yield from (Block(p) for p in split_long("".join(buf)))
                        buf, size = [], 0
                    if not line:
                        return
                    continue
                buf.append(line)
                size += len(line)
                while size > MAX_PARAGRAPH:
                    # Yield a piece but keep the raw tail (it may end mid-line) for the next one.
                    text = "".join(buf)
                    cut = _cut_point(text, MAX_PARAGRAPH)
                    if text[:cut].strip():
                        yield Block(text[:cut].strip())
                    buf = [text[cut:]]
                    size = len(buf[0])
    except OSError as exc:
        raise UnreadableFileError(path, f"read error: {exc.strerror or exc}", "io") from exc


# ------------------------------------------------------------------------------------------ markdown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_FM_KEY = re.compile(r"^([A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]+(.*))?$")
_FM_ITEM = re.compile(r"^\s*-\s+(.*)$")


def read_markdown(path: Path) -> list[ParsedDocument]:
    """One note: front matter → title/date/metadata; paragraphs carry heading path and heading dates."""
    text = decode_bytes(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    front, body_start = parse_front_matter(lines)
    stack = HeadingStack()
    blocks, first_h1 = _markdown_blocks(lines[body_start:], stack)
    metadata = {k: ", ".join(v) if isinstance(v, list) else v for k, v in front.items()}
    date = None
    for key in ("date", "created", "updated"):
        raw = front.get(key)
        date = parse_date(raw[0] if isinstance(raw, list) and raw else raw or None)
        if date is not None:
            break
    title = metadata.get("title") or first_h1 or path.stem
    return [ParsedDocument(key="", title=title, blocks=blocks, date=date, kind="note", metadata=metadata)]


def parse_front_matter(lines: list[str]) -> tuple[dict[str, str | list[str]], int]:
    """Parse `---`-delimited front matter: `key: value`, `key: [a, b]`, `key:` + `- item` lines.

    Returns (data, index of the first body line). Anything that is not this simple subset means the
    `---` was a horizontal rule, and ({}, 0) is returned so no text is lost.
    """
    if not lines or lines[0].strip() != "---":
        return {}, 0
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        return {}, 0
    data: dict[str, str | list[str]] = {}
    last_key: str | None = None
    for raw in lines[1:end]:
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        item = _FM_ITEM.match(raw)
        if item and last_key is not None:
            current = data.get(last_key)
            data[last_key] = [*(current if isinstance(current, list) else []), _unquote(item.group(1))]
            continue
        m = _FM_KEY.match(raw)
        if m:
            last_key = m.group(1).lower()
            data[last_key] = _fm_value((m.group(2) or "").strip())
        elif raw[:1].isspace() and last_key is not None:
            continue  # nested mapping or continuation: ignored, it is still front matter
        else:
            return {}, 0
    return data, end + 1


def _fm_value(value: str) -> str | list[str]:
    if value.startswith("[") and value.endswith("]"):
        return [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
    if value[:1] not in ("'", '"'):
        value = re.sub(r"\s+#.*$", "", value)  # YAML comment
    return _unquote(value)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _markdown_blocks(lines: Iterable[str], stack: HeadingStack) -> tuple[list[Block], str]:
    """Paragraph blocks and the first level-1 heading. A file of headings only yields the headings."""
    blocks: list[Block] = []
    heading_blocks: list[Block] = []
    first_h1 = ""
    para: list[str] = []
    fence: str | None = None
    in_list = pending_blank = False

    def flush() -> None:
        nonlocal para, in_list, pending_blank
        text = "\n".join(para).strip("\n")
        if text.strip():
            blocks.extend(Block(p, heading=stack.path, date=stack.date) for p in split_long(text))
        para, in_list, pending_blank = [], False, False

    for line in lines:
        if fence is not None:
            para.append(line)
            if re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", line):
                fence = None
                flush()
            continue
        if not line.strip():
            if in_list:
                pending_blank = True  # a blank line inside a list does not end it
            else:
                flush()
            continue
        if pending_blank:
            pending_blank = False
            if not (_LIST_ITEM.match(line) or line.startswith(("  ", "\t"))):
                flush()
        if m := _FENCE.match(line):
            flush()
            fence = m.group(1)
            para.append(line)
            continue
        if m := _ATX.match(line):
            flush()
            level, text = len(m.group(1)), (m.group(2) or "").strip()
            stack.push(level, text)
            if text:
                heading_blocks.append(Block(text, heading=stack.path, date=stack.date))
            if level == 1 and not first_h1:
                first_h1 = text
            continue
        if _HR.match(line):
            flush()
            continue
        if _LIST_ITEM.match(line):
            in_list = True
        para.append(line.rstrip())
    flush()
    return (blocks or heading_blocks), first_h1
