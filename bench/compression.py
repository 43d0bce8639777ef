"""How far can a LoRA on the person's own notes compress their *other* notes? The ceiling of issue 13's
"memory compression gain >= 20%" on a base model.

What it measures
    For each example person (`--person`, default maya; heldout and blind were not developed on) the corpus
    is ingested and layer 1 built as in `bench/recipe.py`, and the training data synthesized as `secondself
    train` does. Then a LoRA (rank `--rank`, every linear layer, as `train`) is trained on the *training
    notes only* (the person's own text, encoded and packed in rows of 256 tokens by the training code, 4 rows
    a step, the same loss, AdamW at a constant `--lr` after 3 warm-up steps) for `--passes` passes, and after each pass the bits per UTF-8 byte of the
    *held-out notes* (the text `secondself eval` measures compression on) are measured with
    `train.losses.bits_per_byte`, the same code as `eval`. Nothing but notes is trained: no questions, no
    anchor. This is an upper bound for what the notes can teach the model about the person's other notes at
    that rate and rank; the default recipe (`bench/recipe.py`) trains each note once among the questions.

Baseline (same run): the base model's bits per byte on the same held-out notes; gain = 1 - personal/base.

How to read it
    The best pass is the ceiling at that rate and rank (it overfits after it: the held-out figure rises).
    `--base qwen2.5-coder-0.5b` measures another base from the model ladder (its GGUF, dequantized, as
    `bench/recipe.py`). Times depend on the machine and its load (use `--threads`). Reports, never asserts.

    python bench/compression.py [--person maya] [--passes 6] [--lr 1e-3] [--rank 8] [--base embedded]
                               [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, dump_json, log, table  # noqa: E402
from recipe import prepare  # noqa: E402

SEQ, BATCH, WARMUP = 256, 4, 3


def ceiling(base_dir: Path, train: list[Any], held: list[str], passes: int, lr: float, rank: int) -> dict[str, Any]:
    """Notes-only LoRA, pass by pass: held-out bits per byte after each pass, and the base's. `train`: the
    training notes (TrainingExamples), encoded and packed as `secondself train` does."""
    import torch
    from peft import LoraConfig, get_peft_model

    from secondself.train.data import IGNORE, TARGET_MODULES, encode, pack
    from secondself.train.losses import _collate, _step_loss, bits_per_byte
    from secondself.train.models import _products, _resolve_autocast, load_model

    model, tok = load_model(base_dir)
    base_bpb = bits_per_byte(model, tok, held)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(TARGET_MODULES),
                                             task_type="CAUSAL_LM", bias="none"))
    rows = pack([encode(tok, e) for e in train], SEQ, tok.pad_token_id or tok.eos_token_id or 0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    bf16 = _resolve_autocast(None, "cpu", "float32")
    step, t0, out = 0, time.perf_counter(), []
    for n in range(1, passes + 1):
        model.train()
        random.Random(n).shuffle(rows)
        for i in range(0, len(rows), BATCH):
            batch = rows[i:i + BATCH]
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / WARMUP)
            with _products(bf16):
                loss = _step_loss(model, _collate(batch, True, "cpu"),
                                  max(1, sum(x != IGNORE for r in batch for x in r.labels[1:])))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad()
            step += 1
        b = bits_per_byte(model, tok, held)
        out.append({"pass": n, "steps": step, "seconds": round(time.perf_counter() - t0, 1), "bpb": round(b, 4),
                    "gain": round(1 - b / base_bpb, 4)})
        log(f"  pass {n}: held-out notes {b:.4f} bits/byte, gain {1 - b / base_bpb:.1%} ({out[-1]['seconds']} s)")
    return {"base_bpb": round(base_bpb, 4), "passes": out, "train_notes": len(train), "heldout_notes": len(held),
            "train_bytes": sum(len(e.completion.encode()) for e in train),
            "heldout_bytes": sum(len(t.encode()) for t in held)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--person", action="append", help="example person folder name (repeatable; default maya)")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--base", default="embedded", help="'embedded' or a catalog model (e.g. qwen2.5-coder-0.5b)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from secondself.backends.registry import parse_spec, transformers_model
    from secondself.train.synthesis import synthesize

    base_dir = transformers_model(parse_spec(args.base), Path.home() / ".secondself" / "models")._checkpoint()
    results: dict[str, Any] = {"benchmark": "compression", "base": args.base, "lr": args.lr, "rank": args.rank,
                               "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0], "persons": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for person in args.person or ["maya"]:
            pdir = Path(tmp) / person
            pdir.mkdir()
            profile, chunks, name = prepare(REPO / "examples" / person, pdir)
            examples = synthesize(profile, chunks, name, epochs=6).examples   # as `train`: notes once in 6 epochs
            notes = {s: [e for e in examples if e.kind == "notes" and e.split == s] for s in ("train", "heldout")}
            log(f"[{person}] {len(notes['train'])} training notes, {len(notes['heldout'])} held out ...")
            results["persons"][person] = ceiling(base_dir, notes["train"], [e.completion for e in notes["heldout"]],
                                                 args.passes, args.lr, args.rank)
    if args.json:
        dump_json(results)
        return 0
    rows = []
    for person, r in results["persons"].items():
        best = min(r["passes"], key=lambda p: p["bpb"])
        rows.append([person, f"{r['train_notes']} ({r['train_bytes']:,} B)", f"{r['heldout_notes']} "
                     f"({r['heldout_bytes']:,} B)", f"{r['base_bpb']:.4f}",
                     " ".join(f"{p['gain']:.1%}" for p in r["passes"]), f"{best['gain']:.1%} (pass {best['pass']})"])
    print(f"{args.base}: notes-only LoRA rank {args.rank}, lr {args.lr:g}, {results['threads']} torch threads, load average "
          f"{results['load_average']:.1f}")
    print(table(["person", "trained notes", "held-out notes", "base bits/byte", "gain after each pass", "ceiling"],
                rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
