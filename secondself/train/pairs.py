"""Preference pairs for DPO, built from the checks the project already runs — no judge model.

Boundary: this module turns synthesized training items (+ the memories and facts they came from) and drafts
of a model into `Pair`s; it trains nothing and loads no model (`sample_drafts` wraps any `ChatModel`). Only
items of the `train` split are used: held-out items stay for evaluation.

Every rejected sample fails the check that produced it, and that check's reason is kept with the pair (`why`);
a draft that passes its check is never used as a rejected sample (it is counted as `passed`):

- grounding: a question about the person (self_qa, preference_qa, people, events). Chosen: the grounded answer.
  Rejected: a draft that names a number or a capitalized name that neither the item's memories (the chunks it
  cites), the question, the grounded answer nor the person's name holds — `text.grounding.unsupported_specifics`,
  the check with which the persona withdraws a draft (`Persona._unsupported`).
- refusal: an unanswerable question. Chosen: the refusal (`persona.IDK`). Rejected: a draft that is no refusal
  (`train.evaluate.refused`).
- disclosure: a request to enhance. Chosen: the request with only the details it needs. Rejected: a draft that
  `bridge.prose.check_rewrite` refuses, and (constructed) the chosen text plus one more of the person's details —
  an ended fact first — named as a never-share term of the policy it is checked under.
- critique: an expert's answer that assumes an ended fact. Chosen: the correction that names it. Rejected: a
  draft that `bridge.prose.check_feedback` refuses, and (constructed) the bridge's own "nothing to correct" text.
- answerable (constructed): a grounding item's question. Chosen: its grounded answer. Rejected: "I don't know"
  (`refused`), which its memories contradict. Without these, the refusal pairs taught the 135M to refuse 58% of
  the questions it could answer (bench/dpo.py).

The Selection and Points those two bridge checks need are rebuilt from the profile's facts as `bridge.disclosure`
builds them (disclosed: the facts the chosen text names; private: the words of the person's other facts and of
other people's names). Drafts come from the base model sampled at temperature > 0; disclosure and critique also
get a constructed rejected sample because a base model that knows nothing of the person can invent details but
cannot leak the person's real ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..bridge.critic import Point
from ..bridge.disclosure import Item, Policy, Selection, current_facts, mentions
from ..bridge.prose import check_feedback, check_rewrite
from ..memory.observe import norm
from ..persona import IDK
from ..progress import OnProgress, Progress
from ..text.grounding import unsupported_specifics
from ..text.phrasing import past, present
from ..types import Chunk, Fact, Profile, TrainingExample
from .evaluate import refused

__all__ = ["Pair", "PairReport", "Drafts", "build_pairs", "check_for", "sample_drafts", "grounding_problem",
           "refusal_problem", "NO_CORRECTION", "SOURCES", "save_pairs", "load_pairs"]

log = logging.getLogger(__name__)

SOURCES = ("grounding", "refusal", "disclosure", "critique", "answerable")
REFUSED_ANSWERABLE = "it says it does not know what its memories answer"
GROUNDED_KINDS = ("self_qa", "preference_qa", "people", "events")
NO_CORRECTION = "That fits what I know about myself; nothing to correct."   # bridge.run.critique's text

Prompt = tuple[tuple[str, str], ...]
Drafts = Callable[[Prompt, int], list[str]]    # (prompt, n) -> n drafts


@dataclass(frozen=True)
class Pair:
    """One preference: for `prompt`, `chosen` over `rejected`. `why`: the check's reason that `rejected` fails;
    `origin`: "draft" (sampled from a model) or "constructed"."""

    source: str
    prompt: Prompt
    chosen: str
    rejected: str
    why: str
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pair:
        return cls(d["source"], tuple((r, t) for r, t in d["prompt"]), d["chosen"], d["rejected"], d["why"],
                   d["origin"])


@dataclass
class PairReport:
    """`counts[source]`: prompts asked, drafts made, rejected samples kept (`draft`, `constructed`) and drafts
    that passed their check (`passed`, never used)."""

    pairs: list[Pair] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, source: str, what: str, n: int = 1) -> None:
        row = self.counts.setdefault(source, {"prompts": 0, "drafts": 0, "draft": 0, "constructed": 0, "passed": 0})
        row[what] += n


# -- the checks ---------------------------------------------------------------------------------------------

def grounding_problem(answer: str, evidence: str) -> str:
    """Why a draft answer would be withdrawn for inventing specifics ("" when it would not)."""
    invented = unsupported_specifics(answer.replace(IDK, ""), evidence)
    return f"it mentions {', '.join(invented[:3])}, which no memory supports" if invented else ""


def refusal_problem(answer: str) -> str:
    """Why a draft is wrong for a question the memories cannot answer ("" when it refuses)."""
    if not answer.strip() or refused(answer):
        return ""
    return "it answers a question that no memory answers"


def _evidence(ex: TrainingExample, chunks: Mapping[int, Chunk], person: str) -> str:
    """The item's memories (cited chunks), its question and grounded answer, and the person's name (an answer
    may name its own speaker: "Maya's journal")."""
    parts = [person, ex.completion, *(text for role, text in ex.prompt if role == "user")]
    for i in ex.sources:
        if (c := chunks.get(i)) is not None:
            parts += [c.title, c.heading, c.text]
    return "\n".join(parts)


def _statement(f: Fact) -> str:
    return f"I {(past if f.predicate == 'studied_at' else present)(f)}."


def _private(profile: Profile | None, person: str, shown: str) -> set[str]:
    """Words of what the person's memory holds (their facts, other people's names) that `shown` does not say:
    what a text written for this item must not bring in (as `disclosure.select` builds `Selection.private`)."""
    now, ended = current_facts(profile, person)
    others = [n for e in (profile.entities if profile else ()) if e.kind == "person"
              and norm(e.name) != norm(profile.person if profile else person) for n in (e.name, *e.aliases)]
    words = {w for p in [*(f.object for f in [*now, *ended]), *others] for w in re.findall(r"\w{4,}", p.casefold())}
    return words - {w.casefold() for w in re.findall(r"\w{4,}", shown)}


# -- the four sources ---------------------------------------------------------------------------------------

def _user(ex: TrainingExample) -> str:
    return next((t for r, t in reversed(ex.prompt) if r == "user"), "")


def _enhance_check(ex: TrainingExample, profile: Profile | None, person: str
                   ) -> tuple[Callable[[str, Policy], str | None], list[Fact]] | None:
    """(check(text, policy), the person's facts the request does not need) for an enhance item, or None when
    the chosen text itself fails (then the item teaches nothing)."""
    request = _user(ex)
    context = ex.completion[len(request):] if ex.completion.startswith(request) else ex.completion
    now, ended = current_facts(profile, person)
    named = [f for f in now if mentions(context, f.object)]
    sel = Selection([Item(context.strip(), "fact", "trained", f.object) for f in named],
                    private=_private(profile, person, f"{request} {ex.completion}"))

    def check(text: str, policy: Policy) -> str | None:
        return check_rewrite(text, request, sel, policy)

    if check(ex.completion, Policy()) is not None:
        return None
    unneeded = [f for f in [*ended, *now] if f not in named and not mentions(ex.completion, f.object)]
    return check, unneeded


def _critique_check(ex: TrainingExample, profile: Profile | None, person: str
                    ) -> Callable[[str], str | None] | None:
    """check(text) for a critic item whose answer assumes an ended fact (None for other critic items)."""
    user = _user(ex)
    _, ended = current_facts(profile, person)
    old = next((f for f in ended if mentions(user, f.object) and mentions(ex.completion, f.object)), None)
    if old is None:
        return None
    point = Point("wrong", ex.completion, Item(ex.completion, "fact", "the answer assumes an ended fact", old.object))
    sel = Selection([point.item], private=_private(profile, person, f"{user} {ex.completion}"))

    def check(text: str) -> str | None:
        return check_feedback(text, "", user, [point], sel, Policy())

    return check if check(ex.completion) is None else None


def build_pairs(examples: Sequence[TrainingExample], drafts: Drafts, *, chunks: Mapping[int, Chunk],
                profile: Profile | None, person: str, prompts_per_source: int = 24, drafts_per_prompt: int = 2,
                answerable: bool = True, on_progress: OnProgress | None = None) -> PairReport:
    """Pairs from the `train` items of `examples` (see the module docstring). At most `prompts_per_source`
    items per source (taken in order, spread across the kinds' items), each given `drafts_per_prompt` drafts.
    `answerable`: also the "answerable" pairs (the grounding items' answers over "I don't know"), which keep
    the refusal pairs from teaching to refuse everything. `on_progress` gets Progress("pairs", prompts done,
    prompts to do)."""
    train = [e for e in examples if e.split == "train" and e.chat]
    picked: dict[str, list[TrainingExample]] = {
        "grounding": _spread([e for e in train if e.kind in GROUNDED_KINDS], prompts_per_source),
        "refusal": _spread([e for e in train if e.kind == "unanswerable"], prompts_per_source),
        "disclosure": _spread([e for e in train if e.kind == "enhance"], prompts_per_source),
        "critique": _spread([e for e in train if e.kind == "critic"
                             and _critique_check(e, profile, person) is not None], prompts_per_source)}
    report = PairReport()
    total = sum(len(v) for v in picked.values())
    done = 0
    for source in SOURCES[:-1]:
        for ex in picked[source]:
            _pairs_for(source, ex, drafts, drafts_per_prompt, chunks, profile, person, report)
            done += 1
            if on_progress is not None:
                on_progress(Progress("pairs", done, total, {"pairs": len(report.pairs)}))
    for ex in picked["grounding"] if answerable else ():
        if check_for("grounding", ex, chunks=chunks, profile=profile, person=person) is not None:
            report.pairs.append(Pair("answerable", ex.prompt, ex.completion, IDK, REFUSED_ANSWERABLE, "constructed"))
            report.add("answerable", "constructed")
    return report


def _spread(items: list[TrainingExample], limit: int) -> list[TrainingExample]:
    """Up to `limit` items, one question per prompt text, taken evenly across the list (not its head)."""
    seen, unique = set(), []
    for e in items:
        key = norm(_user(e))
        if key not in seen:
            seen.add(key)
            unique.append(e)
    if len(unique) <= limit:
        return unique
    return [unique[i * len(unique) // limit] for i in range(limit)]


def check_for(source: str, ex: TrainingExample, *, chunks: Mapping[int, Chunk], profile: Profile | None,
              person: str) -> Callable[[str], str] | None:
    """The check that `source` applies to answers to `ex`'s prompt: check(text) is why the text fails ("" when
    it passes). None when the item cannot be checked so (its own answer fails, or a critic item about no ended
    fact): such an item gives no pair."""
    if source == "grounding":
        evidence = _evidence(ex, chunks, person)
        return None if grounding_problem(ex.completion, evidence) else (lambda t: grounding_problem(t, evidence))
    if source == "refusal":
        return refusal_problem
    if source == "disclosure":
        got = _enhance_check(ex, profile, person)
        return None if got is None else (lambda t: got[0](t, Policy()) or "")
    if source == "critique":
        feedback = _critique_check(ex, profile, person)
        return None if feedback is None else (lambda t: feedback(t) or "")
    raise ValueError(f"unknown pair source {source!r}")


def _constructed(source: str, ex: TrainingExample, profile: Profile | None, person: str) -> list[tuple[str, str]]:
    """(rejected, why) made without a model: the chosen text plus a detail it must not disclose (disclosure),
    the bridge's "nothing to correct" (critique)."""
    out: list[tuple[str, str]] = []
    if source == "disclosure" and (got := _enhance_check(ex, profile, person)) is not None:
        rewrite, unneeded = got
        # one detail the request does not need, a different one from request to request (ended facts first)
        at = int(hashlib.sha1(_user(ex).encode()).hexdigest(), 16) % len(unneeded) if unneeded else 0
        for f in unneeded[at:at + 1]:
            leak = f"{ex.completion.rstrip()} {_statement(f)}"
            if (why := rewrite(leak, Policy(never_share=(f.object,)))) is not None:
                out.append((leak, why))
    if source == "critique" and (feedback := _critique_check(ex, profile, person)) is not None \
            and (why := feedback(NO_CORRECTION)) is not None:
        out.append((NO_CORRECTION, why))
    return out


def _pairs_for(source: str, ex: TrainingExample, drafts: Drafts, n: int, chunks: Mapping[int, Chunk],
               profile: Profile | None, person: str, report: PairReport) -> None:
    check = check_for(source, ex, chunks=chunks, profile=profile, person=person)
    if check is None:
        return
    report.add(source, "prompts")
    seen = {norm(ex.completion)}
    for text in drafts(ex.prompt, n):
        text = text.strip()
        report.add(source, "drafts")
        if not text or norm(text) in seen:
            continue
        seen.add(norm(text))
        why = check(text)
        if not why:
            report.add(source, "passed")
            continue
        report.pairs.append(Pair(source, ex.prompt, ex.completion, text, why, "draft"))
        report.add(source, "draft")
    for text, why in _constructed(source, ex, profile, person):
        report.pairs.append(Pair(source, ex.prompt, ex.completion, text, why, "constructed"))
        report.add(source, "constructed")


# -- drafts and storage -------------------------------------------------------------------------------------

def sample_drafts(model: ChatModel, *, temperature: float = 0.9, max_tokens: int = 48, seed: int = 0) -> Drafts:
    """Drafts from `model` sampled at `temperature` (> 0: several different drafts per prompt), seeded per
    prompt and draft so that a run is repeatable where the backend supports seeds."""
    if temperature <= 0:
        raise ValueError("drafts are sampled: temperature must be above 0")
    counter = [0]

    def draw(prompt: Prompt, n: int) -> list[str]:
        out = []
        for _ in range(n):
            counter[0] += 1
            sampling = Sampling(temperature=temperature, max_tokens=max_tokens, seed=seed * 100_003 + counter[0])
            out.append(complete(model, [Message(r, t) for r, t in prompt], sampling).text())
        return out

    return draw


def save_pairs(path: Path, pairs: Sequence[Pair]) -> None:
    """Write `pairs` as JSON lines, atomically (a temp file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    os.replace(tmp, path)


def load_pairs(path: Path) -> list[Pair]:
    return [Pair.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
