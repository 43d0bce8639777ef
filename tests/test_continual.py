"""Continuous learning's plan: what is new, what is replayed (without a model)."""

from collections import Counter

import pytest

from secondself.errors import TrainingError
from secondself.train.continual import MIN_REPLAY, plan
from secondself.types import TrainingExample


def qa(i: int, wording: int, split: str = "train") -> TrainingExample:
    return TrainingExample("self_qa", (("user", f"Question {i}, wording {wording}?"),), f"Answer {i}.", (), split)


OLD = [qa(i, w) for i in range(40) for w in range(3)]                  # 40 facts, 3 wordings each


def test_new_items_are_trained_and_a_replay_covers_every_old_fact_before_a_second_wording():
    new = [qa(100 + i, 0) for i in range(10)]
    p = plan(OLD, OLD + new + [qa(0, 9, "heldout")], replay=1.0, rounds=3)
    assert p.examples[:10] == new and p.new == 10
    assert qa(0, 9, "heldout") in p.examples                     # held out: never trained, scored
    assert len(p.replayed) == 3 * max(MIN_REPLAY, 10)             # per round, one round per epoch
    answers = [e.completion for e in p.replayed]
    assert len(set(answers)) == 40                               # all 40 facts before any second wording
    assert not set(p.replayed) & set(new)
    assert plan(OLD, OLD + new, 1.0, seed=1, rounds=3).replayed != p.replayed   # a seeded sample


def test_replay_is_capped_by_the_old_items_still_true():
    changed = [qa(i, w) for i in range(5) for w in range(3)]        # 5 facts whose answers are still the same
    new = [qa(100, 0)]
    p = plan(OLD, changed + new, replay=10.0, rounds=6)
    assert sorted(p.replayed, key=str) == sorted(changed, key=str)


def test_nothing_new_is_a_clear_error():
    with pytest.raises(TrainingError, match="nothing new to learn"):
        plan(OLD, OLD, 1.0)


def note(i: int) -> TrainingExample:
    return TrainingExample("notes", (), f"Note {i}: a day in the person's life.", (), "train")


def refusal(i: int) -> TrainingExample:
    return TrainingExample("unanswerable", (("user", f"Unknown thing {i}?"),), "I don't know — my memories don't say.",
                           (), "train")


def test_each_kind_is_replayed_as_much_as_the_full_run_trained_it():
    old = OLD + [note(i) for i in range(120)] + [refusal(i) for i in range(40)]
    new = [qa(100 + i, 0) for i in range(10)]
    for seed in range(3):
        p = plan(old, old + new, 1.0, seed=seed, rounds=6, once_kinds=("notes",))
        kinds = Counter(e.kind for e in p.replayed)
        # trained in the full run: questions 120 x 6 epochs, refusals 40 x 6, notes 120 x 1 (once over the run)
        assert sum(kinds.values()) == 6 * max(MIN_REPLAY, 10) == 96
        assert abs(kinds["self_qa"] - 96 * 720 / 1080) <= 1 and abs(kinds["unanswerable"] - 96 * 240 / 1080) <= 1
        assert len({e.completion for e in p.replayed if e.kind == "self_qa"}) == 40   # every old fact rehearsed
        # the same answer to 40 questions is not "one answer": refusals are rehearsed as often as they were trained
        assert len({e.prompt for e in p.replayed if e.kind == "unanswerable"}) == kinds["unanswerable"]
    notes_every_epoch = Counter(e.kind for e in plan(old, old + new, 1.0, rounds=6).replayed)["notes"]
    assert notes_every_epoch > kinds["notes"]
