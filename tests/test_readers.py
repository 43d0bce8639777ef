"""Unit tests for the file readers. Every input is built in tmp_path."""

from __future__ import annotations

import json
import mailbox
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from secondself.errors import UnreadableFileError
from secondself.ingest import readers
from secondself.ingest.readers import SUPPORTED_SUFFIXES, is_supported, read_file
from secondself.ingest.readers.mail import strip_quoted
from secondself.types import Block, ParsedDocument


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def one(path: Path) -> tuple[ParsedDocument, list[Block]]:
    docs = read_file(path)
    assert len(docs) == 1
    return docs[0], list(docs[0].blocks)


def unreadable(path: Path) -> UnreadableFileError:
    with pytest.raises(UnreadableFileError) as info:
        read_file(path)
    return info.value


# ------------------------------------------------------------------------------------------ registry


def test_registry_suffixes_case_insensitive(tmp_path: Path) -> None:
    assert {".txt", ".md", ".pdf", ".docx", ".html", ".eml", ".mbox", ".json", ".jsonl"} <= SUPPORTED_SUFFIXES
    assert is_supported(Path("a/NOTES.MD")) and not is_supported(Path("a.xyz"))
    path = tmp_path / "Loud.TXT"
    path.write_text("hello there\n")
    assert [b.text for b in one(path)[1]] == ["hello there"]


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff")
    err = unreadable(path)
    assert err.kind == "unsupported" and ".jpg" in err.reason


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.pdf", "empty.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert unreadable(path).kind == "empty"


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.md"
    path.write_text(" \n\n\t\n")
    assert unreadable(path).kind == "empty"


def test_missing_file_is_io_error(tmp_path: Path) -> None:
    assert unreadable(tmp_path / "gone.md").kind == "io"


def test_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 10)
    big = tmp_path / "big.md"
    big.write_text("x" * 100)
    assert unreadable(big).kind == "too_large"
    streamed = tmp_path / "big.txt"  # .txt streams, so no cap
    streamed.write_text("x" * 100)
    assert [b.text for b in one(streamed)[1]] == ["x" * 100]


def test_unexpected_reader_exception_is_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: Path) -> list[ParsedDocument]:
        raise ValueError("library blew up")

    monkeypatch.setitem(readers._READERS, ".md", boom)
    path = tmp_path / "a.md"
    path.write_text("text")
    err = unreadable(path)
    assert err.kind == "corrupt" and "library blew up" in err.reason
    assert isinstance(err.__cause__, ValueError)


# ----------------------------------------------------------------------------------------------- txt


def test_txt_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "journal.txt"
    path.write_text("First line\nsecond line\n\n\n  \nNext paragraph\r\n\r\nLast")
    doc, blocks = one(path)
    assert doc.title == "journal" and doc.key == "" and doc.kind == "note"
    assert [b.text for b in blocks] == ["First line\nsecond line", "Next paragraph", "Last"]


def test_txt_cp1252_fallback(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Café “quoted” – naïve".encode("cp1252"))
    assert one(path)[1][0].text == "Café “quoted” – naïve"


def test_txt_utf16_bom_and_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Grüße aus Köln\n\nzweiter Absatz".encode("utf-16"))  # writes a BOM
    assert [b.text for b in one(path)[1]] == ["Grüße aus Köln", "zweiter Absatz"]
    path8 = tmp_path / "bom.txt"
    path8.write_bytes(b"\xef\xbb\xbfhello")
    assert one(path8)[1][0].text == "hello"


def test_txt_long_paragraph_split_in_pieces(tmp_path: Path) -> None:
    words = [f"word{i}" for i in range(8000)]  # ~70,000 chars, one line
    path = tmp_path / "long.txt"
    path.write_text(" ".join(words))
    blocks = one(path)[1]
    assert len(blocks) >= 4
    assert all(len(b.text) <= 20_000 for b in blocks)
    assert " ".join(b.text for b in blocks).split() == words  # nothing lost, no word cut


def test_txt_large_file_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    paragraph = ("lorem ipsum " * 83).strip() + "\n\n"  # ~1 KB
    count = 30_000  # ~30 MB
    with open(path, "w") as f:
        f.write(paragraph * count)
    doc = read_file(path)[0]
    assert isinstance(doc.blocks, Iterator)  # not a list
    # Appending after read_file returned is only seen if nothing was read yet.
    with open(path, "a") as f:
        f.write("TAIL paragraph\n")
    n = 0
    last = None
    for block in doc.blocks:
        n += 1
        last = block
    assert n == count + 1
    assert last is not None and last.text == "TAIL paragraph"


# ------------------------------------------------------------------------------------------ markdown

MARKDOWN = """---
title: "Trip notes"
date: 2025-03-01
tags: [travel, 'italy']
author: me  # a comment
---
# Rome trip

Intro paragraph
spanning two lines.

## 2025-03-14

Arrived late.

- pack bags
- buy tickets

- call hotel

```python
x = 1

y = 2
```

### Dinner

Pasta.

## Notes

Undated again.
"""


def test_markdown_front_matter_headings_and_dates(tmp_path: Path) -> None:
    path = tmp_path / "trip.md"
    path.write_text(MARKDOWN)
    doc, blocks = one(path)
    assert doc.title == "Trip notes"
    assert doc.date == utc(2025, 3, 1)
    assert doc.metadata["tags"] == "travel, italy"
    assert doc.metadata["author"] == "me"
    by_text = {b.text: b for b in blocks}
    assert list(by_text) == [
        "Intro paragraph\nspanning two lines.",
        "Arrived late.",
        "- pack bags\n- buy tickets\n- call hotel",
        "```python\nx = 1\n\ny = 2\n```",
        "Pasta.",
        "Undated again.",
    ]
    assert by_text["Intro paragraph\nspanning two lines."].heading == "Rome trip"
    assert by_text["Intro paragraph\nspanning two lines."].date is None
    assert by_text["Arrived late."].heading == "Rome trip > 2025-03-14"
    assert by_text["Arrived late."].date == utc(2025, 3, 14)
    assert by_text["Pasta."].heading == "Rome trip > 2025-03-14 > Dinner"
    assert by_text["Pasta."].date == utc(2025, 3, 14)  # inherited from the dated parent heading
    assert by_text["Undated again."].heading == "Rome trip > Notes"
    assert by_text["Undated again."].date is None


def test_markdown_title_fallbacks_and_block_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "note.md"
    path.write_text("---\ncreated: 14 March 2025\ntags:\n  - a\n  - b\n---\n# Heading Title\n\nBody\n")
    doc, blocks = one(path)
    assert doc.title == "Heading Title" and doc.date == utc(2025, 3, 14)
    assert doc.metadata["tags"] == "a, b"
    assert [b.text for b in blocks] == ["Body"]
    plain = tmp_path / "plain-note.md"
    plain.write_text("Just text, no headings.\n")
    assert one(plain)[0].title == "plain-note"


def test_markdown_horizontal_rules_are_not_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "rules.md"
    path.write_text("---\nA thought worth keeping.\n---\nAnother.\n")
    doc, blocks = one(path)
    assert doc.metadata == {}
    assert [b.text for b in blocks] == ["A thought worth keeping.", "Another."]


# ----------------------------------------------------------------------------------------------- PDF


def make_pdf(path: Path, pages: list[str], title: str = "") -> Path:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    pdf.set_creation_date(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def test_pdf_pages_title_and_date(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "report.pdf", ["Apples grow on trees.", "Pears too."], title="Fruit report")
    doc, blocks = one(path)
    assert doc.title == "Fruit report" and doc.kind == "document"
    assert doc.date == utc(2024, 5, 6, 7, 8, 9)
    assert [(b.heading, b.text) for b in blocks] == [
        ("Page 1", "Apples grow on trees."),
        ("Page 2", "Pears too."),
    ]


def test_pdf_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(os.urandom(4096))
    err = unreadable(path)
    assert err.kind == "corrupt" and "PDF" in err.reason
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(b"%PDF-1.4\n" + os.urandom(4096))
    assert unreadable(truncated).kind == "corrupt"


def test_pdf_encrypted(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["Secret plans."])
    locked = tmp_path / "locked.pdf"
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("hunter2")
    writer.write(str(locked))
    err = unreadable(locked)
    assert err.kind == "encrypted" and "password" in err.reason
    # Owner-password-only PDFs open with the empty user password.
    owner_only = tmp_path / "owner.pdf"
    writer = PdfWriter(clone_from=str(plain))
    writer.encrypt("", owner_password="owner")
    writer.write(str(owner_only))
    assert [b.text for b in one(owner_only)[1]] == ["Secret plans."]


def test_pdf_without_text_is_scanned(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [""])
    err = unreadable(path)
    assert err.kind == "empty" and "scanned" in err.reason


# ---------------------------------------------------------------------------------------------- DOCX


def test_docx_headings_tables_and_properties(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.core_properties.title = "Plan"
    document.core_properties.created = datetime(2024, 2, 3, 4, 5, 6)
    document.add_heading("Project", level=1)
    document.add_paragraph("Overview text.")
    document.add_heading("Monday, 14 March 2025", level=2)
    document.add_paragraph("Kickoff.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Name", "Role"), ("Ann", "Lead")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("Budget", level=2)
    document.add_paragraph("Small.")
    path = tmp_path / "plan.docx"
    document.save(str(path))
    doc, blocks = one(path)
    assert doc.title == "Plan" and doc.kind == "document" and doc.date == utc(2024, 2, 3, 4, 5, 6)
    assert [(b.heading, b.text) for b in blocks] == [
        ("Project", "Overview text."),
        ("Project > Monday, 14 March 2025", "Kickoff."),
        ("Project > Monday, 14 March 2025", "Name | Role\nAnn | Lead"),
        ("Project > Budget", "Small."),
    ]
    assert blocks[1].date == utc(2025, 3, 14) and blocks[3].date is None


def test_docx_template_creation_date_is_ignored(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()  # python-docx's template carries a 2013 creation date
    document.add_paragraph("Body.")
    path = tmp_path / "Untitled memo.docx"
    document.save(str(path))
    doc, blocks = one(path)
    assert doc.date is None and doc.title == "Untitled memo"
    assert [(b.heading, b.text) for b in blocks] == [("", "Body.")]


def test_docx_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"this is not a zip archive at all")
    err = unreadable(path)
    assert err.kind == "corrupt" and "zip" in err.reason


# ---------------------------------------------------------------------------------------------- HTML


def test_html_article_headings_and_date(tmp_path: Path) -> None:
    path = tmp_path / "post.html"
    path.write_text(
        "<html><head><title>My Blog Post</title><script>var tracking = 1;</script>"
        '<meta property="article:published_time" content="2025-03-14T08:00:00Z"></head>'
        "<body><nav>Home | About</nav><div>Sidebar junk</div>"
        "<article><h1>Post</h1><p>Hello <b>bold</b>\n   world.</p>"
        "<h2>Details</h2><ul><li>one</li><li>two</li></ul><aside>ad</aside></article>"
        "<footer>Copyright</footer></body></html>"
    )
    doc, blocks = one(path)
    assert doc.title == "My Blog Post" and doc.kind == "web" and doc.date == utc(2025, 3, 14, 8)
    assert [(b.heading, b.text) for b in blocks] == [
        ("Post", "Hello bold world."),
        ("Post > Details", "- one\n- two"),
    ]


def test_html_title_from_h1_and_time_tag(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text(
        '<body><h1>Only Heading</h1><p>Posted <time datetime="2024-01-02">Jan 2</time></p></body>'
    )
    doc, blocks = one(path)
    assert doc.title == "Only Heading" and doc.date == utc(2024, 1, 2)
    assert blocks[0].text == "Posted Jan 2"


# ---------------------------------------------------------------------------------------------- mail


def make_email(subject: str = "Dinner plans", body: str = "", html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "Bob <bob@example.com>"
    msg["Subject"] = subject
    msg["Date"] = "Fri, 14 Mar 2025 10:00:00 +0000"
    msg["Message-ID"] = "<abc123@example.com>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


REPLY = """Sounds great, see you at 8.

Bring wine?

On Thu, 13 Mar 2025 at 09:00, Bob <bob@example.com>
wrote:
> Dinner tomorrow?
> > older quote
"""


def test_eml_reply_stripped_with_provenance(tmp_path: Path) -> None:
    msg = make_email(subject="Re: Dîner ✓", body=REPLY)
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="menu.pdf")
    path = tmp_path / "reply.eml"
    path.write_bytes(bytes(msg))
    doc, blocks = one(path)
    assert doc.kind == "email" and doc.title == "Re: Dîner ✓" and doc.date == utc(2025, 3, 14, 10)
    assert [b.text for b in blocks] == ["Sounds great, see you at 8.", "Bring wine?"]
    assert all(b.speaker == "Alice Example" and b.date == utc(2025, 3, 14, 10) for b in blocks)
    assert doc.metadata["from"] == "Alice Example <alice@example.com>"
    assert doc.metadata["to"] == "bob@example.com"
    assert doc.metadata["subject"] == "Re: Dîner ✓"
    assert doc.metadata["attachments"] == "menu.pdf"


def test_eml_encoded_headers_and_charsets(tmp_path: Path) -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nDate: 14 Mar 2025 10:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=%s\r\n\r\nViele Gr\xfc\xdfe\r\n"
    )
    for charset in (b"iso-8859-1", b"x-no-such-charset"):  # an unknown charset falls back to guessing
        path = tmp_path / "de.eml"
        path.write_bytes(raw % charset)
        doc, blocks = one(path)
        assert doc.title == "Grüße" and doc.date == utc(2025, 3, 14, 10)
        assert [(b.speaker, b.text) for b in blocks] == [("Jürgen Müller", "Viele Grüße")]


def test_strip_quoted_single_line_attribution_and_outlook() -> None:
    text = "Yes.\nOn Mon, Jan 1, 2024 at 9:00 AM Bob <b@x.org> wrote:\n>hi\n"
    assert strip_quoted(text) == "Yes."
    assert strip_quoted("Ok.\n\n-----Original Message-----\nFrom: Bob\nold text") == "Ok."
    assert strip_quoted("On balance I agree.\nLet's go.") == "On balance I agree.\nLet's go."


def test_eml_html_only_falls_back_to_text(tmp_path: Path) -> None:
    msg = EmailMessage()
    msg["From"] = "carol@example.com"
    msg["Subject"] = "News"
    msg.set_content(
        "<html><body><p>Big <b>news</b> today.</p><blockquote>quoted</blockquote></body></html>",
        subtype="html",
    )
    path = tmp_path / "news.eml"
    path.write_bytes(bytes(msg))
    doc, blocks = one(path)
    assert [b.text for b in blocks] == ["Big news today."]
    assert blocks[0].speaker == "carol@example.com" and doc.date is None


def test_mbox_one_document_per_message(tmp_path: Path) -> None:
    path = tmp_path / "archive.mbox"
    box = mailbox.mbox(str(path))
    box.add(make_email(subject="First", body="Hello Bob."))
    second = make_email(subject="Second", body="Plain part.", html="<p>HTML part.</p>")
    del second["Message-ID"]
    del second["From"]
    second["From"] = "dave@example.com"
    box.add(second)
    box.add(make_email(subject="Dup", body="Same id again."))  # duplicate Message-ID
    box.flush()
    box.close()
    docs = read_file(path)
    assert [d.key for d in docs] == ["abc123@example.com", "msg-2", "msg-3"]
    assert [d.title for d in docs] == ["First", "Second", "Dup"]
    assert [[b.text for b in d.blocks] for d in docs] == [["Hello Bob."], ["Plain part."], ["Same id again."]]
    assert [list(d.blocks)[0].speaker for d in docs] == ["Alice Example", "dave@example.com", "Alice Example"]


# ---------------------------------------------------------------------------------------------- chat


def node(
    node_id: str, parent: str | None, children: list[str], role: str | None, text: str = "", t: float = 0
):
    message = None
    if role is not None:
        message = {
            "id": node_id,
            "author": {"role": role},
            "create_time": t or None,
            "content": {"content_type": "text", "parts": [text] if text else []},
        }
    return {"id": node_id, "parent": parent, "children": children, "message": message}


def chatgpt_export() -> list[dict]:
    mapping = {
        "root": node("root", None, ["sys"], None),
        "sys": node("sys", "root", ["u1"], "system", "You are ChatGPT"),
        "u1": node("u1", "sys", ["a1", "a1b"], "user", "Plan a trip to Rome", 1741946400),
        "a1": node("a1", "u1", [], "assistant", "Old answer (abandoned branch)", 1741946410),
        "a1b": node("a1b", "u1", ["u2"], "assistant", "Day 1: Colosseum", 1741946420),
        "u2": node("u2", "a1b", ["a2"], "user", "Thanks", 1741946430),
        "a2": node("a2", "u2", [], "assistant", "", 1741946440),  # empty parts: skipped
    }
    mapping["a2"]["message"]["content"]["parts"] = [{"content_type": "image_asset_pointer"}]
    return [
        {
            "id": "conv-abc",
            "title": "Rome",
            "create_time": 1741946400,
            "current_node": "u2",
            "mapping": mapping,
        },
        {"title": "No current", "mapping": {k: v for k, v in mapping.items()}},
    ]


def test_chatgpt_export_follows_current_node(tmp_path: Path) -> None:
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(chatgpt_export()))
    docs = read_file(path)
    assert [(d.key, d.title, d.kind) for d in docs] == [
        ("conv-abc", "Rome", "chat"),
        ("conv-2", "No current", "chat"),
    ]
    first = list(docs[0].blocks)
    assert [(b.speaker, b.text) for b in first] == [
        ("me", "Plan a trip to Rome"),
        ("ChatGPT", "Day 1: Colosseum"),
        ("me", "Thanks"),
    ]
    assert all(b.is_turn for b in first)
    assert first[0].date == utc(2025, 3, 14, 10) and docs[0].date == utc(2025, 3, 14, 10)
    # Without current_node the first child is followed.
    assert [b.text for b in docs[1].blocks][:2] == ["Plan a trip to Rome", "Old answer (abandoned branch)"]


def test_generic_jsonl_grouped_and_sorted(tmp_path: Path) -> None:
    lines = [
        {"speaker": "Ann", "text": "later", "timestamp": "2025-03-14T10:05:00Z", "conversation": "fam"},
        {"author": "Ben", "content": "earlier", "time": 1741946400, "conversation": "fam"},
        {},  # placeholder for a blank line
        {"from": "Ann", "body": "solo note", "ts": "2025-03-15"},
    ]
    text = "\n".join("" if not line else json.dumps(line) for line in lines)
    path = tmp_path / "chat.jsonl"
    path.write_text(text)
    docs = read_file(path)
    assert [(d.key, d.title) for d in docs] == [("fam", "Chat: fam (Ben, Ann)"), ("", "Chat: chat (Ann)")]
    fam = list(docs[0].blocks)
    assert [(b.speaker, b.text, b.is_turn) for b in fam] == [("Ben", "earlier", True), ("Ann", "later", True)]
    assert fam[0].date == utc(2025, 3, 14, 10) and docs[0].date == utc(2025, 3, 14, 10)


def test_generic_json_messages_object_keeps_file_order_without_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "thread.json"
    path.write_text(
        json.dumps({"messages": [{"speaker": "Zoe", "message": "b"}, {"speaker": "Al", "text": "a"}]})
    )
    doc, blocks = one(path)
    assert doc.kind == "chat" and doc.key == ""
    assert [b.text for b in blocks] == ["b", "a"]


def test_malformed_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"speaker": "a", "text": "ok"}\n\n{"speaker": "b", "text": \n')
    err = unreadable(path)
    assert err.kind == "corrupt" and "line 3" in err.reason


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"speaker": "a",\n  "text": oops}\n]')
    err = unreadable(path)
    assert err.kind == "corrupt" and "invalid JSON at line 3" in err.reason


def test_unknown_json_shape_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"theme": "dark", "items": [1, 2]}))
    err = unreadable(path)
    assert err.kind == "unsupported" and "neither a ChatGPT export" in err.reason
