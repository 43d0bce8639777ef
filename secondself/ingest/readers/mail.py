"""E-mail readers: a single `.eml` message and `.mbox` archives.

Each message becomes one ParsedDocument (kind "email"): title = Subject, date = Date header, and every
block's speaker is the sender (display name, else address). The text/plain body is preferred, HTML is
the fallback. Quoted replies ("> ..." lines, the "On ... wrote:" line, everything after an Outlook
"-----Original Message-----") are dropped, so a thread does not store each message many times.
Metadata: "from", "to", "subject", "message_id" and, when present, "attachments" (file names).
"""

from __future__ import annotations

import codecs
import email
import mailbox
import re
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from pathlib import Path

from secondself.errors import UnreadableFileError
from secondself.ingest.readers.office import html_to_text
from secondself.ingest.readers.text import decode_bytes, split_paragraphs
from secondself.text.dates import parse_date
from secondself.types import Block, ParsedDocument

__all__ = ["read_eml", "read_mbox", "message_to_document", "strip_quoted"]

_WROTE = re.compile(
    r"^(?:on|am|le|el|il|op)\b.{0,300}\b(?:wrote|schrieb|a écrit|escribió|ha scritto|schreef)\s*:\s*$",
    re.I | re.S,
)
_ORIGINAL = re.compile(r"^-{2,}\s*(?:original message|forwarded message|ursprüngliche nachricht)", re.I)


def read_eml(path: Path) -> list[ParsedDocument]:
    """One e-mail; [] when it has no body text (the registry reports that as empty)."""
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=policy.default)
    if not msg.keys():
        raise UnreadableFileError(path, "not an e-mail message (no headers)", "corrupt")
    doc = message_to_document(msg, key="")
    return [doc] if doc is not None else []


def read_mbox(path: Path) -> list[ParsedDocument]:
    """One document per message, key = Message-ID (without <>) or "msg-N" (1-based).

    Messages are parsed one at a time and only their text is kept, so attachments never pile up in
    memory. Messages without body text are skipped.
    """
    box = mailbox.mbox(path, create=False)
    try:
        keys = box.keys()  # scans for "From " lines and records offsets; bodies are not read yet
        if not keys:
            raise UnreadableFileError(path, "no messages found (not an mbox file?)", "corrupt")
        docs: list[ParsedDocument] = []
        seen: set[str] = set()
        for n, key in enumerate(keys, start=1):
            msg = email.message_from_bytes(box.get_bytes(key), policy=policy.default)
            msg_id = _header(msg, "message-id").strip().strip("<>").strip()
            doc_key = msg_id if msg_id and msg_id not in seen else f"msg-{n}"
            seen.add(doc_key)
            doc = message_to_document(msg, key=doc_key)
            if doc is not None:
                docs.append(doc)
        return docs
    finally:
        box.close()


def message_to_document(msg: Message, key: str) -> ParsedDocument | None:
    """Turn one parsed message into a document; None if no text is left after stripping quotes."""
    subject = " ".join(_header(msg, "subject").split())
    sender_raw = _header(msg, "from")
    name, addr = parseaddr(sender_raw)
    speaker = name.strip() or addr.strip() or sender_raw.strip() or None
    date = parse_date(_header(msg, "date"))
    text = strip_quoted(_body_text(msg))
    paragraphs = split_paragraphs(text)
    if not paragraphs:
        return None
    blocks = [Block(p, date=date, speaker=speaker) for p in paragraphs]
    to = ", ".join(a for _, a in getaddresses([_header(msg, "to")]) if a) or _header(msg, "to")
    metadata = {"from": sender_raw, "to": to, "subject": subject, "message_id": _header(msg, "message-id")}
    attachments = _attachment_names(msg)
    if attachments:
        metadata["attachments"] = ", ".join(attachments)
    metadata = {k: v for k, v in metadata.items() if v}
    return ParsedDocument(
        key=key, title=subject or "(no subject)", blocks=blocks, date=date, kind="email", metadata=metadata
    )


def strip_quoted(text: str) -> str:
    """Drop "> " quoted lines, "On ... wrote:" attributions (also wrapped over two lines) and
    everything after an "-----Original Message-----" separator."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if _ORIGINAL.match(stripped):
            break
        if stripped.startswith(">"):
            i += 1
            continue
        if _WROTE.match(stripped):
            i += 1
            continue
        if (
            i + 1 < len(lines)
            and not _WROTE.match(lines[i + 1].strip())
            and _WROTE.match(f"{stripped}\n{lines[i + 1].strip()}")
        ):
            i += 2
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out).strip()


def _header(msg: Message, name: str) -> str:
    """A header as a decoded string; "" if absent or too broken to decode."""
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError, LookupError):  # email's header parser on malformed input
        value = None
        for raw_name, raw in msg.raw_items() if isinstance(msg, EmailMessage) else []:
            if raw_name.lower() == name:
                value = raw
    return str(value) if value is not None else ""


def _body_text(msg: Message) -> str:
    part = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
    if part is None:
        return ""
    try:
        codecs.lookup(part.get_content_charset() or "utf-8")
        content = part.get_content()
    except (LookupError, UnicodeError, KeyError):
        # Unknown charset name or broken encoding: guess like for text files (utf-8, cp1252, latin-1).
        payload = part.get_payload(decode=True) or b""
        content = decode_bytes(payload) if isinstance(payload, bytes) else str(payload)
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        # Mail clients put the quoted thread in <blockquote>; drop it with the page chrome.
        return html_to_text(content, drop=("blockquote",))
    return content


def _attachment_names(msg: Message) -> list[str]:
    names = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename:
            names.append(str(filename))
    return names
