"""LoRA fine-tuning (secondself.train.sft/export) on a tiny Llama built in code: 2 layers, hidden 32, a
byte-level BPE tokenizer trained on a few sentences, and a ChatML template like SmolLM2's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from secondself.errors import ConfigError, TrainingCancelled, TrainingError  # noqa: E402
from secondself.progress import Progress  # noqa: E402
from secondself.train import sft  # noqa: E402
from secondself.train.export import export_merged, export_ollama  # noqa: E402
from secondself.train.tiny import make_tiny_model  # noqa: E402
from secondself.types import TrainingExample  # noqa: E402

SENTENCES = ["Maya lives in Lisbon and plays the cello on Sundays.", "Her sister Rita works at the harbor.",
             "What do you do on weekends? I walk by the river and bake bread.",
             "The coffee was cold but the rain was warm.", "Where do you live? In Lisbon, by the river."]
QA = TrainingExample("self_qa", (("system", "You are Maya."), ("user", "Where do you live?")),
                     "In Lisbon, by the river.")
NOTE = TrainingExample("notes", (), "Coffee at the harbor with Rita.")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matrices: one thread is faster, and far steadier on a small shared CPU, than several."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), SENTENCES)


@pytest.fixture(scope="module")
def tokenizer(base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


def examples(n: int = 12) -> list[TrainingExample]:
    out = [QA, NOTE] + [TrainingExample("notes", (), s) for s in SENTENCES]
    return (out * n)[:n]


def cfg(**kw) -> sft.TrainConfig:
    return sft.TrainConfig(**{"rank": 4, "steps": 6, "batch_size": 2, "seq_len": 48, "warmup_steps": 1,
                              "learning_rate": 1e-2, "dropout": 0.1, **kw})


def logits(model, ids: list[int]):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def lora_state(adapter_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


# -- data ----------------------------------------------------------------------------------------------

def test_encode_supervises_only_the_completion_and_its_end_of_turn(tokenizer) -> None:
    ids, labels = sft.encode(tokenizer, QA)
    assert len(ids) == len(labels)
    assert tokenizer.decode(ids).startswith("<|im_start|>system\nYou are Maya.<|im_end|>")
    learned = [t for t, lab in zip(ids, labels, strict=True) if lab != sft.IGNORE]
    assert tokenizer.decode(learned) == "In Lisbon, by the river.<|im_end|>"
    assert labels[-1] == sft.IGNORE  # the newline the template puts after the end-of-turn token
    first = labels.index(next(lab for lab in labels if lab != sft.IGNORE))
    prefix = tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in QA.prompt], tokenize=False,
                                           add_generation_prompt=True)
    assert tokenizer.decode(ids[:first]) == prefix


def test_encode_plain_text_supervises_every_token_and_eos(tokenizer) -> None:
    ids, labels = sft.encode(tokenizer, NOTE)
    assert labels == ids and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[:-1]) == NOTE.completion


def targets(ids: list[int], labels: list[int]) -> list[int]:
    """What the model is trained to predict: the labels after the first token (nothing predicts that)."""
    return [lab for lab in labels[1:] if lab != sft.IGNORE]


def test_pack_makes_fixed_rows_and_keeps_every_target_exactly_once(tokenizer) -> None:
    long = TrainingExample("notes", (), " ".join(SENTENCES * 3))
    encoded = [sft.encode(tokenizer, e) for e in examples(9) + [long]]
    assert len(encoded[-1][0]) > 3 * 32  # split into several pieces
    rows = sft.pack(encoded, 32, pad_id=tokenizer.pad_token_id)
    assert rows and all(len(r.input_ids) == len(r.labels) == len(r.position_ids) == 32 for r in rows)
    packed = sorted(lab for r in rows for lab, pos in zip(r.labels, r.position_ids, strict=True)
                    if lab != sft.IGNORE and pos > 0)
    assert packed == sorted(t for ids, labels in encoded for t in targets(ids, labels))
    assert all(r.labels[i] == sft.IGNORE for r in rows for i, p in enumerate(r.position_ids) if p == 0)
    total = sum(len(ids) for ids, _ in encoded)
    assert len(rows) * 32 < total * 1.25  # best-fit packing wastes little
    long_prompt = TrainingExample("self_qa", (("user", " ".join(SENTENCES * 3)),), "In Lisbon.")
    ids, labels = sft.encode(tokenizer, long_prompt)
    (row,) = sft.pack([(ids, labels)], 32)
    assert row.input_ids == ids[-32:] and targets(row.input_ids, row.labels) == targets(ids, labels)
    padded = [r for r in rows if 0 in r.attention_mask]
    assert all(r.labels[i] == sft.IGNORE for r in padded for i, m in enumerate(r.attention_mask) if not m)


def test_packed_examples_do_not_attend_to_each_other(base: Path, tokenizer) -> None:
    model, _ = sft.load_model(base)
    a, b = sft.encode(tokenizer, QA), sft.encode(tokenizer, NOTE)
    (row,) = sft.pack([a, b], len(a[0]) + len(b[0]) + 3, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([row.input_ids]), position_ids=torch.tensor([row.position_ids]),
                    use_cache=False).logits[0]  # as in training: with a cache, transformers ignores packing
    start = row.position_ids.index(0, 1)  # the second segment (the longer example comes first)
    first, second = (a, b) if start == len(a[0]) else (b, a)
    assert torch.allclose(out[:start], logits(model, first[0]), atol=1e-5)
    assert torch.allclose(out[start:start + len(second[0])], logits(model, second[0]), atol=1e-5)


def test_step_loss_equals_the_models_own_loss(base: Path, tokenizer) -> None:
    model, _ = sft.load_model(base)
    rows = sft.pack([sft.encode(tokenizer, e) for e in examples(6)], 40, pad_id=tokenizer.pad_token_id)
    for packed in (True, False):
        batch = sft._collate(rows[:2], packed, "cpu")
        n = int((batch["labels"][:, 1:] != sft.IGNORE).sum())
        with torch.no_grad():
            expected = model(**batch, use_cache=False).loss
            got = sft._step_loss(model, dict(batch), n)
        assert torch.allclose(got, expected, atol=1e-5)


def test_pad_batches_one_example_per_row_padded_to_the_longest(tokenizer) -> None:
    encoded = [sft.encode(tokenizer, e) for e in examples(5)]
    batches = sft.pad_batches(encoded, 2, 64, pad_id=tokenizer.pad_token_id)
    assert [len(b) for b in batches] == [2, 2, 1]
    for batch, pair in zip(batches, [encoded[0:2], encoded[2:4], encoded[4:]], strict=True):
        width = max(len(ids) for ids, _ in pair)
        for row, (ids, _) in zip(batch, pair, strict=True):
            assert len(row.input_ids) == width and row.input_ids[:len(ids)] == ids
            assert sum(row.attention_mask) == len(ids)


def test_choose_rank_grows_with_the_data_and_says_why(tokenizer) -> None:
    from transformers import LlamaConfig

    big = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, head_dim=64)
    small_rank, reason = sft.choose_rank(examples(7), tokenizer, big)
    assert small_rank == 8 and "rank 8" in reason and "bits" in reason and "per rank" in reason
    assert "at least 8" in reason  # the floor: rank 2 (what the estimate alone gives) did not store facts
    import random

    rnd = random.Random(0)
    words = [w for s in SENTENCES for w in s.split()]
    many = [TrainingExample("self_qa", (("user", f"q{i}"),), " ".join(rnd.choices(words, k=400)))
            for i in range(400)]
    big_rank, big_reason = sft.choose_rank(many, tokenizer, big)
    assert big_rank > small_rank and f"rank {big_rank}" in big_reason
    retention = [TrainingExample("retention", (), e.completion) for e in many]
    assert sft.choose_rank(retention + examples(7), tokenizer, big)[0] == small_rank  # retention is not new


# -- training ------------------------------------------------------------------------------------------

def test_train_changes_lora_only_lowers_loss_and_saves_a_reloadable_adapter(base: Path, tokenizer,
                                                                          tmp_path: Path) -> None:
    seen: list[Progress] = []
    out = tmp_path / "adapter"
    result = sft.train(base, examples(6), out, cfg(steps=15, learning_rate=2e-2, dropout=0.0),
                       run_dir=tmp_path / "run", on_progress=seen.append)
    assert result.steps == 15 and len(result.losses) == 15 and result.adapter_dir == out
    assert result.losses[-1] < 0.8 * result.losses[0]
    assert [(p.stage, p.done, p.total) for p in seen] == [("train", s, 15) for s in range(1, 16)]
    assert seen[-1].info["eta_s"] == 0 and {"loss", "tokens", "elapsed_s", "tokens_per_s"} <= set(seen[0].info)
    assert result.tokens_trained == seen[-1].info["tokens"] > 0 and result.resumed_from_step == 0
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "run" / "checkpoint").exists()  # the finished run needs no checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    weights = lora_state(out)
    assert weights and all("lora_" in k for k in weights)
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)  # B starts at zero

    base_model, _ = sft.load_model(base)
    trained, _ = sft.load_model(base, out)
    assert not any(n for n, p in trained.named_parameters() if p.requires_grad)  # eval model, frozen
    from safetensors.torch import load_file

    stored = load_file(str(base / "model.safetensors"))
    for name, value in trained.get_base_model().state_dict().items():
        if "lora_" not in name and name.replace(".base_layer", "") in stored:
            assert torch.equal(value, stored[name.replace(".base_layer", "")]), name  # base untouched
    ids, _ = sft.encode(tokenizer, QA)
    assert not torch.allclose(logits(trained, ids), logits(base_model, ids))
    assert torch.equal(logits(trained, ids), logits(sft.load_model(base, out)[0], ids))
    texts = [QA.completion, NOTE.completion]
    assert sft.bits_per_byte(trained, tokenizer, texts) < sft.bits_per_byte(base_model, tokenizer, texts)


def test_cancel_then_resume_reaches_the_same_weights(base: Path, tmp_path: Path) -> None:
    data, config = examples(10), cfg(checkpoint_every=2)
    straight = sft.train(base, data, tmp_path / "a", config, run_dir=tmp_path / "run-a")
    steps_done: list[int] = []
    with pytest.raises(TrainingCancelled, match="--resume"):
        sft.train(base, data, tmp_path / "b", config, run_dir=tmp_path / "run-b",
                  on_progress=lambda p: steps_done.append(p.done), should_stop=lambda: len(steps_done) >= 3)
    assert steps_done == [1, 2, 3] and (tmp_path / "run-b" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "b").exists()
    resumed = sft.train(base, data, tmp_path / "b", config, run_dir=tmp_path / "run-b")
    assert resumed.resumed_from_step == 3 and resumed.steps == 6
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-6)
    a, b = lora_state(tmp_path / "a"), lora_state(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)


def test_ctrl_c_keeps_a_checkpoint_and_out_of_memory_says_what_to_do(base: Path, tmp_path: Path) -> None:
    def interrupt(progress: Progress) -> None:
        if progress.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingCancelled, match="--resume"):
        sft.train(base, examples(), tmp_path / "out", cfg(), run_dir=tmp_path / "run", on_progress=interrupt)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2

    def oom(progress: Progress) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainingError, match="--batch-size"):
        sft.train(base, examples(), tmp_path / "out", cfg(), run_dir=tmp_path / "run", on_progress=oom)
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file() and not (tmp_path / "out").exists()


def test_no_training_samples_and_a_foreign_checkpoint_are_errors(base: Path, tmp_path: Path) -> None:
    heldout = [TrainingExample("self_qa", (("user", "q"),), "a", split="heldout")]
    with pytest.raises(TrainingError, match="no training samples"):
        sft.train(base, heldout, tmp_path / "out", cfg(), run_dir=tmp_path / "run")
    with pytest.raises(TrainingError, match="no training samples"):
        sft.train(base, [], tmp_path / "out", cfg(), run_dir=tmp_path / "run")
    with pytest.raises(TrainingCancelled):
        sft.train(base, examples(), tmp_path / "out", cfg(), run_dir=tmp_path / "run", should_stop=lambda: True)
    with pytest.raises(TrainingError, match="different run"):
        sft.train(base, examples(5), tmp_path / "out", cfg(), run_dir=tmp_path / "run")


def test_continuing_starts_from_the_previous_adapter(base: Path, tmp_path: Path) -> None:
    first = sft.train(base, examples(), tmp_path / "v1", cfg(), run_dir=tmp_path / "run1")
    parent = lora_state(tmp_path / "v1")
    assert any(float(t.abs().max()) > 0 for k, t in parent.items() if "lora_B" in k)   # it learned something
    # a near-zero learning rate: the continued adapter is the parent, not a fresh LoRA (whose B is zero)
    cont = sft.train(base, examples(4), tmp_path / "v2", cfg(rank=2, steps=1, learning_rate=1e-12, warmup_steps=0),
                     run_dir=tmp_path / "run2", init_adapter=tmp_path / "v1")
    child = lora_state(tmp_path / "v2")
    assert cont.rank == first.rank == 4 and "continued from v1" in cont.rank_reason          # its rank is kept
    assert child.keys() == parent.keys() and all(torch.allclose(child[k], parent[k], atol=1e-6) for k in parent)
    fresh = sft.train(base, examples(4), tmp_path / "v3", cfg(steps=1, learning_rate=1e-12, warmup_steps=0),
                      run_dir=tmp_path / "run3")
    assert fresh.rank == 4 and all(float(t.abs().max()) < 1e-9 for k, t in lora_state(tmp_path / "v3").items()
                                   if "lora_B" in k)


def test_early_stopping_keeps_the_weights_of_the_lowest_heldout_loss(base: Path, tmp_path: Path) -> None:
    # the held-out answer contradicts the trained one: its loss falls at first (format) and then rises
    held = [TrainingExample("self_qa", (("system", "You are Maya."), ("user", "Where do you live?")),
                            "The coffee was cold.", split="valid")]
    config = cfg(steps=30, eval_every=2, patience=2, learning_rate=3e-2)
    result = sft.train(base, [QA] * 8, tmp_path / "out", config, run_dir=tmp_path / "run", heldout=held)
    losses = dict(result.heldout_losses)
    assert result.best_step == min(losses, key=losses.get)
    assert result.steps < 30 and result.steps == max(losses)                 # stopped early
    assert sum(1 for s in losses if s > result.best_step) == 2                 # after `patience` worse ones
    model, tok = sft.load_model(base, tmp_path / "out")
    from secondself.train.data import _pieces, encode

    ids, labels = _pieces([encode(tok, held[0])], 48)[0]
    rows = [sft.Row(ids, labels, list(range(len(ids))), [1] * len(ids))]
    with sft._products(sft._resolve_autocast(None, "cpu", "float32")):   # as training measured it
        assert sft._heldout_loss(model, rows, 2, "cpu") == pytest.approx(losses[result.best_step], abs=1e-3)


def test_unpacked_training_runs_too(base: Path, tmp_path: Path) -> None:
    seen: list[Progress] = []
    sft.train(base, examples(), tmp_path / "out", cfg(steps=2, packing=False), run_dir=tmp_path / "run",
              on_progress=seen.append)
    assert seen[-1].info["positions"] > seen[-1].info["tokens_all"]  # padded rows


# -- export and serving --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adapter(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("trained")
    return sft.train(base, examples(), tmp / "adapter", cfg(steps=4), run_dir=tmp / "run").adapter_dir


def test_export_merged_matches_base_plus_adapter(base: Path, adapter: Path, tokenizer, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_merged(base, adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    ids, _ = sft.encode(tokenizer, QA)
    assert torch.allclose(logits(merged, ids), logits(sft.load_model(base, adapter)[0], ids), atol=1e-5)
    assert AutoTokenizer.from_pretrained(out).apply_chat_template([{"role": "user", "content": "hi"}],
                                                                  tokenize=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_ollama_writes_a_modelfile_beside_the_merged_model(base: Path, adapter: Path,
                                                                   tmp_path: Path) -> None:
    out = export_ollama(base, adapter, tmp_path / "ollama")
    text = (out / "Modelfile").read_text()
    assert "FROM ./merged" in text and 'PARAMETER stop "<|im_end|>"' in text and "{{ .Content }}" in text
    assert (out / "merged" / "model.safetensors").is_file() and (out / "merged" / "config.json").is_file()
    with pytest.raises(TrainingError, match="no adapter"):
        export_merged(base, tmp_path, tmp_path / "nothing")


def test_local_chat_model_merges_an_adapter(base: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from secondself.backends.chat import Message, Sampling, complete
    from secondself.backends.local import LocalChatModel

    with pytest.raises(ConfigError, match="adapter"):
        LocalChatModel(base, adapter=base)
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")  # a tiny model from this test, not a real one
    plain, personal = LocalChatModel(base, device="cpu"), LocalChatModel(base, adapter=adapter, device="cpu")
    assert personal.name == f"{base.name}+{adapter.name}" and plain.name == base.name
    chat = [Message("user", "Where do you live?")]
    text = complete(personal, chat, Sampling(max_tokens=8)).text()
    assert isinstance(text, str)
    assert not any("lora" in n for n, _ in personal._model.named_parameters())  # merged: plain inference
    ids, _ = sft.encode(personal._tokenizer, QA)
    peft_model, _ = sft.load_model(base, adapter)
    assert torch.allclose(logits(personal._model, ids), logits(peft_model, ids), atol=1e-5)
    assert not torch.allclose(logits(personal._model, ids), logits(plain._load(True) and plain._model, ids))


# -- retention by distillation (anchor) --------------------------------------------------------------------

ANCHOR = ["The coffee was cold but the rain was warm, and her sister walked by the river.",
          "Where do you live? In Lisbon, by the river, and on Sundays the cello."]


def anchor_kl(base: Path, adapter_dir: Path, tokenizer) -> float:
    from secondself.train.anchor import anchor_loss, anchor_rows

    model, _ = sft.load_model(base, adapter_dir)
    rows = anchor_rows(model, tokenizer, ANCHOR, 48)
    with torch.no_grad():
        return sum(float(anchor_loss(model, r)) for r in rows) / len(rows)


def test_anchor_rows_are_the_base_model_even_with_an_adapter_on(base: Path, adapter: Path, tokenizer) -> None:
    from secondself.train.anchor import anchor_loss, anchor_rows

    plain, _ = sft.load_model(base)
    tuned, _ = sft.load_model(base, adapter)
    want, got = anchor_rows(plain, tokenizer, ANCHOR, 48, k=5), anchor_rows(tuned, tokenizer, ANCHOR, 48, k=5)
    assert len(want) == len(got) == 2
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w.top_ids, g.top_ids) and torch.allclose(w.top_logp, g.top_logp, atol=1e-6)
        assert g.top_ids.shape == (len(g.input_ids) - 1, 5)
        with torch.no_grad():
            assert float(anchor_loss(plain, w)) == pytest.approx(0.0, abs=1e-6)   # the base matches itself
            assert float(anchor_loss(tuned, w)) > 1e-3                            # the tuned model drifted


def test_a_long_text_is_read_in_windows_that_carry_the_last_token_as_context(tokenizer) -> None:
    from secondself.train.anchor import anchor_rows

    class Echo(torch.nn.Module):   # a stand-in LM: uniform next-token distribution; only the windows matter
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **kw):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 50) + self.w})()

    text = " ".join(SENTENCES * 3)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = anchor_rows(Echo(), tokenizer, [text], 20, k=3)
    assert [int(i) for r in rows for i in r.input_ids[1:]] == ids[:sum(len(r.input_ids) - 1 for r in rows)]
    assert all(int(r.input_ids[0]) == int(prev.input_ids[-1]) for prev, r in zip(rows, rows[1:], strict=False))
    assert all(len(r.input_ids) <= 20 for r in rows)


def test_the_anchor_keeps_the_tuned_model_closer_to_its_base(base: Path, tokenizer, tmp_path: Path) -> None:
    config = cfg(steps=12, learning_rate=3e-2)
    free = sft.train(base, [QA] * 8, tmp_path / "free", config, run_dir=tmp_path / "r1")
    held = sft.train(base, [QA] * 8, tmp_path / "held", replace(config, anchor_weight=4.0), run_dir=tmp_path / "r2",
                     anchor=ANCHOR)
    assert free.anchor_kl == [] and len(held.anchor_kl) == 12
    kl_free, kl_held = anchor_kl(base, tmp_path / "free", tokenizer), anchor_kl(base, tmp_path / "held", tokenizer)
    assert kl_held < 0.5 * kl_free
    assert held.final_loss < held.losses[0]          # and it still learns the answer


def test_the_anchor_is_part_of_the_run_a_resume_checks(base: Path, tmp_path: Path) -> None:
    config = cfg(checkpoint_every=2, anchor_weight=1.0)
    straight = sft.train(base, examples(10), tmp_path / "a", config, run_dir=tmp_path / "run-a", anchor=ANCHOR)
    with pytest.raises(TrainingCancelled):
        sft.train(base, examples(10), tmp_path / "b", config, run_dir=tmp_path / "run-b", anchor=ANCHOR,
                  should_stop=lambda: True)
    with pytest.raises(TrainingError, match="different run"):   # other anchor text: another run
        sft.train(base, examples(10), tmp_path / "b", config, run_dir=tmp_path / "run-b", anchor=ANCHOR[:1])
    resumed = sft.train(base, examples(10), tmp_path / "b", config, run_dir=tmp_path / "run-b", anchor=ANCHOR)
    assert resumed.resumed_from_step == 1 and resumed.anchor_kl == pytest.approx(straight.anchor_kl, abs=1e-5)


def test_bf16_products_only_on_a_cpu_that_has_bf16_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert sft._resolve_autocast(None, "cpu", "float32") is False          # emulated bf16 would be slower
    assert sft._resolve_autocast(True, "cpu", "float32") is True           # asked for
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert sft._resolve_autocast(None, "cpu", "float32") is True
    assert sft._resolve_autocast(False, "cpu", "float32") is False
    assert sft._resolve_autocast(None, "cuda", "bfloat16") is False        # CUDA trains bf16 weights
    assert sft._resolve_autocast(True, "cpu", "bfloat16") is False


def test_once_kinds_are_trained_once_over_the_run_and_the_rest_every_epoch(base: Path, tokenizer,
                                                                              tmp_path: Path) -> None:
    from secondself.train.data import IGNORE, encode

    qa = [TrainingExample("self_qa", (("user", f"Question {i}?"),), f"Answer {i}.") for i in range(4)]
    notes = [TrainingExample("notes", (), s) for s in SENTENCES]

    def targets(e: TrainingExample) -> int:
        return sum(x != IGNORE for x in encode(tokenizer, e)[1][1:])

    config = cfg(steps=None, epochs=3, batch_size=1, seq_len=256, once_kinds=("notes",))
    once = sft.train(base, qa + notes, tmp_path / "a", config, run_dir=tmp_path / "r1")
    assert once.tokens_trained == 3 * sum(map(targets, qa)) + sum(map(targets, notes))
    every = sft.train(base, qa + notes, tmp_path / "b", replace(config, once_kinds=()), run_dir=tmp_path / "r2")
    assert every.tokens_trained == 3 * sum(map(targets, qa + notes))
    # a continued run's replay: passed apart, trained once over the run whatever its kind
    spread = sft.train(base, qa, tmp_path / "c", replace(config, once_kinds=()), run_dir=tmp_path / "r3",
                       spread=qa[:2])
    assert spread.tokens_trained == 3 * sum(map(targets, qa)) + sum(map(targets, qa[:2]))
