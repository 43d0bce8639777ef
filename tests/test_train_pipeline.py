"""secondself train end to end on the example person with the tiny in-code model: synthesize → train →
evaluate → register, cancel and resume, adapter versions, and the CLI."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from secondself.backends.chat import FakeChatModel  # noqa: E402
from secondself.backends.embedders import HashingEmbedder  # noqa: E402
from secondself.backends.local import LocalChatModel  # noqa: E402
from secondself.errors import TrainingCancelled, TrainingError  # noqa: E402
from secondself.ingest.pipeline import ingest  # noqa: E402
from secondself.memory.build import BuildOptions, build  # noqa: E402
from secondself.store import Store  # noqa: E402
from secondself.train import adapters as registry  # noqa: E402
from secondself.train.pipeline import TrainOptions, latest_run, load_examples, run_training  # noqa: E402
from secondself.train.tiny import make_tiny_model  # noqa: E402

from .conftest import EXAMPLES  # noqa: E402

OPTIONS = TrainOptions(steps=4, eval_questions=6, retention_prompts=2)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    with Store(root / "memory.sqlite3") as s:
        ingest(s, HashingEmbedder(128), [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
        build(s, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
    return root, make_tiny_model(root / "tiny")


@pytest.fixture
def person(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")        # the tiny model is built in code, not real
    torch.set_num_threads(1)
    root, tiny = prepared
    shutil.copy(root / "memory.sqlite3", tmp_path / "memory.sqlite3")
    store = Store(tmp_path / "memory.sqlite3")
    yield store, tmp_path, tiny
    store.close()


def _models(tiny):
    cache = {}

    def make(adapter):
        return cache.setdefault(str(adapter), LocalChatModel(tiny, adapter=adapter))
    return make


def test_train_registers_an_evaluated_adapter(person):
    store, person_dir, tiny = person
    info = run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny))
    assert info.version == "v001" and registry.current(store, person_dir).version == "v001"
    meta = info.metadata
    assert meta["samples"]["notes"]["train"] > 0 and meta["retention_samples"] == 2
    assert meta["train"]["steps"] == 4 and meta["train"]["rank"] >= 2 and meta["train"]["rank_reason"]
    scores = meta["eval"]["scores"]
    assert {"qa_f1", "memory_bpb", "generic_bpb"} <= set(scores["base"]) == set(scores["personal"])
    assert "compression_gain" in meta["eval"]["summary"] and "retention_loss" in meta["eval"]["summary"]
    assert (info.path / "adapter_model.safetensors").is_file()
    run = latest_run(person_dir)
    data = load_examples(run / "dataset.jsonl")
    assert {e.split for e in data} == {"train", "heldout", "valid", "unseen"}
    assert json.loads((run / "state.json").read_text())["status"] == "done"
    assert {"recall", "guess", "refusal"} <= set(scores["personal"])
    assert meta["train"]["heldout_losses"] and meta["mode"] == "full"
    # nothing changed since v001: no continued run; a full one is v002; use/rollback switch between them
    with pytest.raises(TrainingError, match="nothing new to learn since v001"):
        run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny))
    second = run_training(store, person_dir, "Maya", tiny, "tiny", replace(OPTIONS, full=True),
                          make_model=_models(tiny))
    assert second.version == "v002" and registry.current(store, person_dir).version == "v002"
    assert registry.rollback(store, person_dir).version == "v001"
    assert registry.use(store, person_dir, "2").version == "v002"
    with pytest.raises(TrainingError, match="no adapter v009"):
        registry.use(store, person_dir, "v009")


def test_a_new_memory_continues_the_current_adapter_with_a_replay(person, tmp_path, monkeypatch):
    from secondself.train import continual
    from secondself.train.continual import TRAINED, read_trained

    drawn: list[dict] = []

    def plan(*args, **kwargs):
        drawn.append({k: kwargs[k] for k in ("rounds", "once_kinds")})
        return real_plan(*args, **kwargs)
    real_plan = continual.plan
    monkeypatch.setattr(continual, "plan", plan)
    store, person_dir, tiny = person
    options = replace(OPTIONS, eval_questions=40)          # both ask many: the same old questions
    first = run_training(store, person_dir, "Maya", tiny, "tiny", options, make_model=_models(tiny))
    old = read_trained(first.path)
    notes = tmp_path / "new-notes"
    notes.mkdir()
    (notes / "2025-12-01.md").write_text("# 1 December 2025\n\nToday I adopted a grey cat called Figo. He sleeps "
                                         "on the cello case and ignores the metronome completely.\n")
    ingest(store, HashingEmbedder(128), [notes], source_name="new", person_name="Maya")
    build(store, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
    second = run_training(store, person_dir, "Maya", tiny, "tiny", options, make_model=_models(tiny))
    meta = second.metadata
    assert meta["mode"] == "continue" and meta["parent"] == "v001"
    # a continued run starts from trained weights with a fresh optimizer: its own (lower) learning rate
    assert first.metadata["train"]["config"]["learning_rate"] == options.learning_rate
    assert meta["train"]["config"]["learning_rate"] == options.continue_learning_rate < options.learning_rate
    data = load_examples(latest_run(person_dir) / "dataset.jsonl")
    replayed = load_examples(latest_run(person_dir) / "replay.jsonl")
    new = [e for e in data if e.split == "train"]
    old_keys = {(e.kind, e.prompt, e.completion) for e in old}
    assert not {(e.kind, e.prompt, e.completion) for e in new} & old_keys
    assert {(e.kind, e.prompt, e.completion) for e in replayed} <= old_keys
    assert any("Figo" in e.completion for e in data) and len(new) == meta["new_items"]
    assert len(new) < len(old) / 4, [(e.kind, e.completion[:60]) for e in new]    # only what changed
    assert len(replayed) == meta["replayed"] and len(replayed) >= min(len(old), 16)
    assert len(new) + len(replayed) < len(old)                       # a fraction of a full run
    # the replay is drawn as the full run trained: a note once, a question every epoch
    assert drawn == [{"rounds": 6, "once_kinds": ("notes",)}]
    # held-out items never include what v001 was trained on
    assert not {(e.kind, e.prompt, e.completion) for e in data if e.split != "train"} & old_keys
    # the new adapter knows what both were trained on
    assert len(read_trained(second.path)) >= len(old) and (second.path / TRAINED).is_file()
    # old facts scored against the parent's own answers to the same questions
    summary = meta["eval"]["summary"]
    assert summary["old_questions"] > 0 and 0 <= summary["recall_old_parent"] <= 1
    assert "recall_old" in meta["eval"]["scores"]["personal"]


def test_a_continued_run_cancelled_mid_training_resumes_with_its_replay(person, tmp_path):
    store, person_dir, tiny = person
    run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny))
    notes = tmp_path / "new-notes"
    notes.mkdir()
    (notes / "2025-12-01.md").write_text("# 1 December 2025\n\nToday I adopted a grey cat called Figo.\n")
    ingest(store, HashingEmbedder(128), [notes], source_name="new", person_name="Maya")
    build(store, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))

    def cancel_at_step_2(p):
        if p.stage == "train" and p.done == 2:
            (latest_run(person_dir) / "CANCEL").write_text("now")

    with pytest.raises(TrainingCancelled):
        run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny),
                     on_progress=cancel_at_step_2)
    run = latest_run(person_dir, unfinished=True)
    replay = (run / "replay.jsonl").read_text()
    info = run_training(store, person_dir, "Maya", tiny, "tiny", resume=True, make_model=_models(tiny))
    meta = info.metadata
    assert meta["run"] == run.name and meta["mode"] == "continue" and meta["train"]["resumed_from_step"] == 2
    assert meta["train"]["config"]["learning_rate"] == OPTIONS.continue_learning_rate
    assert (run / "replay.jsonl").read_text() == replay and meta["replayed"] == len(replay.splitlines())


def test_cancel_then_resume_finishes_the_same_run(person):
    store, person_dir, tiny = person

    def cancel_at_step_2(p):
        if p.stage == "train" and p.done == 2:
            (latest_run(person_dir) / "CANCEL").write_text("now")

    with pytest.raises(TrainingCancelled, match="--resume"):
        run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny),
                     on_progress=cancel_at_step_2)
    run = latest_run(person_dir, unfinished=True)
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "cancelled" and state["step"] == "train"
    assert registry.list_adapters(person_dir) == []                   # nothing half-registered
    info = run_training(store, person_dir, "Maya", tiny, "tiny", resume=True, make_model=_models(tiny))
    assert info.metadata["run"] == run.name and info.metadata["train"]["resumed_from_step"] == 2
    with pytest.raises(TrainingError, match="no unfinished training run"):
        run_training(store, person_dir, "Maya", tiny, "tiny", resume=True)


def test_a_run_recorded_before_the_anchor_option_resumes_as_it_started(person):
    """Runs started before `anchor` and notes-once existed trained without them: resuming one must not switch
    them on. (Killed before its first checkpoint; a checkpoint written by an older version is refused as
    another run, since the configuration it fingerprints has new fields: such a run starts over.)"""
    store, person_dir, tiny = person
    with pytest.raises(_Killed):
        run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS, make_model=_models(tiny),
                     on_progress=lambda p: _raise(p.stage == "train"))
    state_file = latest_run(person_dir, unfinished=True) / "state.json"
    state = json.loads(state_file.read_text())
    del state["options"]["anchor"], state["options"]["notes_once"]
    state_file.write_text(json.dumps(state))
    info = run_training(store, person_dir, "Maya", tiny, "tiny", resume=True, make_model=_models(tiny))
    assert info.metadata["options"]["anchor"] == 0.0 and info.metadata["train"]["anchor_kl"] is None
    assert info.metadata["train"]["config"]["once_kinds"] == []
    fresh = run_training(store, person_dir, "Maya", tiny, "tiny", replace(OPTIONS, full=True),
                         make_model=_models(tiny))
    assert fresh.metadata["options"]["anchor"] == 1.0 and fresh.metadata["train"]["anchor_kl"] > 0
    assert fresh.metadata["train"]["config"]["once_kinds"] == ["notes"]


def test_the_model_that_answered_the_generic_prompts_is_freed_before_training(person):
    """llama.cpp left running beside torch slowed each training step by ~19%: the base's generator is closed
    once its answers are written, and used again (restarted) for the evaluation."""
    store, person_dir, tiny = person
    events: list[str] = []
    make = _models(tiny)

    class Closable:
        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def close(self):
            events.append("close")

    base = Closable(make(None))
    run_training(store, person_dir, "Maya", tiny, "tiny", OPTIONS,
                 make_model=lambda adapter: base if adapter is None else make(adapter),
                 on_progress=lambda p: events.append(p.stage) if p.stage in ("retention", "train", "evaluate")
                 else None)
    assert events.index("close") > max(i for i, e in enumerate(events) if e == "retention")
    assert events.index("close") < events.index("train") and events.count("close") == 1


def test_no_profile_means_a_clear_error(tmp_path, monkeypatch):
    from secondself.errors import ProfileError

    with Store(tmp_path / "m.sqlite3") as s, pytest.raises(ProfileError, match="secondself build"):
        run_training(s, tmp_path, "Maya", tmp_path, "tiny", OPTIONS)


def test_cli_train_model_eval_export_and_chat(prepared, tmp_path, monkeypatch, capsys):
    from .test_cli import run

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    root, tiny = prepared
    home = tmp_path / "home"                                    # SECONDSELF_HOME of the autouse fixture
    (home / "persons" / "me").mkdir(parents=True)
    shutil.copy(root / "memory.sqlite3", home / "persons" / "me" / "memory.sqlite3")
    code, out, err = run(capsys, "train", "--base", str(tiny), "--steps", "3", "--json")
    assert code == 0, err
    meta = json.loads(out)
    assert meta["version"] == "v001" and meta["train"]["steps"] == 3 and meta["eval"]["scores"]["personal"]
    code, out, _ = run(capsys, "model", "list")
    assert "* v001" in out
    code, out, _ = run(capsys, "eval")
    assert "qa_f1" in out and "memory_bpb" in out and "retention_loss" in out
    code, out, _ = run(capsys, "model", "export", "--format", "ollama", "--out", str(tmp_path / "export"))
    assert code == 0 and (tmp_path / "export" / "Modelfile").is_file()
    code, out, err = run(capsys, "ask", "Where do I live?", "--model", "personal", "--json")
    assert code == 0 and json.loads(out)["model"] == "personal"
    code, out, _ = run(capsys, "train", "--cancel")
    assert "no training run is in progress" in out
    code, _, err = run(capsys, "train", "--rank", "zero")
    assert code == 2 and "--rank" in err
    code, _, err = run(capsys, "model", "rollback")
    assert code == 2 and "no earlier adapter" in err


class _Killed(BaseException):
    """Stands in for SIGKILL: no handler runs, so the run's state stays as the kill left it."""


def _runtime_person(prepared, monkeypatch):
    """A Runtime on a copy of the prepared person, where resolving any base but the tiny model fails."""
    from secondself.runtime import Runtime

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    torch.set_num_threads(1)
    root, tiny = prepared
    rt = Runtime.from_options()
    rt.settings.person_dir.mkdir(parents=True)
    shutil.copy(root / "memory.sqlite3", rt.settings.db_path)
    real = Runtime.train_base

    def only_tiny(self, spec=None):
        assert spec is not None and Path(spec).resolve() == tiny.resolve(), f"resolved base {spec!r}, not the run's"
        return real(self, spec)

    monkeypatch.setattr(Runtime, "train_base", only_tiny)
    return rt, tiny


@pytest.mark.parametrize("checkpointed", [True, False])
def test_a_bare_resume_continues_on_the_runs_own_base(prepared, monkeypatch, checkpointed):
    """`train --base DIR` killed, then `train --resume`: the run goes on with DIR, never the default base,
    both when a checkpoint was written (cancelled at step 2) and when none was (killed at step 1)."""
    rt, tiny = _runtime_person(prepared, monkeypatch)
    person_dir = rt.settings.person_dir

    def stop(p):
        if p.stage == "train" and checkpointed and p.done == 2:
            (latest_run(person_dir) / "CANCEL").write_text("now")
        elif p.stage == "train" and not checkpointed:
            raise _Killed

    with pytest.raises(TrainingCancelled if checkpointed else _Killed):
        rt.train_model(str(tiny), steps=4, on_progress=stop)
    run = latest_run(person_dir, unfinished=True)
    assert json.loads((run / "state.json").read_text())["options"]["base"] == str(tiny)
    assert (run / "sft" / "checkpoint").is_dir() == checkpointed
    rt.close()
    from secondself.runtime import Runtime

    resumed = Runtime.from_options()
    info = resumed.train_model(resume=True)                    # no --base: the run's own one
    resumed.close()
    assert info.metadata["run"] == run.name and info.metadata["base_dir"] == str(tiny.resolve())
    assert info.metadata["train"]["steps"] == 4
    assert info.metadata["train"]["resumed_from_step"] == (2 if checkpointed else 0)


def test_resume_refuses_other_settings_and_another_base(person, prepared, monkeypatch, capsys, tmp_path):
    from .test_cli import run

    store, person_dir, tiny = person
    with pytest.raises(_Killed):
        run_training(store, person_dir, "Maya", tiny, "tiny", replace(OPTIONS, base=str(tiny)),
                     make_model=_models(tiny), on_progress=lambda p: _raise(p.stage == "train"))
    other = Path(shutil.copytree(tiny, tmp_path / "other-base"))
    with pytest.raises(TrainingError, match="was started on the base model in"):
        run_training(store, person_dir, "Maya", other, "other", resume=True, make_model=_models(other))
    state = json.loads((latest_run(person_dir) / "state.json").read_text())
    assert state["status"] == "running" and state["step"] == "train"     # the refusal left the run as it was
    # the CLI refuses a different --base or --steps for a resume instead of ignoring them
    home_person = tmp_path / "home" / "persons" / "me"
    shutil.copytree(person_dir / "runs", home_person / "runs")
    shutil.copy(prepared[0] / "memory.sqlite3", home_person / "memory.sqlite3")
    for flags, named in ((["--base", str(other)], "base"), (["--steps", "9"], "steps")):
        code, _, err = run(capsys, "train", "--resume", *flags)
        assert code == 2 and f"was started with {named}" in err, err


def _raise(cond: bool) -> None:
    if cond:
        raise _Killed


def test_the_base_models_bits_per_byte_are_computed_once_per_text(prepared, tmp_path, monkeypatch):
    from secondself.train import models, pipeline
    from secondself.train.losses import bits_per_byte

    _, tiny = prepared
    cache = tmp_path / "runs" / pipeline.BASE_NATS
    texts = ["I moved to Lisbon in July.", "The cello case is heavy."]
    first = pipeline._base_bits_per_byte(cache, tiny, texts)
    model, tok = models.load_model(tiny)
    assert first == pytest.approx(bits_per_byte(model, tok, texts), rel=1e-9)

    def no_model(*a, **k):
        raise AssertionError("the base model was loaded again")
    monkeypatch.setattr(models, "load_model", no_model)
    assert pipeline._base_bits_per_byte(cache, tiny, texts[::-1]) == pytest.approx(first, rel=1e-12)
    with pytest.raises(AssertionError, match="loaded again"):            # a new text needs the model
        pipeline._base_bits_per_byte(cache, tiny, [*texts, "A new note."])
    cache.write_text("{not json")                                        # damaged: recomputed, not trusted
    monkeypatch.undo()
    assert pipeline._base_bits_per_byte(cache, tiny, texts) == pytest.approx(first, rel=1e-9)
