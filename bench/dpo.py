"""DPO without a judge vs SFT alone: refusal, grounding and closed-book QA of the personal model, one run.

What it measures
    The example person (examples/maya) is ingested (hashing embedder) and layer 1 built with the template
    teacher (no model), then synthesized into training items (`train/synthesis.py`, the current recipe).
    1. SFT: `sft.train` on the `train` split, `--sft-steps` steps at the pipeline's learning rate
       (`TrainOptions().learning_rate`), no retention data.
    2. Pairs: `pairs.build_pairs` — the base model drafts (temperature 0.9, 2 per prompt, `--prompts` items
       per source), only drafts that fail their check are kept, plus the constructed disclosure/critique ones.
       `--drafts sft`: the SFT adapter drafts instead (on-policy: the pairs hold its own failures).
    3. DPO: `dpo.train` on the SFT adapter (`--beta`, `--lr`, `--epochs`, `--reference`, `--nll`).
    Then the SFT adapter and the SFT+DPO adapter (and with `--with-base` the base) answer the same questions
    greedily, closed book (the persona's system line and the question, no retrieval, 40 tokens):
    - recall: held-out wordings of trained facts (split "heldout"), share whose answer `contains_match`es
      the reference (token F1 where that function is absent), and `qa_f1`;
    - trained: the same on (a sample of) the trained wordings; unseen: on facts held out whole (a guess rate);
    - refusal: questions no memory answers — the synthesized ones never trained on plus the bench's own
      (`EXTRA_UNANSWERABLE`, those whose words occur nowhere in the corpus) — share answered "I don't know";
      `refusal_trained` on the trained ones;
    - grounding: share of answers to the recall/trained/unseen questions that the support check keeps
      (`pairs.grounding_problem`: no number or name outside the item's memories, question and reference);
      `over_refusal`: share of those answerable questions answered "I don't know";
    - disclosure / critique: share of enhance / critic items (all splits) whose output passes the bridge's
      check (`pairs.check_for`, i.e. `check_rewrite` / `check_feedback`).

Baseline (same run): the SFT adapter the DPO stage starts from. "DPO−SFT" is the gain.

How to read it
    Small sets (a few dozen questions each): a difference of one answer is several points. `--work DIR`
    keeps the store, the synthesized items, the SFT adapter, the pairs and each model's answers, so a second
    run with other DPO settings retrains and re-asks only DPO. `--tiny` runs the plumbing on the tiny in-code model (seconds,
    meaningless numbers). Reports, never asserts.

    python bench/dpo.py [--work DIR] [--sft-steps 60] [--prompts 24] [--drafts base|sft] [--beta 0.1] [--lr 1e-4]
                        [--epochs 2] [--reference sft|base] [--nll 0] [--with-base] [--threads 1] [--tiny] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, dump_json, log, table  # noqa: E402

from secondself.backends.chat import Message, Sampling, complete  # noqa: E402
from secondself.evaluation import token_f1  # noqa: E402
from secondself.persona import IDK  # noqa: E402
from secondself.train.evaluate import refused  # noqa: E402
from secondself.types import TrainingExample  # noqa: E402

try:
    from secondself.evaluation import contains_match  # noqa: E402
except ImportError:   # before the closed-book evaluation (issue 13, item 2)
    def contains_match(prediction: str, reference: str, question: str = "") -> bool:
        return token_f1(prediction, reference) >= 0.5

QA_KINDS = ("self_qa", "preference_qa", "people", "events")
EXTRA_UNANSWERABLE = (
    ("What is your mother's maiden name?", ("maiden",)), ("What's your favourite ice cream flavour?", ("ice cream",)),
    ("What is your phone number?", ("phone number",)), ("Do you own a motorbike?", ("motorbike", "motorcycle")),
    ("What is your favourite band?", ("band",)), ("Have you ever been to Japan?", ("japan", "tokyo", "kyoto")),
    ("What did you have for breakfast today?", ("breakfast",)), ("What is your middle name?", ("middle name",)),
    ("Do you speak Italian?", ("italian", "italy")), ("Do you have a garden?", ("garden",)),
    ("Who is your dentist?", ("dentist",)), ("What is your favourite book?", ("book", "novel")),
    ("Do you play tennis?", ("tennis",)), ("What is your favourite season?", ("season",)),
    ("How tall are you?", ("tall", "height")), ("What is your favourite beer?", ("beer",)),
)


def prepare(work: Path, tiny: bool) -> tuple[Path, object, dict, object]:
    """(base checkpoint dir, base chat model, chunks by id, profile) for the example person."""
    from secondself.backends.chat import FakeChatModel
    from secondself.backends.embedders import HashingEmbedder
    from secondself.backends.local import LocalChatModel
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.memory.versions import load_version
    from secondself.store import Store

    db = work / "memory.sqlite3"
    if not db.is_file():
        with Store(db) as s:
            ingest(s, HashingEmbedder(128), [MAYA / "corpus"], source_name="maya", person_name="Maya")
            build(s, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
    with Store(db) as s:
        profile, chunks = load_version(s), {c.id: c for c in s.all_chunks()}
    if tiny:
        from secondself.train.tiny import make_tiny_model

        base_dir = make_tiny_model(work / "tiny") if not (work / "tiny" / "config.json").is_file() else work / "tiny"
        return base_dir, LocalChatModel(base_dir), chunks, profile
    base = LocalChatModel(None)
    return base._checkpoint(), base, chunks, profile


def questions(examples: list[TrainingExample], chunks: dict, args: argparse.Namespace) -> dict[str, list]:
    """The evaluation sets (see the module docstring), each a list of TrainingExample."""
    def spread(items: list, n: int) -> list:
        return items if len(items) <= n else [items[i * len(items) // n] for i in range(n)]

    system = next(e.prompt[0][1] for e in examples if e.kind in QA_KINDS and e.prompt[0][0] == "system")
    corpus = "\n".join(c.text for c in chunks.values()).casefold()
    extra = [TrainingExample("unanswerable", (("system", system), ("user", q)), IDK, (), "bench")
             for q, terms in EXTRA_UNANSWERABLE if not any(re.search(rf"\b{re.escape(t)}\b", corpus) for t in terms)]
    qa = [e for e in examples if e.kind in QA_KINDS]
    return {
        "recall": spread([e for e in qa if e.split == "heldout"], args.max_questions),
        "trained": spread([e for e in qa if e.split == "train"], args.max_questions // 2),
        "unseen": spread([e for e in qa if e.split == "unseen"], args.max_questions // 2),
        "refusal": [e for e in examples if e.kind == "unanswerable" and e.split != "train"] + extra,
        "refusal_trained": spread([e for e in examples if e.kind == "unanswerable" and e.split == "train"], 8),
        "disclosure": [e for e in examples if e.kind == "enhance"],
        "critique": [e for e in examples if e.kind == "critic"],
    }


def answers(model: object, name: str, sets: dict[str, list], work: Path) -> dict[str, str]:
    """Greedy answers of `model` to every question, cached in work/answers-<name>.json by prompt."""
    path = work / f"answers-{name}.json"
    cache = json.loads(path.read_text()) if path.is_file() else {}
    todo = [e for items in sets.values() for e in items if json.dumps(e.prompt) not in cache]
    t0 = time.perf_counter()
    for i, e in enumerate(todo):
        cache[json.dumps(e.prompt)] = complete(model, [Message(r, t) for r, t in e.prompt],
                                               Sampling(max_tokens=40)).text().strip()
        if (i + 1) % 20 == 0:
            log(f"  {name}: {i + 1}/{len(todo)} answers, {time.perf_counter() - t0:.0f} s")
            path.write_text(json.dumps(cache))
    path.write_text(json.dumps(cache))
    return cache


def score(sets: dict[str, list], said: dict[str, str], chunks: dict, profile: object) -> dict[str, float]:
    from secondself.train.pairs import check_for

    def a(e: TrainingExample) -> str:
        return said[json.dumps(e.prompt)]

    def share(flags: list[bool]) -> float:
        return round(sum(flags) / len(flags), 3) if flags else float("nan")

    out: dict[str, float] = {}
    for name in ("recall", "trained", "unseen"):
        items = sets[name]
        out[name] = share([contains_match(a(e), e.completion, e.prompt[-1][1]) for e in items])
        out[f"{name}_f1"] = round(sum(token_f1(a(e), e.completion) for e in items) / max(1, len(items)), 3)
    out["refusal"] = share([refused(a(e)) for e in sets["refusal"]])
    out["refusal_trained"] = share([refused(a(e)) for e in sets["refusal_trained"]])
    answerable = sets["recall"] + sets["trained"] + sets["unseen"]
    kept = []
    for e in answerable:
        check = check_for("grounding", e, chunks=chunks, profile=profile, person="Maya")
        if check is not None:
            kept.append(not check(a(e)))
    out["grounding"] = share(kept)
    out["over_refusal"] = share([refused(a(e)) for e in answerable])
    for source in ("disclosure", "critique"):
        passed = []
        for e in sets[source]:
            check = check_for(source, e, chunks=chunks, profile=profile, person="Maya")
            if check is not None:
                passed.append(not check(a(e)))
        out[source] = share(passed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="keep the store, adapters, pairs and answers here (reused)")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--prompts", type=int, default=24, help="training items per pair source")
    ap.add_argument("--drafts", choices=("base", "sft"), default="base",
                    help="who drafts the rejected answers: the base model (as `train --dpo`) or the SFT adapter "
                         "(on-policy: its own failures)")
    ap.add_argument("--pairs-tag", help="use work/pairs<TAG>.jsonl (a pairs file made or edited beforehand)")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=None, help="DPO learning rate (default: DPOConfig's)")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--reference", choices=("sft", "base"), default="sft")
    ap.add_argument("--nll", type=float, default=0.0, help="weight of the chosen answers' cross-entropy")
    ap.add_argument("--max-questions", type=int, default=30)
    ap.add_argument("--with-base", action="store_true", help="also score the base model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    import torch

    from secondself.backends.local import LocalChatModel
    from secondself.train import dpo, sft
    from secondself.train.pairs import build_pairs, load_pairs, sample_drafts, save_pairs
    from secondself.train.pipeline import TrainOptions, load_examples
    from secondself.train.synthesis import synthesize

    torch.set_num_threads(args.threads)
    base_dir, base, chunks, profile = prepare(work, args.tiny)
    data = work / "dataset.jsonl"      # the items of the first run: later runs ask the same questions
    if not data.is_file():
        data.write_text("".join(json.dumps(asdict(e), ensure_ascii=False) + "\n"
                                for e in synthesize(profile, chunks, "Maya", seed=0).examples))
    examples = load_examples(data)
    times: dict[str, float] = {}

    sft_dir = work / "sft"
    if not (sft_dir / "adapter_config.json").is_file():
        t0 = time.perf_counter()
        lr = TrainOptions().learning_rate
        r = sft.train(base_dir, examples, sft_dir, sft.TrainConfig(steps=args.sft_steps, learning_rate=lr),
                      run_dir=work / "sft-run")
        times["sft_s"] = round(time.perf_counter() - t0, 1)
        log(f"SFT: {r.steps} steps at lr {lr:g}, rank {r.rank}, loss {r.losses[0]:.3f} -> {r.final_loss:.3f}, "
            f"{times['sft_s']} s")
    suffix = args.pairs_tag if args.pairs_tag is not None else "" if args.drafts == "base" else "-sft"
    pairs_file = work / f"pairs{suffix}.jsonl"
    if not pairs_file.is_file():
        t0 = time.perf_counter()
        drafter = base if args.drafts == "base" else LocalChatModel(base_dir, adapter=sft_dir)
        report = build_pairs(examples, sample_drafts(drafter, temperature=0.9, max_tokens=40), chunks=chunks,
                             profile=profile, person="Maya", prompts_per_source=args.prompts)
        save_pairs(pairs_file, report.pairs)
        (work / f"pairs{suffix}-counts.json").write_text(json.dumps(report.counts))
        times["pairs_s"] = round(time.perf_counter() - t0, 1)
    pairs = load_pairs(pairs_file)
    counts = json.loads((work / f"pairs{suffix}-counts.json").read_text())
    log(f"pairs: {len(pairs)} — " + "; ".join(f"{k}: {v}" for k, v in counts.items()))

    config = dpo.DPOConfig(beta=args.beta, epochs=args.epochs, reference=args.reference, nll_weight=args.nll,
                           **({"learning_rate": args.lr} if args.lr else {}))
    tag = (f"dpo-b{config.beta:g}-lr{config.learning_rate:g}-e{config.epochs:g}-{config.reference}-"
           f"n{config.nll_weight:g}{suffix}")
    dpo_dir = work / tag
    if not (dpo_dir / "adapter_config.json").is_file():
        result = dpo.train(base_dir, sft_dir, pairs, dpo_dir, config, run_dir=work / f"{tag}-run",
                           on_progress=lambda p: p.done % 10 == 0 and log(
                               f"  DPO step {p.done}/{p.total}: loss {p.info['loss']:.3f}, "
                               f"accuracy {p.info['accuracy']:.2f}, margin {p.info['margin']:.2f}"))
        times["dpo_s"] = result.seconds
    figures = json.loads((dpo_dir / dpo.METADATA).read_text())["result"]
    log(f"DPO ({tag}): {figures['steps']} steps, final loss {figures['final_loss']:.3f}, "
        f"accuracy {figures['accuracy']:.2f}, margin {figures['margin']:.2f}, {figures['seconds']} s")

    sets = questions(examples, chunks, args)
    log("questions: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    models = [("sft", LocalChatModel(base_dir, adapter=sft_dir)), (tag, LocalChatModel(base_dir, adapter=dpo_dir))]
    if args.with_base:
        models.insert(0, ("base", base))
    scores = {}
    for name, model in models:
        t0 = time.perf_counter()
        scores[name] = score(sets, answers(model, name, sets, work), chunks, profile)
        times[f"answers_{name}_s"] = round(time.perf_counter() - t0, 1)
    metrics = list(scores["sft"])
    names = [n for n, _ in models]
    rows = [[m, *(scores[n][m] for n in names), round(scores[tag][m] - scores["sft"][m], 3)] for m in metrics]
    out = {"work": str(work), "pairs": counts, "dpo": figures, "config": figures and json.loads(
        (dpo_dir / dpo.METADATA).read_text())["config"], "sizes": {k: len(v) for k, v in sets.items()},
        "scores": scores, "times": times}
    text = table(["metric", *(n if n != tag else "sft+dpo" for n in names), "DPO−SFT"], rows)
    text += f"\n\nDPO: {tag}; pairs {len(pairs)}; sizes {out['sizes']}; times {times}; work {work}"
    if args.json:
        log(text)
        dump_json(out)
    else:
        print(text)


if __name__ == "__main__":
    main()
