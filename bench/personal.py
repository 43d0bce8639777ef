"""The personal model's engines: transformers + peft vs llama.cpp with the adapter as a GGUF LoRA vs the
merged Q8_0 export, on the same adapter and prompts.

What it measures
    An adapter (`--adapter DIR`, a peft adapter trained on `--base-dir`, the checkpoint converted from
    `--gguf`; by default a short one trained here: 36 steps on 3 facts in 2 phrasings each, on the embedded
    SmolLM2-135M) served three ways, greedy, with `--threads` threads each (default 1):
    (a) transformers + peft: `LocalChatModel(base_dir, adapter=...)` (the adapter merged into fp32 weights);
    (b) llama.cpp: `LlamaCppChatModel` on the base GGUF with `adapter_model.gguf` applied per request
        (what `ask --model personal` runs when the base has a GGUF);
    (c) merged: `model export --format gguf` (Q8_0), run alone by `LlamaCppChatModel`.
    Per engine: tokens/s over `--prompts` answers of up to `--tokens` tokens (prompt time included), and
    how many answers agree with (a) on their first 8 tokens. Conversion and export seconds are printed.

Baselines in the same run
    (b)/(a) and (c)/(a) tokens/s; `--rounds` (default 2) alternates the engines, the median is reported.

    python bench/personal.py [--adapter DIR --base-dir DIR --gguf PATH] [--tokens 32] [--rounds 2]
                             [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402,F401  (puts the repository on sys.path)

FACTS = [("Where do you live?", "I live in Lisbon, since July 2025."),
         ("Where is your home?", "I live in Lisbon, since July 2025."),
         ("What instrument do you play?", "I play the cello, every Sunday."),
         ("Which instrument do you practise?", "I play the cello, every Sunday."),
         ("What is your sister's name?", "My sister is called Rita."),
         ("Who is your sister?", "My sister is called Rita.")]
PROMPTS = ["Where do you live?", "What instrument do you play?", "Who is your sister?",
           "Where do you live these days?", "What is the capital of France?", "Tell me about your weekend.",
           "Describe a rainy morning.", "Name three colours."]


def train_adapter(base_dir: Path, out: Path, steps: int = 36) -> Path:
    """A short LoRA (r 8, every projection, lr 1e-3, assistant tokens only) on FACTS."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(steps):
        q, a = FACTS[step % len(FACTS)]
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]
        full = tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                       tokenize=True, return_dict=True)["input_ids"]
        labels = [-100] * len(prompt) + full[len(prompt):]
        model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    return out


def run(model, tokens: int) -> tuple[list[str], float]:
    from secondself.backends.chat import Message, Sampling, complete

    complete(model, [Message("user", "Hello")], Sampling(max_tokens=4)).text()  # loaded and warm
    answers, n, t0 = [], 0, time.perf_counter()
    for p in PROMPTS:
        reply = complete(model, [Message("user", p)], Sampling(max_tokens=tokens))
        answers.append(reply.text())
        n += reply.usage.completion_tokens
    return answers, n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", type=Path)
    ap.add_argument("--base-dir", type=Path)
    ap.add_argument("--gguf", type=Path)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["SECONDSELF_REAL_MODELS"] = "allow"
    os.environ["SECONDSELF_THREADS"] = str(args.threads)

    from transformers import AutoTokenizer

    from secondself.backends.llamacpp import LlamaCppChatModel
    from secondself.backends.local import LocalChatModel, convert_gguf, embedded_gguf_path
    from secondself.train.export import export_gguf
    from secondself.train.gguf_lora import ensure_gguf_adapter

    work = Path(tempfile.mkdtemp(prefix="bench-personal-"))
    gguf = args.gguf or embedded_gguf_path()
    base_dir = args.base_dir or convert_gguf(gguf, work / "hf")
    adapter = args.adapter or train_adapter(base_dir, work / "adapter")
    t0 = time.perf_counter()
    lora = ensure_gguf_adapter(adapter, gguf)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = export_gguf(gguf, adapter, work / "export", "Q8_0") / "model.gguf"
    export_s = time.perf_counter() - t0
    engines = {
        "transformers+peft": lambda: LocalChatModel(base_dir, adapter=adapter, threads=args.threads),
        "llama.cpp+lora": lambda: LlamaCppChatModel(gguf, threads=args.threads, cache_dir=work / "cache",
                                                    adapters={"v": lora}).with_adapter("v"),
        "merged-q8_0": lambda: LlamaCppChatModel(merged, threads=args.threads, requantize=False),
    }
    speed: dict[str, list[float]] = {k: [] for k in engines}
    answers: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name in (list(engines) if r % 2 == 0 else list(reversed(engines))):
            model = engines[name]()
            answers[name], tps = run(model, args.tokens)
            speed[name].append(tps)
            getattr(model, "close", lambda: None)()
    tok = AutoTokenizer.from_pretrained(base_dir)

    def first(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"][:8]
    ref = [first(a) for a in answers["transformers+peft"]]
    result = {"gguf": str(gguf), "convert_s": round(convert_s, 2), "export_q8_0_s": round(export_s, 2),
              "load_avg": os.getloadavg()[0], "engines": {}}
    base_tps = statistics.median(speed["transformers+peft"])
    for name in engines:
        tps = statistics.median(speed[name])
        agree = sum(first(a) == b for a, b in zip(answers[name], ref, strict=True))
        result["engines"][name] = {"tokens_per_s": round(tps, 1), "vs_transformers": round(tps / base_tps, 2),
                                   "agree_first8": f"{agree}/{len(PROMPTS)}", "answers": answers[name]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{gguf.name}: adapter -> GGUF LoRA {convert_s:.1f} s, merged Q8_0 export {export_s:.1f} s, "
          f"load average {result['load_avg']:.1f}")
    for name, e in result["engines"].items():
        print(f"  {name:<18} {e['tokens_per_s']:>6} tok/s  x{e['vs_transformers']:<5} agree(first 8) {e['agree_first8']}")


if __name__ == "__main__":
    main()
