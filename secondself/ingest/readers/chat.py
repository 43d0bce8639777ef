"""Chat readers for `.json` and `.jsonl`: ChatGPT exports and secondself's generic chat format.

ChatGPT export (`conversations.json`): a JSON list of conversations, each with a "mapping" of nodes.
Each conversation becomes one document; only the branch that leads to "current_node" (the one the
user last saw) is read. Speakers: "me" for the user (mapped to the person's name later), "ChatGPT".

Generic chat format (documented contract for converters of other chat apps)
----------------------------------------------------------------------------
Either JSONL (one message object per line; blank lines allowed) or JSON that is a list of message
objects or an object `{"messages": [...]}`. A message object:

    {
      "speaker":      "Alice",                 # aliases: "author", "from"; optional
      "text":         "See you at 8",          # aliases: "content", "body", "message"; required
      "timestamp":    "2025-03-14T19:02:00Z",  # aliases: "time", "date", "ts"; ISO-8601 or unix
                                               #   seconds (ms also accepted); optional
      "conversation": "family-group"           # optional; groups messages into documents
    }

Messages are grouped by "conversation" (one document each, key = its id; messages without one share
key ""), sorted by timestamp when every message in the group has one, else kept in file order. Title:
"Chat: <conversation or file stem> (<participants>)". Empty texts are skipped. Every message is a
Block with is_turn=True, speaker and date. A JSONL line that is not a JSON object with a text field
makes the whole file unreadable (the error names the line): messages are never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from secondself.errors import UnreadableFileError
from secondself.ingest.readers.text import decode_bytes, open_text
from secondself.text.dates import parse_date
from secondself.types import Block, ParsedDocument

__all__ = ["read_json", "read_jsonl", "SPEAKER_KEYS", "TEXT_KEYS", "TIME_KEYS"]

SPEAKER_KEYS = ("speaker", "author", "from")
TEXT_KEYS = ("text", "content", "body", "message")
TIME_KEYS = ("timestamp", "time", "date", "ts")
_ROLES = {"user": "me", "assistant": "ChatGPT"}
_UNKNOWN_SHAPE = "JSON file is neither a ChatGPT export nor the generic chat format"


def read_json(path: Path) -> list[ParsedDocument]:
    """A ChatGPT export or a generic chat JSON file; JSONL content in a .json file is accepted too."""
    text = decode_bytes(path.read_bytes())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several JSON values: really JSON Lines
            return read_jsonl(path)
        raise UnreadableFileError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}", "corrupt") from exc
    if isinstance(data, dict) and "mapping" in data:
        data = [data]  # a single exported conversation
    if isinstance(data, list) and data and all(isinstance(c, dict) and "mapping" in c for c in data):
        return _chatgpt_documents(data)
    messages = data.get("messages") if isinstance(data, dict) else data
    if isinstance(messages, list) and messages and all(_text_key(m) for m in messages):
        return _generic_documents(path, ((i, m) for i, m in enumerate(messages, start=1)))
    if isinstance(messages, list) and not messages:
        raise UnreadableFileError(path, "no messages", "empty")
    raise UnreadableFileError(path, _UNKNOWN_SHAPE, "unsupported")


def read_jsonl(path: Path) -> list[ParsedDocument]:
    """Generic chat format, one message per line."""

    def messages() -> Iterable[tuple[int, dict[str, Any]]]:
        with open_text(path) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UnreadableFileError(
                        path, f"invalid JSON on line {number}: {exc.msg}", "corrupt"
                    ) from exc
                if not _text_key(obj):
                    raise UnreadableFileError(
                        path, f"line {number} is not a chat message (needs one of: {', '.join(TEXT_KEYS)})"
                    )
                yield number, obj

    return _generic_documents(path, messages())


# ------------------------------------------------------------------------------------------- generic


def _text_key(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    return next((k for k in TEXT_KEYS if k in obj), None)


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((obj[k] for k in keys if obj.get(k) is not None), None)


def _as_text(value: Any) -> str:
    """Message text; a list of parts (strings or {"text": ...}) is joined."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in value]
        return "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return ""


def _generic_documents(path: Path, messages: Iterable[tuple[int, dict[str, Any]]]) -> list[ParsedDocument]:
    groups: dict[str, list[tuple[int, Block, bool]]] = {}
    for number, msg in messages:
        text = _as_text(msg.get(_text_key(msg) or ""))
        if not text:
            continue
        speaker = _first(msg, SPEAKER_KEYS)
        raw_time = _first(msg, TIME_KEYS)
        date = parse_date(raw_time)
        conversation = msg.get("conversation")
        key = str(conversation) if conversation is not None else ""
        block = Block(text, date=date, speaker=str(speaker) if speaker is not None else None, is_turn=True)
        groups.setdefault(key, []).append((number, block, date is not None))
    docs = []
    for key, entries in groups.items():
        blocks = [b for _, b, _ in entries]
        if all(has_date for _, _, has_date in entries):
            blocks.sort(key=lambda b: b.date)  # type: ignore[arg-type,return-value]  # stable sort
        participants = list(dict.fromkeys(b.speaker for b in blocks if b.speaker))
        label = key or path.stem
        title = f"Chat: {label} ({', '.join(participants)})" if participants else f"Chat: {label}"
        docs.append(
            ParsedDocument(
                key=key,
                title=title,
                blocks=blocks,
                date=blocks[0].date,
                kind="chat",
                metadata={"format": "generic", "participants": ", ".join(participants)},
            )  # fmt: skip
        )
    return docs


# ------------------------------------------------------------------------------------------- ChatGPT


def _chatgpt_documents(conversations: list[dict[str, Any]]) -> list[ParsedDocument]:
    docs = []
    seen: set[str] = set()
    for n, conv in enumerate(conversations, start=1):
        key = str(conv.get("conversation_id") or conv.get("id") or f"conv-{n}")
        if key in seen:
            key = f"{key}-{n}"
        seen.add(key)
        blocks = [b for node in _chatgpt_chain(conv) if (b := _chatgpt_block(node)) is not None]
        if not blocks:
            continue
        docs.append(
            ParsedDocument(
                key=key,
                title=str(conv.get("title") or "ChatGPT conversation"),
                blocks=blocks,
                date=parse_date(conv.get("create_time")) or blocks[0].date,
                kind="chat",
                metadata={"format": "chatgpt"},
            )  # fmt: skip
        )
    return docs


def _chatgpt_chain(conv: dict[str, Any]) -> list[dict[str, Any]]:
    """Nodes from the root to `current_node`; without a valid current_node, follow first children."""
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        return []
    current = conv.get("current_node")
    if current in mapping:
        chain, seen = [], set()
        while current in mapping and current not in seen:  # `seen` guards against cyclic exports
            seen.add(current)
            chain.append(mapping[current])
            current = mapping[current].get("parent")
        return chain[::-1]
    root = next((n for n in mapping.values() if n.get("parent") not in mapping), None)
    chain, seen = [], set()
    node = root
    while isinstance(node, dict) and id(node) not in seen:
        seen.add(id(node))
        chain.append(node)
        children = [c for c in node.get("children") or [] if c in mapping]
        node = mapping[children[0]] if children else None
    return chain


def _chatgpt_block(node: dict[str, Any]) -> Block | None:
    message = node.get("message")
    if not isinstance(message, dict):
        return None
    role = (message.get("author") or {}).get("role")
    if role not in _ROLES:  # system, tool: context and plumbing, not the conversation
        return None
    if (message.get("metadata") or {}).get("is_visually_hidden_from_conversation"):
        return None
    content = message.get("content") or {}
    text = _as_text(content.get("parts") or [])
    if not text:
        return None
    return Block(text, date=parse_date(message.get("create_time")), speaker=_ROLES[role], is_turn=True)
