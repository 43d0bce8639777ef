"""Fuzzing the readers: malformed files of every supported type ingested in one batch with good files.

For each reader, at least PER_READER malformed variants of a good seed file are generated from a fixed seed:
truncations, flipped and inserted bytes, repeated and deleted regions, random bytes, other encodings,
out-of-range and odd dates in the format's date field, deep nesting, empty and whitespace-only files, odd
names. They are ingested in one `secondself ingest` run, with good files mixed in, in a subprocess killed at a
deadline. The run must end (no hang), report every file, hit no bug (no traceback, no "a bug in secondself"
reason) and store every good file with its text.
"""

from __future__ import annotations

import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

PER_READER = 160
SEED = 1414
DEADLINE = 900  # seconds for the whole batch of about 1,460 files; it takes about a minute

ODD_DATES = [
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0000-00-00", "2025-02-30",
    "2025-13-45T99:99:99", "-1", "1e308", "nan", "inf", "99999999999999999999", "253402300800", "-62135596801",
    "D:99991231235959-14'00", "D:00000000", "D:2025", "Fri, 31 Dec 9999 23:59:59 -1400",
    "Mon, 01 Jan 0001 00:00:00 +1400", "", " ", "\x00", "31 February 2025", "Sunday, 99 March 9999 at 25:61",
]  # fmt: skip
ODD_NUMBERS = [1e308, -1e308, 1e20, -1e20, 253402300800, -62135596801, 0, -1, 2**63, 10**30, 1.5]


def _text_seed(marker: str) -> str:
    return (f"# Notes {marker}\n\nMet Rui at the ceramics studio; {marker} was the word of the day.\n\n"
            "- bake sourdough\n- call Tomás\n\n## 2025-03-14\n\nCello lesson, Dvořák concerto.\n")


def _md(marker: str, date: str = "2025-03-14") -> bytes:
    return f"---\ntitle: Day {marker}\ndate: {date}\ntags: [a, b]\n---\n\n{_text_seed(marker)}".encode()


def _html(marker: str, date: str = "2025-03-14T10:00:00Z") -> bytes:
    return (f'<!doctype html><html><head><title>Page {marker}</title><meta property="article:published_time" '
            f'content="{date}"></head><body><nav>menu</nav><article><h1>{marker}</h1><p>Posted '
            f'<time datetime="{date}">then</time>.</p><p>{marker} at the studio.</p><table><tr><td>a</td>'
            "<td>b</td></tr></table><ul><li>one</li><li>two</li></ul></article></body></html>").encode()


def _email(marker: str, date: str = "Fri, 14 Mar 2025 10:00:00 +0000") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "Bob <bob@example.com>"
    msg["Subject"] = f"Plans {marker}"
    msg["Message-ID"] = f"<{marker}@example.com>"
    try:
        msg["Date"] = date
    except (ValueError, TypeError, IndexError):
        msg["Date"] = "Fri, 14 Mar 2025 10:00:00 +0000"
    msg.set_content(f"Dinner at 8? {marker} says yes.\n\nOn Thu, Bob wrote:\n> old quote\n")
    msg.add_alternative(f"<p>Dinner at 8? <b>{marker}</b></p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="menu.pdf")
    return bytes(msg)


def _mbox(marker: str, date: str = "Fri, 14 Mar 2025 10:00:00 +0000") -> bytes:
    parts = []
    for n in range(3):
        parts.append(b"From alice@example.com Fri Mar 14 10:00:00 2025\n" + _email(f"{marker}{n}", date) + b"\n")
    return b"".join(parts)


def _json(marker: str, stamp: object = "2025-03-14T19:02:00Z") -> bytes:
    messages = [{"speaker": "Maya", "text": f"{marker} dinner?", "timestamp": stamp, "conversation": "c1"},
                {"author": "Tomás", "content": ["yes", {"text": "bring bread"}], "time": stamp}]
    return json.dumps({"messages": messages}).encode()


def _chatgpt(marker: str, stamp: object = 1710410000.0) -> bytes:
    node = lambda i, parent, children, role, text: {  # noqa: E731
        "id": i, "parent": parent, "children": children,
        "message": {"author": {"role": role}, "create_time": stamp, "content": {"parts": [text]}}}
    mapping = {"a": node("a", None, ["b"], "user", f"{marker} question"), "b": node("b", "a", [], "assistant", "answer")}
    return json.dumps([{"title": marker, "create_time": stamp, "mapping": mapping, "current_node": "b"}]).encode()


def _jsonl(marker: str, stamp: object = "2025-03-14T19:02:00Z") -> bytes:
    lines = [{"speaker": "Maya", "text": f"{marker} hello", "timestamp": stamp},
             {"speaker": "Rui", "text": "hi", "ts": stamp}, {"from": "Maya", "body": "bye", "date": stamp}]
    return "\n".join(json.dumps(m) for m in lines).encode() + b"\n"


def _pdf(marker: str, created: str | None = None) -> bytes:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.set_title(f"Report {marker}")
    pdf.set_creation_date(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    for text in (f"{marker} apples grow on trees.", "Pears too."):
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    data = bytes(pdf.output())
    if created is None:
        return data
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.add_metadata({"/CreationDate": created})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _docx(marker: str, replace: dict[str, bytes] | None = None) -> bytes:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading(f"Plan {marker}", level=1)
    document.add_paragraph(f"{marker}: move to Lisbon in July.")
    document.add_paragraph("pack books", style="List Bullet")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "when", "July"
    buf = io.BytesIO()
    document.save(buf)
    return _rezip(buf.getvalue(), replace or {})


def _rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The archive again with fixed timestamps (so bytes are the same every run) and some parts replaced."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = replace.get(info.filename, src.read(info.filename))
            dst.writestr(zipfile.ZipInfo(info.filename, (2020, 1, 1, 0, 0, 0)), body, zipfile.ZIP_DEFLATED)
        for name, body in replace.items():
            if name not in src.namelist():
                dst.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


# ------------------------------------------------------------------------------ generic mutations


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One random malformation of `data`."""
    n = len(data)
    at = rng.randrange(n + 1) if n else 0
    kind = rng.randrange(9)
    if kind == 0:  # truncated
        return data[:at]
    if kind == 1:  # bytes flipped
        out = bytearray(data)
        for _ in range(rng.choice((1, 4, 32))):
            if out:
                out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind == 2:  # random bytes inserted
        return data[:at] + rng.randbytes(rng.choice((1, 16, 1024))) + data[at:]
    if kind == 3:  # a region repeated
        piece = data[at:at + rng.choice((1, 8, 64))]
        return data[:at] + piece * rng.choice((100, 5000)) + data[at:]
    if kind == 4:  # a region deleted
        return data[:at] + data[at + rng.choice((1, 16, 512)):]
    if kind == 5:  # random bytes
        return rng.randbytes(rng.choice((1, 100, 5000)))
    if kind == 6:  # another encoding, or broken UTF-8
        text = data.decode("utf-8", errors="replace")
        codec = rng.choice(("utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-7"))
        return text.encode(codec, errors="replace")
    if kind == 7:  # invalid sequences: lone continuation, surrogate, overlong, NUL, BOM mid-file
        bad = rng.choice((b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xc3"))
        return data[:at] + bad * rng.choice((1, 50)) + data[at:]
    return data[:at] + data[at:][::-1]  # the tail reversed


def _generic(rng: random.Random, seed: bytes, count: int) -> list[bytes]:
    always = [b"", b" \n\t\n", b"\x00", b"\x00" * 4096, seed[: len(seed) // 2], seed[:1], seed + b"\x00" * 100]
    return always + [_mutate(rng, seed) for _ in range(count - len(always))]


# ----------------------------------------------------------------------------- format-specific


def _deep(open_: str, close: str, depth: int) -> str:
    return open_ * depth + close * depth


def _specials(suffix: str, rng: random.Random) -> list[bytes]:
    s: list[bytes] = []
    if suffix == ".txt":
        s += [("x" * 5_000_000).encode(), ("word " * 300_000).encode(), b"\r" * 20000 + b"end", b"\x1b[2J\x07" * 100,
              "\ud800".encode("utf-8", "surrogatepass") * 10, b"\n" * 100000, ("\u202e" * 100 + "evil").encode()]
    elif suffix == ".md":
        s += [_md("m", d) for d in ODD_DATES]
        s += [f"# {d}\n\ntext under an odd heading\n".encode() for d in ODD_DATES[:8]]
        s += [b"---\ndate: 2025-01-01\n", b"---\n" + b"key: value\n" * 10000 + b"---\nbody\n", b"```\nunclosed fence\n",
              (_deep("> ", "", 20000) + "deep quote\n").encode(),
              "".join("  " * i + "- item\n" for i in range(3000)).encode(), b"#" * 100000 + b"\n", b"---\n---\n",
              b"---\ntitle: [a, b\ndate: [9999-12-31T23:59:59-14:00]\n---\nx\n", b"---\ncreated:\n  - 9999-12-31T23:59:59-14:00\n---\nx\n"]
    elif suffix == ".html":
        s += [_html("h", d) for d in ODD_DATES]
        s += [("<div>" * 100_000 + "deep" + "</div>" * 100_000).encode(), ("<p>" * 50_000 + "x").encode(),
              ("<table><tr><td>" * 5000 + "cell").encode(), b"<script>" + b"x" * 100000, b"<meta charset='x-nope'><p>x</p>",
              b"<html><body><p>\x00\x00</p>", ("<ul>" + "<li>a" * 100000).encode(), b"<" * 100000, b"<!--" + b"-" * 100000,
              b'<p title="' + b"a" * 1_000_000 + b'">x</p>', b"\xef\xbb\xbf\xff\xfe<p>bom soup</p>",
              ("<h1>" + "9999-12-31" + "</h1><p>x</p>").encode(), b"<svg><svg><svg>" * 1000 + b"<p>x</p>"]
    elif suffix == ".eml":
        s += [_email("e", d) for d in ODD_DATES]
        s += [f"Date: {d}\nFrom: a@b\nSubject: raw\n\nbody\n".encode("utf-8", "surrogateescape") for d in ODD_DATES]
        s += [b"From: a@b\nContent-Type: text/plain; charset=x-unknown\n\nbody \xff\xfe\n",
              b"From: =?utf-8?b?####?= <a@b>\nSubject: =?x-bad?q?=ZZ?=\n\nbody\n",
              b"Content-Type: multipart/mixed; boundary=X\n\n--X\n" * 200 + b"body",
              b"From: a@b\nContent-Transfer-Encoding: base64\n\n!!!!not base64!!!!\n",
              b"From: a@b\nSubject: " + b"s" * 200000 + b"\n\nbody\n", b"no colon header line\n\nbody\n",
              b"From: \xff\xfe\xfd <a@b>\nSubject: \xe9t\xe9\n\nbody\n", _nested_mime(300)]
    elif suffix == ".mbox":
        s += [_mbox("b", d) for d in ODD_DATES]
        s += [b"From \n\n" * 1000, b"not an mbox at all\n", b"From x\n" + _email("y")[:50], _mbox("z").replace(b"From ", b"Frm ")]
    elif suffix == ".json":
        s += [_json("j", d) for d in ODD_DATES] + [_json("j", x) for x in ODD_NUMBERS]
        s += [_chatgpt("g", d) for d in ODD_DATES[:8]] + [_chatgpt("g", x) for x in ODD_NUMBERS]
        s += [_deep("[", "]", 100_000).encode(), _deep('{"a":', "}", 50_000).encode() + b"1",
              b'[{"text": "\\ud800\\udbff lone", "speaker": "\\udfff"}]', b'[{"text": 5}]', b'[{"text": {}}]',
              b'[{"text": "x", "timestamp": NaN}]', b'[{"text": "x", "timestamp": Infinity}]',
              b'{"messages": [{"text": ["a", null, 5, {"text": 7}]}]}', b'[{"text": "x", "speaker": ["a"]}]',
              b'[{"mapping": {"a": {"parent": "a", "children": ["a"]}}, "current_node": "a"}]',
              b'[{"mapping": {"a": {"parent": "b"}, "b": {"parent": "a"}}, "current_node": "zz"}]',
              b'[{"mapping": {"a": {"message": {"author": null, "content": {"parts": 5}}}}}]',
              b'[{"mapping": []}]', b'{"mapping": 5}', b"[1e999999]", b"-" * 10000, b'"\\u0000"']
    elif suffix == ".jsonl":
        s += [_jsonl("l", d) for d in ODD_DATES] + [_jsonl("l", x) for x in ODD_NUMBERS]
        s += [_deep("[", "]", 100_000).encode() + b"\n", b'{"text": "a"}\n[1]\n', b'{"text": "\\udc80"}\n',
              b'{"text": "x", "timestamp": NaN}\n', b'{"text": "' + b"y" * 3_000_000 + b'"}\n', b"\n\n\n{}\n",
              b'{"text": "a", "conversation": {"x": 1}}\n', b'{"text": "a", "speaker": {"x": [1]}}\n']
    elif suffix == ".pdf":
        s += [_pdf("p", d) for d in ODD_DATES]
        s += [b"%PDF-1.4\n" + rng.randbytes(4096), b"%PDF-", b"%PDF-1.7\n1 0 obj\n" + b"[" * 50000 + b"\nendobj\n",
              b"%PDF-1.4\n1 0 obj << /Length 999999999999 >> stream\nabc\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
              b"%PDF-1.4\ntrailer << /Root 1 0 R /Size -5 >>\nstartxref\n-1\n%%EOF", b"%PDF-1.4\n" + b"<<" * 20000]
    elif suffix == ".docx":
        w = b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        core = ('<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
                'metadata/core-properties" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/'
                'XMLSchema-instance"><dcterms:created xsi:type="dcterms:W3CDTF">{}</dcterms:created></cp:coreProperties>')
        s += [_docx("d", {"docProps/core.xml": core.format(d).encode("utf-8", "replace")}) for d in ODD_DATES]
        s += [_docx("d", {"word/document.xml": body}) for body in (
            b"not xml", w, w + b"<w:body>" + b"<w:p>" * 10000 + b"</w:body></w:document>",
            w + b"<w:body>" + _deep("<w:tbl><w:tr><w:tc>", "</w:tc></w:tr></w:tbl>", 3000).encode() + b"</w:body></w:document>",
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>' + w[21:] +
            b"<w:body><w:p><w:r><w:t>&d;&d;&d;&d;</w:t></w:r></w:p></w:body></w:document>",
            w + b"<w:body>" + b"<w:p/>" * 1_500_000 + b"</w:body></w:document>",
            w + b"<w:body><w:p><w:r><w:t>" + b"x" * 20_000_000 + b"</w:t></w:r></w:p></w:body></w:document>")]
        s += [_docx("d", {"[Content_Types].xml": b"<bad"}), _docx("d", {"word/styles.xml": b"\x00\xff"}),
              _rezip(_docx("d"), {f"junk/{i}.bin": b"" for i in range(12000)}), b"PK\x03\x04" + rng.randbytes(3000),
              _docx("d")[:-22]]
    return s


def _nested_mime(depth: int) -> bytes:
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth))
    return b"From: a@b\n" + head + b"Content-Type: text/plain\n\ndeep body\n"


SEEDS: dict[str, Callable[[str], bytes]] = {
    ".txt": lambda m: _text_seed(m).encode(), ".md": _md, ".html": _html, ".eml": _email, ".mbox": _mbox,
    ".json": _json, ".jsonl": _jsonl, ".pdf": _pdf, ".docx": _docx,
}  # fmt: skip
ODD_NAMES = ["\x1b]0;pwned\x07", os.fsdecode(b"caf\xe9"), "\u202eevil", " spaced ", "new\nline", "-dash"]


def build_corpus(root: Path) -> tuple[dict[str, str], int]:
    """Write the malformed files and the good ones under `root`. Returns (good file name -> marker, bad count)."""
    rng = random.Random(SEED)
    good: dict[str, str] = {}
    bad = 0
    for suffix, seed_of in SEEDS.items():
        folder = root / suffix[1:]
        folder.mkdir(parents=True)
        specials = _specials(suffix, rng)
        variants = specials + _generic(rng, seed_of("seedword"), max(PER_READER - len(specials), 60))
        assert len(variants) >= PER_READER
        for i, data in enumerate(variants):
            name = f"f{i:03d}{ODD_NAMES[i // 17 % len(ODD_NAMES)] if i % 17 == 0 else ''}{suffix}"
            (folder / name).write_bytes(data)
            bad += 1
        for n in range(2):  # good files between the bad ones, in name order
            marker = f"goodmark{suffix[1:]}{n}"
            name = f"f{50 + n * 50:03d}-good{suffix}"
            (folder / name).write_bytes(seed_of(marker))
            good[f"{suffix[1:]}/{name}"] = marker
    if hasattr(os, "mkfifo") and Path("/dev/zero").exists():
        os.mkfifo(root / "txt" / "fifo.txt")
        (root / "txt" / "zero.txt").symlink_to("/dev/zero")
        (root / "md" / "gone.md").symlink_to(root / "nowhere.md")
        bad += 3
    return good, bad


@pytest.mark.slow
def test_fuzzed_files_never_crash_hang_or_lose_good_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    good, bad = build_corpus(corpus)
    home = tmp_path / "home"
    env = {**os.environ, "SECONDSELF_REAL_MODELS": "deny"}
    command = [sys.executable, "-m", "secondself", "--home", str(home), "--embedder", "hashing"]
    try:
        done = subprocess.run([*command, "ingest", str(corpus), "--json"], capture_output=True, text=True,
                              errors="backslashreplace", timeout=DEADLINE, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ingest of {bad} malformed files did not finish in {DEADLINE} s (a hang)")
    assert done.returncode == 1, done.stderr[-3000:]  # some files failed; 3 would be a bug
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads(done.stdout)
    files = {f["path"]: f for f in report["files"]}
    assert len(files) == bad + len(good)
    bugs = [f"{p}: {f['reason']}" for p, f in files.items() if "bug" in f["reason"]]
    assert not bugs, bugs
    for name in good:
        assert files[name]["status"] == "added" and files[name]["chunks"] > 0, files[name]
    db = sqlite3.connect(home / "persons" / "me" / "memory.sqlite3")
    try:
        for marker in good.values():
            hits = db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f"{marker}*",)).fetchone()[0]
            assert hits > 0, f"{marker} not stored"
        dates = [r[0] for r in db.execute("SELECT date FROM chunks UNION SELECT date FROM documents") if r[0]]
        assert all("0001-01-01" < d < "9999-12-31" for d in dates)
    finally:
        db.close()
    summary = report["summary"]
    assert summary["failed"] + summary["skipped"] + summary["added"] + summary["duplicate"] == len(files)
