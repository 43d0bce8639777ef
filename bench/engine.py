"""Chat engines on the same GGUF: today's transformers path vs raw llama.cpp vs our llama.cpp backend.

What it measures
    For each GGUF (default: the embedded SmolLM2-135M; `--gguf PATH` repeatable), three engines, each in
    its own child process (so peak RSS is that engine's alone), greedy, the same prompts:
    (a) transformers: `LocalChatModel` (the GGUF converted once to an fp32 checkpoint, torch's threads);
    (b) raw: `xllamacpp.Server` with llama.cpp's defaults and no secondself code around it;
    (c) ours: `LlamaCppChatModel` (its Q8_0 copy of Q4_1/Q5_1 files, its batch sizes, the Response
        wrapper with stop-string handling).
    Per engine: tokens/s on `--prompts` short prompts with `--tokens` new tokens (prompt time included,
    tokens as the model's tokenizer counts the reply), time to first token (TTFT) on a ~500-token prompt
    (a slice of the example person's notes, with a distinct first line each time so no engine reuses a
    cached prefix), load seconds, and the child's peak RSS (VmHWM).
    Threads: with `--threads N` every engine uses N. Without it, each runs as the product would: (a)
    torch's default, (c) its own choice (`pick_threads()`, the cores free at load), and (b) the count
    `pick_threads()` gave in the parent just before.

Baselines in the same run
    (c)/(a) and (c)/(b) ratios of tokens/s, TTFT and peak RSS. `--rounds` (default 2) repeats the three
    children in alternating order; the median of the rounds is reported. Goals (issue 12): tokens/s
    (c)/(a) >= 6 and (c)/(b) >= 0.9; TTFT (c)/(a) <= 1; RSS (c)/(a) <= 1/3.
    `--load` keeps one extra process busy on one core during the measurement (a machine in use).

    python bench/engine.py [--gguf PATH ...] [--tokens 128] [--prompts 3] [--rounds 2] [--threads N]
                           [--load] [--skip transformers] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, dump_json, fmt_ratio, log, ratio, table  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old.",
    "Give me ten tips for learning to play the cello as an adult.",
    "Describe a walk through Lisbon on a rainy winter morning.",
    "What are the pros and cons of working from home? Answer in detail.",
]
ENGINES = ("transformers", "raw", "ours")
LONG_WORDS = 380  # about 500 tokens with the chat template around it


def long_prompt(i: int) -> list[dict[str, str]]:
    words: list[str] = []
    for path in sorted((MAYA / "corpus").rglob("*.md")):
        words += path.read_text("utf-8", "replace").split()
        if len(words) >= LONG_WORDS:
            break
    return [{"role": "system", "content": f"Session {i}. You summarize notes."},
            {"role": "user", "content": " ".join(words[:LONG_WORDS]) + "\n\nSummarize these notes in one sentence."}]


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which belongs to this process image (ru_maxrss would carry over
    the parent's peak across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- children: one engine each ------------------------------------------------------------------------

def _secondself_engine(kind: str, gguf: str, threads: int | None, cache: str):
    from secondself.backends.chat import Message, Sampling, complete

    if kind == "transformers":
        from secondself.backends.local import LocalChatModel, embedded_gguf_path

        embedded = Path(gguf) == embedded_gguf_path()
        model = LocalChatModel(None if embedded else gguf, cache_dir=cache, threads=threads)
    else:
        from secondself.backends.llamacpp import LlamaCppChatModel

        model = LlamaCppChatModel(gguf, threads=threads, cache_dir=cache)  # None: its own choice

    def run(messages: list[dict[str, str]], tokens: int) -> tuple[float | None, float, int, str]:
        reply = complete(model, [Message(m["role"], m["content"]) for m in messages], Sampling(max_tokens=tokens))
        text = reply.text()
        return reply.ttft_s, reply.seconds or 0.0, model.count_tokens(text), text

    return run, model


def _raw_engine(gguf: str, threads: int):
    import xllamacpp

    p = xllamacpp.CommonParams()  # llama.cpp's defaults, except what a chat app must set
    p.model.path = gguf
    p.n_ctx = 4096
    p.n_parallel = 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.verbosity = -1
    server = xllamacpp.Server(p)

    def run(messages: list[dict[str, str]], tokens: int) -> tuple[float | None, float, int, str]:
        t0, first, parts, usage = time.perf_counter(), None, [], {}

        def on_chunk(chunk: dict) -> bool:
            nonlocal first
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter() - t0
                    parts.append(piece)
            usage.update(chunk.get("usage") or {})
            return False

        server.handle_chat_completions({"messages": messages, "max_tokens": tokens, "temperature": 0.0,
                                        "stream": True, "stream_options": {"include_usage": True}}, on_chunk)
        return first, time.perf_counter() - t0, int(usage.get("completion_tokens", 0)), "".join(parts)

    return run, server


def child(kind: str, gguf: str, threads: int | None, tokens: int, prompts: int, cache: str, seq: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    if kind == "raw":
        run, keep = _raw_engine(gguf, threads or 1)
    else:
        run, keep = _secondself_engine(kind, gguf, threads, cache)
    run([{"role": "user", "content": "hi"}], 2)  # loads the weights
    load_s = time.perf_counter() - t0
    run([{"role": "user", "content": PROMPTS[-1]}], tokens)  # warm-up
    rows = [run([{"role": "user", "content": p}], tokens) for p in (PROMPTS[:-1] * prompts)[:prompts]]
    ttfts = [run(long_prompt(seq * 10 + i), 8)[0] for i in range(2)]
    n, seconds = sum(r[2] for r in rows), sum(r[1] for r in rows)
    where = getattr(keep, "where", "llama.cpp defaults")
    return {"engine": kind, "load_s": load_s, "tokens": n, "tokens_per_s": n / seconds if seconds else 0.0,
            "ttft_long_s": statistics.median(t for t in ttfts if t is not None), "rss_mb": peak_rss_mb(),
            "where": where, "threads": threads, "texts": [r[3] for r in rows]}


def run_child(kind: str, gguf: str, threads: int | None, args: argparse.Namespace, cache: str, seq: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--gguf", gguf, "--tokens", str(args.tokens),
           "--prompts", str(args.prompts), "--cache", cache, "--seq", str(seq)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} child failed on {gguf}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- parent --------------------------------------------------------------------------------------------

def measure(gguf: str, args: argparse.Namespace, threads: int, cache: str) -> dict:
    from secondself.backends.gguf_files import requantized_copy

    t0 = time.perf_counter()
    copy = requantized_copy(gguf, cache)  # once, before timing: a one-time cost, reported apart
    convert_s = time.perf_counter() - t0 if copy != Path(gguf) else 0.0
    engines = [e for e in ENGINES if e not in args.skip]
    if "transformers" in engines:  # its one-time GGUF -> fp32 checkpoint conversion, also before timing
        from secondself.backends.local import LocalChatModel, embedded_gguf_path

        _ = LocalChatModel(None if Path(gguf) == embedded_gguf_path() else gguf, cache_dir=cache).context_window
    rounds: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(args.rounds):
        for kind in (engines if r % 2 == 0 else engines[::-1]):
            log(f"{Path(gguf).name}: round {r + 1}/{args.rounds}, {kind} ...")
            rounds[kind].append(run_child(kind, gguf, threads if kind == "raw" else args.threads,
                                          args, cache, seq=r * 10 + engines.index(kind)))
    result = {"gguf": gguf, "q8_0_copy_s": convert_s, "engines": {}}
    for kind, runs in rounds.items():
        result["engines"][kind] = {key: statistics.median(run[key] for run in runs)
                                   for key in ("load_s", "tokens_per_s", "ttft_long_s", "rss_mb")}
        result["engines"][kind]["where"] = runs[-1]["where"]
    e = result["engines"]
    c = e.get("ours")
    for base in ("transformers", "raw"):
        if c and base in e:
            result[f"ours_vs_{base}"] = {
                "tokens_per_s": ratio(c["tokens_per_s"], e[base]["tokens_per_s"]),
                "ttft_long": ratio(c["ttft_long_s"], e[base]["ttft_long_s"]),
                "rss": ratio(c["rss_mb"], e[base]["rss_mb"])}
    if "raw" in rounds and "ours" in rounds:
        same = sum(a == b for a, b in zip(rounds["raw"][-1]["texts"], rounds["ours"][-1]["texts"], strict=True))
        result["same_text_raw_ours"] = f"{same}/{len(rounds['ours'][-1]['texts'])}"
    return result


def report(result: dict, out) -> None:
    e = result["engines"]
    out(f"\n{result['gguf']}")
    if result["q8_0_copy_s"]:
        out(f"(one-time Q8_0 copy for ours: {result['q8_0_copy_s']:.1f} s)")
    out(table(["engine", "where", "load s", "TTFT ~500 tok s", "tokens/s", "peak RSS MB"], [
        [k, v["where"], f"{v['load_s']:.1f}", f"{v['ttft_long_s']:.2f}", f"{v['tokens_per_s']:.1f}",
         f"{v['rss_mb']:.0f}"] for k, v in e.items()]))
    for base, goal in (("transformers", "goals: tokens/s >= 6x, TTFT <= 1x, RSS <= 0.33x"),
                       ("raw", "goal: tokens/s >= 0.9x")):
        r = result.get(f"ours_vs_{base}")
        if r:
            out(f"ours / {base}: tokens/s {fmt_ratio(r['tokens_per_s'])}, TTFT {fmt_ratio(r['ttft_long'])}, "
                f"peak RSS {fmt_ratio(r['rss'])}   ({goal})")
    if "same_text_raw_ours" in result:
        out(f"identical greedy replies raw vs ours: {result['same_text_raw_ours']} (ours runs a Q8_0 copy of "
            "Q4_1/Q5_1 files, so small differences are expected there)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", action="append", help="a GGUF file (repeatable; default: the embedded 135M)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="threads for every engine (default: see above)")
    ap.add_argument("--load", action="store_true", help="keep one core busy with another process meanwhile")
    ap.add_argument("--skip", action="append", default=[], choices=ENGINES)
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--seq", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.gguf[0], args.threads, args.tokens, args.prompts, args.cache,
                               args.seq)))
        return 0
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print
    from secondself.backends.llamacpp import pick_threads
    from secondself.backends.local import embedded_gguf_path

    ggufs = args.gguf or [str(embedded_gguf_path())]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        if busy:
            time.sleep(1.0)  # let the scheduler see it before threads are picked
        threads = args.threads or pick_threads()
        results = {"benchmark": "engine", "threads": threads, "load": args.load, "tokens": args.tokens,
                   "load_average_before": os.getloadavg()[0], "models": []}
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as cache:
            for gguf in ggufs:
                results["models"].append(measure(gguf, args, threads, cache))
        results["load_average_after"] = os.getloadavg()[0]
    finally:
        if busy:
            busy.kill()
            busy.wait()
    out(f"greedy, {args.tokens} new tokens, {args.prompts} prompts, {args.rounds} rounds; llama.cpp threads "
        f"{threads}{' (one core kept busy by another process)' if args.load else ''}; load average "
        f"{results['load_average_before']:.1f} -> {results['load_average_after']:.1f}")
    for result in results["models"]:
        report(result, out)
    if args.json:
        dump_json(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
