"""PDF (pypdf), Word `.docx` (python-docx) and HTML (BeautifulSoup + lxml) readers.

Heavy libraries are imported inside the readers so importing the registry stays cheap. Library
exceptions are left to the registry (`read_file`) to translate, except where a reader knows better
(encrypted or scanned PDFs).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from secondself.errors import UnreadableFileError
from secondself.ingest.readers.text import HeadingStack, split_long, split_paragraphs
from secondself.text.dates import parse_date
from secondself.types import Block, ParsedDocument

__all__ = ["read_pdf", "read_docx", "read_html", "html_to_blocks", "html_to_text", "check_zip"]

# python-docx's built-in template carries this creation date; a file still showing it never set one.
_DOCX_TEMPLATE_CREATED = "2013-12-23T23:15:00"
# Zip-bomb limits for a .docx, checked before python-docx unpacks anything. A 1,000-page thesis has about
# 30,000 entries' worth of headroom, 20 MiB of XML and 500,000 elements; parsing costs time and memory per
# element (lxml holds the whole tree), so the element count is what bounds a file that packs millions of
# empty paragraphs into 30 KB.
MAX_ZIP_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 512 << 20  # all entries, images included (python-docx holds every part in memory)
MAX_XML_BYTES = 128 << 20
MAX_XML_ELEMENTS = 1_000_000
_W_PPR = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}pPr"


# ----------------------------------------------------------------------------------------------- PDF


def read_pdf(path: Path) -> list[ParsedDocument]:
    """One document; each paragraph of page N is a block with heading "Page N".

    Raises UnreadableFileError "encrypted" when a password is needed, "empty" when no page has text.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    # pypdf logs every repair it attempts; we report the file's fate once, as UnreadableFileError.
    logging.getLogger("pypdf").setLevel(logging.ERROR)

    with open(path, "rb") as f:
        if b"%PDF-" not in f.read(1024):  # pypdf would report a confusing stream error instead
            raise UnreadableFileError(path, "corrupt PDF: no %PDF header (not a PDF file?)", "corrupt")
    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            ok = reader.decrypt("")  # many PDFs are "encrypted" only with an owner password
        except (DependencyError, NotImplementedError) as exc:
            raise UnreadableFileError(path, f"encrypted PDF (cannot decrypt: {exc})", "encrypted") from exc
        if not ok:
            raise UnreadableFileError(path, "encrypted PDF (password required)", "encrypted")
    blocks = []
    for number, page in enumerate(reader.pages, start=1):
        for para in split_paragraphs(page.extract_text() or ""):
            blocks.append(Block(para, heading=f"Page {number}"))
    if not blocks:
        raise UnreadableFileError(path, "no extractable text (scanned PDF?)", "empty")
    info: Any = reader.metadata or {}
    title = str(info.get("/Title") or "").strip()
    date = parse_date(str(info.get("/CreationDate") or "")) if info.get("/CreationDate") else None
    return [
        ParsedDocument(
            key="",
            title=title or path.stem,
            blocks=blocks,
            date=date,
            kind="document",
            metadata={"pages": str(len(reader.pages))},
        )  # fmt: skip
    ]


# ---------------------------------------------------------------------------------------------- DOCX


def read_docx(path: Path) -> list[ParsedDocument]:
    """One document: paragraphs under "Title"/"Heading N" paths; consecutive list items kept together;
    each table is one block of "cell | cell" rows."""
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.table import Table

    check_zip(path)
    document = docx.Document(str(path))
    # Paragraph style names by id, looked up once: python-docx searches every style per paragraph.
    style_names: dict[str, str] = {}
    for s in document.styles:
        if s.type == WD_STYLE_TYPE.PARAGRAPH and s.style_id:
            style_names.setdefault(s.style_id, s.name or "")
    default_style = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default_name = (default_style.name or "") if default_style is not None else ""
    stack = HeadingStack()
    blocks: list[Block] = []
    first_title = first_h1 = ""
    previous_was_list = False
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            previous_was_list = False
            text = _docx_table(item)
            if text:
                blocks.extend(Block(p, heading=stack.path, date=stack.date) for p in split_long(text))
            continue
        # A paragraph with no runs (only properties, or nothing) is empty: skip python-docx's XPath for it.
        text = "" if all(child.tag == _W_PPR for child in item._p) else item.text.strip()
        if not text:  # an empty heading or paragraph only ends a list
            previous_was_list = False
            continue
        style_id = item._p.style
        style = (style_names.get(style_id, default_name) if style_id else default_name).strip()
        level = _heading_level(style)
        if level is not None:
            previous_was_list = False
            stack.push(level, text)
            first_title = first_title or (text if level == 0 else "")
            first_h1 = first_h1 or (text if level == 1 else "")
            continue
        is_list = style.lower().startswith("list")
        if is_list and previous_was_list and blocks:
            last = blocks[-1]
            blocks[-1] = Block(f"{last.text}\n{text}", heading=last.heading, date=last.date)
        else:
            blocks.extend(Block(p, heading=stack.path, date=stack.date) for p in split_long(text))
        previous_was_list = is_list
    props = document.core_properties
    try:
        created = props.created
    except (ValueError, TypeError, OverflowError):  # python-docx's own parse of a blank or out-of-range date
        created = None
    date = parse_date(created)
    if date is not None and date.replace(tzinfo=None).isoformat() == _DOCX_TEMPLATE_CREATED:
        date = None
    title = (props.title or "").strip() or first_title or first_h1 or path.stem
    metadata = {k: v for k, v in (("author", props.author or ""),) if v}
    return [ParsedDocument(key="", title=title, blocks=blocks, date=date, kind="document", metadata=metadata)]


def check_zip(path: Path) -> None:
    """Raise UnreadableFileError ("too_large") for a zip archive that would unpack past the limits above.

    Only declared sizes and a streamed count of tags are used, so the check itself stays cheap; Python's
    zipfile never unpacks more than an entry declares, so a lying header cannot get past it.
    """
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise _bomb(path, f"{len(entries):,} entries in the archive (limit {MAX_ZIP_ENTRIES:,})")
        unpacked = sum(e.file_size for e in entries)
        if unpacked > MAX_UNPACKED_BYTES:
            raise _bomb(path, f"unpacks to {unpacked >> 20:,} MiB (limit {MAX_UNPACKED_BYTES >> 20:,} MiB)")
        xml = [e for e in entries if e.filename.lower().endswith((".xml", ".rels")) and not e.is_dir()]
        xml_bytes = sum(e.file_size for e in xml)
        if xml_bytes > MAX_XML_BYTES:
            raise _bomb(path, f"unpacks to {xml_bytes >> 20:,} MiB of XML (limit {MAX_XML_BYTES >> 20:,} MiB)")
        elements = 0
        for entry in xml:
            with archive.open(entry) as f:
                while chunk := f.read(1 << 20):
                    elements += chunk.count(b"<") - chunk.count(b"</")  # an upper bound: comments count too
                    if elements > MAX_XML_ELEMENTS:
                        raise _bomb(path, f"more than {MAX_XML_ELEMENTS:,} XML elements")


def _bomb(path: Path, what: str) -> UnreadableFileError:
    return UnreadableFileError(path, f"{what}: too large to read safely (possibly a zip bomb)", "too_large")


def _heading_level(style: str) -> int | None:
    """0 for "Title", N for "Heading N", else None. "Title" is level 0 so headings nest below it."""
    if style == "Title":
        return 0
    parts = style.split()
    if len(parts) == 2 and parts[0] == "Heading" and parts[1].isdigit():
        return int(parts[1])
    return None


def _docx_table(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is repeated once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- HTML

_DROP = (
    "script",
    "style",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "noscript",
    "template",
    "iframe",
    "svg",
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "blockquote", "ul", "ol", "dl", "dt", "dd", "figure",
    "figcaption", "address", "details", "summary", "body", "hr",
}  # fmt: skip


def read_html(path: Path) -> list[ParsedDocument]:
    """One web page: boilerplate dropped, `<article>`/`<main>` preferred, h1-h6 as the heading path."""
    title, date, blocks = html_to_blocks(path.read_bytes())
    return [ParsedDocument(key="", title=title or path.stem, blocks=blocks, date=date, kind="web")]


def html_to_text(html: str | bytes, drop: tuple[str, ...] = ()) -> str:
    """Readable plain text of an HTML fragment or page (paragraphs separated by blank lines)."""
    return "\n\n".join(b.text for b in html_to_blocks(html, drop)[2])


def html_to_blocks(html: str | bytes, drop: tuple[str, ...] = ()) -> tuple[str, datetime | None, list[Block]]:
    """(title, date, blocks) of an HTML document; `drop` names extra tags to remove."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")  # bytes: bs4 honours <meta charset> and BOMs
    date = None
    for attrs in ({"property": "article:published_time"}, {"name": "date"}, {"itemprop": "datePublished"}):
        meta = soup.find("meta", attrs=attrs)
        if meta is not None and (date := parse_date(str(meta.get("content") or ""))):
            break
    if date is None:
        time_tag = soup.find("time", attrs={"datetime": True})
        date = parse_date(str(time_tag["datetime"])) if time_tag is not None else None
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else ""
    if not title and (h1 := soup.find("h1")):
        title = " ".join(h1.get_text().split())
    for tag in soup.find_all([*_DROP, *drop]):
        # An article's own <header> holds its headline and byline: keep it, drop only page chrome.
        if tag.name in ("header", "footer") and tag.find_parent("article") is not None:
            continue
        if not tag.decomposed:
            tag.decompose()
    root = soup.find("article") or soup.find("main") or soup.body or soup
    walker = _HtmlWalker()
    walker.walk(root)
    walker.flush()
    return title, date, walker.blocks


class _HtmlWalker:
    """Depth-first walk that accumulates inline text and cuts a block at every block-level tag."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.stack = HeadingStack()
        self._buf: list[str] = []

    def flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._buf).split("\n"))
        text = "\n".join(line for line in lines if line)
        self._buf = []
        if text:
            self.blocks.extend(
                Block(p, heading=self.stack.path, date=self.stack.date) for p in split_long(text)
            )

    def walk(self, node: Any) -> None:
        from bs4 import NavigableString, Tag

        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a Comment, Doctype, CDATA, ...
                    self._buf.append(re.sub(r"\s+", " ", str(child)))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HEADINGS:
                self.flush()
                self.stack.push(_HEADINGS[name], " ".join(child.get_text(" ").split()))
            elif name == "pre":
                self.flush()
                text = child.get_text().strip("\n")
                if text.strip():
                    self.blocks.append(Block(text, heading=self.stack.path, date=self.stack.date))
            elif name == "table":
                self.flush()
                self._buf.append(_html_table(child))
                self.flush()
            elif name == "br":
                self._buf.append("\n")
            elif name == "li":
                self._buf.append("\n- ")
                self.walk(child)
            elif name in _BLOCK_TAGS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def _html_table(table: Any) -> str:
    rows = []
    for tr in table.find_all("tr"):
        cells = [" ".join(c.get_text(" ").split()) for c in tr.find_all(["td", "th"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
