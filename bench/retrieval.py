"""Retrieval quality on the example person: keyword vs vector vs hybrid search.

What it measures
    `examples/maya/corpus` is ingested into a temporary store (the real embedder all-MiniLM-L6-v2 by
    default; `--embedder hashing` for a quick run without the model). Every answerable query of
    `examples/maya/queries.jsonl` is run with k=10 in the three search modes, and scored against the
    labelled passages:

    - a chunk is relevant to a labelled entry {path, contains} when the chunk's file path (the part of
      `Chunk.path` before '#', for mbox / ChatGPT / chat files) equals the entry's path and the entry's
      `contains` phrase occurs in the chunk's heading path + text (case-insensitive, whitespace-
      normalized; the heading counts because heading paragraphs are stored as chunk headings);
    - recall@5: per query, the share of its labelled entries with a relevant chunk in the top 5;
      averaged over queries;
    - hit@5: share of queries with at least one relevant chunk in the top 5;
    - MRR@10: mean over queries of 1 / rank of the first relevant chunk in the top 10 (0 if none).

How to read it
    Higher is better for all three. The baseline is the single-signal modes: hybrid (reciprocal rank
    fusion of keyword and vector) should be at least as good as the better of keyword-only and
    vector-only; the "vs best single" line gives hybrid / max(keyword, vector) per metric. The misses list
    names the queries whose answer hybrid does not put in the top 5. Labelled entries whose phrase is in
    no chunk at all ("unreachable") are failures of reading/chunking (e.g. a phrase cut by a chunk
    boundary), not of ranking; they still count as misses. No timings: this is a quality benchmark.

    python bench/retrieval.py [--embedder minilm|hashing] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MAYA, dump_json, log, table  # noqa: E402

from secondself.backends.embedders import make_embedder  # noqa: E402
from secondself.evaluation import relevant_entries  # noqa: E402
from secondself.ingest.pipeline import ingest  # noqa: E402
from secondself.memory.search import MODES, Searcher  # noqa: E402
from secondself.store import Store  # noqa: E402

K = 10
AT = 5


def score(hit_entries: list[set[int]], n_entries: int) -> dict[str, float]:
    """hit_entries[r] = entries matched by the chunk at rank r+1."""
    found = set().union(*hit_entries[:AT]) if hit_entries[:AT] else set()
    first = next((r for r, s in enumerate(hit_entries[:K], 1) if s), None)
    return {"recall@5": len(found) / n_entries, "hit@5": 1.0 if found else 0.0,
            "mrr@10": 1.0 / first if first else 0.0}



def run_queries(searcher, queries: list[dict], top=lambda hit: hit.chunk.path) -> dict[str, dict[str, dict]]:
    """Per query and mode: `score` of the top K hits, plus `top5` (`top(hit)` of the first AT)."""
    out: dict[str, dict[str, dict]] = {}
    for q in queries:
        out[q["id"]] = {}
        for mode in MODES:
            hits = searcher.search(q["question"], k=K, mode=mode)
            s = score([relevant_entries(h.chunk, q["relevant"]) for h in hits], len(q["relevant"]))
            s["top5"] = [top(h) for h in hits[:AT]]
            out[q["id"]][mode] = s
    return out

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--embedder", default="minilm", help="minilm (default, the bundled model) or hashing")
    ap.add_argument("--corpus", default=str(MAYA / "corpus"), help="corpus folder (default: the example person)")
    ap.add_argument("--queries", default=str(MAYA / "queries.jsonl"), help="labelled queries (JSONL)")
    ap.add_argument("--person-name", default="", help="name that replaces 'me' in chat exports (default: none)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print

    queries = [json.loads(line) for line in Path(args.queries).read_text("utf-8").splitlines() if line.strip()]
    queries = [q for q in queries if q.get("answerable") and q.get("relevant")]
    embedder = make_embedder(args.embedder)

    with tempfile.TemporaryDirectory(prefix="secondself-bench-") as tmp:
        store = Store(Path(tmp) / "memory.db")
        log(f"ingesting {args.corpus} with {embedder.name} ...")
        report = ingest(store, embedder, [args.corpus], person_name=args.person_name)
        if report.failed:
            log(f"warning: {len(report.failed)} file(s) failed: {[(o.path, o.reason) for o in report.failed]}")
        all_chunks = list(store.all_chunks())

        # Entries whose phrase is in no chunk at all cannot be found by any ranking.
        reachable: dict[str, list[bool]] = {}
        for q in queries:
            reach = [False] * len(q["relevant"])
            for c in all_chunks:
                for i in relevant_entries(c, q["relevant"]):
                    reach[i] = True
            reachable[q["id"]] = reach

        per_query = run_queries(Searcher(store, embedder), queries)
        store.close()

    metrics = ("recall@5", "hit@5", "mrr@10")
    summary = {mode: {m: sum(per_query[q["id"]][mode][m] for q in queries) / len(queries) for m in metrics}
               for mode in MODES}
    best_single = {m: max(summary["keyword"][m], summary["vector"][m]) for m in metrics}
    vs_best = {m: (summary["hybrid"][m] / best_single[m] if best_single[m] else None) for m in metrics}
    misses = [q for q in queries if per_query[q["id"]]["hybrid"]["hit@5"] == 0]
    unreachable = [(q["id"], q["relevant"][i]) for q in queries
                   for i, ok in enumerate(reachable[q["id"]]) if not ok]
    n_entries = sum(len(q["relevant"]) for q in queries)

    out(f"corpus: {args.corpus}  embedder: {embedder.name}  chunks: {len(all_chunks)}  "
        f"files: {report.summary()['added']}  queries: {len(queries)} answerable, {n_entries} labelled passages")
    out()
    rows = [[mode] + [f"{summary[mode][m]:.3f}" for m in metrics] for mode in ("keyword", "vector", "hybrid")]
    rows.append(["hybrid vs best single"] + [("n/a" if vs_best[m] is None else f"{vs_best[m]:.2f}x")
                                            for m in metrics])
    out(table(["mode", "recall@5", "hit@5", "MRR@10"], rows))
    out()
    out(f"queries hybrid misses at {AT} ({len(misses)}):")
    for q in misses:
        kw, vec = per_query[q["id"]]["keyword"]["hit@5"], per_query[q["id"]]["vector"]["hit@5"]
        also = [m for m, v in (("keyword", kw), ("vector", vec)) if v]
        out(f"  {q['id']}  {q['question']}" + (f"   [found by {', '.join(also)} alone]" if also else ""))
    out()
    out(f"labelled passages in no chunk (unreachable by any ranking): {len(unreachable)}")
    for qid, e in unreachable:
        out(f"  {qid}  {e['path']}: {e['contains']!r}")

    if args.json:
        dump_json({
            "benchmark": "retrieval", "embedder": embedder.name, "corpus": args.corpus,
            "chunks": len(all_chunks), "queries": len(queries), "labelled_passages": n_entries,
            "k": K, "summary": summary, "hybrid_vs_best_single": vs_best,
            "hybrid_misses_at_5": [{"id": q["id"], "question": q["question"]} for q in misses],
            "unreachable": [{"id": qid, **e} for qid, e in unreachable],
            "per_query": per_query,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
