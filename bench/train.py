"""LoRA training throughput: packed + masked rows vs the padded, unpacked baseline.

What it measures
    `secondself.train.sft.train` on the embedded SmolLM2-135M-Instruct (the checkpoint LocalChatModel
    converts from the bundled GGUF; CPU fp32, CUDA bf16 if present), `--steps` optimizer steps (default 8)
    of `--batch-size` rows (4) x `--seq-len` tokens (256), LoRA rank `--rank` (8) on all linear layers.
    Data: the example person's journal (examples/maya/corpus/journal/*.md) cut at its `##` headings into
    question/answer pairs ("Tell me about <heading>" -> the section) and plain-text paragraphs: a few
    hundred examples of 10-300 tokens, the length mix that synthesized samples have.
    - s/step: mean seconds per optimizer step over steps 2..N (step 1 warms up and is not counted);
    - supervised tokens/s: targets trained per second (what learning is paid for);
    - all tokens/s: non-padding tokens (prompt + completion) per second;
    - fill: non-padding share of the positions computed.

Runs (same data, same model and settings)
    - packed: the trainer's defaults — packed rows, and on a CPU with bf16 instructions (AVX512-BF16 or
      AMX) bf16 matrix products under fp32 weights (`TrainConfig.autocast`);
    - packed fp32: packed rows, fp32 products (what packing alone gives);
    - padded (the baseline): `packing=False`, fp32: one example per row, each batch padded to its longest
      row (the usual HF collator).
    "packed / padded" is the ratio of supervised tokens/s; goal >= 1.5x. The runs rotate their order from
    round to round (`--rounds`, default 1) so that machine drift hits all alike.

How to read it
    Absolute times depend on the machine and its load (a shared 2-core CPU is slow and noisy); compare the
    ratio. Peak RSS is this process's (both runs). `--tiny` runs the same code on a tiny model built in
    code (plumbing check, seconds). Reports, never asserts.

    python bench/train.py [--steps 8] [--batch-size 4] [--seq-len 256] [--rank 8] [--threads N] [--tiny] [--json]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, dump_json, fmt_ratio, log, ratio, table  # noqa: E402

from secondself.progress import Progress  # noqa: E402
from secondself.train.sft import TrainConfig, train  # noqa: E402
from secondself.types import TrainingExample  # noqa: E402

SYSTEM = "You are Maya Lindqvist. Answer as yourself, from your own memories."

def _bf16_cpu() -> bool:
    from secondself.train.sft import _resolve_autocast

    return _resolve_autocast(None, "cpu", "float32")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def journal_examples() -> list[TrainingExample]:
    out = []
    for path in sorted((MAYA / "corpus" / "journal").glob("*.md")):
        text = re.sub(r"^---\n.*?\n---\n", "", path.read_text(encoding="utf-8"), flags=re.S)
        for section in re.split(r"\n(?=## )", text):
            lines = section.strip().splitlines()
            if not lines:
                continue
            heading = lines[0].lstrip("#").strip()
            body = "\n".join(lines[1:]).strip()
            if not body:
                continue
            question = f"Tell me about {heading.lower()} ({path.stem})."
            out.append(TrainingExample("self_qa", (("system", SYSTEM), ("user", question)), body))
            out += [TrainingExample("notes", (), p.strip()) for p in body.split("\n\n") if len(p.split()) >= 8]
    return out


def tiny_model(folder: Path, texts: list[str]) -> Path:
    from secondself.train.tiny import make_tiny_model

    return make_tiny_model(folder, texts, vocab_size=2000)


def run(base: Path, examples: list[TrainingExample], config: TrainConfig, work: Path, label: str) -> dict:
    seen: list[dict] = []

    def progress(p: Progress) -> None:
        seen.append({**p.info, "step": p.done, "steps": p.total, "t": time.perf_counter()})
        log(f"  {label} step {p.done}/{p.total}: loss {p.info['loss']:.3f}")

    t0 = time.perf_counter()
    result = train(base, examples, work / f"out-{label}", config, run_dir=work / f"run-{label}",
                   on_progress=progress)
    total = time.perf_counter() - t0
    first, last = seen[0], seen[-1]
    seconds = last["t"] - first["t"]
    steps = last["step"] - first["step"]
    return {"steps": len(seen), "s_per_step": seconds / steps, "final_loss": result.final_loss,
            "supervised_per_s": (last["tokens"] - first["tokens"]) / seconds,
            "all_per_s": (last["tokens_all"] - first["tokens_all"]) / seconds,
            "fill": last["tokens_all"] / last["positions"], "supervised_per_step": last["tokens"] / len(seen),
            "rank_reason": result.rank_reason, "call_s": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1, help="repeat both runs, alternating their order")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model built in code (plumbing check)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["SECONDSELF_THREADS"] = str(args.threads)  # training keeps it (train/threads.py)
    examples = journal_examples()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.tiny:
            base, name = tiny_model(work / "tiny", [e.completion for e in examples]), "tiny Llama (in code)"
        else:
            from secondself.backends.local import LocalChatModel

            model = LocalChatModel(None)
            base, name = model._checkpoint(), model.name
        from transformers import AutoTokenizer

        from secondself.train.sft import encode

        tokenizer = AutoTokenizer.from_pretrained(base)
        lengths = sorted(len(encode(tokenizer, e)[0]) for e in examples)
        config = TrainConfig(rank=args.rank, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                             checkpoint_every=10_000, warmup_steps=2)
        kinds = {"packed": {}, "packed fp32": {"autocast": False}, "padded": {"packing": False, "autocast": False}}
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            order = list(kinds)[::-1] if r % 2 == 0 else list(kinds)
            for label in order:
                log(f"round {r + 1}/{args.rounds}: {label} ...")
                runs[label].append(run(base, examples, TrainConfig(**{**config.__dict__, **kinds[label]}),
                                       work, f"{label.replace(' ', '-')}-{r}"))

    def mean(label: str, key: str) -> float:
        return sum(x[key] for x in runs[label]) / len(runs[label])

    result = {
        "benchmark": "train", "model": name, "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "examples": len(examples), "example_tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2],
                                                      "max": lengths[-1], "total": sum(lengths)},
        "config": {"steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len, "rank": args.rank},
        **{label: {k: mean(label, k) for k in ("s_per_step", "supervised_per_s", "all_per_s", "fill",
                                                "supervised_per_step", "final_loss")} for label in runs},
        "bf16_products": TrainConfig().autocast is not False and _bf16_cpu(),
        "rounds": args.rounds, "rss_mb": peak_rss_mb(),
    }
    result["packed_vs_padded"] = ratio(result["packed"]["supervised_per_s"], result["padded"]["supervised_per_s"])
    result["packed_fp32_vs_padded"] = ratio(result["packed fp32"]["supervised_per_s"],
                                            result["padded"]["supervised_per_s"])
    result["goal_met"] = bool(result["packed_vs_padded"] and result["packed_vs_padded"] >= 1.5)

    out(f"{name} on {result['device']}, {result['threads']} torch threads, load average "
        f"{result['load_average']:.1f}; {len(examples)} examples of {lengths[0]}-{lengths[-1]} tokens "
        f"(median {lengths[len(lengths) // 2]}); batch {args.batch_size} x {args.seq_len}, rank {args.rank}, "
        f"{args.steps} steps")
    rows = []
    for label in runs:
        x = result[label]
        rows.append([f"{label}{' (baseline)' if label == 'padded' else ''}", f"{x['s_per_step']:.2f}",
                     f"{x['supervised_per_s']:.0f}", f"{x['all_per_s']:.0f}", f"{x['fill']:.0%}",
                     f"{x['supervised_per_step']:.0f}"])
    out(table(["rows", "s/step", "supervised tok/s", "all tok/s", "fill", "supervised/step"], rows))
    out(f"\npacked / padded supervised tokens/s: {fmt_ratio(result['packed_vs_padded'])} "
        f"(goal >= 1.5x: {'met' if result['goal_met'] else 'NOT met'}; bf16 products: "
        f"{'yes' if result['bf16_products'] else 'no, this CPU lacks bf16 instructions'}); packed fp32 / padded: "
        f"{fmt_ratio(result['packed_fp32_vs_padded'])}; peak RSS {result['rss_mb']:.0f} MB")
    if args.json:
        dump_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
