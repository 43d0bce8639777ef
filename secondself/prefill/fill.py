"""Choosing one value per field: candidates → read and validated → grouped → the past set aside → the best
group, or an empty field with the reason.

Rules, in order:
- A candidate must be read as its kind and fit the field's schema; one that does not is dropped, and the
  reason is kept in `rejected`. Nothing is ever generated: every value is text found in a memory (or a
  part of it: the city of an address, the first name of a full name, the start of a job fact).
- Values valid now win over past ones. A candidate is past when it says so ("Previous employer: ..."), when
  it comes from a layer-1 fact that ended before the day asked about, or when it equals a fact that ended
  while no fact that still holds agrees with it (an address in a city the person moved away from). A field
  that asks for the past ("previous employer") gets the most recently ended value instead.
- Among the rest, for what can change over a life (address, employer, phone) the newest statement wins;
  for what cannot (birth date, nationality), the value the most memories agree on. A tie leaves the field
  empty ("memories disagree").
- Confidence: each independent memory supports the value with a weight for how direct it is (a labelled
  line in the person's own mail 0.85, a document about them 0.8, a layer-1 fact 0.8, a first-person
  sentence 0.75, a part of a value 95% of it); they combine as 1 - Π(1 - w); a disagreeing value that is
  also current costs 20%. Below `min_confidence` the field stays empty.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

from ..backends.chat import ChatModel
from ..errors import ConfigError
from ..memory.observe import norm
from ..store import Store
from .concepts import AUTOCOMPLETE, CONCEPTS, Match, match_label, tokens
from .evidence import Evidence, PersonNames, fact_evidence, scan_chunks, unknown_key
from .forms import Form, FormField, parse_form
from .propose import propose, windows
from .values import fit, norm_value, read, split_address, split_name

__all__ = ["prefill", "prefill_memory", "PersonMemory", "PrefillResult", "FieldResult", "field_concept"]

_ADDRESS_PARTS = {"street": "street_address", "postcode": "postal_code", "city": "city", "region": "region",
                  "country": "country"}
_ADDRESS_FAMILY = {"address", *_ADDRESS_PARTS.values()}
_MERGE_KINDS = {"person", "org", "place", "text", "city", "nationality", "address", "street"}
NO_SUPPORT = "no memory supports a value"
_NO_FIT = "no candidate fits the field"


class PersonMemory(Protocol):
    """What `prefill` reads: the person's store and display name (a `Runtime` provides both)."""

    @property
    def store(self) -> Store: ...

    @property
    def person(self) -> str: ...


@dataclass
class FieldResult:
    """One field's answer: `value` is None when empty, and `reason` says why (or how it was found)."""

    field: str
    label: str
    concept: str | None
    value: Any = None
    confidence: float = 0.0
    sources: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "label": self.label, "concept": self.concept, "value": self.value,
                "confidence": self.confidence, "sources": self.sources, "reason": self.reason,
                "rejected": self.rejected}


@dataclass
class PrefillResult:
    form_kind: str
    at: str
    person: str
    fields: list[FieldResult]

    @property
    def filled(self) -> int:
        return sum(f.value is not None for f in self.fields)

    def values(self) -> dict[str, Any]:
        """The filled values as the form expects them (dotted names of a nested schema become objects)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            if f.value is None:
                continue
            node = out
            parts = f.field.split(".") if self.form_kind == "json_schema" else [f.field]
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = f.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"form_kind": self.form_kind, "at": self.at, "person": self.person, "filled": self.filled,
                "empty": len(self.fields) - self.filled, "values": self.values(),
                "fields": [f.to_dict() for f in self.fields]}


def prefill(memory: PersonMemory, form: str | dict | list, *, at: str | None = None, min_confidence: float = 0.5,
            use_facts: bool = True, use_memories: bool = True, model: ChatModel | None = None) -> PrefillResult:
    """Fill `form` (a JSON Schema, a list of field names or an HTML form, as text or parsed) from the
    person's `memory`, as of `at` (ISO date; default today). `use_facts`/`use_memories` switch
    the layer-1 facts and the memories' own text off (for comparisons). `model`: a chat model that may read
    a value from the memories' prose for a field the readers left without support (`propose`: checked,
    one call per such field that some memory names; None: no model). Raises ConfigError for a form that
    cannot be read or a bad date. Callers in server threads hold the runtime's lock."""
    return prefill_memory(memory.store, memory.person, parse_form(form), at=at, min_confidence=min_confidence,
                          use_facts=use_facts, use_memories=use_memories, model=model)


def prefill_memory(store: Store, person: str, form: Form, *, at: str | None = None, min_confidence: float = 0.5,
                   use_facts: bool = True, use_memories: bool = True,
                   model: ChatModel | None = None) -> PrefillResult:
    """`prefill` on a store and a person's name directly."""
    from ..memory.versions import current_version, load_version

    day = _day(at)
    profile = load_version(store) if current_version(store) is not None else None
    who = PersonNames(person, profile.entities if profile else ())
    undated = store.undated_chunks()
    evidence: list[Evidence] = []
    if use_memories:
        chunks = list(store.all_chunks())
        who.learn(chunks)
        evidence += scan_chunks(chunks, who, undated=undated, at=day)
    if use_facts and profile is not None:
        cited = store.chunks({c for f in profile.facts for c in f.sources})
        dates = {i: (None if i in undated or not c.date else c.date[:10]) for i, c in cited.items()}
        evidence += fact_evidence(profile.facts, person, day, dates)
    ctx = _Context(day, _derive(evidence), min_confidence)
    ctx.country = _country(ctx)
    fields = [_fill(f, ctx) for f in form.fields]
    if model is not None and use_memories:
        fields = [_read_by_model(model, person, f, res, ctx, chunks, who, undated) for f, res in
                  zip(form.fields, fields, strict=True)]
    _attach_sources(store, fields, ctx, undated)
    return PrefillResult(form.kind, day, person, fields)


def _read_by_model(model: ChatModel, person: str, f: FormField, res: FieldResult, ctx: _Context,
                   chunks: list, who: PersonNames, undated: set[int]) -> FieldResult:
    """`res` again with the model's reading of `f` as one more candidate, when no memory supported a value or
    none of the candidates fit the field (a field that asks for the past, or whose candidates disagree, is
    left as it is)."""
    if res.value is not None or not res.reason.startswith((NO_SUPPORT, _NO_FIT)):
        return res
    match = field_concept(f)
    if match is not None and match.past:
        return res
    found = windows(f, chunks, who, concept=match.concept if match else None, undated=undated, at=ctx.day)
    key = match.concept if match else unknown_key(f.label or f.name)
    evidence, why = propose(model, person, f, found, key, who)
    if evidence is None:
        res.reason = f"{res.reason} ({why})" if found else res.reason
        return res
    ctx.by_key[key].append(evidence)
    again = _fill(f, ctx)
    if again.value is None:
        again.rejected.append({"value": evidence.value, "reason": again.reason, "from": evidence.how})
    return again


def _day(at: str | None) -> str:
    if not at:
        return date.today().isoformat()
    try:
        return date.fromisoformat(at.strip()).isoformat()
    except ValueError:
        raise ConfigError(f"not a date: {at!r}; write it as YYYY-MM-DD") from None


# -- candidates -------------------------------------------------------------------------------------------

class _Context:
    def __init__(self, day: str, evidence: list[Evidence], min_confidence: float) -> None:
        self.day = day
        self.min_confidence = min_confidence
        self.by_key: dict[str, list[Evidence]] = defaultdict(list)
        for e in evidence:
            self.by_key[e.key].append(e)
        self.country: str | None = None
        self.cited: dict[int, list[Evidence]] = {}
        # objects of layer-1 facts per concept: ended vs still holding on `day`
        self.closed: dict[str, set[str]] = defaultdict(set)
        self.holding: dict[str, set[str]] = defaultdict(set)
        for e in evidence:
            if e.method == "fact" and e.key != "start_date":
                (self.holding if e.open else self.closed)[e.key].add(norm(e.value))


def _derive(evidence: list[Evidence]) -> list[Evidence]:
    """Parts of values: street/postcode/city/country of an address, given/family name of a full name."""
    out = list(evidence)
    # given names and surname are those of the legal name where one is written down
    names_from = "legal_name" if any(e.key == "legal_name" for e in evidence) else "full_name"
    for e in evidence:
        if e.key == "address":
            addr, _ = read("address", e.value)
            for part, value in (split_address(addr).items() if addr else ()):
                out.append(replace(e, key=_ADDRESS_PARTS[part], value=value, method="derived",
                                   weight=round(e.weight * 0.95, 3), how=f"{part} of {e.how}",
                                   fact_id=f"address:{addr}"))
        elif e.key == names_from:
            name, _ = read("person", e.value)
            parts = split_name(name) if name else None
            if parts:
                for key, value in zip(("given_name", "family_name"), parts, strict=True):
                    out.append(replace(e, key=key, value=value, method="derived", weight=round(e.weight * 0.95, 3),
                                       how=f"part of {e.how}"))
    return out


def field_concept(f: FormField) -> Match | None:
    """The concept a field asks for: its autocomplete token, else the most specific of its label and name,
    else (loosely) its placeholder or description."""
    if f.autocomplete in AUTOCOMPLETE:
        text_hit = match_label(f.label) or match_label(f.name)
        return Match(AUTOCOMPLETE[f.autocomplete], bool(text_hit and text_hit.past), 9)
    hits = [h for h in (match_label(f.label), match_label(f.name)) if h]
    if hits:
        return max(hits, key=lambda h: h.size)
    for text in (f.placeholder, f.description):
        hit = match_label(text, loose=True) if text else None
        if hit:
            return hit
    return None


def _kind_of(f: FormField) -> str:
    s = f.schema
    fmt, typ = s.get("format"), s.get("type")
    if fmt in ("date", "date-time"):
        return "date"
    if fmt in ("email", "idn-email"):
        return "email"
    if typ in ("number", "integer"):
        return "number"
    if typ == "array":
        return "list"
    if set(tokens(f"{f.label} {f.name}")) & {"number", "no", "id", "code", "registration", "reference"}:
        return "id"             # "Membership number": codes, never a sentence
    return "text"


def _fill(f: FormField, ctx: _Context) -> FieldResult:
    match = field_concept(f)
    res = FieldResult(f.name, f.label, match.concept if match else None)
    typ = f.schema.get("type")
    if typ == "boolean" or typ == "object" or (typ == "array" and (f.schema.get("items") or {}).get("type") == "object"):
        res.reason = "a field of this type (yes/no, nested objects) is not filled from memory"
        return res
    if match:
        key, past, kind = match.concept, match.past, CONCEPTS[match.concept].kind
        evidence = list(ctx.by_key.get(key, ()))
    else:
        key, past, kind = "", False, _kind_of(f)
        keys = {unknown_key(t) for t in (f.label, f.name) if t}
        evidence = [e for k in keys for e in ctx.by_key.get(k, ())]
    if not evidence:
        res.reason = NO_SUPPORT if match else f"{NO_SUPPORT} (no memory uses this field's label)"
        return res
    groups = _groups(evidence, kind, f, ctx, res)
    if not groups:
        res.reason = f"{_NO_FIT}: {res.rejected[0]['reason']}" if res.rejected else NO_SUPPORT
        return res
    _choose(res, groups, key, past, ctx)
    return res


@dataclass
class _Group:
    value: Any
    evidence: list[Evidence]

    @property
    def units(self) -> dict[tuple, float]:
        """Independent statements (one per chunk, or per fact) and their best weight."""
        out: dict[tuple, float] = {}
        for e in self.evidence:
            unit = ("fact", e.fact_id) if e.method == "fact" else ("chunk", e.sources)
            out[unit] = max(out.get(unit, 0.0), e.weight)
        return out

    @property
    def support(self) -> int:
        return len(self.units)

    @property
    def confidence(self) -> float:
        miss = 1.0
        for w in self.units.values():
            miss *= 1 - w
        return 1 - miss

    @property
    def as_of(self) -> str:
        return max((e.date for e in self.evidence if e.date), default="")

    @property
    def ended(self) -> str:
        return max((e.until or e.date or "" for e in self.evidence), default="")


def _groups(evidence: list[Evidence], kind: str, f: FormField, ctx: _Context, res: FieldResult) -> list[_Group]:
    groups: dict[str, _Group] = {}
    for e in evidence:
        value, why = read(kind, e.value)
        if why is None:
            value, why = fit(value, kind, f, country=ctx.country)
        if why is not None:
            if len(res.rejected) < 10:
                res.rejected.append({"value": e.value, "reason": why, "from": e.how})
            continue
        k = norm_value(json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value)
        g = groups.setdefault(k, _Group(value, []))
        if g.evidence and e.weight > max(x.weight for x in g.evidence):
            g.value = value       # the same value written differently: keep the most direct writing
        g.evidence.append(e)
    if kind in _MERGE_KINDS:
        _merge_contained(groups)
    return list(groups.values())


def _merge_contained(groups: dict[str, _Group]) -> None:
    """"Gothenburg" supports "Gothenburg, Sweden"; "Catarina" supports "Catarina Vaz"."""
    for k in sorted(groups, key=len):
        into = [o for o in groups if o != k and len(o) > len(k) and f" {k} " in f" {o.replace(',', ' ')} "]
        if len(into) == 1:
            groups[into[0]].evidence += groups.pop(k).evidence


def _is_past(e: Evidence, key: str, ctx: _Context) -> bool:
    if e.past or (e.method == "fact" and not e.open):
        return True
    value = norm(e.value) if isinstance(e.value, str) else ""
    if value in ctx.closed.get(key, ()) and value not in ctx.holding.get(key, ()):
        return True
    if key in _ADDRESS_FAMILY:
        address = norm(e.fact_id[len("address:"):] if e.fact_id.startswith("address:") else e.value)
        moved_from = [c for c in ctx.closed.get("city", ()) if f" {c} " in f" {address.replace(',', ' ')} "]
        still = [c for c in ctx.holding.get("city", ()) if f" {c} " in f" {address.replace(',', ' ')} "]
        return bool(moved_from) and not still
    return False


def _choose(res: FieldResult, groups: list[_Group], key: str, past: bool, ctx: _Context) -> None:
    concept = CONCEPTS.get(key)
    flagged = {id(g): all(_is_past(e, key, ctx) for e in g.evidence) for g in groups}
    if past:
        pool = [g for g in groups if flagged[id(g)]]
        if not pool:
            res.reason = "no past value is known" if groups else NO_SUPPORT
            return
        pool.sort(key=lambda g: (g.ended, g.support, g.confidence), reverse=True)
        rank = lambda g: (g.ended, g.support)  # noqa: E731
    else:
        pool = [g for g in groups if not flagged[id(g)]]
        if not pool:
            old = max(groups, key=lambda g: g.ended)
            res.reason = f"only past values are known: {_show(old.value)} (until {old.ended or 'an unknown date'})"
            return
        if concept is None or concept.changes:
            rank = lambda g: (_tier(g, key), g.as_of, g.support)  # noqa: E731
        else:
            rank = lambda g: (_tier(g, key), g.support, round(g.confidence, 6))  # noqa: E731
        pool.sort(key=lambda g: (*rank(g), g.confidence), reverse=True)
    best = pool[0]
    confidence = best.confidence
    if len(pool) > 1:
        if rank(pool[1]) == rank(best):
            res.reason = "memories disagree: " + " vs ".join(f"{_show(g.value)} ({g.evidence[0].how})" for g in pool[:2])
            return
        if _tier(pool[1], key) == _tier(best, key):
            confidence *= 0.8
    confidence = round(min(confidence, 0.99), 2)
    hows = "; ".join(dict.fromkeys(e.how for e in sorted(best.evidence, key=lambda e: -e.weight)))
    if confidence < ctx.min_confidence:
        res.reason = f"too little support ({confidence}) for {_show(best.value)}: {hows}"
        return
    res.value, res.confidence = best.value, confidence
    agree = f"{best.support} memories agree" if best.support > 1 else "one memory"
    res.reason = f"{agree}: {hows}"
    ctx.cited[id(res)] = best.evidence


def _tier(g: _Group, key: str) -> int:
    """What outranks recency. A layer-1 fact that holds on the day asked about beats a statement that
    disagrees with it (an offer letter names a job that has not started yet). The city of the person's
    address is what a form's city field wants; the city they live in (a fact, possibly another spelling)
    answers only when no address does, and does not contradict one."""
    if key == "city":
        return int(any(e.method != "fact" for e in g.evidence))
    concept = CONCEPTS.get(key)
    return int(bool(concept and concept.fact) and any(e.method == "fact" and e.open for e in g.evidence))


def _country(ctx: _Context) -> str | None:
    probe = FieldResult("country", "country", "country")
    evidence = ctx.by_key.get("country", [])
    if not evidence:
        return None
    groups = _groups(evidence, "country", FormField("country"), ctx, probe)
    if groups:
        _choose(probe, groups, "country", False, ctx)
    return probe.value if isinstance(probe.value, str) else None


def _attach_sources(store: Store, fields: list[FieldResult], ctx: _Context, undated: set[int]) -> None:
    """Each filled field's chunks with their source, path, title and date (None when only the file's
    modification time is known: that is not when it was written), newest first."""
    ids = {c for ev in ctx.cited.values() for e in ev for c in e.sources}
    chunks = store.chunks(ids) if ids else {}
    for f in fields:
        seen: dict[int, dict[str, Any]] = {}
        for e in ctx.cited.get(id(f), ()):
            for c in e.sources:
                ch = chunks.get(c)
                if ch is not None and c not in seen:
                    seen[c] = {"chunk": c, "source": ch.source, "path": ch.path, "title": ch.title,
                               "date": ch.date[:10] if ch.date and c not in undated else None}
        f.sources = sorted(seen.values(), key=lambda s: (s["date"] or "", s["chunk"]), reverse=True)


def _show(value: Any) -> str:
    s = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    s = " ".join(s.split())
    return repr(s if len(s) <= 60 else s[:59] + "…")
