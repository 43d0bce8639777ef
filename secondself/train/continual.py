"""Continuous learning: continue the current adapter on what changed, with a replay of old items.

What changed is decided by the training items, not by timestamps: every adapter keeps `trained.jsonl`, the
items it was trained on (its own run's plus, for a continued adapter, its parent's). A new run's training
items that are not in that list (compared by kind, prompt and completion) are new: a new memory's notes and
events, a new fact's questions, and the questions of a fact that ended (their answers changed: "Do you
still live in Porto?" -> "No — ..."). Replay: a seeded sample of the old items that are still in the new
data (still true), `replay` per new item and at least `MIN_REPLAY` per round, a different sample in each of
`rounds` rounds (the trainer spreads the sample over the epochs, each item once), and one wording of
every old answer before a second wording of any: the replay rehearses as many old facts as it can while
the new ones are learned. Each kind gets its share of the replay as the full run trained it: a kind's
items x `rounds` epochs, or x 1 for a `once_kinds` kind (raw notes, seen once over a full run). Drawn
without regard to kind, a replay spent two fifths of its items on old notes and rehearsed half the old
facts, and since every refusal has the same answer ("I don't know ..."), one wording per answer let a
single refusal through: a continued adapter answered unanswerable questions again. Items the parent was
trained on are never scored as held out.

Continuing needs a current adapter trained on the same base that has `trained.jsonl`; otherwise (or with
`full`) a run trains from scratch.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TrainingError
from ..types import TrainingExample
from .adapters import AdapterInfo

__all__ = ["TRAINED", "Plan", "plan", "read_trained", "write_trained", "can_continue"]

TRAINED = "trained.jsonl"
MIN_REPLAY = 16


def _key(e: TrainingExample) -> str:
    return json.dumps([e.kind, e.prompt, e.completion], ensure_ascii=False)


def read_trained(adapter_dir: Path) -> list[TrainingExample]:
    out = []
    for line in (adapter_dir / TRAINED).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.append(TrainingExample(d["kind"], tuple(tuple(t) for t in d["prompt"]), d["completion"],
                                   tuple(d["sources"]), "train"))
    return out


def write_trained(adapter_dir: Path, examples: Sequence[TrainingExample], parent: Path | None = None) -> None:
    """What the adapter in `adapter_dir` was trained on: the training items of `examples`, plus its
    parent's list when it was continued from one."""
    items = {_key(e): e for e in read_trained(parent)} if parent is not None else {}
    items.update((_key(e), e) for e in examples if e.split == "train")
    with (adapter_dir / TRAINED).open("w", encoding="utf-8") as f:
        for e in items.values():
            f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")


def can_continue(info: AdapterInfo | None, base_dir: Path) -> bool:
    if info is None or not (info.path / TRAINED).is_file():
        return False
    recorded = info.metadata.get("base_dir")
    return bool(recorded) and Path(recorded).resolve() == base_dir.resolve()


@dataclass(frozen=True)
class Plan:
    """A continued run's data: `examples` (train = the new items; held-out sides without what the parent
    saw), `replayed` (old items, trained once each, spread over the run), the number of new items, and the
    answers the parent was trained on (for `recall_old`)."""

    examples: list[TrainingExample]
    replayed: list[TrainingExample]
    new: int
    old_answers: frozenset[str]


def plan(parent: Sequence[TrainingExample], examples: Sequence[TrainingExample], replay: float,
         seed: int = 0, parent_name: str = "the current adapter", rounds: int = 1,
         once_kinds: Collection[str] = ()) -> Plan:
    """Split a new run's `examples` into what is new, a replay sample of the old, and the held-out sides
    (see the module docstring). Raises TrainingError when nothing is new."""
    old = {_key(e) for e in parent}
    train = [e for e in examples if e.split == "train"]
    new = [e for e in train if _key(e) not in old]
    if not new:
        raise TrainingError(f"nothing new to learn since {parent_name}: no new memories or facts since it was "
                            "trained (run `secondself build` after adding notes), or retrain from scratch with "
                            "`secondself train --full`")
    still = [e for e in train if _key(e) in old]
    n = min(len(still), max(1, rounds) * max(MIN_REPLAY, round(replay * len(new))))
    by_kind: dict[str, list[TrainingExample]] = defaultdict(list)
    for e in sorted(still, key=lambda e: hashlib.sha1(f"{seed}|{_key(e)}".encode()).hexdigest()):
        by_kind[e.kind].append(e)
    picked: list[TrainingExample] = []
    for kind, count in _shares(by_kind, n, rounds, once_kinds).items():
        wording: Counter[str] = Counter()
        nth = []                                 # 1 for an answer's first wording, 2 for its second, ...
        for e in by_kind[kind]:
            wording[e.completion] += 1
            nth.append(wording[e.completion])
        picked += [e for _, e in sorted(zip(nth, by_kind[kind], strict=True), key=lambda t: t[0])][:count]
    held = [e for e in examples if e.split != "train" and _key(e) not in old]
    answers = frozenset(e.completion for e in parent if e.kind != "retention")
    return Plan([*new, *held], picked, len(new), answers)


def _shares(by_kind: dict[str, list[TrainingExample]], n: int, rounds: int,
            once_kinds: Collection[str]) -> dict[str, int]:
    """How many of the `n` replayed items each kind gets: in proportion to how much the full run trained
    it (its items x `rounds` epochs, or x 1 for a `once_kinds` kind), never more than it has (D'Hondt)."""
    weight = {k: len(items) * (1 if k in once_kinds else max(1, rounds)) for k, items in by_kind.items()}
    count = dict.fromkeys(by_kind, 0)
    for _ in range(min(n, sum(map(len, by_kind.values())))):
        kind = max((k for k in by_kind if count[k] < len(by_kind[k])), key=lambda k: weight[k] / (count[k] + 1))
        count[kind] += 1
    return count
