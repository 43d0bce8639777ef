"""`secondself train`: synthesize → fine-tune → evaluate → register, as one resumable run.

A run lives in `<person dir>/runs/<id>/`:

    state.json        step (synthesize | train | dpo | evaluate | register | done), status, error, figures
    dataset.jsonl     the synthesized examples (train and held-out), written once, atomically
    retention.jsonl   the base model's own answers to generic prompts (mixed into training)
    sft/              the trainer's checkpoints (see train/sft.py)
    adapter/          the saved adapter, until it is registered as adapters/vNNN
    pairs.jsonl       with --dpo: the preference pairs (train/pairs.py), written once, atomically
    dpo/              with --dpo: the DPO stage's checkpoints (train/dpo.py)
    adapter-sft/      with --dpo: the fine-tuned adapter, once the DPO adapter has taken its place in adapter/
    CANCEL            present = stop at the next step boundary (written by `train --cancel`)

Each step writes its output before the state moves on, so `train --resume` continues the latest
unfinished run from its step: the dataset is not re-synthesized and training continues from its last
checkpoint. A resumed run uses its own recorded settings and base model (`resume_settings`), whatever
the command line now defaults to, and refuses to continue on another base. Success is reported only
after the adapter was saved, reloaded with identical logits (sft), evaluated and registered.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TrainingCancelled, TrainingError
from ..progress import OnProgress, Progress
from ..store import Store, now_iso
from ..types import TrainingExample
from . import adapters as registry

__all__ = ["TrainOptions", "RunSettings", "run_training", "resume_settings", "latest_run", "request_cancel",
           "runs_dir", "load_examples"]


@dataclass(frozen=True)
class TrainOptions:
    base: str = field(default="embedded", metadata={"help": "base model: 'embedded' or a local HF model dir"})
    rank: int | None = field(default=None, metadata={"help": "LoRA rank; None = chosen from the data"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps; None = from epochs"})
    epochs: float = field(default=6.0, metadata={"help": "passes over the training data (early stopping may "
                                                          "end sooner); 6 stored the held-out facts where 3 "
                                                          "recalled a third to a half (bench/recipe.py)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "high: with assistant-only loss, several "
                                                                  "wordings per fact and generic data mixed in, "
                                                                  "1e-3 stores facts where 2e-4 taught the "
                                                                  "register only (bench/recipe.py)"})
    heldout: float = field(default=0.2, metadata={"help": "share of each trained answer's wordings held out"})
    unseen: float = field(default=0.15, metadata={"help": "share of fact groups held out whole (guess test)"})
    notes_share: float = field(default=0.25, metadata={"help": "at most this share of the trained words are "
                                                               "raw notes; each note is trained once over the run "
                                                               "(spread over the epochs), the other items every "
                                                               "epoch"})
    full: bool = field(default=False, metadata={"help": "train from scratch even when an adapter on the same "
                                                        "base could be continued"})
    continue_learning_rate: float | None = field(default=3e-4, metadata={
        "help": "peak learning rate of a continued run (empty: learning_rate): it starts from a trained adapter "
                "with a fresh optimizer, whose first steps move every weight by about the rate; on maya old facts "
                "kept 0.69 at 3e-4 vs 0.65 at 1e-3 (parent 0.81, same questions), new ones learned alike"})
    replay: float = field(default=0.5, metadata={"help": "continuous training: old items replayed per new item "
                                                         "in each epoch, a different sample each epoch, each kind "
                                                         "as much as the full run trained it (maya, 5 new files: "
                                                         "old facts kept 0.62, the parent 0.81; kinds mixed: 0.65 "
                                                         "at 0.5, 0.69 at 1.0 in 20% more time, 0.47 with one "
                                                         "sample for all epochs; heldout: refusal 0.88, 0.25 with "
                                                         "kinds mixed)"})
    seed: int = 0
    eval_questions: int = field(default=24, metadata={"help": "held-out questions asked per model (taken "
                                                                  "round-robin across kinds)"})
    retention_prompts: int = field(default=24, metadata={"help": "generic prompts answered by the base model "
                                                                 "and mixed into training"})
    anchor: float = field(default=1.0, metadata={"help": "weight of the KL to the base model on generic prose "
                                                         "in every step (retention by distillation; 0 = off)"})
    notes_once: bool = field(default=True, metadata={"help": "each note trained once over the run, spread over "
                                                             "the epochs (the rest every epoch): with every note "
                                                             "kept, held-out note compression went from 2% to 11% "
                                                             "at the same recall and steps (bench/recipe.py)"})
    dpo: bool = field(default=False, metadata={"help": "a second stage: DPO on judge-free preference pairs"})
    dpo_prompts: int = field(default=24, metadata={"help": "training items per pair source given base-model "
                                                           "drafts (DPO)"})


def runs_dir(person_dir: Path) -> Path:
    return person_dir / "runs"


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _save_examples(path: Path, examples: list[TrainingExample]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def load_examples(path: Path) -> list[TrainingExample]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.append(TrainingExample(d["kind"], tuple(tuple(t) for t in d["prompt"]), d["completion"],
                                   tuple(d["sources"]), d["split"]))
    return out


def latest_run(person_dir: Path, unfinished: bool = False) -> Path | None:
    root = runs_dir(person_dir)
    for d in sorted(root.iterdir() if root.is_dir() else [], reverse=True):
        state = d / "state.json"
        if state.is_file() and (not unfinished or json.loads(state.read_text())["status"] != "done"):
            return d
    return None


def request_cancel(person_dir: Path) -> Path | None:
    run = latest_run(person_dir, unfinished=True)
    if run is not None:
        (run / "CANCEL").write_text(now_iso())
    return run


@dataclass(frozen=True)
class RunSettings:
    """What an unfinished run was started with: its options and the base checkpoint it trains (base_dir and
    base_name are None for runs recorded before they were kept)."""

    run: Path
    options: TrainOptions
    base_dir: Path | None
    base_name: str | None


def resume_settings(person_dir: Path, **asked: Any) -> RunSettings:
    """The recorded settings of the latest unfinished run, which `train --resume` must use.

    `asked`: TrainOptions fields the caller was given (None = not given). One that differs from what the
    run was started with raises ConfigError: a resume never silently changes its base model or settings."""
    from ..errors import ConfigError

    path = latest_run(person_dir, unfinished=True)
    if path is None:
        raise TrainingError("no unfinished training run to resume; start one with `secondself train`")
    state = json.loads((path / "state.json").read_text())
    options = _recorded(state)
    base_dir = Path(state["base_dir"]) if state.get("base_dir") else None
    for name, value in asked.items():
        recorded = getattr(options, name)
        if value is None or (_same_base(value, recorded, base_dir) if name == "base" else value == recorded):
            continue
        raise ConfigError(f"run {path.name} was started with {name} {recorded!r}, not {value!r}: `--resume` "
                          f"continues it with its own settings (leave out the {name}), or start a new run "
                          "without --resume")
    return RunSettings(path, options, base_dir, state.get("base_name"))


REPLAY = "replay.jsonl"     # a continued run's replay sample, apart from dataset.jsonl
# What a run recorded before an option existed was started with, so that resuming it continues the same run.
_BEFORE_RECORDED = {"anchor": 0.0, "notes_once": False, "continue_learning_rate": None}


def _recorded(state: dict[str, Any]) -> TrainOptions:
    """A run's options as it recorded them (see `_BEFORE_RECORDED` for options it predates)."""
    return TrainOptions(**{**_BEFORE_RECORDED, **state["options"]})


def _same_base(asked: str, recorded: str, recorded_dir: Path | None) -> bool:
    if asked == recorded:
        return True
    try:
        where = Path(asked).expanduser().resolve()
        return where == Path(recorded).expanduser().resolve() or where == recorded_dir
    except (OSError, ValueError):
        return False


BASE_NATS = "base-nats.json"   # the base model's negative log-likelihood of each text it was measured on


def _base_bits_per_byte(cache: Path, base_dir: Path, texts: list[str]) -> float:
    """The base model's bits per byte of `texts`, each text's figure computed once per base and kept in
    `cache` (the base never changes: a continued run's held-out notes are mostly its parent's, and the
    generic text always the same; ~10 s of a continued run)."""
    from .losses import text_nats
    from .models import _resolve_autocast, _resolve_device, load_model

    device, dtype = _resolve_device(None, None)
    ident = hashlib.sha256((base_dir / "config.json").read_bytes() if (base_dir / "config.json").is_file()
                           else str(base_dir.resolve()).encode())
    ident.update(f"|{base_dir.name}|{device}|{dtype}|{_resolve_autocast(None, device, dtype)}|".encode())
    keys = [hashlib.sha256(ident.digest() + t.encode("utf-8")).hexdigest()[:32] for t in texts]
    try:
        known = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    except (OSError, ValueError):
        known = {}                             # a damaged cache is recomputed, never trusted
    missing = [(k, t) for k, t in zip(keys, texts, strict=True) if not isinstance(known.get(k), float)]
    if missing:
        model, tok = load_model(base_dir)
        known.update(zip([k for k, _ in missing], text_nats(model, tok, [t for _, t in missing]), strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        _write_json(cache, known)
    return sum(known[k] for k in keys) / math.log(2) / max(sum(len(t.encode("utf-8")) for t in texts), 1)


def _replayed(run_dir: Path) -> list[TrainingExample]:
    """A continued run's replay sample (trained once each, spread over the epochs); none in a full run, or in
    a run started before the replay was kept apart (its replay is inside dataset.jsonl)."""
    path = run_dir / REPLAY
    return load_examples(path) if path.is_file() else []


def _old_answers(state: dict[str, Any]) -> frozenset[str]:
    """The answers the parent adapter of a continued run was trained on (for `recall_old`)."""
    if state.get("mode") != "continue":
        return frozenset()
    from .continual import read_trained

    return frozenset(e.completion for e in read_trained(Path(state["parent_dir"])) if e.kind != "retention")


def _parent_answers(person_dir: Path, state: dict[str, Any], which: str) -> dict[str, str]:
    """The answers of `which` ("base" or "personal": the parent adapter) in the parent's evaluation, by
    question: a continued run asks the same base, and compares its old-fact answers with the parent's."""
    if state.get("mode") != "continue":
        return {}
    parent = registry.get(person_dir, state["parent"])
    path = runs_dir(person_dir) / str(parent.metadata.get("run")) / "eval.json"
    if not path.is_file():
        return {}
    items = json.loads(path.read_text(encoding="utf-8")).get("items", [])
    return {i["question"]: i[which] for i in items if not i.get("rag") and which in i
            and (which == "base" or i.get("kind") != "generic")}   # the base's generic answers are reused too


class _Run:
    def __init__(self, path: Path, options: TrainOptions | None, base_dir: Path, base_name: str) -> None:
        self.path = path
        if (path / "state.json").is_file():
            self.state = json.loads((path / "state.json").read_text())
        else:
            path.mkdir(parents=True)
            self.state = {"run": path.name, "created_at": now_iso(), "step": "synthesize", "status": "running",
                          "options": asdict(options or TrainOptions()), "base_dir": str(base_dir.resolve()),
                          "base_name": base_name}
            self.save()

    @property
    def options(self) -> TrainOptions:
        return _recorded(self.state)

    def save(self) -> None:
        _write_json(self.path / "state.json", self.state)

    def move(self, step: str, **extra: Any) -> None:
        self.state.update(step=step, status="running", error=None, **extra)
        self.save()

    def fail(self, status: str, error: str) -> None:
        self.state.update(status=status, error=error, stopped_at=now_iso())
        self.save()

    def cancelled(self) -> bool:
        return (self.path / "CANCEL").exists()


def run_training(store: Store, person_dir: Path, person: str, base_dir: Path, base_name: str,
                 options: TrainOptions | None = None, *, resume: bool = False,
                 make_model: Callable[[Path | None], Any] | None = None, judge: Any = None,
                 retrieve: Callable[[str], list[str]] | None = None,
                 on_progress: OnProgress | None = None) -> registry.AdapterInfo:
    """Run (or resume) a training run; return the registered, selected adapter.

    Unless `options.full`, a run continues the current adapter when it was trained on the same base
    (`continual`): on what changed plus a replay of old items. `retrieve(question)`: memory passages for
    the evaluation's RAG comparison (None: closed book only).

    `make_model(adapter_dir)` builds a ChatModel for the base (None) or base + adapter, used for the
    retention set and evaluation (the CLI passes LocalChatModel; tests pass tiny models). `judge`: a
    stronger model for the rubric scores (None: judge-free metrics only).
    """
    from ..memory.versions import load_version
    from . import continual, sft
    from .anchor import ANCHOR_TEXT
    from .evaluate import evaluate
    from .generic import GENERIC_PROMPTS, GENERIC_TEXT, RETENTION_HELDOUT, retention_examples
    from .synthesis import synthesize

    progress = on_progress or (lambda *a: None)
    if resume:
        path = latest_run(person_dir, unfinished=True)
        if path is None:
            raise TrainingError("no unfinished training run to resume; start one with `secondself train`")
        run = _Run(path, None, base_dir, base_name)
        recorded = run.state.get("base_dir")
        if recorded and Path(recorded) != base_dir.resolve():  # never continue a run on another base
            raise TrainingError(f"run {path.name} was started on the base model in {recorded}, not {base_dir}: "
                                "resume it with that base (`secondself train --resume` uses it), or start a new "
                                "run without --resume")
        (path / "CANCEL").unlink(missing_ok=True)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run = _Run(runs_dir(person_dir) / stamp, options, base_dir, base_name)
    opts = run.options
    make_model = make_model or (lambda adapter: None)
    try:
        if run.state["step"] == "synthesize":
            profile = load_version(store)
            chunks = {c.id: c for c in store.all_chunks()}
            report = synthesize(profile, chunks, person, seed=opts.seed, heldout=opts.heldout, unseen=opts.unseen,
                                notes_share=opts.notes_share,
                                epochs=opts.epochs if opts.notes_once and not opts.steps else 1.0)
            if not any(e.split == "train" for e in report.examples):
                raise TrainingError("synthesis produced no training samples: ingest some notes and run "
                                    "`secondself build` first")
            progress(Progress("synthesize", 1, 1, {"counts": report.counts, "dropped": report.dropped}))
            parent = registry.current(store, person_dir)
            go_on = not opts.full and continual.can_continue(parent, base_dir)
            base_model = make_model(None)
            retention: list[TrainingExample] = []
            prompts = GENERIC_PROMPTS[:opts.retention_prompts] if base_model is not None else []
            if go_on and parent is not None:   # the base's answers are what the parent was trained on
                retention = [e for e in continual.read_trained(parent.path) if e.kind == "retention"]
                prompts = []
            for i, prompt in enumerate(prompts):
                retention += retention_examples(base_model, [prompt])
                progress(Progress("retention", i + 1, len(prompts)))
            if hasattr(base_model, "close"):  # llama.cpp beside torch slowed each training step by ~19%: freed
                base_model.close()             # here, it starts again for the evaluation
            dataset, mode, replayed = report.examples, {"mode": "full"}, []
            if go_on and parent is not None:
                plan = continual.plan(continual.read_trained(parent.path), dataset + retention, opts.replay,
                                      opts.seed, parent.version, rounds=math.ceil(opts.epochs),
                                      once_kinds=("notes",) if opts.notes_once else ())
                dataset, retention = [e for e in plan.examples if e.kind != "retention"], \
                    [e for e in plan.examples if e.kind == "retention"]
                replayed = plan.replayed
                mode = {"mode": "continue", "parent": parent.version, "parent_dir": str(parent.path),
                        "new_items": plan.new, "replayed": len(plan.replayed)}
                progress(Progress("continue", 1, 1, mode))
            _save_examples(run.path / "retention.jsonl", retention)
            _save_examples(run.path / REPLAY, replayed)
            _save_examples(run.path / "dataset.jsonl", dataset)
            run.move("train", counts=report.counts, dropped=report.dropped, retention=len(retention),
                     profile_version=profile.version, **mode)
        examples = load_examples(run.path / "dataset.jsonl") + load_examples(run.path / "retention.jsonl")
        if run.state["step"] == "train":
            parent_dir = Path(run.state["parent_dir"]) if run.state.get("mode") == "continue" else None
            rate = opts.learning_rate if parent_dir is None else opts.continue_learning_rate or opts.learning_rate
            config = sft.TrainConfig(rank=opts.rank, steps=opts.steps, epochs=opts.epochs, learning_rate=rate,
                                     seed=opts.seed, anchor_weight=opts.anchor,
                                     once_kinds=("notes",) if opts.notes_once else ())
            result = sft.train(base_dir, examples, run.path / "adapter", config, run_dir=run.path / "sft",
                               on_progress=progress, should_stop=run.cancelled,
                               heldout=[e for e in examples if e.split == "valid"], init_adapter=parent_dir,
                               anchor=ANCHOR_TEXT, spread=_replayed(run.path))
            run.move("dpo" if opts.dpo else "evaluate", train={"steps": result.steps, "final_loss": result.final_loss,
                                        "tokens": result.tokens_trained, "seconds": round(result.seconds, 1),
                                        "rank": result.rank, "rank_reason": result.rank_reason,
                                        "resumed_from_step": result.resumed_from_step,
                                        "anchor_kl": result.anchor_kl[-1] if result.anchor_kl else None,
                                        "threads": result.threads, "bf16_products": result.bf16_products,
                                        "heldout_losses": result.heldout_losses, "best_step": result.best_step,
                                        "config": asdict(replace(config, rank=result.rank))})
        if run.state["step"] == "dpo":
            run.move("evaluate", dpo=_dpo_step(run, store, person, base_dir, examples, make_model, progress))
        if run.state["step"] == "evaluate":
            heldout = [e for e in examples if e.split in ("heldout", "unseen")]
            base_model, personal = make_model(None), make_model(run.path / "adapter")
            scores: dict[str, Any] = {}
            if base_model is not None and personal is not None:
                names = sorted({n for e in load_version(store).entities for n in (e.name, *e.aliases)}
                               | {person})

                def bpb(which: str, texts: list[str]) -> float:
                    if which == "base":
                        return _base_bits_per_byte(runs_dir(person_dir) / BASE_NATS, base_dir, texts)
                    model, tok = sft.load_model(base_dir, run.path / "adapter")
                    return sft.bits_per_byte(model, tok, texts)

                report = evaluate(base_model, personal, heldout, bpb=bpb,
                                  memory_texts=[e.completion for e in heldout if e.kind == "notes"],
                                  generic_text=GENERIC_TEXT, generic_prompts=RETENTION_HELDOUT, names=names,
                                  max_questions=opts.eval_questions, judge=judge, person=person,
                                  retrieve=retrieve, old_answers=_old_answers(run.state),
                                  known_base=_parent_answers(person_dir, run.state, "base"),
                                  parent_answers=_parent_answers(person_dir, run.state, "personal"),
                                  on_progress=progress)
                scores = report.to_dict()
                _write_json(run.path / "eval.json", scores)
            run.move("register", eval={"scores": scores.get("scores", {}), "summary": scores.get("summary", {})})
        if run.state["step"] == "register":
            if (run.path / "adapter").is_dir():
                parent_dir = Path(run.state["parent_dir"]) if run.state.get("mode") == "continue" else None
                continual.write_trained(run.path / "adapter", examples, parent_dir)
            counts = run.state.get("counts", {})
            info = registry.register(person_dir, run.path / "adapter", {
                "base": base_name, "base_dir": str(base_dir), "run": run.path.name,
                "profile_version": run.state.get("profile_version"), "samples": counts,
                "retention_samples": run.state.get("retention", 0), "dropped": run.state.get("dropped", {}),
                "train": run.state.get("train", {}), "eval": run.state.get("eval", {}),
                **({"dpo": run.state["dpo"]} if run.state.get("dpo") else {}),
                "options": asdict(opts), "mode": run.state.get("mode", "full"),
                **{k: run.state[k] for k in ("parent", "new_items", "replayed") if k in run.state}})
            registry.use(store, person_dir, info.version)
            run.move("done", adapter=info.version)
            run.state["status"] = "done"
            run.save()
            return info
        raise TrainingError(f"run {run.path.name} is in an unknown step {run.state['step']!r}")
    except TrainingCancelled as e:
        run.fail("cancelled", str(e))
        raise
    except KeyboardInterrupt:
        run.fail("cancelled", "interrupted")
        raise
    except TrainingError as e:
        run.fail("failed", str(e))
        raise
    except Exception as e:                       # an unexpected error: recorded, then re-raised as it is
        run.fail("failed", f"{type(e).__name__}: {e}")
        raise


def _dpo_step(run: _Run, store: Store, person: str, base_dir: Path, examples: list[TrainingExample],
              make_model: Callable[[Path | None], Any], progress: OnProgress) -> dict[str, Any]:
    """The second stage: preference pairs from the project's checks (rejected answers drafted by the base
    model), then DPO on the fine-tuned adapter, whose result takes its place in `adapter/` (the fine-tuned
    one is kept as `adapter-sft/`). Resumable at every point: the pairs are written once, DPO checkpoints,
    and the two renames are redone from whatever a kill left. Returns the figures for the run's state."""
    from ..memory.versions import load_version
    from . import dpo
    from .pairs import build_pairs, load_pairs, sample_drafts, save_pairs

    adapter, sft_dir, out = run.path / "adapter", run.path / "adapter-sft", run.path / "adapter-dpo"
    pairs_file = run.path / "pairs.jsonl"
    opts = run.options
    if not out.exists() and not sft_dir.exists():
        if not pairs_file.is_file():
            base_model = make_model(None)
            if base_model is None:
                raise TrainingError("DPO needs the base model to draft the answers it learns to avoid")
            report = build_pairs(examples, sample_drafts(base_model, seed=opts.seed),
                                 chunks={c.id: c for c in store.all_chunks()}, profile=load_version(store),
                                 person=person, prompts_per_source=opts.dpo_prompts, on_progress=progress)
            save_pairs(pairs_file, report.pairs)
            run.state["pairs"] = report.counts
            run.save()
        pairs = load_pairs(pairs_file)
        if not pairs:
            return {"sources": run.state.get("pairs", {}), "skipped": "every draft passed its check: no pairs"}
        dpo.train(base_dir, adapter, pairs, out, dpo.DPOConfig(seed=opts.seed), run_dir=run.path / "dpo",
                  on_progress=progress, should_stop=run.cancelled)
    if out.exists():
        if adapter.exists() and not sft_dir.exists():
            os.replace(adapter, sft_dir)
        os.replace(out, adapter)
    figures = json.loads((adapter / dpo.METADATA).read_text())
    return {**figures["result"], "sources": run.state.get("pairs", {}), "config": figures["config"]}
