"""A space as stored: its participants (parsed from `self`, `role:NAME` or a URL with its token masked), its
rules, its turns; create, read, list, reset and delete. Inline tokens go to `space_secrets` and are read back
only by `run._secret`. See the package docstring for the whole design."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError, SpaceNotFoundError
from ..memory.scope import check_name
from ..store import Store, now_iso

__all__ = ["Participant", "Turn", "Space", "parse_participant", "create_space", "list_spaces", "get_space",
           "delete_space", "reset_space", "set_status", "add_turn", "DEFAULT_MODEL", "DEFAULT_TIMEOUT", "WITHHELD"]

DEFAULT_MODEL = "secondself"
DEFAULT_TIMEOUT = 60.0
WITHHELD = "[withheld]"
MAX_TOPIC = 2000
MAX_PARTICIPANTS = 8
MAX_ROUNDS = 10
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


# -- participants -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Participant:
    """One voice in a space. `name` is unique in it and is the speaker of its turns. `key` says where a remote
    participant's token is: None (none), 'stored' (space_secrets) or 'env:VAR'. `never_share` adds to the
    space's terms and `share_citations` (None: the space's rule) overrides it, for this participant only."""

    kind: str                                  # self | role | remote
    name: str
    role: str | None = None
    url: str | None = None
    model: str = DEFAULT_MODEL
    key: str | None = None
    never_share: tuple[str, ...] = ()
    share_citations: bool | None = None

    @property
    def remote(self) -> bool:
        return self.kind == "remote"

    @property
    def ref(self) -> str:
        """How to name it again, token masked: 'role:x', 'http://h:8765/v1?model=secondself:work#***'."""
        if not self.remote:
            return self.name
        query = "&".join(([f"model={self.model}"] if self.model != DEFAULT_MODEL else [])
                         + ([f"name={self.name}"] if self.name != _remote_name(self.url or "", self.model) else []))
        key = "#***" if self.key == "stored" else f"#{self.key}" if self.key else ""
        return f"{self.url}{'?' + query if query else ''}{key}"

    def label(self, person: str) -> str:
        """The speaker's name in the transcript."""
        return {"self": person, "role": f"{person} ({self.role})"}.get(self.kind, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "role": self.role, "url": self.url, "model": self.model,
                "key": self.key, "never_share": list(self.never_share), "share_citations": self.share_citations,
                "ref": self.ref}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Participant:
        return cls(d["kind"], d["name"], d.get("role"), d.get("url"), d.get("model") or DEFAULT_MODEL, d.get("key"),
                   tuple(d.get("never_share") or ()), d.get("share_citations"))


def _remote_name(url: str, model: str) -> str:
    netloc = urlsplit(url).netloc
    return netloc if model == DEFAULT_MODEL else f"{netloc}/{model}"


def parse_participant(text: str) -> tuple[Participant, str | None]:
    """`self`, `role:NAME` or `http(s)://host:port/v1[?model=M&name=N][#TOKEN|#env:VAR]` → (participant,
    the inline token or None)."""
    text = (text or "").strip()
    if text == "self":
        return Participant("self", "self"), None
    if text.startswith("role:"):
        name = check_name("role", text[5:])
        return Participant("role", f"role:{name}", role=name), None
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"participant {text[:80]!r}: use self, role:NAME, or an OpenAI-compatible URL such as "
                          "http://host:8765/v1#env:VAR (the token in $VAR) or http://host:8765/v1#TOKEN")
    parts = urlsplit(text)
    if not parts.hostname or parts.username or parts.password:
        raise ConfigError("a participant's URL needs a host and no user:password (put the token after '#')")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"model", "name"}
    if unknown:
        raise ConfigError(f"participant URL: unknown parameter(s) {', '.join(sorted(unknown))}; known: model, name")
    model = (query.get("model") or [DEFAULT_MODEL])[-1].strip() or DEFAULT_MODEL
    url = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    name = (query.get("name") or [""])[-1].strip() or _remote_name(url, model)
    if len(name) > 80 or len(model) > 200 or not name.isprintable() or not model.isprintable():
        raise ConfigError("a participant's name must be printable, at most 80 characters (model: 200)")
    if name == "self" or name.startswith("role:"):
        raise ConfigError(f"{name!r} names one of your own; give the other second self another name (?name=...)")
    fragment = unquote(parts.fragment).strip()
    if not fragment:
        return Participant("remote", name, url=url, model=model), None
    if fragment.startswith("env:"):
        if not _ENV.match(fragment[4:]):
            raise ConfigError(f"#env:{fragment[4:80]} is not an environment variable name")
        return Participant("remote", name, url=url, model=model, key=fragment), None
    return Participant("remote", name, url=url, model=model, key="stored"), fragment


# -- the space and its turns ------------------------------------------------------------------------------

@dataclass
class Turn:
    round: int                      # 0 = the host's opening; rounds + 1 = its summary
    speaker: str                    # the participant's name
    content: str
    status: str = "ok"              # ok | skipped
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "speaker": self.speaker, "label": self.meta.get("label", self.speaker),
                "content": self.content, "status": self.status, "error": self.error, "meta": self.meta,
                "created_at": self.created_at}


@dataclass
class Space:
    id: int
    topic: str
    host: Participant
    participants: tuple[Participant, ...]
    rounds: int
    status: str
    summary: str | None
    never_share: tuple[str, ...] = ()
    share_citations: bool = False
    timeout: float = DEFAULT_TIMEOUT
    created_at: str = ""
    updated_at: str = ""
    turns: list[Turn] = field(default_factory=list)

    def plan(self) -> list[tuple[int, Participant]]:
        """Every turn of a full run, in order."""
        return [(0, self.host), *((r, p) for r in range(1, self.rounds + 1) for p in self.participants),
                (self.rounds + 1, self.host)]

    def pending(self) -> list[tuple[int, Participant]]:
        done = {(t.round, t.speaker) for t in self.turns}
        return [(r, p) for r, p in self.plan() if (r, p.name) not in done]

    def where(self) -> str:
        """Where a run stands, in words."""
        pending = self.pending()
        if self.status in ("done", "failed") or not pending:
            return self.status
        r, p = pending[0]
        step = "opening" if r == 0 else "summary" if r > self.rounds else f"round {r}, {p.name}"
        return f"{len(self.turns)} of {len(self.plan())} turns; next: {step}"

    def notices(self) -> list[str]:
        """What is sent where: one line per remote participant, said before a run sends anything."""
        out = []
        for p in self.participants:
            if p.remote:
                share = self.share_citations if p.share_citations is None else p.share_citations
                rules = [*self.never_share, *p.never_share]
                out.append(f"note: the transcript of space {self.id} (its topic and every turn so far) is sent to "
                           f"{p.url} (model {p.model}) at each of its turns; "
                           + ("the memories your roles cite too" if share else "citations are not sent")
                           + (f"; {len(rules)} never-share rule(s) applied" if rules else ""))
        return out

    def to_dict(self, turns: bool = True) -> dict[str, Any]:
        out = {"id": self.id, "topic": self.topic, "host": self.host.to_dict(),
               "participants": [p.to_dict() for p in self.participants], "rounds": self.rounds,
               "status": self.status, "progress": self.where(), "summary": self.summary,
               "never_share": list(self.never_share), "share_citations": self.share_citations,
               "timeout": self.timeout, "created_at": self.created_at, "updated_at": self.updated_at,
               "turn_count": len(self.turns), "notices": self.notices()}
        if turns:
            out["turns"] = [t.to_dict() for t in self.turns]
        return out


def _terms_ok(terms: Sequence[str]) -> tuple[str, ...]:
    if isinstance(terms, str) or any(not isinstance(t, str) for t in terms):
        raise ConfigError("never_share must be a list of strings")
    out = tuple(dict.fromkeys(t.strip() for t in terms if t and t.strip()))
    if any(len(t) > 200 for t in out) or len(out) > 500:
        raise ConfigError("never_share: at most 500 terms of at most 200 characters")
    return out


def _check_exclusions(store: Store, terms: Sequence[str]) -> None:
    """`source:NAME` / `tag:NAME` must name something that exists: a typo would send what was meant to stay."""
    from ..memory.scope import source_tags

    sources = set(store.source_roots())
    tags = {t for ts in source_tags(store).values() for t in ts}
    for t in terms:
        kind, _, name = t.partition(":")
        if kind.lower() == "source" and name.strip() not in sources:
            raise ConfigError(f"never-share {t!r}: there is no source {name.strip()!r} (`secondself sources`)")
        if kind.lower() == "tag" and name.strip() not in tags:
            raise ConfigError(f"never-share {t!r}: no source carries the tag {name.strip()!r} (`secondself tag list`)")


def create_space(store: Store, topic: str, participants: Sequence[str | Mapping[str, Any]], host: str = "self",
                 rounds: int = 2, never_share: Sequence[str] = (), share_citations: bool = False,
                 timeout: float = DEFAULT_TIMEOUT) -> Space:
    """Store a new space. A participant is a string (`parse_participant`) or {"ref", "never_share",
    "share_citations"} with rules of its own. Roles must exist; inline tokens go to space_secrets only."""
    from ..roles import get_role

    topic = " ".join((topic or "").split())
    if not topic or len(topic) > MAX_TOPIC:
        raise ConfigError(f"the topic must be 1 to {MAX_TOPIC} characters")
    if not 1 <= len(participants) <= MAX_PARTICIPANTS:
        raise ConfigError(f"a space needs 1 to {MAX_PARTICIPANTS} participants")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise ConfigError(f"rounds must be 1 to {MAX_ROUNDS}")
    if not 1 <= float(timeout) <= 600:
        raise ConfigError("timeout must be 1 to 600 seconds")
    never_share = _terms_ok(never_share)
    members: list[Participant] = []
    secrets: dict[str, str] = {}
    for item in participants:
        spec = item if isinstance(item, Mapping) else {"ref": item}
        p, secret = parse_participant(str(spec.get("ref") or ""))
        share = spec.get("share_citations")
        if share is not None and not isinstance(share, bool):
            raise ConfigError("share_citations must be true, false or null")
        p = replace(p, never_share=_terms_ok(spec.get("never_share") or ()), share_citations=share)
        if any(m.name == p.name for m in members):
            raise ConfigError(f"{p.name!r} takes part twice; give one of them another name (URL?name=...)")
        members.append(p)
        if secret is not None:
            secrets[p.name] = secret
    host_p, _ = parse_participant(host or "self")
    if host_p.remote:
        raise ConfigError("the host is your own second self: 'self' or role:NAME")
    for p in (host_p, *members):
        if p.kind == "role":
            get_role(store, p.role or "")
    _check_exclusions(store, [*never_share, *(t for p in members for t in p.never_share)])
    data = {"host": host_p.to_dict(), "members": [p.to_dict() for p in members], "never_share": list(never_share),
            "share_citations": bool(share_citations), "timeout": float(timeout)}
    now = now_iso()
    with store.transaction(memory=False) as db:
        space_id = db.execute("INSERT INTO spaces (topic, participants, rounds, status, created_at, updated_at) "
                              "VALUES (?, ?, ?, 'created', ?, ?) RETURNING id",
                              (topic, json.dumps(data), rounds, now, now)).fetchone()[0]
        db.executemany("INSERT INTO space_secrets (space_id, participant, secret) VALUES (?, ?, ?)",
                       [(space_id, name, s) for name, s in secrets.items()])
    return get_space(store, int(space_id))


_COLUMNS = "id, topic, participants, rounds, status, summary, created_at, updated_at"


def _space(row: tuple) -> Space:
    data = json.loads(row[2])
    return Space(row[0], row[1], Participant.from_dict(data["host"]),
                 tuple(Participant.from_dict(p) for p in data["members"]), row[3], row[4], row[5],
                 tuple(data.get("never_share") or ()), bool(data.get("share_citations")),
                 float(data.get("timeout") or DEFAULT_TIMEOUT), row[6], row[7])


def get_space(store: Store, space_id: int) -> Space:
    """The space with its transcript (never its secrets)."""
    row = store.db.execute(f"SELECT {_COLUMNS} FROM spaces WHERE id = ?", (space_id,)).fetchone()
    if row is None:
        raise SpaceNotFoundError(space_id)
    space = _space(row)
    space.turns = [Turn(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"), r[6]) for r in store.db.execute(
        "SELECT round, speaker, content, status, error, meta, created_at FROM space_turns WHERE space_id = ? "
        "ORDER BY id", (space_id,))]
    return space


def list_spaces(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The latest spaces, newest first, without their transcripts."""
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM spaces ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    out = []
    for row in rows:
        space = _space(row)
        space.turns = [Turn(r[0], r[1], "") for r in store.db.execute(
            "SELECT round, speaker FROM space_turns WHERE space_id = ?", (space.id,))]
        out.append(space.to_dict(turns=False))
    return out


def delete_space(store: Store, space_id: int) -> None:
    get_space(store, space_id)
    with store.transaction(memory=False) as db:
        for table, column in (("space_turns", "space_id"), ("space_secrets", "space_id"), ("spaces", "id")):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (space_id,))


def reset_space(store: Store, space_id: int) -> None:
    """Drop the transcript and summary: the next run starts over."""
    get_space(store, space_id)
    with store.transaction(memory=False) as db:
        db.execute("DELETE FROM space_turns WHERE space_id = ?", (space_id,))
        db.execute("UPDATE spaces SET status = 'created', summary = NULL, updated_at = ? WHERE id = ?",
                   (now_iso(), space_id))


def set_status(store: Store, space_id: int, status: str, summary: str | None = None) -> None:
    with store.transaction(memory=False) as db:
        db.execute("UPDATE spaces SET status = ?, summary = coalesce(?, summary), updated_at = ? WHERE id = ?",
                   (status, summary, now_iso(), space_id))


def add_turn(store: Store, space_id: int, turn: Turn) -> None:
    turn.created_at = now_iso()
    with store.transaction(memory=False) as db:
        db.execute("INSERT INTO space_turns (space_id, round, speaker, content, status, error, meta, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (space_id, turn.round, turn.speaker, turn.content, turn.status,
                                                       turn.error, json.dumps(turn.meta, ensure_ascii=False),
                                                       turn.created_at))
        db.execute("UPDATE spaces SET updated_at = ? WHERE id = ?", (turn.created_at, space_id))


