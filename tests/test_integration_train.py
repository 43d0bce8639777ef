"""Layer 2 with the real embedded SmolLM2-135M on the example person: a short run end to end (slow)."""

import json
import sqlite3

import pytest

from secondself.backends.chat import Message, Sampling, complete
from secondself.backends.local import LocalChatModel
from secondself.memory.build import BuildOptions, build
from secondself.store import Store
from secondself.train import adapters as registry
from secondself.train.pipeline import TrainOptions, run_training

pytestmark = pytest.mark.slow


def test_a_short_real_run_trains_evaluates_and_chats(maya_memory, tmp_path):
    shared, embedder, _ = maya_memory
    with sqlite3.connect(tmp_path / "memory.sqlite3") as dst:
        shared.db.backup(dst)
    models = tmp_path / "models"
    base = LocalChatModel(None, cache_dir=models)
    base_dir = base._checkpoint()
    made = {None: base}

    def make(adapter):
        return made.setdefault(adapter, LocalChatModel(base_dir, cache_dir=models, adapter=adapter))

    with Store(tmp_path / "memory.sqlite3") as store:
        build(store, embedder.name, base, "Maya", BuildOptions(slots=False))
        info = run_training(store, tmp_path, "Maya", base_dir, base.name,
                            TrainOptions(steps=3, eval_questions=8, retention_prompts=2), make_model=make)
        assert registry.current(store, tmp_path).version == info.version == "v001"
    meta = info.metadata
    print(json.dumps({k: meta[k] for k in ("samples", "train", "eval")}, indent=1)[:3000])
    assert meta["train"]["steps"] == 3 and meta["train"]["rank"] >= 2
    scores = meta["eval"]["scores"]
    for which in ("base", "personal"):
        assert {"qa_f1", "refusal", "skills_f1", "memory_bpb", "generic_bpb"} <= set(scores[which])  # all kinds
        assert 0.5 < scores[which]["memory_bpb"] < 5 and 0.5 < scores[which]["generic_bpb"] < 5
    personal = LocalChatModel(base_dir, cache_dir=models, adapter=info.path)
    text = complete(personal, [Message("user", "Where do you live?")], Sampling(max_tokens=16)).text()
    assert personal.name.endswith("+v001") and text.strip()
