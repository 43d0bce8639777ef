"""The HTTP server under load: N concurrent streaming chats against `POST /v1/chat/completions`.

What it measures
    One process: a temporary home, the example person ingested once (`--embedder minilm` by default,
    `hashing` for a quick run), and the real app (`create_app` + uvicorn in a thread, `jobs=False,
    mcp=False, rate_per_minute=0`) started afresh for each configuration. Clients are the official
    `openai` package (`max_retries=0`, so a 429/503 is seen as it is, not retried), one shared client,
    N threads, each streaming one chat after another from a shared list of questions (a closed loop:
    N requests in flight at every moment). Questions are the answerable ones of
    `examples/maya/queries.jsonl`, in order, cycled.

    Models
      fake      a FakeChatModel whose reply is the first ~58 words of the passages it was shown, citing
                [1] (so the support check keeps it): no model cost, i.e. the figures are retrieval +
                prompt assembly + the server. The gate gets `model_concurrency = N` so that it does not
                serialize the fake. `--fake-per-n` requests per N (default 4 x N) per round, `--rounds`
                rounds (default 2), library and server alternating in order round by round.
      embedded  the real SmolLM2-135M on CPU, `--max-tokens` (default 48) per answer, with the server's
                default gate for a local model: ONE generation at a time, `--max-waiting` (default 32)
                may wait up to `--wait-s` (default 120 s, the server default). At N = 4 and 16 requests
                therefore queue: TTFT grows with the queue position and throughput stays that of one
                stream. That is the design (two cores cannot run 16 generations usefully), not a fault.
                max(N, `--embedded-min` (default 3)) requests per N. `--skip-embedded` skips it.
      shedding  16 requests at once against a gate with a short line (`--shed-waiting`, default 4):
                the paced fake (50 ms per word, ~3 s per answer, with the server's default gate of 4
                for a fake model) and the embedded model (gate 1). Expected: concurrency + max_waiting
                answered, the rest an immediate 503 ("queue full"). A 503 is an explicit rejection, not
                a failure. Fewer 503s than that can happen if a turn frees up before the last request
                arrives; more would be a bug (flagged).

Baseline (same run, same process, same questions)
    The library without HTTP: `Runtime.persona(spec).ask(question)`, iterating the Reply and then
    `.answer()`, the way the server does it (the Runtime's lock is held around `persona()` + `ask()`,
    as in the route, because the store connection is shared). For the fake: sequentially (N = 1) and
    with N threads; for the embedded model: sequentially on the N = 1 questions.
    "server / library" ratios: TTFT p50/p95 (x and +ms) and throughput. What the server adds: auth
    and guards, JSON parsing, the conversation log (3 SQLite writes per chat), one thread-pool hop per
    streamed delta, SSE framing, and the client's own parsing of every chunk; everything (clients,
    server, model) shares the same 2 cores and the same GIL, so the overhead at high N includes that
    contention.

Figures (per run)
    reqs, ok          requests sent; completed with HTTP 200 and a finished stream
    429, 503          explicit rejections (rate limit; busy model: "full" = the waiting line was full,
                      "timeout" = waited `wait_s` without a turn). Allowed.
    FAIL              anything else (other HTTP statuses, an error event inside a 200 stream, connection
                      errors, client timeouts, hung requests). Printed loudly; the script exits 1.
    TTFT p50/p95      client side: request sent -> first non-empty content delta (ok requests only)
    total p50/p95     request sent -> end of stream ([DONE])
    answers/s, tok/s  ok answers and completion tokens (the server's `usage`, or the Answer's for the
                      library) per second of wall time from the first request to the last answer
    abst              answers the persona abstained on ("I don't know"): same work, shorter text
    gate check        after every server run, `app.state.secondself.gates[spec].snapshot()` must show
                      active == 0 and waiting == 0 (no leaked turns), and its `rejected` count must
                      equal the 503s the clients saw.

Reports, never asserts timings; exits 1 only if a request failed, hung, or a gate leaked.

    python bench/serve.py                                     # full: minilm, fake + embedded (~6-10 min; 8.5 min measured on 2 busy cores)
    python bench/serve.py --embedder hashing --skip-embedded  # quick: server overhead only (~20-30 s)
    python bench/serve.py --ns 1,4 --rounds 1 --json          # JSON to stdout, tables to stderr
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, dump_json, fmt_ratio, log, percentile, ratio, table  # noqa: E402

from secondself.backends.chat import FakeChatModel, Message, Sampling  # noqa: E402

FAKE = "fake"
PACED = "fake:paced"
EMBEDDED = "embedded"
FAKE_MAX_TOKENS = 128  # above the fake's ~60 words: its reply is never cut


# -- the fake model -----------------------------------------------------------------------------------

_PASSAGE = re.compile(r"^\[(\d+)\] \([^\n]*?\) (.+)$", re.MULTILINE)
_FALLBACK = ("I wrote about this in my notes, and what I remember is what the note says about it, "
             "in my own words, from that day [1].")


def passage_reply(messages: Sequence[Message], words: int = 58) -> str:
    """~60 words taken from the passages in the prompt, [1] first, citing [1]: a reply the support
    check keeps (every word and name comes from a memory)."""
    prompt = messages[-1].content if messages else ""
    found = sorted(((int(n), text) for n, text in _PASSAGE.findall(prompt)), key=lambda x: x[0])
    pool = " ".join(text for _, text in found).split()[:words]
    if len(pool) < 10:
        return _FALLBACK
    return " ".join(pool).rstrip(".,;:") + " [1]."


class PacedFake(FakeChatModel):
    """The fake, but each word takes `delay` seconds (for the shedding run: requests must overlap)."""

    def __init__(self, delay: float = 0.05) -> None:
        super().__init__(name="fake-paced", respond=passage_reply)
        self.delay = delay

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        inner = super().stream(messages, sampling)

        def paced() -> Iterator[str]:
            for w in inner:
                time.sleep(self.delay)
                yield w
        return paced()


# -- one request ----------------------------------------------------------------------------------------

def _rec(kind: str, t0: float, **kw: Any) -> dict:
    return {"kind": kind, "ttft": None, "total": time.perf_counter() - t0, "tokens": 0, "abstained": False,
            "error": None, **kw}


def server_request(client, question: str, max_tokens: int) -> dict:
    """One streamed chat through the official client; never raises."""
    import openai

    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    extra: dict = {}
    finished = False
    try:
        stream = client.chat.completions.create(
            model="secondself", messages=[{"role": "user", "content": question}], stream=True,
            stream_options={"include_usage": True}, max_tokens=max_tokens)
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta.content and ttft is None:
                        ttft = time.perf_counter() - t0
                    if choice.finish_reason is not None:
                        finished = True
                        extra = (chunk.model_extra or {}).get("secondself") or {}
    except openai.APIStatusError as e:
        status = e.status_code
        body = e.body if isinstance(e.body, dict) else {}
        message = str(body.get("message") or e.message)  # e.message is "Error code: 503 - {...}"
        if status == 503:
            kind = "503 timeout" if message.startswith("waited") else "503 full"
        elif status == 429:
            kind = "429"
        else:
            kind = f"FAIL http {status}"
        return _rec(kind, t0, status=status, error=message[:200])
    except openai.APITimeoutError as e:
        return _rec("FAIL client timeout", t0, status=None, error=str(e)[:200])
    except openai.APIConnectionError as e:
        return _rec("FAIL connection", t0, status=None, error=f"{e!r}"[:200])
    except openai.APIError as e:  # an error event inside a 200 stream
        return _rec("FAIL stream error event", t0, status=200, error=str(e)[:200])
    except Exception as e:  # noqa: BLE001 - reported, never hidden
        return _rec(f"FAIL {type(e).__name__}", t0, status=None, error=f"{e!r}"[:200])
    total = time.perf_counter() - t0
    if not finished:
        return _rec("FAIL stream ended without finish_reason", t0, status=200)
    if ttft is None:
        return _rec("FAIL no content", t0, status=200)
    return {"kind": "ok", "status": 200, "ttft": ttft, "total": total, "tokens": tokens,
            "abstained": bool(extra.get("abstained")), "error": None}


def library_request(rt, spec: str, question: str, max_tokens: int) -> dict:
    """The same question through the library, as the route does it (lock around persona() + ask())."""
    t0 = time.perf_counter()
    ttft = None
    try:
        with rt.lock:
            reply = rt.persona(spec).ask(question, sampling=Sampling(temperature=0.0, max_tokens=max_tokens))
        for delta in reply:
            if delta and ttft is None:
                ttft = time.perf_counter() - t0
        answer = reply.answer()
    except Exception as e:  # noqa: BLE001
        return _rec(f"FAIL {type(e).__name__}", t0, status=None, error=f"{e!r}"[:200])
    total = time.perf_counter() - t0
    if ttft is None:
        return _rec("FAIL no content", t0, status=None)
    return {"kind": "ok", "status": None, "ttft": ttft, "total": total,
            "tokens": answer.usage.get("completion_tokens", 0), "abstained": answer.abstained, "error": None}


# -- load generation ----------------------------------------------------------------------------------

def closed_loop(fn: Callable[[str], dict], questions: list[str], workers: int, deadline_s: float
                ) -> tuple[list[dict], float]:
    """`workers` threads take questions from a shared queue until it is empty; all start together.
    Returns the records (a missing one = a request still running at the deadline: 'FAIL hung') and the
    wall time from the start to the last answer."""
    work: queue.Queue[tuple[int, str]] = queue.Queue()
    for i, q in enumerate(questions):
        work.put((i, q))
    records: list[dict | None] = [None] * len(questions)
    barrier = threading.Barrier(workers + 1)

    def worker() -> None:
        barrier.wait()
        while True:
            try:
                i, q = work.get_nowait()
            except queue.Empty:
                return
            records[i] = fn(q)

    threads = [threading.Thread(target=worker, daemon=True, name=f"bench-client-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(max(0.0, deadline_s - (time.perf_counter() - t0)))
    wall = time.perf_counter() - t0
    out = [r if r is not None else {"kind": "FAIL hung", "status": None, "ttft": None, "total": wall,
                                    "tokens": 0, "abstained": False, "error": f"no answer after {deadline_s:.0f} s"}
           for r in records]
    return out, wall


def summarize(records: list[dict], wall: float) -> dict:
    ok = [r for r in records if r["kind"] == "ok"]
    kinds = Counter(r["kind"] for r in records)
    ttft = [r["ttft"] for r in ok]
    total = [r["total"] for r in ok]
    rejected = [r["total"] for r in records if r["kind"].startswith(("503", "429"))]
    return {
        "requests": len(records), "ok": len(ok), "kinds": dict(kinds),
        "http_429": kinds.get("429", 0),
        "http_503": sum(v for k, v in kinds.items() if k.startswith("503")),
        "failures": sum(v for k, v in kinds.items() if k.startswith("FAIL")),
        "failure_examples": [f"{r['kind']}: {r['error']}" for r in records if r["kind"].startswith("FAIL")][:5],
        "ttft_p50": percentile(ttft, 50) if ttft else None, "ttft_p95": percentile(ttft, 95) if ttft else None,
        "total_p50": percentile(total, 50) if total else None, "total_p95": percentile(total, 95) if total else None,
        "rejection_p50": percentile(rejected, 50) if rejected else None,
        "wall_s": wall, "answers_per_s": len(ok) / wall if wall > 0 else 0.0,
        "tokens_per_s": sum(r["tokens"] for r in ok) / wall if wall > 0 else 0.0,
        "tokens_per_answer": sum(r["tokens"] for r in ok) / len(ok) if ok else 0.0,
        "abstained": sum(r["abstained"] for r in ok),
    }


def pooled(parts: list[tuple[list[dict], float]]) -> dict:
    """Summary over several rounds: all records together, wall times added."""
    records = [r for recs, _ in parts for r in recs]
    return summarize(records, sum(w for _, w in parts))


# -- the server ---------------------------------------------------------------------------------------

class Served:
    """The app + uvicorn in a thread for one configuration, and a shared openai client."""

    def __init__(self, rt, concurrency: int | None, max_waiting: int, wait_s: float, timeout_s: float) -> None:
        import httpx
        import openai

        from secondself.serve.app import ServeOptions, create_app
        from secondself.serve.server import ServerThread

        self.options = ServeOptions(port=0, jobs=False, mcp=False, rate_per_minute=0, max_waiting=max_waiting,
                                    model_concurrency=concurrency, wait_s=wait_s)
        self.app = create_app(rt, self.options)
        self.thread = ServerThread(self.app).start()
        self.client = openai.OpenAI(base_url=self.thread.url + "/v1", api_key="local", max_retries=0,
                                    timeout=httpx.Timeout(timeout_s, connect=10.0))

    @property
    def state(self):
        return self.app.state.secondself

    def gate_check(self, spec: str, client_503: int, settle_s: float = 5.0) -> dict:
        """The gate must be idle after a run (waits up to `settle_s` for streams that are closing)."""
        gate = self.state.gates.get(spec)
        if gate is None:
            return {"spec": spec, "snapshot": None, "ok": client_503 == 0, "problem": "no gate was created"
                    if client_503 else ""}
        deadline = time.monotonic() + settle_s
        snap = gate.snapshot()
        while (snap["active"] or snap["waiting"]) and time.monotonic() < deadline:
            time.sleep(0.05)
            snap = gate.snapshot()
        problems = []
        if snap["active"] or snap["waiting"]:
            problems.append(f"leaked gate turns: active={snap['active']} waiting={snap['waiting']} "
                            f"{settle_s:.0f} s after the last answer")
        if snap["rejected"] != client_503:
            problems.append(f"gate rejected {snap['rejected']} but clients saw {client_503} 503s")
        return {"spec": spec, "snapshot": snap, "ok": not problems, "problem": "; ".join(problems)}

    def stop(self) -> None:
        self.client.close()
        self.thread.stop()


# -- the benchmark --------------------------------------------------------------------------------------

def load_questions() -> list[str]:
    from secondself.evaluation import load_queries

    return [q.question for q in load_queries(MAYA / "queries.jsonl") if q.answerable]


def take(questions: list[str], start: int, n: int) -> list[str]:
    return [questions[(start + i) % len(questions)] for i in range(n)]


class Bench:
    def __init__(self, rt, args, questions: list[str]) -> None:
        self.rt, self.args, self.questions = rt, args, questions
        self.rows: list[dict] = []
        self.gates: list[dict] = []

    def use(self, spec: str) -> None:
        """Answer model id 'secondself' with `spec` (no server runs while this changes)."""
        self.rt.settings = dataclasses.replace(self.rt.settings, persona_model=spec)

    def add(self, run: str, model: str, n: int, gate: str, summary: dict, check: dict | None = None) -> dict:
        row = {"run": run, "model": model, "n": n, "gate": gate, **summary}
        if check is not None:
            row["gate_check"] = check
            self.gates.append({"run": run, "model": model, "n": n, **check})
        self.rows.append(row)
        return row

    def server_run(self, spec: str, n: int, questions: list[str], concurrency: int | None, max_waiting: int,
                   max_tokens: int, timeout_s: float, warmup: int = 2, rounds: int = 1,
                   library: Callable[[], tuple[list[dict], float]] | None = None
                   ) -> tuple[dict, dict | None]:
        """One server configuration; `library` (if given) is run interleaved with the server rounds."""
        srv = Served(self.rt, concurrency, max_waiting, self.args.wait_s, timeout_s)
        try:
            for q in questions[:warmup]:
                server_request(srv.client, q, max_tokens if spec != EMBEDDED else 2)
            srv.state.gates.clear()  # count only what the timed rounds do (the warm-up released its turns)
            server_parts, library_parts = [], []
            for r in range(rounds):
                order = ("library", "server") if r % 2 == 0 else ("server", "library")
                for what in order:
                    if what == "server":
                        server_parts.append(closed_loop(
                            lambda q: server_request(srv.client, q, max_tokens), questions, n,
                            deadline_s=timeout_s + 30 + self.args.wait_s))
                    elif library is not None:
                        library_parts.append(library())
            server = pooled(server_parts)
            check = srv.gate_check(spec, server["http_503"])
            lib = pooled(library_parts) if library_parts else None
        finally:
            srv.stop()
        return {**server, "gate_check": check}, lib

    # fake: server overhead ----------------------------------------------------------------------------
    def fake(self) -> list[dict]:
        self.use(FAKE)
        comparisons = []
        offset = 0
        for n in self.args.ns:
            count = self.args.fake_per_n * n
            qs = take(self.questions, offset, count)
            offset += count
            log(f"fake, N={n}: {count} requests x {self.args.rounds} round(s), library and server…")

            def library(qs=qs, n=n) -> tuple[list[dict], float]:
                return closed_loop(lambda q: library_request(self.rt, FAKE, q, FAKE_MAX_TOKENS), qs, n,
                                   deadline_s=120)

            server, lib = self.server_run(FAKE, n, qs, concurrency=n, max_waiting=self.args.max_waiting,
                                          max_tokens=FAKE_MAX_TOKENS, timeout_s=60, rounds=self.args.rounds,
                                          library=library)
            check = server.pop("gate_check")
            gate = f"{n}/{self.args.max_waiting}"
            self.add("library", "fake", n, "-", lib)
            self.add("server", "fake", n, gate, server, check)
            comparisons.append(compare("fake", n, server, lib, "library with N threads"))
        return comparisons

    # embedded: the real model behind a gate of 1 ----------------------------------------------------------
    def embedded(self) -> list[dict]:
        from secondself.backends.registry import make_chat_model

        model = make_chat_model(EMBEDDED, Path(self.args.models_dir).expanduser())
        self.rt.use_model(EMBEDDED, model)
        self.use(EMBEDDED)
        mt = self.args.max_tokens
        t = time.perf_counter()
        warm = library_request(self.rt, EMBEDDED, self.questions[0], 2)
        log(f"embedded: model loaded and warmed up in {time.perf_counter() - t:.1f} s ({warm['kind']})")
        base_qs = take(self.questions, 0, max(1, self.args.embedded_min))
        log(f"embedded, library sequential: {len(base_qs)} questions, max_tokens {mt}…")
        lib = summarize(*closed_loop(lambda q: library_request(self.rt, EMBEDDED, q, mt), base_qs, 1,
                                     deadline_s=600))
        self.add("library", "embedded", 1, "-", lib)
        comparisons = []
        timeout_s = max(120.0, self.args.wait_s + 60)
        for n in self.args.ns:
            qs = base_qs if n == 1 else take(self.questions, 0, max(n, self.args.embedded_min))
            log(f"embedded, N={n}: {len(qs)} requests through the server (gate 1, max_waiting "
                f"{self.args.max_waiting}, wait {self.args.wait_s:.0f} s)…")
            server, _ = self.server_run(EMBEDDED, n, qs, concurrency=None, max_waiting=self.args.max_waiting,
                                        max_tokens=mt, timeout_s=timeout_s, warmup=1 if n == self.args.ns[0] else 0)
            check = server.pop("gate_check")
            self.add("server", "embedded", n, f"1/{self.args.max_waiting}", server, check)
            comparisons.append(compare("embedded", n, server, lib, "library sequential" if n == 1 else
                                       "library seq. (N=1 questions)"))
        return comparisons

    # shedding: a short waiting line ----------------------------------------------------------------------
    def shedding(self, spec: str, label: str, max_tokens: int, timeout_s: float) -> dict:
        n, w = self.args.shed_n, self.args.shed_waiting
        self.use(spec)
        qs = take(self.questions, 0, n)
        srv = Served(self.rt, None, w, self.args.wait_s, timeout_s)
        try:
            gate = srv.state.gate(spec)
            c = gate.concurrency
            log(f"shedding, {label}: {n} requests at once, gate {c}/{w}…")
            records, wall = closed_loop(lambda q: server_request(srv.client, q, max_tokens), qs, n,
                                        deadline_s=timeout_s + 30 + self.args.wait_s)
            summary = summarize(records, wall)
            check = srv.gate_check(spec, summary["http_503"])
        finally:
            srv.stop()
        summary["expected_503"] = max(0, n - c - w)
        self.add("shedding", label, n, f"{c}/{w}", summary, check)
        return summary


def compare(model: str, n: int, server: dict, lib: dict, baseline: str) -> dict:
    def r(key: str) -> float | None:
        return ratio(server[key], lib[key]) if server.get(key) is not None and lib.get(key) is not None else None

    def plus(key: str) -> float | None:
        return (server[key] - lib[key]) if server.get(key) is not None and lib.get(key) is not None else None

    return {"model": model, "n": n, "baseline": baseline,
            "ttft_p50_x": r("ttft_p50"), "ttft_p50_plus_s": plus("ttft_p50"),
            "ttft_p95_x": r("ttft_p95"), "ttft_p95_plus_s": plus("ttft_p95"),
            "total_p50_x": r("total_p50"), "total_p50_plus_s": plus("total_p50"),
            "answers_per_s_x": r("answers_per_s"), "tokens_per_s_x": r("tokens_per_s")}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def _plus(x: float | None) -> str:
    return "" if x is None else f" ({'+' if x >= 0 else '-'}{abs(x) * 1000:.1f} ms)"


def report(rows: list[dict], comparisons: list[dict], gates: list[dict], info: dict) -> list[str]:
    """Print the tables (stderr with --json, else stdout); returns the problems found."""
    out = sys.stderr if info["json"] else sys.stdout

    def say(s: str = "") -> None:
        print(s, file=out, flush=True)

    say(f"\nserver load: {info['person']} ({info['chunks']} chunks, embedder {info['embedder']}), "
        f"{info['questions']} answerable questions cycled; openai client, max_retries=0; "
        f"{info['cpus']} CPU(s)")
    say("gate = concurrency/max_waiting; times in ms; 503 = explicit rejection (full line or wait timeout)\n")
    headers = ["run", "model", "N", "gate", "reqs", "ok", "429", "503", "FAIL", "TTFT p50", "TTFT p95",
               "total p50", "total p95", "answers/s", "tok/s", "tok/ans", "abst"]
    body = []
    for r in rows:
        body.append([r["run"], r["model"], r["n"], r["gate"], r["requests"], r["ok"], r["http_429"], r["http_503"],
                     r["failures"] or "", _ms(r["ttft_p50"]), _ms(r["ttft_p95"]), _ms(r["total_p50"]),
                     _ms(r["total_p95"]), f"{r['answers_per_s']:.2f}", f"{r['tokens_per_s']:.1f}",
                     f"{r['tokens_per_answer']:.0f}", r["abstained"]])
    say(table(headers, body))

    if comparisons:
        say("\nserver / library (same questions, same process; throughput below 1.00x = the server is slower)")
        headers = ["model", "N", "baseline", "TTFT p50", "TTFT p95", "total p50", "answers/s", "tok/s"]
        body = [[c["model"], c["n"], c["baseline"], fmt_ratio(c["ttft_p50_x"]) + _plus(c["ttft_p50_plus_s"]),
                 fmt_ratio(c["ttft_p95_x"]) + _plus(c["ttft_p95_plus_s"]),
                 fmt_ratio(c["total_p50_x"]) + _plus(c["total_p50_plus_s"]),
                 fmt_ratio(c["answers_per_s_x"]), fmt_ratio(c["tokens_per_s_x"])] for c in comparisons]
        say(table(headers, body))
        for c in comparisons:
            if c["model"] == "fake":
                say(f"server overhead at N={c['n']}: TTFT x{c['ttft_p50_x'] or 0:.2f}, "
                    f"{'+' if (c['ttft_p50_plus_s'] or 0) >= 0 else '-'}{abs(c['ttft_p50_plus_s'] or 0) * 1000:.1f} ms "
                    f"(p50); throughput x{c['answers_per_s_x'] or 0:.2f}")
        if any(c["model"] == "embedded" for c in comparisons):
            say("embedded: one generation at a time (gate 1), so at N > 1 requests queue; TTFT includes the wait, "
                "and throughput should stay near the sequential library's (for N > 1 the questions differ from "
                "the baseline's, so answer lengths and abstentions differ too: compare tok/s loosely)")

    shed = [r for r in rows if r["run"] == "shedding"]
    for r in shed:
        say(f"shedding ({r['model']}, gate {r['gate']}, {r['n']} at once): {r['ok']} answered, {r['http_503']} "
            f"rejected with 503 (expected {r['expected_503']}: all beyond the gate), 503 answered in {_ms(r['rejection_p50'])} ms (p50), "
            f"failures {r['failures']}")

    problems = []
    for r in rows:
        if r["failures"]:
            problems.append(f"{r['run']} {r['model']} N={r['n']}: {r['failures']} FAILED request(s): "
                            + "; ".join(r["failure_examples"]))
        if r["run"] == "shedding" and (r["http_503"] > r["expected_503"] or
                                        (r["expected_503"] and not r["http_503"])):
            problems.append(f"shedding {r['model']}: {r['http_503']} x 503, expected {r['expected_503']} "
                            f"({r['kinds']})")
    for g in gates:
        if not g["ok"]:
            problems.append(f"gate {g['run']} {g['model']} N={g['n']}: {g['problem']} (snapshot {g['snapshot']})")
    say("\ngate check after every server run: " + ("all idle (active=0, waiting=0), rejected == client 503s"
                                                   if all(g["ok"] for g in gates) else "PROBLEMS (below)"))
    if problems:
        say("\n" + "!" * 100)
        for p in problems:
            say("PROBLEM: " + p)
        say("!" * 100)
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="minilm", help="minilm (default) or hashing (quick)")
    ap.add_argument("--ns", default="1,4,16", help="concurrent clients, comma-separated (default 1,4,16)")
    ap.add_argument("--fake-per-n", type=int, default=4, help="fake requests per client per round (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="fake rounds, library/server order alternating")
    ap.add_argument("--skip-embedded", action="store_true", help="fake model only")
    ap.add_argument("--max-tokens", type=int, default=48, help="embedded: max_tokens per answer (default 48)")
    ap.add_argument("--embedded-min", type=int, default=3, help="embedded: at least this many requests per N")
    ap.add_argument("--max-waiting", type=int, default=32, help="gate's waiting line for the main runs (32)")
    ap.add_argument("--wait-s", type=float, default=120.0, help="gate's longest wait (server default 120)")
    ap.add_argument("--shed-n", type=int, default=16, help="shedding: requests at once (16)")
    ap.add_argument("--shed-waiting", type=int, default=4, help="shedding: the gate's max_waiting (4)")
    ap.add_argument("--skip-shedding", action="store_true")
    ap.add_argument("--models-dir", default=str(Path.home() / ".secondself" / "models"),
                    help="where the embedded model's converted checkpoint is cached (as bench/ask.py)")
    ap.add_argument("--json", action="store_true", help="JSON to stdout, tables to stderr")
    args = ap.parse_args()
    args.ns = [int(x) for x in args.ns.split(",") if x.strip()]

    import os

    from secondself.config import load_settings
    from secondself.ingest.pipeline import ingest
    from secondself.runtime import Runtime

    questions = load_questions()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(tmp, {"embedder": args.embedder, "persona_model": FAKE, "teacher_model": FAKE,
                                       "person_name": "Maya"})
        rt = Runtime(settings)
        rt.use_model(FAKE, FakeChatModel(respond=passage_reply))
        rt.use_model(PACED, PacedFake())
        log(f"ingesting the example person ({args.embedder})…")
        t = time.perf_counter()
        rep = ingest(rt.store, rt.embedder, [MAYA / "corpus"], source_name="maya", person_name="Maya")
        log(f"ingested in {time.perf_counter() - t:.1f} s")
        chunks = rep.chunks_written
        for q in questions[:2]:  # warm the searcher (vector matrix) and the embedder
            library_request(rt, FAKE, q, FAKE_MAX_TOKENS)
        bench = Bench(rt, args, questions)
        comparisons = bench.fake()
        if not args.skip_shedding:
            bench.shedding(PACED, "fake paced 50ms/word", FAKE_MAX_TOKENS, timeout_s=60)
        if not args.skip_embedded:
            comparisons += bench.embedded()
            if not args.skip_shedding:
                bench.shedding(EMBEDDED, "embedded", args.max_tokens, timeout_s=max(120.0, args.wait_s + 60))
        rt.close()
    info = {"person": "Maya (examples/maya/corpus)", "chunks": chunks, "embedder": args.embedder,
            "questions": len(questions), "cpus": os.cpu_count(), "json": args.json,
            "seconds": time.perf_counter() - started}
    problems = report(bench.rows, comparisons, bench.gates, info)
    log(f"\ndone in {info['seconds']:.0f} s")
    if args.json:
        dump_json({"settings": {k: v for k, v in vars(args).items() if k != "json"},
                   "info": {k: v for k, v in info.items() if k != "json"},
                   "runs": bench.rows, "comparisons": comparisons, "problems": problems})
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
