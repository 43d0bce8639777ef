"""Many persons' adapters on one llama.cpp base: time to first token with the adapter loaded or not, and memory.

What it measures
    `--persons` (default 50) persons, each with a personal model as secondself builds it
    (`LlamaCppChatModel(base, adapters={"v001": ...}).with_adapter("v001")`), all on the embedded
    SmolLM2-135M GGUF, so all share one engine (backends/llama_engine.py) that keeps at most `--max-adapters`
    (default 8) adapters loaded. The adapters are random LoRA weights written with secondself's own GGUF LoRA
    writer at the 135M's shapes, rank `--rank` (8) on every module secondself trains (q, k, v, o, gate, up,
    down): the size and shape of a real adapter, not trained ones (their effect on speed and memory is the same).

    Time to first token (TTFT, from `stream()` to the first text delta, greedy, a short question whose first
    line differs each time so no request reuses a cached prompt), `--requests` (10) of each:
    (a) base: the base model alone, no adapter loaded (the baseline);
    (b) same: the person of the previous request again (adapter loaded and already applied);
    (c) loaded: another person whose adapter is loaded (the engine holds `--max-adapters`, asked in turn):
        llama.cpp switches the applied adapter between the two requests;
    (d) evicted: a person whose adapter is not loaded: the engine restarts with it, evicting the least
        recently used (persons asked in a cycle longer than the bound, so every request misses).
    Memory: VmRSS of a child process whose engine holds k adapters (k = 0, 1 and the bound) after a request,
    (i) loaded the product's way (requests for k persons, so k restarts) and (ii) by one start with the k
    adapters (the engine's internal `_start`, what the adapters themselves take); per adapter =
    (RSS_k - RSS_0) / k, beside the adapter's file size.

    Threads: 1 (SECONDSELF_THREADS=1; the machine is shared).

    python bench/adapters.py [--persons 50] [--max-adapters 8] [--requests 10] [--rank 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, log, table  # noqa: E402

TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def make_adapters(gguf: Path, out: Path, n: int, rank: int) -> list[Path]:
    """n random adapters (seeded per person) for every layer of `gguf` on TARGETS, rank `rank`."""
    import numpy as np

    from secondself.backends.gguf_files import read_gguf
    from secondself.train.gguf_lora import write_lora_gguf

    info = read_gguf(gguf)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        tensors = {name: (rng.normal(0, 0.02, (rank, ne[0])), rng.normal(0, 0.02, (ne[1], rank)))
                   for name, ne in info.tensors.items()
                   if name.endswith(".weight") and name.split(".")[-2] in TARGETS}
        person = out / f"person{i:02d}"
        person.mkdir(parents=True, exist_ok=True)
        paths.append(write_lora_gguf(person / "adapter_model.gguf", arch=info.arch, alpha=2.0 * rank,
                                     tensors=tensors))
    return paths


def personal_models(gguf: Path, adapters: list[Path], cache: Path) -> list:
    from secondself.backends.llamacpp import LlamaCppChatModel

    return [LlamaCppChatModel(gguf, n_ctx=1024, cache_dir=cache, adapters={"v001": a}).with_adapter("v001")
            for a in adapters]


def ttft(model, i: int) -> float:
    from secondself.backends.chat import Message, Sampling

    messages = [Message("user", f"Request {i}. Where did you grow up, and what do you do on weekends?")]
    t0 = time.perf_counter()
    reply = model.stream(messages, Sampling(max_tokens=8))
    try:
        next(reply)
    finally:
        reply.close()
    return time.perf_counter() - t0


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(args: argparse.Namespace) -> None:
    from secondself.backends.llamacpp import LlamaCppChatModel
    from secondself.backends.local import embedded_gguf_path

    adapters = [Path(p) for p in json.loads(args.child_adapters)]
    models = personal_models(embedded_gguf_path(), adapters, Path(args.cache))
    base = LlamaCppChatModel(embedded_gguf_path(), n_ctx=1024, cache_dir=Path(args.cache))
    if args.one_start:
        with base._engine._cond:
            base._engine._start(adapters)
    else:
        for m in models:
            ttft(m, 0)
    ttft(base, 0)
    print(json.dumps({"k": len(adapters), "rss_mb": vm_rss_mb(), "starts": base._engine.starts}))


def memory(adapters: list[Path], ks: list[int], cache: Path, one_start: bool) -> list[dict]:
    out = []
    for k in ks:
        env = {**os.environ, "SECONDSELF_MAX_ADAPTERS": str(max(k, 1)), "SECONDSELF_THREADS": "1",
               "SECONDSELF_REAL_MODELS": "allow"}
        result = subprocess.run([sys.executable, __file__, "--child-adapters", json.dumps([str(a) for a in adapters[:k]]),
                                 "--cache", str(cache)] + (["--one-start"] if one_start else []),
                                env=env, capture_output=True, text=True, check=True)
        out.append(json.loads(result.stdout.strip().splitlines()[-1]))
        log(f"memory ({'one start' if one_start else 'on demand'}): {k} adapter(s) loaded: RSS "
            f"{out[-1]['rss_mb']:.1f} MB after {out[-1]['starts']} start(s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=50)
    parser.add_argument("--max-adapters", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child-adapters", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--one-start", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_adapters is not None:
        run_child(args)
        return
    os.environ["SECONDSELF_THREADS"] = "1"
    os.environ["SECONDSELF_REAL_MODELS"] = "allow"
    os.environ["SECONDSELF_MAX_ADAPTERS"] = str(args.max_adapters)
    from secondself.backends.llamacpp import LlamaCppChatModel
    from secondself.backends.local import embedded_gguf_path

    gguf = embedded_gguf_path()
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as tmp:
        work, cache = Path(tmp), Path(tmp) / "cache"
        t0 = time.perf_counter()
        adapters = make_adapters(gguf, work / "persons", args.persons, args.rank)
        size_mb = adapters[0].stat().st_size / 2**20
        log(f"{args.persons} adapters written in {time.perf_counter() - t0:.1f} s ({size_mb:.2f} MB each)")
        persons = personal_models(gguf, adapters, cache)
        base = LlamaCppChatModel(gguf, n_ctx=1024, cache_dir=cache)
        engine = base._engine
        assert all(p._engine is engine for p in persons), "every person shares one engine"

        n, bound = args.requests, args.max_adapters
        ttft(base, -1)                                           # load, warm up
        times = {"base": [ttft(base, i) for i in range(n)]}
        for p in persons[:bound]:                                # the bound's worth loaded and used
            ttft(p, -1)
        starts = engine.starts
        times["same"] = [ttft(persons[0], i) for i in range(n)]
        times["loaded"] = [ttft(persons[i % bound], i) for i in range(n)]
        assert engine.starts == starts, "a loaded adapter needs no restart"
        times["evicted"] = [ttft(persons[bound + i % (args.persons - bound)], i) for i in range(n)]
        restarts = engine.starts - starts
        base.close()
        mem = {"on_demand": memory(adapters, [0, 1, bound], cache, False),
               "one_start": memory(adapters, [0, 1, bound], cache, True)}

    per_adapter = {how: {m["k"]: (m["rss_mb"] - ms[0]["rss_mb"]) / m["k"] for m in ms if m["k"]}
                   for how, ms in mem.items()}
    result = {
        "persons": args.persons, "max_adapters": bound, "rank": args.rank, "threads": 1,
        "ttft_s": {k: {"median": statistics.median(v), "max": max(v)} for k, v in times.items()},
        "restarts_for_evicted": restarts,
        "rss_mb": {how: {m["k"]: m["rss_mb"] for m in ms} for how, ms in mem.items()},
        "rss_per_adapter_mb": per_adapter,
        "adapter_file_mb": size_mb,
        "load_average": os.getloadavg()[0],
    }
    rows = [[k, f"{statistics.median(v) * 1000:.0f}", f"{max(v) * 1000:.0f}",
             f"{statistics.median(v) / statistics.median(times['base']):.2f}x"] for k, v in times.items()]
    log(table(["request", "TTFT median ms", "max ms", "vs base"], rows))
    log(f"evicted: {restarts} restarts for {n} requests")
    log(table(["adapters loaded", "RSS MB on demand", "per adapter", "RSS MB one start", "per adapter"],
              [[a["k"], f"{a['rss_mb']:.1f}", f"{per_adapter['on_demand'][a['k']]:.2f}" if a["k"] else "-",
                f"{b['rss_mb']:.1f}", f"{per_adapter['one_start'][b['k']]:.2f}" if b["k"] else "-"]
               for a, b in zip(mem["on_demand"], mem["one_start"], strict=True)]))
    log(f"adapter file: {size_mb:.2f} MB (rank {args.rank}, F32, 7 modules x 30 layers); load average "
        f"{result['load_average']:.1f}")
    if args.json:
        dump_json(result)


if __name__ == "__main__":
    main()
