"""Continuous learning's plan: what is new, what is replayed (without a model)."""

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
