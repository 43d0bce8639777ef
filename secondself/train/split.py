"""The held-out split: what the personal model is tested on, and what it must never have seen.

Every candidate names the items it is made of (`Candidate.keys`: a fact id, an entity, an event day, a
chunk, a request template). Sides:

- "train": trained on.
- "heldout" and "valid": (a) *paraphrases*: within a trained fact group, about `share` of the wordings of
  each answer (at least one where an answer has two or more) are held out, alternately as "heldout" (the
  recall figure: does the model know the fact when asked in words it never saw?) and "valid" (the held-out
  loss that early stopping watches: the recall figure is not measured on what chose the weights). (b) whole groups of the kinds that are not about facts
  (unanswerable, enhance, critic), and a share of the notes (compression is measured on those).
- "unseen": fact groups whose every wording is held out *and* whose cited chunks and distinctive names occur
  in no training item (the `Quarantine`): what the model answers there is a guess; the figure shows how
  much it guesses. A training candidate the quarantine blocks is dropped (counted as "quarantined"). A
  group whose quarantine would drop more than a small budget of training items is not picked: facts
  mentioned all over the notes cannot be unseen.

Fact groups are joined across the fact kinds (self_qa, people, events, preference_qa share fact and
entity keys); the other kinds group within their kind. Groups are ranked by a seeded hash: the split is
deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..text.grounding import unsupported_specifics
from .templates import Candidate

__all__ = ["FACT_KINDS", "Quarantine", "groups", "split"]

FACT_KINDS = ("self_qa", "preference_qa", "people", "events")
_MONTHS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December", "Before", "Now", "On", "In", "Lately", "Mostly", "That", "Since", "From"}
_BUDGET = 0.08          # the unseen groups together may cost at most this share of the training candidates


def _rank(items: Sequence[str], seed: int) -> list[str]:
    return sorted(items, key=lambda g: hashlib.sha1(f"{seed}|{g}".encode()).hexdigest())


def _scope(c: Candidate) -> str:
    return "fact" if c.kind in FACT_KINDS else c.kind


def groups(cands: Sequence[Candidate]) -> list[str]:
    """Union-find over the items candidates are made of (fact kinds together, other kinds each on their
    own); a group is named by its smallest item, so the name does not depend on order."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def items(c: Candidate) -> list[str]:
        return [f"{_scope(c)}|{k}" for k in c.keys] or [f"{_scope(c)}|{c.completion}"]

    for c in cands:
        roots = [find(x) for x in items(c)]
        for r in roots[1:]:
            a, b = sorted((find(roots[0]), find(r)))
            parent[b] = a
    members: dict[str, list[str]] = defaultdict(list)
    for x in list(parent):
        members[find(x)].append(x)
    name = {r: min(ms) for r, ms in members.items()}
    return [name[find(items(c)[0])] for c in cands]


def _terms(c: Candidate, person: str) -> set[str]:
    """Distinctive words of a candidate: names (capitalized words that are not sentence starts, months or
    the person's own name) in its question and answer, and the names in its entity keys."""
    own = {w.casefold() for w in re.findall(r"[\w'’-]+", person)}
    text = " ".join([*(t for role, t in c.prompt if role == "user"), c.completion])
    words = {w for w in unsupported_specifics(text, "") if not w[0].isdigit() and w not in _MONTHS}
    words |= {k.split(":", 1)[1] for k in c.keys if k.startswith("entity:")}
    return {w.casefold() for w in words if len(w) >= 3 and w.casefold() not in own}


@dataclass
class Quarantine:
    """What an unseen group must not leak into training: its cited chunks and its distinctive names."""

    chunks: set[int] = field(default_factory=set)
    terms: set[str] = field(default_factory=set)

    def blocks(self, c: Candidate) -> bool:
        if self.chunks & set(c.sources):
            return True
        if not self.terms:
            return False
        text = " ".join([*(t for _, t in c.prompt), c.completion]).casefold()
        return any(re.search(rf"(?<!\w){re.escape(t)}(?!\w)", text) for t in self.terms)

    def add(self, other: Quarantine) -> None:
        self.chunks |= other.chunks
        self.terms |= other.terms


def split(cands: Sequence[Candidate], seed: int, share: float, unseen: float, person: str
          ) -> tuple[list[str], list[str], Quarantine]:
    """(side per candidate: "train" | "heldout" | "valid" | "unseen" | "quarantined", group per candidate, the
    quarantine of the unseen groups). See the module docstring."""
    names = groups(cands)
    side = ["train"] * len(cands)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(names):
        by_group[g].append(i)
    fact_groups = sorted({g for c, g in zip(cands, names, strict=True) if c.kind in FACT_KINDS})
    quarantine = Quarantine()
    # 1. unseen fact groups, each only if its quarantine is affordable
    target = round(unseen * len(fact_groups))
    if unseen > 0 and len(fact_groups) >= 5:
        target = max(1, target)
    budget = _BUDGET * len(cands)
    chosen: set[str] = set()
    for g in _rank(fact_groups, seed):
        if len(chosen) >= target:
            break
        q = Quarantine({s for i in by_group[g] for s in cands[i].sources},
                       {t for i in by_group[g] for t in _terms(cands[i], person)})
        both = Quarantine(set(quarantine.chunks), set(quarantine.terms))
        both.add(q)
        cost = sum(1 for i, c in enumerate(cands) if names[i] not in chosen | {g} and c.kind != "unanswerable"
                   and both.blocks(c))
        if cost > budget:
            continue
        chosen.add(g)
        quarantine = both
    for i, c in enumerate(cands):
        if names[i] in chosen:
            side[i] = "unseen"
        elif c.kind != "unanswerable" and quarantine.blocks(c):
            side[i] = "quarantined"
    # 2. held-out paraphrases of trained facts: per answer, some of its wordings
    wordings: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cands):
        if c.kind in FACT_KINDS and side[i] == "train":
            wordings[(names[i], c.completion)].append(i)
    turn = 0
    for (_, answer), idx in sorted(wordings.items()):
        if len(idx) >= 2 and share > 0:
            n = min(len(idx) - 1, max(1, round(share * len(idx))))
            by_question = {cands[i].prompt[-1][1]: i for i in idx}      # ranked by wording: stable when
            for q in _rank(sorted(by_question), f"{seed}|{answer}")[:n]:  # other candidates come and go
                side[by_question[q]] = ("heldout", "valid")[turn % 2]
                turn += 1
    # 3. whole groups of the other kinds
    per_kind: dict[str, set[str]] = defaultdict(set)
    for i, c in enumerate(cands):
        if c.kind not in FACT_KINDS and side[i] == "train":
            per_kind[c.kind].add(names[i])
    for gs in per_kind.values():
        ranked = _rank(sorted(gs), seed)
        n = round(share * len(ranked))
        if len(ranked) >= 3 and share > 0:
            n = max(1, n)
        n = min(n, len(ranked) - 1) if len(ranked) > 1 else n
        for g in ranked[:n]:
            for i in by_group[g]:
                if side[i] == "train":
                    side[i] = "heldout"
    return side, names, quarantine
