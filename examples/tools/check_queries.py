"""Check the ground truth of the bundled example corpus (examples/maya).

Run from the repository root:

    .venv/bin/python examples/tools/check_queries.py [examples/maya]

For every query in queries.jsonl it verifies the schema and that each
`relevant[].contains` phrase occurs in the named corpus file (case-insensitive,
whitespace-normalized). Text is taken from:

- .md .txt .jsonl .json .html: the raw file, plus (JSON) every string value and
  (HTML) the unescaped, tag-stripped text;
- .eml .mbox: the raw file plus decoded headers and decoded text/html parts;
- .pdf: pypdf page text;  .docx: python-docx paragraphs and table cells.

It also prints document counts per format. Exit status 1 on any failure.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import mailbox
import re
import sys
from collections import Counter
from pathlib import Path

TYPES = {"fact", "temporal", "preference", "people", "event", "numeric"}


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def _json_strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _json_strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _json_strings(v)]
    return []


def _html_text(raw: str) -> str:
    raw = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", raw)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", raw))


def _message_text(msg: email.message.EmailMessage) -> str:
    parts = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        body = part.get_content()
        parts.append(_html_text(body) if part.get_content_subtype() == "html" else body)
    return "\n".join(parts)


def doc_text(path: Path) -> tuple[str, int]:
    """Return (searchable text, number of documents the file holds)."""
    ext = path.suffix.lower()
    if ext == ".pdf":
        from pypdf import PdfReader

        return "\n".join(p.extract_text() or "" for p in PdfReader(str(path)).pages), 1
    if ext == ".docx":
        import docx

        d = docx.Document(str(path))
        cells = [c.text for t in d.tables for r in t.rows for c in r.cells]
        return "\n".join([p.text for p in d.paragraphs] + cells), 1
    raw = path.read_text(encoding="utf-8", errors="replace")
    if ext == ".json":
        data = json.loads(raw)
        n = len(data) if isinstance(data, list) else 1
        return raw + "\n" + "\n".join(_json_strings(data)), n
    if ext == ".jsonl":
        rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        return raw + "\n" + "\n".join(_json_strings(rows)), 1
    if ext in {".html", ".htm"}:
        return raw + "\n" + _html_text(raw), 1
    if ext == ".eml":
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        return raw + "\n" + _message_text(msg), 1
    if ext == ".mbox":
        msgs = [
            email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
            for m in mailbox.mbox(str(path))
        ]
        return raw + "\n" + "\n".join(_message_text(m) for m in msgs), len(msgs)
    return raw, 1


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "maya"
    corpus = root / "corpus"
    errors: list[str] = []

    texts: dict[str, str] = {}
    per_format: Counter[str] = Counter()
    for p in sorted(corpus.rglob("*")):
        if p.is_file():
            text, n = doc_text(p)
            texts[p.relative_to(corpus).as_posix()] = norm(text)
            per_format[p.suffix.lower()] += n

    queries = [
        json.loads(line)
        for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    ids = Counter(q.get("id") for q in queries)
    errors += [f"duplicate id {i}" for i, c in ids.items() if c > 1]
    checked = 0
    for q in queries:
        qid = q.get("id")
        missing = {"id", "question", "answer", "type", "answerable", "relevant"} - q.keys()
        if missing:
            errors.append(f"{qid}: missing keys {sorted(missing)}")
            continue
        if q["type"] not in TYPES:
            errors.append(f"{qid}: bad type {q['type']!r}")
        if q["answerable"]:
            if not q["relevant"] or not q["answer"]:
                errors.append(f"{qid}: answerable but no relevant passages or no answer")
        elif q["relevant"] or q["answer"]:
            errors.append(f"{qid}: unanswerable but has relevant passages or an answer")
        for r in q["relevant"]:
            checked += 1
            text = texts.get(r["path"])
            if text is None:
                errors.append(f"{qid}: no such corpus file {r['path']}")
            elif norm(r["contains"]) not in text:
                errors.append(f"{qid}: {r['path']} does not contain {r['contains']!r}")

    answerable = sum(1 for q in queries if q.get("answerable"))
    print("documents per format:", dict(sorted(per_format.items())), "total:", sum(per_format.values()))
    print(
        f"queries: {len(queries)} ({answerable} answerable, {len(queries) - answerable} unanswerable), "
        f"{checked} relevant passages checked"
    )
    for e in errors:
        print("FAIL", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
