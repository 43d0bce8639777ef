"""Layer-1 versions and the person's own corrections.

Every build, edit and rollback *adds* a version: the whole layer as one JSON document. Nothing is updated
in place, so any version can be shown, diffed against another, or made current again — a rollback is a
new version holding exactly the old content, so history is never rewritten either.

The person's corrections are overrides stored apart from the generated text, and `apply_overrides()`
lays them over every build:
    section  KEY -> text        the person's biography / second-person biography / status text
    pin      FACT_ID -> fact    this fact is kept as it is, even if no later build finds it again
    forget   FACT_ID -> fact    this fact is dropped from every later build
    fact     FACT_ID -> fact    the person's edited version of a fact (replaces the generated one)
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, replace
from typing import Any

from ..errors import ProfileError
from ..store import Store, now_iso
from ..types import Fact, Profile, Status

__all__ = ["save_version", "load_version", "current_version", "list_versions", "rollback", "diff", "purge_history",
           "refresh", "fact_dict",
           "set_override", "remove_override", "overrides", "apply_overrides", "SECTIONS", "edit_section",
           "find_fact", "mark_fact", "edit_fact", "clear_fact"]

SECTIONS = ("biography", "biography_second", "status_recent", "status_earlier")


def _canonical(profile: Profile) -> str:
    d = profile.to_dict()
    d.pop("version")
    return json.dumps(d, ensure_ascii=False, sort_keys=True)


def save_version(store: Store, profile: Profile, *, kind: str, summary: str = "",
                 stats: dict[str, Any] | None = None) -> Profile:
    """Add `profile` as a new version and make it current. Returns it with its version number."""
    with store.transaction() as db:
        parent = store.get_meta("profile_current")
        version = int(db.execute("INSERT INTO profile_versions (created_at, kind, parent, summary, data, stats) "
                                 "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                 (now_iso(), kind, int(parent) if parent else None, summary, _canonical(profile),
                                  json.dumps(stats or {}, sort_keys=True))).fetchone()[0])
        store.set_meta("profile_current", str(version))
    return replace(profile, version=version)


def load_version(store: Store, version: int | None = None) -> Profile:
    """A version (the current one if None). Raises ProfileError when there is none."""
    if version is None:
        cur = store.get_meta("profile_current")
        if cur is None:
            raise ProfileError("no profile has been built yet: run `secondself build` first")
        version = int(cur)
    row = store.db.execute("SELECT data FROM profile_versions WHERE id = ?", (version,)).fetchone()
    if row is None:
        raise ProfileError(f"no profile version {version}; `secondself profile versions` lists them")
    return Profile.from_dict({**json.loads(row[0]), "version": version})


def current_version(store: Store) -> int | None:
    cur = store.get_meta("profile_current")
    return int(cur) if cur else None


def list_versions(store: Store) -> list[dict[str, Any]]:
    current = current_version(store)
    return [{"version": r[0], "created_at": r[1], "kind": r[2], "parent": r[3], "summary": r[4],
             "stats": json.loads(r[5]), "current": r[0] == current}
            for r in store.db.execute("SELECT id, created_at, kind, parent, summary, stats FROM profile_versions "
                                      "ORDER BY id")]


def purge_history(store: Store) -> int:
    """Delete every version except the current one (after `forget`, old versions may still quote the
    forgotten memories). Returns how many were deleted. The one deliberate exception to "never delete"."""
    current = current_version(store)
    with store.transaction() as db:
        if current is None:
            return db.execute("DELETE FROM profile_versions").rowcount
        return db.execute("DELETE FROM profile_versions WHERE id <> ?", (current,)).rowcount


def rollback(store: Store, version: int) -> Profile:
    """Make `version`'s content current again, as a new version (history is kept)."""
    old = load_version(store, version)
    return save_version(store, old, kind="rollback", summary=f"rollback to version {version}")


# -- diff -------------------------------------------------------------------------------------------------

def diff(a: Profile, b: Profile) -> list[str]:
    """What changed from `a` to `b`, as lines for people: sections as word diffs, items added/removed/changed."""
    out: list[str] = []
    for label, x, y in (("biography", a.biography, b.biography),
                        ("biography (second person)", a.biography_second, b.biography_second),
                        ("status, recently", a.status.recent, b.status.recent),
                        ("status, earlier", a.status.earlier, b.status.earlier)):
        if x != y:
            out.append(f"~ {label}: {_word_diff(x, y)}")
    out += _items("fact", {f.id: f for f in a.facts}, {f.id: f for f in b.facts}, _fact_line)
    out += _items("shade", {s.name: s for s in a.shades}, {s.name: s for s in b.shades},
                  lambda s: f"{s.name} ({s.role or 'role unknown'}), {len(s.timeline)} events")
    out += _items("topic", {t.id: t for t in a.topics}, {t.id: t for t in b.topics},
                  lambda t: f"{t.id} {t.name!r}, {len(t.chunks)} chunks")
    out += _items("person", {e.name: e for e in a.entities}, {e.name: e for e in b.entities},
                  lambda e: e.name + (f" ({e.relation})" if e.relation else ""))
    if set(a.unclustered) != set(b.unclustered):
        out.append(f"~ chunks fitting no topic: {len(a.unclustered)} -> {len(b.unclustered)}")
    return out


def _fact_line(f: Fact) -> str:
    span = f"{f.valid_from or '…'} – {f.valid_to or 'now'}"
    return f"[{f.id}] {f.subject} {f.predicate} {f.object} ({span})" + (" pinned" if f.pinned else "")


def _items(kind: str, a: dict[str, Any], b: dict[str, Any], show) -> list[str]:
    out = [f"+ {kind} {show(b[k])}" for k in b if k not in a]
    out += [f"- {kind} {show(a[k])}" for k in a if k not in b]
    out += [f"~ {kind} {show(a[k])} -> {show(b[k])}" if show(a[k]) != show(b[k]) else f"~ {kind} {show(b[k])} (details)"
            for k in a if k in b and a[k] != b[k]]
    return out


def _word_diff(x: str, y: str) -> str:
    xs, ys = x.split(), y.split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=xs, b=ys, autojunk=False).get_opcodes():
        if op == "equal":
            seg = xs[i1:i2]
            parts.append(" ".join(seg) if len(seg) <= 6 else " ".join(seg[:3]) + " … " + " ".join(seg[-3:]))
        if op in ("delete", "replace"):
            parts.append("[-" + " ".join(xs[i1:i2]) + "-]")
        if op in ("insert", "replace"):
            parts.append("{+" + " ".join(ys[j1:j2]) + "+}")
    return " ".join(parts)


# -- overrides --------------------------------------------------------------------------------------------

def set_override(store: Store, kind: str, key: str, value: Any) -> None:
    with store.transaction() as db:
        db.execute("INSERT INTO profile_overrides (kind, key, value, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                   (kind, key, json.dumps(value, ensure_ascii=False, sort_keys=True), now_iso()))


def remove_override(store: Store, kind: str, key: str) -> bool:
    with store.transaction() as db:
        return db.execute("DELETE FROM profile_overrides WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0


def overrides(store: Store) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"section": {}, "pin": {}, "forget": {}, "fact": {}}
    for kind, key, value in store.db.execute("SELECT kind, key, value FROM profile_overrides ORDER BY created_at"):
        out.setdefault(kind, {})[key] = json.loads(value)
    return out


def _fact(d: dict[str, Any]) -> Fact:
    return Fact(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "id"})


def apply_overrides(profile: Profile, ov: dict[str, dict[str, Any]]) -> Profile:
    """The generated profile with the person's corrections laid over it (see the module docstring)."""
    sections = ov.get("section", {})
    facts = {f.id: f for f in profile.facts}
    for fid in ov.get("forget", {}):
        facts.pop(fid, None)
    for fid, value in ov.get("fact", {}).items():
        facts.pop(fid, None)
        edited = _fact(value)
        facts[edited.id] = edited
    for fid, value in ov.get("pin", {}).items():
        if fid not in ov.get("forget", {}):
            pinned = replace(facts.get(fid) or _fact(value), pinned=True)
            facts[pinned.id] = pinned
    status = Status(profile.status.as_of, sections.get("status_recent", profile.status.recent),
                    sections.get("status_earlier", profile.status.earlier))
    return replace(profile, biography=sections.get("biography", profile.biography),
                   biography_second=sections.get("biography_second", profile.biography_second),
                   status=status, facts=tuple(sorted(facts.values(), key=_fact_order)),
                   edited=tuple(s for s in SECTIONS if s in sections))


def _fact_order(f: Fact) -> tuple:
    return (f.subject.casefold(), f.predicate, f.valid_from or "", f.object.casefold())


def find_fact(profile: Profile, fact_id: str) -> Fact:
    matches = [f for f in profile.facts if f.id.startswith(fact_id)] if fact_id else []
    if len(matches) != 1:
        raise ProfileError(f"no single fact with id {fact_id!r} in version {profile.version}: "
                           "`secondself facts` shows the ids")
    return matches[0]


def edit_section(store: Store, section: str, text: str) -> Profile:
    """The person rewrites a section: stored as an override (wins in every later build) and a new version."""
    if section not in SECTIONS:
        raise ProfileError(f"unknown section {section!r}: choose one of {', '.join(SECTIONS)}")
    if not text.strip():
        raise ProfileError("the new text is empty; to go back to generated text use `profile edit --reset`")
    set_override(store, "section", section, text.strip())
    return refresh(store, f"edited {section}")


def refresh(store: Store, summary: str) -> Profile:
    """Re-apply the overrides to the current version and save the result as an 'edit' version."""
    current = load_version(store)
    return save_version(store, apply_overrides(current, overrides(store)), kind="edit", summary=summary)


def mark_fact(store: Store, fact_id: str, kind: str) -> tuple[Fact, Profile]:
    """Pin ('pin': kept exactly as it is) or forget ('forget': dropped) a fact in this and every later build."""
    if kind not in ("pin", "forget"):
        raise ProfileError(f"unknown fact correction {kind!r}: pin or forget")
    fact = find_fact(load_version(store), fact_id)
    set_override(store, kind, fact.id, fact_dict(fact))
    if kind == "forget":
        remove_override(store, "pin", fact.id)
    verb = "pinned" if kind == "pin" else "forgot"
    return fact, refresh(store, f"{verb} fact {fact.id}")


def edit_fact(store: Store, fact_id: str, **changes: str | None) -> tuple[Fact, Profile]:
    """Replace a fact by the person's version (object, valid_from, valid_to); it is pinned from then on."""
    fact = find_fact(load_version(store), fact_id)
    edited = replace(fact, **changes, origin="person", pinned=True)
    set_override(store, "fact", fact.id, fact_dict(edited))
    return edited, refresh(store, f"edited fact {fact.id}")


def clear_fact(store: Store, fact_id: str) -> int:
    """Undo pin, forget or edits of a fact (by id prefix); returns how many corrections were removed."""
    hits = [(k, key) for k, items in overrides(store).items() if k in ("pin", "forget", "fact")
            for key in items if key.startswith(fact_id)]
    for kind, key in hits:
        remove_override(store, kind, key)
    return len(hits)


def fact_dict(f: Fact) -> dict[str, Any]:
    return {"id": f.id, **asdict(f)}
