"""DPO on the tiny in-code model: the loss, a stage that lowers it on its pairs, resume after a kill."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from secondself.errors import TrainingError  # noqa: E402
from secondself.persona import IDK  # noqa: E402
from secondself.train import dpo, sft  # noqa: E402
from secondself.train.pairs import Pair  # noqa: E402
from secondself.train.tiny import make_tiny_model  # noqa: E402
from secondself.types import TrainingExample  # noqa: E402

SYSTEM = "You are Maya."
QA = [("Where do you live?", "In Lisbon, by the river."), ("What do you do on weekends?", "I walk by the river."),
      ("What is your blood type?", IDK)]
PAIRS = [Pair("grounding", (("system", SYSTEM), ("user", "Where do you live?")), "In Lisbon, by the river.",
              "In Porto with Rita.", "it mentions Porto, Rita", "draft"),
         Pair("refusal", (("system", SYSTEM), ("user", "What is your blood type?")), IDK, "The coffee was cold.",
              "it answers", "draft"),
         Pair("grounding", (("system", SYSTEM), ("user", "What do you do on weekends?")), "I walk by the river.",
              "I bake bread on Sundays in Porto.", "it mentions Porto", "draft")]


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dpo")
    base = make_tiny_model(root / "base")
    examples = [TrainingExample("self_qa", (("system", SYSTEM), ("user", q)), a, (1,), "train") for q, a in QA]
    sft.train(base, examples, root / "sft", sft.TrainConfig(steps=3, rank=4), run_dir=root / "sft-run")
    return base, root / "sft"


CONFIG = dpo.DPOConfig(steps=6, batch_size=2, learning_rate=1e-2, checkpoint_every=2, nll_weight=0.0)


def _weights(adapter):
    return load_file(str(adapter / "adapter_model.safetensors"))


def test_the_loss_is_log2_at_the_reference_and_falls_with_the_margin():
    zero = torch.zeros(3)
    loss, margins = dpo.dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2)) and margins.tolist() == [0, 0, 0]
    loss, margins = dpo.dpo_loss(torch.tensor([-1.0]), torch.tensor([-9.0]), zero[:1], zero[:1], beta=0.1)
    assert float(margins[0]) == pytest.approx(0.8) and float(loss) == pytest.approx(math.log1p(math.exp(-0.8)))


def test_dpo_lowers_the_loss_on_its_pairs_and_changes_only_the_adapter(sft_adapter, tmp_path):
    base, adapter = sft_adapter
    before = _weights(adapter)
    seen = []
    result = dpo.train(base, adapter, PAIRS, tmp_path / "out", CONFIG, run_dir=tmp_path / "run",
                       on_progress=seen.append)
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-4)   # reference = the adapter before DPO
    assert result.final_loss < 0.5 * result.losses[0] and result.accuracy == 1.0 and result.margin > 0
    assert [p.done for p in seen] == list(range(1, 7)) and {p.stage for p in seen} == {"dpo"}
    after = _weights(tmp_path / "out")
    assert set(after) == set(before)
    assert any(not torch.equal(after[k], before[k]) for k in before)
    assert all(torch.equal(v, _weights(adapter)[k]) for k, v in before.items())   # the input is not changed
    assert (tmp_path / "out" / dpo.METADATA).is_file() and (tmp_path / "out" / "secondself-train.json").is_file()
    assert not (tmp_path / "run" / "checkpoint").exists()
    # the policy now prefers the chosen answers more than the reference did
    model, tok = sft.load_model(base, tmp_path / "out")
    ref, _ = sft.load_model(base, adapter)
    seqs = [s for p in PAIRS for s in dpo.encode_pair(tok, p, 256)]
    with torch.no_grad():
        now, old = dpo.sequence_logps(model, seqs, 0)[0], dpo.sequence_logps(ref, seqs, 0)[0]
    assert all(float((now[i] - old[i]) - (now[i + 1] - old[i + 1])) > 0 for i in range(0, len(seqs), 2))


def test_a_stage_killed_after_a_checkpoint_resumes_to_the_same_weights(sft_adapter, tmp_path):
    base, adapter = sft_adapter
    whole = dpo.train(base, adapter, PAIRS, tmp_path / "whole", CONFIG, run_dir=tmp_path / "run-a")

    def die(p):
        if p.done == 3:                      # after the checkpoint of step 2, before step 4's
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        dpo.train(base, adapter, PAIRS, tmp_path / "resumed", CONFIG, run_dir=tmp_path / "run-b", on_progress=die)
    assert (tmp_path / "run-b" / "checkpoint").is_dir() and not (tmp_path / "resumed").exists()
    resumed = dpo.train(base, adapter, PAIRS, tmp_path / "resumed", CONFIG, run_dir=tmp_path / "run-b")
    assert resumed.resumed_from_step == 2 and resumed.losses == pytest.approx(whole.losses)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.allclose(a[k], b[k]) for k in a)
    # a checkpoint of another stage (other pairs) is refused, not continued
    with pytest.raises(RuntimeError, match="killed"):
        dpo.train(base, adapter, PAIRS, tmp_path / "x", CONFIG, run_dir=tmp_path / "run-c", on_progress=die)
    with pytest.raises(TrainingError, match="different run"):
        dpo.train(base, adapter, PAIRS[:2], tmp_path / "x", CONFIG, run_dir=tmp_path / "run-c")


def test_the_base_reference_and_bad_input(sft_adapter, tmp_path):
    base, adapter = sft_adapter
    result = dpo.train(base, adapter, PAIRS, tmp_path / "out", dpo.DPOConfig(steps=2, batch_size=3, reference="base",
                                                                             nll_weight=0.0), run_dir=tmp_path / "run")
    assert result.steps == 2 and result.losses[0] != pytest.approx(math.log(2), abs=1e-4)  # the SFT moved it
    with_nll = dpo.train(base, adapter, PAIRS, tmp_path / "nll", dpo.DPOConfig(steps=1, batch_size=3),
                         run_dir=tmp_path / "run-nll")
    assert with_nll.losses[0] > math.log(2) + 0.1          # + the chosen answers' cross-entropy (default)
    with pytest.raises(TrainingError, match="no preference pairs"):
        dpo.train(base, adapter, [], tmp_path / "o", CONFIG, run_dir=tmp_path / "r")
    with pytest.raises(TrainingError, match="not an adapter"):
        dpo.train(base, tmp_path, PAIRS, tmp_path / "o", CONFIG, run_dir=tmp_path / "r")
    with pytest.raises(TrainingError, match="reference"):
        dpo.DPOConfig(reference="judge")


# -- the "dpo" step of `secondself train` ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def maya_tiny(tmp_path_factory):
    from secondself.backends.chat import FakeChatModel
    from secondself.backends.embedders import HashingEmbedder
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.store import Store

    from .conftest import EXAMPLES

    root = tmp_path_factory.mktemp("train-dpo")
    with Store(root / "memory.sqlite3") as s:
        ingest(s, HashingEmbedder(128), [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
        build(s, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
    return root, make_tiny_model(root / "tiny")


@pytest.fixture
def person(maya_tiny, tmp_path, monkeypatch):
    import shutil

    from secondself.store import Store

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")        # the tiny model is built in code, not real
    torch.set_num_threads(1)
    root, tiny = maya_tiny
    shutil.copy(root / "memory.sqlite3", tmp_path / "memory.sqlite3")
    store = Store(tmp_path / "memory.sqlite3")
    yield store, tmp_path, tiny
    store.close()


def _models(tiny):
    from secondself.backends.local import LocalChatModel

    cache = {}
    return lambda adapter: cache.setdefault(str(adapter), LocalChatModel(tiny, adapter=adapter))


def test_train_with_dpo_cancelled_during_dpo_resumes_and_registers(person):
    from secondself.errors import TrainingCancelled
    from secondself.train import adapters as registry
    from secondself.train.pairs import load_pairs
    from secondself.train.pipeline import TrainOptions, latest_run, run_training

    store, person_dir, tiny = person
    options = TrainOptions(steps=3, dpo=True, dpo_prompts=2, eval_questions=4, retention_prompts=1)

    def cancel_in_dpo(p):
        if p.stage == "dpo" and p.done == 2:
            (latest_run(person_dir) / "CANCEL").write_text("now")

    with pytest.raises(TrainingCancelled, match="DPO stopped at step 2"):
        run_training(store, person_dir, "Maya", tiny, "tiny", options, make_model=_models(tiny),
                     on_progress=cancel_in_dpo)
    run = latest_run(person_dir)
    pairs = load_pairs(run / "pairs.jsonl")
    assert pairs and {p.source for p in pairs} >= {"refusal", "disclosure", "critique"}
    assert (run / "dpo" / "checkpoint").is_dir() and not (run / "adapter-sft").exists()
    info = run_training(store, person_dir, "Maya", tiny, "tiny", resume=True, make_model=_models(tiny))
    d = info.metadata["dpo"]
    assert d["resumed_from_step"] == 2 and d["pairs"] == len(pairs) and d["steps"] > 2
    assert sum(v["draft"] + v["constructed"] for v in d["sources"].values()) == len(pairs)
    assert registry.current(store, person_dir).version == info.version
    assert (info.path / dpo.METADATA).is_file() and (run / "adapter-sft" / "adapter_config.json").is_file()
    assert load_pairs(run / "pairs.jsonl") == pairs                   # drafted once, not again on resume
    a, b = _weights(info.path), _weights(run / "adapter-sft")
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_short_real_dpo_stage_on_the_135m_runs_and_registers(person):
    """The embedded SmolLM2-135M: 3 SFT steps, pairs from its drafts (1 item per source), DPO, evaluate,
    register — end to end (5.5 minutes on a loaded shared 2-core CPU, DPO itself about a minute)."""
    from secondself.backends.local import LocalChatModel
    from secondself.train import adapters as registry
    from secondself.train.pipeline import TrainOptions, latest_run, run_training

    store, person_dir, _ = person
    base = LocalChatModel(None)
    base_dir = base._checkpoint()
    made = {None: base}

    def make(adapter):
        return made.setdefault(adapter, LocalChatModel(base_dir, adapter=adapter))

    info = run_training(store, person_dir, "Maya", base_dir, base.name,
                        TrainOptions(steps=3, dpo=True, dpo_prompts=1, eval_questions=2, retention_prompts=0),
                        make_model=make)
    d = info.metadata["dpo"]
    print({k: d[k] for k in ("steps", "pairs", "final_loss", "accuracy", "margin", "seconds", "sources")})
    assert registry.current(store, person_dir).version == info.version
    assert d["pairs"] > 0 and d["steps"] > 0 and d["margin"] > 0 and d["accuracy"] > 0.5   # it learned the pairs
    assert d["sources"]["refusal"]["draft"] > 0      # the base model answers what no memory answers
    assert (info.path / dpo.METADATA).is_file() and (latest_run(person_dir) / "adapter-sft").is_dir()
