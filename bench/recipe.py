"""The layer-2 training recipe, swept: does the personal model learn the person's facts?

What it measures
    For each example person (`--person`, default maya; heldout and blind were not developed on) the corpus
    is ingested (hashing embedder) and layer 1 built without a teacher (deterministic facts, names and
    shades), the training data synthesized as `secondself train` does (`synthesize`: several wordings per
    fact, first and second person, time-scoped forms, notes capped; held-out wordings, whole unseen facts),
    the base model's own answers to generic prompts mixed in, and then, per configuration (`--config`,
    repeatable: "lr=1e-3,rank=8,epochs=3,seq=256"), a LoRA trained with early stopping on the "valid"
    wordings and evaluated with `train.evaluate.evaluate`, the same code as `secondself eval`:
    - recall: closed-book share of held-out wordings of *trained* facts answered with the reference's names
      (or dates; yes/no first) — `base` is the same questions to the base model;
    - guess: the same match on *unseen* facts (held out whole, in no training item or note);
    - refusal on held-out unanswerable questions; qa_f1 (token F1 on the held-out fact questions);
    - compression gain on held-out notes (1 - personal/base bits per byte), retention loss on generic
      prose (personal/base - 1), generic leaks (the person's names in answers to generic prompts);
    - time: training seconds (steps, the step whose weights were kept) and evaluation seconds.

Baseline (same run): the base model (no adapter) on the same questions; `--config lr=2e-4,...` reproduces
the old learning rate. Goals (issue 13): recall >= 0.7, refusal >= 0.8, compression gain >= 20%, retention
loss <= 2%, 0 leaks, default `train` <= 15 min on 2 idle cores.

How to read it
    Times depend on the machine and its load (say the load average printed); use `--threads` to pin torch.
    `--base qwen2.5-coder-0.5b` trains on another base from the model ladder (its GGUF, dequantized: the
    weights llama.cpp serves). `--eval-questions` bounds the held-out fact questions asked per model.
    `--tiny` runs on a tiny model built in code (plumbing check). Reports, never asserts.
    Config keys: lr, rank, epochs, seq, steps, batch, patience; notes (the notes' share of trained words);
    anchor (weight of the KL to the base on generic prose, `train/anchor.py`); once=notes (kinds trained once
    over the run, spread over the epochs, instead of every epoch).

    python bench/recipe.py [--person maya --person heldout] [--config lr=1e-3,rank=8,epochs=3,seq=256]
                           [--base embedded] [--threads 1] [--eval-questions 24] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, dump_json, log, table  # noqa: E402

DEFAULT_CONFIGS = ("lr=1e-3,rank=8,epochs=6,seq=256,anchor=1,once=notes",)  # the defaults of `secondself train`
_KEYS = {"lr": ("learning_rate", float), "rank": ("rank", int), "epochs": ("epochs", float),
         "seq": ("seq_len", int), "steps": ("steps", int), "batch": ("batch_size", int),
         "patience": ("patience", int), "notes": ("notes_share", float),
         "anchor": ("anchor_weight", float), "once": ("once_kinds", lambda v: tuple(filter(None, v.split("+"))))}


def parse_config(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=", 1)
        name, kind = _KEYS[key.strip()]
        out[name] = kind(value)
    return out


def person_name(person_dir: Path) -> str:
    from answers import person_name as name

    return name(person_dir)


def prepare(person_dir: Path, work: Path) -> tuple[Any, dict, str]:
    """Ingest and build layer 1 (no teacher) in `work`; return (profile, chunks, name)."""
    from secondself.backends.embedders import make_embedder
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.memory.versions import load_version
    from secondself.store import Store

    name = person_name(person_dir)
    with Store(work / "memory.sqlite3") as store:
        embedder = make_embedder("hashing")
        ingest(store, embedder, [person_dir / "corpus"], source_name=person_dir.name, person_name=name)
        about = person_dir / "about_me.md"
        build(store, embedder.name, None, name, BuildOptions(slots=False),
              about=about.read_text(encoding="utf-8") if about.is_file() else "")
        profile = load_version(store)
        return profile, {c.id: c for c in store.all_chunks()}, name


class Memo:
    """A ChatModel that answers each distinct request once (the base model's answers do not change between
    configurations)."""

    def __init__(self, model: Any) -> None:
        self.model, self.cache = model, {}
        self.name, self.where = model.name, getattr(model, "where", "")

    @property
    def context_window(self) -> int:
        return self.model.context_window

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(self, messages, sampling):
        key = json.dumps([[m.role, m.content] for m in messages] + [sampling.max_tokens])
        if key not in self.cache:
            self.cache[key] = "".join(self.model.stream(messages, sampling))
        yield self.cache[key]


def run_config(base_dir: Path, models_dir: Path, base: Memo, examples: list, retention: list, names: list[str],
               config: dict, work: Path, eval_questions: int) -> dict:
    from secondself.train import sft
    from secondself.train.adapters import run_models
    from secondself.train.anchor import ANCHOR_TEXT
    from secondself.train.evaluate import evaluate
    from secondself.train.generic import GENERIC_TEXT, RETENTION_HELDOUT

    train_cfg = sft.TrainConfig(**{k: v for k, v in config.items() if k != "notes_share"},
                                checkpoint_every=10_000)
    out = work / f"adapter-{abs(hash(json.dumps(config, sort_keys=True)))}"
    if hasattr(base.model, "close"):   # as `train` does: llama.cpp is not left running beside torch (it
        base.model.close()             # slowed each step by ~19%); it starts again for the evaluation
    t0 = time.perf_counter()
    result = sft.train(base_dir, examples + retention, out, train_cfg, run_dir=work / f"{out.name}-run",
                       heldout=[e for e in examples if e.split == "valid"], anchor=ANCHOR_TEXT)
    train_s = time.perf_counter() - t0
    personal = run_models(base_dir, models_dir)(out)   # as `train` evaluates: llama.cpp where the base has a GGUF
    models: dict[str, Any] = {}

    def bpb(which: str, texts: list[str]) -> float:
        if which not in models:
            models[which] = sft.load_model(base_dir, None if which == "base" else out)
        return sft.bits_per_byte(*models[which], texts)

    t0 = time.perf_counter()
    held = [e for e in examples if e.split in ("heldout", "unseen")]
    report = evaluate(base, personal, held, bpb=bpb, memory_texts=[e.completion for e in held if e.kind == "notes"],
                      generic_text=GENERIC_TEXT, generic_prompts=RETENTION_HELDOUT, names=names,
                      max_questions=eval_questions)
    eval_s = time.perf_counter() - t0
    return {"config": config, "steps": result.steps, "best_step": result.best_step, "rank": result.rank,
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "heldout_losses": result.heldout_losses,
            "anchor_kl_last10": round(sum(result.anchor_kl[-10:]) / max(1, len(result.anchor_kl[-10:])), 4),
            "scores": report.scores, "summary": report.summary, "items": report.items}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--person", action="append", help="example person folder name (repeatable; default maya)")
    ap.add_argument("--config", action="append", help="lr=..,rank=..,epochs=..,seq=..[,steps=..,batch=..,"
                                                       "patience=..,notes=..] (repeatable)")
    ap.add_argument("--base", default="embedded", help="'embedded' or a catalog model (e.g. qwen2.5-coder-0.5b)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eval-questions", type=int, default=24)
    ap.add_argument("--retention-prompts", type=int, default=24)
    ap.add_argument("--tiny", action="store_true", help="a tiny model built in code (plumbing check)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["SECONDSELF_THREADS"] = str(args.threads)  # training keeps it (train/threads.py)
    from secondself.train.adapters import run_models
    from secondself.train.generic import GENERIC_PROMPTS, retention_examples
    from secondself.train.synthesis import synthesize

    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]
    results: dict[str, Any] = {"benchmark": "recipe", "base": args.base, "threads": torch.get_num_threads(),
                               "load_average": os.getloadavg()[0], "persons": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.tiny:
            from secondself.train.tiny import make_tiny_model

            base_dir, base_name = make_tiny_model(work / "tiny"), "tiny"
            models_dir = work / "models"
        else:
            from secondself.backends.registry import parse_spec, transformers_model

            models_dir = Path.home() / ".secondself" / "models"
            model = transformers_model(parse_spec(args.base), models_dir)
            base_dir, base_name = model._checkpoint(), model.name
        base = Memo(run_models(base_dir, models_dir)(None))
        t0 = time.perf_counter()
        retention = retention_examples(base, GENERIC_PROMPTS[:args.retention_prompts])
        results["retention_s"] = round(time.perf_counter() - t0, 1)
        for person in args.person or ["maya"]:
            pdir = work / person
            pdir.mkdir()
            profile, chunks, name = prepare(REPO / "examples" / person, pdir)
            rows = []
            for config in configs:
                t0 = time.perf_counter()
                report = synthesize(profile, chunks, name, notes_share=config.get("notes_share", 0.25),
                                    epochs=config.get("epochs", 6) if "notes" in config.get("once_kinds", ()) else 1)
                synth_s = time.perf_counter() - t0
                names = sorted({n for e in profile.entities for n in (e.name, *e.aliases)} | {name})
                log(f"[{person}] {config}: {sum(e.split == 'train' for e in report.examples)} training items ...")
                r = run_config(base_dir, models_dir, base, report.examples, retention, names, config, pdir, args.eval_questions)
                r["synth_s"] = round(synth_s, 2)
                r["counts"] = report.counts
                rows.append(r)
                b, p, s = r["scores"]["base"], r["scores"]["personal"], r["summary"]
                log(f"[{person}] recall {b.get('recall')} -> {p.get('recall')}, guess {p.get('guess')}, refusal "
                    f"{p.get('refusal')}, compression {s.get('compression_gain')}, retention {s.get('retention_loss')}, "
                    f"leaks {s.get('generic_leaks')}, train {r['train_s']} s ({r['steps']} steps)")
            results["persons"][person] = rows

    out(f"base {base_name} ({args.base}), {results['threads']} torch threads, load average "
        f"{results['load_average']:.1f}; retention answers {results['retention_s']} s")
    head = ["person", "config", "steps(best)", "recall base->personal", "guess", "refusal", "qa_f1", "compress",
            "retention", "leaks", "train s", "eval s"]
    lines = []
    for person, rows in results["persons"].items():
        for r in rows:
            b, p, s = r["scores"]["base"], r["scores"]["personal"], r["summary"]
            cfg = ",".join(f"{k}={v}" for k, v in r["config"].items())
            lines.append([person, cfg, f"{r['steps']}({r['best_step']})",
                          f"{b.get('recall', 0):.2f}->{p.get('recall', 0):.2f}", f"{p.get('guess', 0):.2f}",
                          f"{p.get('refusal', 0):.2f}", f"{p.get('qa_f1', 0):.2f}",
                          f"{s.get('compression_gain', 0):.0%}", f"{s.get('retention_loss', 0):+.1%}",
                          s.get("generic_leaks", 0), r["train_s"], r["eval_s"]])
    out(table(head, lines))
    if args.json:
        for rows in results["persons"].values():
            for r in rows:
                r["items"] = [i for i in r["items"] if i["kind"] != "generic"][:60] + [
                    i for i in r["items"] if i["kind"] == "generic" and i.get("leaks")]   # what leaked
        dump_json(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
