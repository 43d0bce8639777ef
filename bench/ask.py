"""End-to-end `ask` on the example person: latency split and answer quality, per prompt design.

For each configuration (same process, same memory, same questions) it reports:
- latency: mean and p95 of retrieval, prompt assembly, time to first token and generation seconds;
- answer quality on answerable questions: token F1 against the reference answer, "contains" rate
  (the reference appears in the answer, both normalised as in bench/answers.py), citation accuracy
  (answered questions whose citations include a labelled relevant passage), and false abstentions;
- refusal accuracy on unanswerable questions (the persona abstains or says it does not know).

Configurations compared (the baseline is the first one):
  best-last k=4   the default: 4 passages, the best nearest the question
  best-first k=4  the same passages in rank order
  best-last k=8   more context
  no-gate         the default without the retrieval gate and support check (what the model alone does)

    python bench/ask.py --limit 30           # quicker: the first 30 questions (answerable + unanswerable mix)
    python bench/ask.py --model fake --embedder hashing   # plumbing only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from secondself.answer_scoring import contains_answer, is_abstention  # noqa: E402
from secondself.backends.embedders import make_embedder  # noqa: E402
from secondself.backends.registry import make_chat_model  # noqa: E402
from secondself.evaluation import is_relevant, load_queries, mean, token_f1  # noqa: E402
from secondself.ingest.pipeline import ingest  # noqa: E402
from secondself.memory.search import Searcher  # noqa: E402
from secondself.persona import Persona, PersonaConfig  # noqa: E402
from secondself.store import Store  # noqa: E402


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)] if xs else 0.0


def run_config(persona: Persona, queries) -> dict:
    rows = []
    for q in queries:
        t = time.perf_counter()
        ans = persona.ask(q.question).answer()
        total = time.perf_counter() - t
        cited_ok = any(is_relevant(p.chunk, q) for p in ans.passages
                       if any(c["chunk_id"] == p.chunk.id for c in ans.citations))
        rows.append({"id": q.id, "answerable": q.answerable, "answer": ans.text, "abstained": ans.abstained,
                     "f1": token_f1(ans.text, q.answer) if q.answerable else None,
                     "contains": contains_answer(ans.text, [q.answer]) if q.answerable else None,
                     "cited_ok": cited_ok, "shown_ok": any(is_relevant(p.chunk, q) for p in ans.passages),
                     "total_s": total, **{k: ans.timings.get(k, 0.0) for k in
                                          ("retrieval_s", "assembly_s", "first_token_s", "generation_s")}})
    ans_rows = [r for r in rows if r["answerable"]]
    una_rows = [r for r in rows if not r["answerable"]]
    answered = [r for r in ans_rows if not r["abstained"]]
    return {
        "n": len(rows),
        "f1": mean([r["f1"] for r in ans_rows]),
        "contains": mean([float(r["contains"]) for r in ans_rows]),
        "citation_accuracy": mean([float(r["cited_ok"]) for r in answered]),
        "passages_contain_answer": mean([float(r["shown_ok"]) for r in ans_rows]),
        "false_abstention": mean([float(r["abstained"]) for r in ans_rows]),
        "refusal_accuracy": mean([float(is_abstention(r["answer"], r["abstained"])) for r in una_rows]),
        "latency": {k: {"mean": mean([r[k] for r in rows]), "p95": p95([r[k] for r in rows])}
                    for k in ("retrieval_s", "assembly_s", "first_token_s", "generation_s", "total_s")},
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded", help="model spec (default: the embedded SmolLM2)")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N questions (0 = all)")
    ap.add_argument("--configs", default="best-last,best-first,k8,no-gate")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    queries = load_queries(ROOT / "examples" / "maya" / "queries.jsonl")
    if args.limit:
        answerable = [q for q in queries if q.answerable][: max(1, args.limit * 8 // 10)]
        unanswerable = [q for q in queries if not q.answerable][: max(1, args.limit - len(answerable))]
        queries = answerable + unanswerable
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "m.sqlite3")
        embedder = make_embedder(args.embedder)
        print("ingesting the example person…", file=sys.stderr)
        ingest(store, embedder, [ROOT / "examples" / "maya" / "corpus"], source_name="maya", person_name="Maya")
        model = make_chat_model(args.model, Path(tmp) / "models-unused" if args.model == "fake" else
                                Path.home() / ".secondself" / "models")
        searcher = Searcher(store, embedder)
        configs = {
            "best-last": PersonaConfig(),
            "best-first": PersonaConfig(best_last=False),
            "k8": PersonaConfig(k=8),
            "no-gate": PersonaConfig(guard=False),
        }
        results = {}
        for name in args.configs.split(","):
            print(f"running {name} on {len(queries)} questions…", file=sys.stderr)
            persona = Persona(model, searcher, name="Maya", config=configs[name])
            results[name] = run_config(persona, queries)
        store.close()

    if args.json:
        print(json.dumps({"model": args.model, "results": results}, indent=2))
        return
    base = next(iter(results.values()))
    print(f"model {args.model}; {len(queries)} questions; ratios are against '{next(iter(results))}'")
    print(f"{'config':<12} {'F1':>6} {'contains':>9} {'cite-acc':>9} {'ctx-has':>8} {'false-IDK':>10} "
          f"{'refusal':>8} {'ttft p50':>9} {'gen mean':>9} {'total p95':>10} {'ratio':>6}")
    for name, r in results.items():
        lat = r["latency"]
        ttft = statistics.median([x["first_token_s"] for x in r["rows"]])
        ratio = lat["total_s"]["p95"] / base["latency"]["total_s"]["p95"] if base["latency"]["total_s"]["p95"] else 0
        print(f"{name:<12} {r['f1']:>6.3f} {r['contains']:>9.3f} {r['citation_accuracy']:>9.3f} "
              f"{r['passages_contain_answer']:>8.3f} {r['false_abstention']:>10.3f} {r['refusal_accuracy']:>8.3f} "
              f"{ttft:>9.2f} {lat['generation_s']['mean']:>9.2f} {lat['total_s']['p95']:>10.2f} {ratio:>6.2f}")
    lat = base["latency"]
    print("\nlatency split (default config, mean s): " + ", ".join(
        f"{k[:-2]} {v['mean']:.3f}" for k, v in lat.items()))


if __name__ == "__main__":
    main()
