"""Issue 14, findings 1-6: one bad file never fails or hangs a batch; everything printed from data is escaped.

Each bad file is ingested next to a good one: the batch must finish, list the bad file with a reason and
store the good file. Checks that could hang (a FIFO, /dev/zero, a zip bomb) run the CLI in a subprocess with
a deadline, so a regression fails the test instead of stalling the suite.
"""

from __future__ import annotations

import io
import json
import mailbox
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from secondself.errors import UnreadableFileError
from secondself.ingest.pipeline import ingest
from secondself.ingest.readers import read_file
from secondself.text.dates import date_in_heading, parse_date

EDGE = "9999-12-31T23:59:59-14:00"  # 10000-01-01 in UTC: past datetime's range
EDGE_LOW = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
DEADLINE = 120  # seconds for one bounded CLI run; the runs themselves take a few seconds


def cli(home: Path, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    """Run `secondself --home HOME --embedder hashing ARGS` in a subprocess that is killed at the deadline."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "secondself", "--home", str(home), "--embedder", "hashing", *args],
            capture_output=True, text=True, timeout=timeout, errors="backslashreplace",
            env={**os.environ, "SECONDSELF_REAL_MODELS": "deny"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"`secondself {' '.join(args)}` still ran after {timeout} s (a hang)")


def by_name(report_or_json) -> dict[str, dict]:
    files = report_or_json["files"] if isinstance(report_or_json, dict) else report_or_json
    return {f["path"]: f for f in files}


# ------------------------------------------------------------------------------------ 1: edge dates


def test_parse_date_rejects_dates_that_overflow_in_utc() -> None:
    for raw in (EDGE, EDGE_LOW, "D:99991231235959-14'00", "Fri, 31 Dec 9999 23:59:59 -1400",
                datetime(9999, 12, 31, 23, 59, tzinfo=UTC), datetime.min):
        assert parse_date(raw) is None, raw
    assert date_in_heading("## 9999-12-31") is None
    # Far but ordinary dates still parse, with their offset kept.
    assert parse_date("9000-01-01T10:00:00-14:00") == datetime(9000, 1, 2, 0, 0, tzinfo=UTC)
    assert parse_date("D:20240506070809+02'00").utcoffset().total_seconds() == 7200  # type: ignore[union-attr]


def _eml(path: Path, date: str) -> Path:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["Subject"] = "Edge"
    msg["Date"] = date
    msg.set_content("A message from the far future.")
    path.write_bytes(bytes(msg))
    return path


def _mbox(path: Path, date: str) -> Path:
    box = mailbox.mbox(path)
    box.add(_eml(path.with_suffix(".tmp"), date).read_bytes())
    box.close()
    path.with_suffix(".tmp").unlink()
    return path


def _pdf(path: Path, created: str) -> Path:
    fpdf = pytest.importorskip("fpdf")
    from pypdf import PdfWriter

    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "A report from the far future.")
    buf = io.BytesIO(pdf.output())
    writer = PdfWriter(clone_from=buf)
    writer.add_metadata({"/CreationDate": created})
    writer.write(str(path))
    return path


EDGE_FILES = {
    "front.md": lambda p: p.write_text(f"---\ndate: {EDGE}\n---\n\nA note from the far future.\n"),
    "low.md": lambda p: p.write_text(f"---\ndate: {EDGE_LOW}\n---\n\nA note from the distant past.\n"),
    "heading.md": lambda p: p.write_text("# 9999-12-31\n\nUnder the last heading.\n"),
    "mail.eml": lambda p: _eml(p, "Fri, 31 Dec 9999 23:59:59 -1400"),
    "box.mbox": lambda p: _mbox(p, "Fri, 31 Dec 9999 23:59:59 -1400"),
    "chat.json": lambda p: p.write_text(json.dumps([{"speaker": "A", "text": "hi", "timestamp": EDGE}])),
    "chat.jsonl": lambda p: p.write_text(json.dumps({"speaker": "A", "text": "hi", "timestamp": EDGE}) + "\n"),
    "gpt.json": lambda p: p.write_text(json.dumps([{"title": "t", "create_time": 253402300799.9, "mapping": {
        "a": {"id": "a", "parent": None, "children": [], "message": {
            "author": {"role": "user"}, "create_time": EDGE, "content": {"parts": ["hello"]}}}}}])),
    "meta.html": lambda p: p.write_text(
        f'<html><head><meta property="article:published_time" content="{EDGE}"></head>'
        "<body><p>A page from the far future.</p></body></html>"),
    "time.html": lambda p: p.write_text(f'<html><body><p>Posted <time datetime="{EDGE}">then</time>.</p></body></html>'),
    "report.pdf": lambda p: _pdf(p, "D:99991231235959-14'00"),
    "plan.docx": lambda p: _docx(p, EDGE),
    "blank.docx": lambda p: _docx(p, ""),  # python-docx itself fails on an empty date
}  # fmt: skip


def _docx(path: Path, created: str) -> Path:
    """A .docx whose core properties say it was created at `created` (W3CDTF, as Word writes it)."""
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_paragraph("A plan from the far future.")
    buf = io.BytesIO()
    document.save(buf)
    src = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                start = data.index(b">", data.index(b"<dcterms:created")) + 1
                data = data[:start] + created.encode() + data[data.index(b"</dcterms:created>"):]
            out.writestr(info.filename, data)
    return path


@pytest.mark.parametrize("name", sorted(EDGE_FILES))
def test_edge_date_in_any_reader_does_not_fail_the_batch(store, embedder, tmp_path: Path, name: str) -> None:
    d = tmp_path / "d"
    d.mkdir()
    EDGE_FILES[name](d / name)
    (d / "b.txt").write_text("ok\n")
    report = ingest(store, embedder, [d])
    assert {o.path: o.status for o in report.outcomes} == {name: "added", "b.txt": "added"}
    dates = [r[0] for r in store.db.execute("SELECT date FROM chunks UNION ALL SELECT date FROM documents")]
    assert all(x is None or "9999" not in x and not x.startswith("0000") for x in dates), dates


def test_a_modification_time_past_the_range_is_no_date() -> None:
    from secondself.text.dates import from_timestamp

    assert from_timestamp(1e14) is None and from_timestamp(-1e12) is None  # file systems may hold these
    assert from_timestamp(0) == datetime(1970, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------ 2: non-UTF-8 names


def test_file_name_that_is_not_utf8_is_stored_escaped(store, embedder, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    bad = os.fsdecode(b"caf\xe9 notes.txt")
    (d / bad).write_text("Coffee with Rui on Tuesday.\n")
    (d / "b.txt").write_text("ok\n")
    report = ingest(store, embedder, [d])
    assert {o.path: o.status for o in report.outcomes} == {"caf\\xe9 notes.txt": "added", "b.txt": "added"}
    titles = [r[0] for r in store.db.execute("SELECT title FROM documents")]
    assert "caf\ufffd notes" in titles
    again = ingest(store, embedder, [d])  # the escaped name still finds its file: nothing missing or re-added
    assert sorted(o.status for o in again.outcomes) == ["unchanged", "unchanged"]


def test_lone_surrogates_in_file_content_are_replaced(store, embedder, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "c.json").write_text('[{"speaker": "\\ud800A", "text": "bad \\udcff half", "conversation": "\\ud83d"}]')
    (d / "b.txt").write_text("ok\n")
    report = ingest(store, embedder, [d])
    assert {o.path: o.status for o in report.outcomes} == {"c.json": "added", "b.txt": "added"}
    texts = [r[0] for r in store.db.execute("SELECT text FROM chunks")]
    assert any("bad \ufffd half" in t for t in texts)


# ------------------------------------------------------------------------ 3: FIFOs and device files


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
def test_fifo_and_device_symlink_fail_without_hanging(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.mkfifo(d / "pipe.txt")
    (d / "zero.txt").symlink_to("/dev/zero")
    (d / "null.md").symlink_to("/dev/null")
    (d / "good.txt").write_text("Still here.\n")
    done = cli(tmp_path / "home", "ingest", str(d), "--json")
    assert done.returncode == 1, done.stderr
    files = by_name(json.loads(done.stdout))
    assert files["good.txt"]["status"] == "added"
    for name in ("pipe.txt", "zero.txt", "null.md"):
        assert files[name]["status"] == "failed" and "not a regular file" in files[name]["reason"], files[name]
    stale = json.loads(cli(tmp_path / "home", "status", "--json").stdout)["stale"]
    assert len(stale["failed_files"]) == 3 and not stale["new_files"], stale  # recorded, so status knows them


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_file_hash_refuses_a_fifo_before_opening_it(tmp_path: Path) -> None:
    from secondself.ingest.pipeline import file_hash

    os.mkfifo(tmp_path / "p.txt")
    code = ("import sys; from pathlib import Path; from secondself.ingest.pipeline import file_hash\n"
            "try: file_hash(Path(sys.argv[1]))\nexcept Exception as e: print(type(e).__name__, e)")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.txt")], capture_output=True,
                             text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("file_hash blocked on a FIFO")
    assert "not a regular file" in out
    assert file_hash  # imported here too, so a broken import fails loudly


# --------------------------------------------------------------------------------- 4: zip bombs


def docx_bomb(path: Path, paragraphs: int, paragraph: bytes = b"<w:p/>") -> Path:
    """A valid .docx whose body is `paragraphs` copies of `paragraph`: tiny on disk, huge unpacked."""
    docx = pytest.importorskip("docx")
    buf = io.BytesIO()
    docx.Document().save(buf)
    src = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                head = data.partition(b"<w:body>")[0]
                body = paragraph * paragraphs + b"<w:p><w:r><w:t>hello</w:t></w:r></w:p>"
                data = head + b"<w:body>" + body + b"</w:body></w:document>"
            out.writestr(info.filename, data)
    return path


def test_docx_zip_bomb_fails_that_file_quickly(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    bomb = docx_bomb(d / "bomb.docx", 3_000_000)  # ~18 MB of XML, 3 million elements, in ~30 KB
    assert bomb.stat().st_size < 200_000
    (d / "good.txt").write_text("Still here.\n")
    done = cli(tmp_path / "home", "ingest", str(d), "--json")
    files = by_name(json.loads(done.stdout))
    assert files["good.txt"]["status"] == "added"
    assert files["bomb.docx"]["status"] == "failed" and "zip bomb" in files["bomb.docx"]["reason"]


def test_damaged_archive_is_reported_as_corrupt(tmp_path: Path) -> None:
    docx_bomb(tmp_path / "ok.docx", 10)
    data = (tmp_path / "ok.docx").read_bytes()
    cut = tmp_path / "cut.docx"  # the central directory points past a header: a negative seek (EINVAL)
    cut.write_bytes(data[:30] + data[-(len(data) - 60):])
    with pytest.raises(UnreadableFileError) as info:
        read_file(cut)
    assert info.value.kind == "corrupt" and ".docx" in info.value.reason, info.value.reason


def test_docx_limits_on_entries_and_unpacked_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from secondself.ingest.readers import office

    path = docx_bomb(tmp_path / "small.docx", 10, b"<w:p><w:r><w:t>words</w:t></w:r></w:p>")
    assert [b.text for b in read_file(path)[0].blocks][:1] == ["words"]
    for limit, value, words in (("MAX_ZIP_ENTRIES", 3, "entries"), ("MAX_UNPACKED_BYTES", 1000, "unpacks to"),
                                ("MAX_XML_ELEMENTS", 20, "elements")):
        with monkeypatch.context() as m:
            m.setattr(office, limit, value)
            with pytest.raises(UnreadableFileError) as info:
                read_file(path)
            assert info.value.kind == "too_large" and words in info.value.reason, info.value.reason


def test_many_empty_docx_paragraphs_are_read_fast(tmp_path: Path) -> None:
    """Style lookups per paragraph made 100k empty paragraphs take over a minute; under the element limit
    such a file must be cheap (bounded by a subprocess deadline, not timed)."""
    d = tmp_path / "d"
    d.mkdir()
    docx_bomb(d / "sparse.docx", 100_000)
    done = cli(tmp_path / "home", "ingest", str(d), "--json", timeout=60)
    assert by_name(json.loads(done.stdout))["sparse.docx"]["status"] == "added"


# -------------------------------------------------------------------- 5: escaping what is printed


def test_control_characters_in_names_and_text_are_escaped(tmp_path: Path) -> None:
    d = tmp_path / "d\x1b[2J"
    d.mkdir()
    (d / "\x1b]0;pwned\x07.txt").symlink_to("/nonexistent")
    (d / "ok.txt").write_text("Sourdough \x1b[31mred\x1b[0m starter \u202e evil\n")
    (d / os.fsdecode(b"\xff.txt")).write_text("latin\n")
    home = tmp_path / "home"
    done = cli(home, "ingest", str(d), "--verbose")
    assert done.returncode == 1
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\x07" not in stream, stream
    assert "\\x1b]0;pwned\\x07.txt" in done.stderr and "\\xff.txt" in done.stdout + done.stderr
    found = cli(home, "search", "sourdough starter")
    assert found.returncode == 0 and "Sourdough" in found.stdout
    assert "\x1b" not in found.stdout and "\u202e" not in found.stdout and "\\x1b[31mred" in found.stdout
    listed = cli(home, "sources")
    assert "\x1b" not in listed.stdout and "\\x1b[2J" in listed.stdout
    status = cli(home, "status")
    assert "\x1b" not in status.stdout + status.stderr


def test_escape_helper() -> None:
    from secondself.cli import escape

    assert escape("plain café — ok") == "plain café — ok"
    assert escape("a\x1b[31mb\x07\x9b\x7f") == "a\\x1b[31mb\\x07\\x9b\\x7f"
    assert escape("line\nnext\ttab") == "line\\nnext\\ttab"
    assert escape("line\nnext", keep_newlines=True) == "line\nnext"
    assert escape("\udcff\u202e") == "\\udcff\\u202e"


# ------------------------------------------------------------------------ 6: a bug has its own exit


def test_unexpected_error_exits_3_and_says_it_is_a_bug(capsys, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from secondself.cli import EXIT_BUG, EXIT_FILES_FAILED, main
    from secondself.ingest import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("kaboom \x1b[2J")

    monkeypatch.setattr(pipeline, "ingest", broken)
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(SystemExit) as info:
        main(["--embedder", "hashing", "ingest", str(tmp_path / "a.txt")])
    err = capsys.readouterr().err
    assert info.value.code == EXIT_BUG == 3 and EXIT_BUG != EXIT_FILES_FAILED
    assert "bug" in err and "RuntimeError: kaboom" in err and "Traceback" in err and "\x1b" not in err


def test_one_file_that_breaks_a_reader_unexpectedly_fails_alone(store, embedder, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from secondself.ingest import pipeline

    real = pipeline.chunk_blocks

    def chunk_blocks(blocks, **kwargs):
        blocks = list(blocks)
        if any("poison" in b.text for b in blocks):
            raise TypeError("a bug in chunking")
        return real(blocks, **kwargs)

    monkeypatch.setattr(pipeline, "chunk_blocks", chunk_blocks)
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_text("poison\n")
    (d / "b.txt").write_text("fine\n")
    report = ingest(store, embedder, [d])
    outcomes = {o.path: o for o in report.outcomes}
    assert outcomes["b.txt"].status == "added"
    assert outcomes["a.txt"].status == "failed" and "TypeError" in outcomes["a.txt"].reason
    assert "bug" in outcomes["a.txt"].reason
