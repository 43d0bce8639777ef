"""Search latency: hybrid, keyword-only and vector-only search at 10k and 100k chunks, with filters.

What it measures
    For each size a temporary store is filled directly through the Store API in one transaction:
    chunk texts of 60-140 words drawn from a seeded, Zipf-like vocabulary (real English words taken from
    the example corpus, plus some names), so FTS5 posting lists look like real text; 4 sources, dates
    spread over 2025, 1-2 speakers on chat and mail chunks; and seeded random unit vectors of dimension
    384. Then ~200 queries of 2-5 vocabulary words (half drawn by text frequency, half uniformly, so
    there are common words with long posting lists; the script prints how many chunks the queries
    match) are timed with `Searcher.search(query, k=10, mode=...)`
    after a warm-up (the vector matrix is loaded once and cached; its load time is printed separately).

    The query embedder is `HashingEmbedder(384)` (the stored vectors are recorded under its `.name`):
    it embeds a query in well under a millisecond, so the figures are the cost of *search*, not of the
    embedding model. With the real model add its per-query cost (a few ms to tens of ms on CPU).

Baseline (measured in the same run, interleaved query by query with our search so machine noise hits
both alike)
    - vector: a straightforward NumPy search over the same in-memory matrix: cosine computed with the
      row norms recomputed on every query, then a full `np.argsort`;
    - keyword: a plain FTS5 `... WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 50` with the same query
      string our search uses;
    - hybrid: both of the above plus reciprocal rank fusion in Python.
    Every baseline also fetches the text of its top k chunks (one `SELECT ... WHERE id IN`), as our
    search returns full chunks. Our search additionally builds snippets and Hit objects.
    If `chromadb` is importable, its HNSW vector query is a second vector baseline (it is not installed
    by this project; nothing is installed by this script).

How to read it
    p50 / p95 are per-query latencies in ms. "vs baseline" is our p95 / baseline p95 in this run (below
    1.00x = faster than the naive baseline). Filter rows compare with our unfiltered hybrid p95.
    Goal: hybrid p95 <= 50 ms at 100k chunks (on the machine it runs on; the script reports, never
    asserts). Absolute times are not comparable between machines or runs; the ratios are.

    python bench/search.py [--sizes 10000,100000] [--queries 200] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NAMES, SURNAMES, dump_json, fmt_ratio, log, ms, percentile, ratio, table, vocabulary  # noqa: E402

from secondself.backends.embedders import HashingEmbedder  # noqa: E402
from secondself.memory.search import RRF_K, Searcher, fts_query  # noqa: E402
from secondself.store import Store  # noqa: E402
from secondself.types import ChunkDraft, SearchFilters  # noqa: E402

DIM = 384
K = 10
CANDIDATES = 50  # what Searcher uses per side by default
SOURCES = ("notes", "journal", "mail", "chats")
SPEAKERS = NAMES[:6]
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
CHUNKS_PER_DOC = 8

FILTERS = {
    "hybrid + source filter (mail)": SearchFilters(sources=("mail",)),
    "hybrid + date range (Mar-May)": SearchFilters(since="2025-03-01", until="2025-05-31"),
    f"hybrid + speaker ({SPEAKERS[1]})": SearchFilters(speaker=SPEAKERS[1]),
}


def build_store(path: Path, n: int, rng: np.random.Generator, words: list[str], probs: np.ndarray,
                model: str) -> float:
    """Fill a store with n synthetic chunks; returns seconds taken."""
    t0 = time.perf_counter()
    vocab = np.array(words, dtype=object)
    lengths = rng.integers(60, 141, n)
    word_ids = rng.choice(len(words), size=int(lengths.sum()), p=probs)
    name_pool = NAMES + SURNAMES
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    seconds = rng.uniform(0, 365 * 86400, n)
    src_of = rng.integers(0, len(SOURCES), n // CHUNKS_PER_DOC + 1)
    store = Store(path)
    with store.transaction():
        sids = [store.ensure_source(s, f"/bench/{s}") for s in SOURCES]
        pos = 0
        doc_id = source_idx = 0
        for i in range(n):
            if i % CHUNKS_PER_DOC == 0:
                d = i // CHUNKS_PER_DOC
                source_idx = int(src_of[d])
                fid = store.record_file(sids[source_idx], f"{SOURCES[source_idx]}/doc{d:06d}.txt",
                                        content_hash=f"h{d}", size=1, mtime=0.0, status="ok")
                title = " ".join(vocab[rng.choice(len(words), 3, p=probs)]).capitalize()
                doc_id = store.insert_document(fid, "", title, "note", None, {})
            ws = list(vocab[word_ids[pos:pos + lengths[i]]])
            pos += lengths[i]
            if rng.random() < 0.3:  # a name somewhere in the chunk
                ws[int(rng.integers(len(ws)))] = str(rng.choice(name_pool))
            speakers: tuple[str, ...] = ()
            if SOURCES[source_idx] in ("mail", "chats"):
                speakers = tuple(dict.fromkeys(rng.choice(SPEAKERS, int(rng.integers(1, 3))).tolist()))
            draft = ChunkDraft(text=" ".join(ws) + ".", position=i % CHUNKS_PER_DOC,
                               heading=f"Section {i % CHUNKS_PER_DOC + 1}",
                               date=YEAR_START + timedelta(seconds=float(seconds[i])), speakers=speakers)
            store.insert_chunk(doc_id, sids[source_idx], title, draft, None, vectors[i], model)
    store.close()
    return time.perf_counter() - t0


def make_queries(n: int, rng: np.random.Generator, words: list[str], probs: np.ndarray) -> list[str]:
    """2-5 words each; every word drawn either by text frequency (common words, long posting lists) or
    uniformly from the vocabulary (rarer words), half and half."""
    out = []
    for _ in range(n):
        m = int(rng.integers(2, 6))
        ws = [words[int(rng.choice(len(words), p=probs))] if rng.random() < 0.5
              else words[int(rng.integers(len(words)))] for _ in range(m)]
        out.append(" ".join(ws))
    return out


class Baseline:
    """The naive implementation described in the module docstring."""

    def __init__(self, store: Store, embedder: HashingEmbedder) -> None:
        self.db = store.db
        self.embedder = embedder
        self.ids, self.matrix, _, _ = store.load_vectors(embedder.name)

    def vector(self, query: str, n: int) -> list[int]:
        q = self.embedder.embed([query])[0]
        norms = np.linalg.norm(self.matrix, axis=1)
        scores = (self.matrix @ q) / (norms * np.linalg.norm(q) + 1e-12)
        order = np.argsort(-scores)[:n]
        return self.ids[order].tolist()

    def keyword(self, query: str, n: int) -> list[int]:
        q = fts_query(query)
        if not q:
            return []
        return [r[0] for r in self.db.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?", (q, n))]

    def fetch(self, ids: list[int]) -> list[tuple[int, str]]:
        if not ids:
            return []
        rows = dict(self.db.execute(f"SELECT id, text FROM chunks WHERE id IN ({','.join('?' * len(ids))})",
                                    ids).fetchall())
        return [(i, rows[i]) for i in ids if i in rows]

    def search(self, query: str, k: int, mode: str) -> list[tuple[int, str]]:
        if mode == "keyword":
            return self.fetch(self.keyword(query, CANDIDATES)[:k])
        if mode == "vector":
            return self.fetch(self.vector(query, CANDIDATES)[:k])
        fused: dict[int, float] = {}
        for ranked in (self.keyword(query, CANDIDATES), self.vector(query, CANDIDATES)):
            for r, cid in enumerate(ranked, 1):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + r)
        return self.fetch(sorted(fused, key=lambda c: -fused[c])[:k])


def chroma_baseline(store: Store, embedder: HashingEmbedder):
    """A chromadb collection with the same vectors, or None if chromadb is not importable."""
    try:
        import chromadb  # noqa: F401
    except ImportError:
        return None
    client = chromadb.EphemeralClient()
    col = client.create_collection(f"bench{time.time_ns()}", metadata={"hnsw:space": "cosine"})
    ids, matrix, _, _ = store.load_vectors(embedder.name)
    for s in range(0, len(ids), 5000):
        col.add(ids=[str(i) for i in ids[s:s + 5000]], embeddings=matrix[s:s + 5000].tolist())

    def query(q: str, k: int):
        return col.query(query_embeddings=[embedder.embed([q])[0].tolist()], n_results=k)
    return query


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def bench_size(n: int, args: argparse.Namespace, words: list[str], probs: np.ndarray) -> dict:
    rng = np.random.default_rng(args.seed + n)
    embedder = HashingEmbedder(DIM)
    with tempfile.TemporaryDirectory(prefix="secondself-bench-") as tmp:
        db = Path(tmp) / "memory.db"
        log(f"[{n} chunks] building the store ...")
        build_s = build_store(db, n, rng, words, probs, embedder.name)
        store = Store(db)
        chunks = store.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        log(f"[{n} chunks] built {chunks} chunks in {build_s:.1f}s; loading the vector index ...")
        searcher = Searcher(store, embedder)
        load_s = timed(searcher.index)
        base = Baseline(store, embedder)
        chroma = chroma_baseline(store, embedder) if not args.no_chroma else None
        queries = make_queries(args.queries, rng, words, probs)

        variants: dict[str, object] = {}
        for mode in ("hybrid", "keyword", "vector"):
            variants[f"ours {mode}"] = (lambda q, m=mode: searcher.search(q, k=K, mode=m))
            variants[f"baseline {mode}"] = (lambda q, m=mode: base.search(q, K, m))
        for label, f in FILTERS.items():
            variants[label] = (lambda q, f=f: searcher.search(q, k=K, filters=f, mode="hybrid"))
        if chroma is not None:
            variants["chromadb vector (HNSW)"] = (lambda q: chroma(q, K))

        for q in make_queries(10, rng, words, probs):  # warm-up: caches, SQLite pages, BLAS threads
            for fn in variants.values():
                fn(q)
        log(f"[{n} chunks] timing {len(queries)} queries x {len(variants)} variants ...")
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for i, q in enumerate(queries):  # interleaved, rotating order: noise hits every variant alike
            rot = names[i % len(names):] + names[:i % len(names)]
            for name in rot:
                times[name].append(timed(variants[name], q))
        # Cold reload of the cached matrix, as after any write to the store (generation changes).
        searcher._index = None
        reload_s = timed(searcher.index)
        # The workload: how many chunks each query's OR-ed terms match (what BM25 has to score).
        matches = [store.db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (fq,)).fetchone()[0]
                   for fq in (fts_query(q) for q in queries) if fq]
        store.close()

    stats = {name: {"p50_ms": percentile(t, 50) * 1000, "p95_ms": percentile(t, 95) * 1000,
                    "mean_ms": float(np.mean(t)) * 1000} for name, t in times.items()}
    for mode in ("hybrid", "keyword", "vector"):
        stats[f"ours {mode}"]["p95_vs_baseline"] = ratio(stats[f"ours {mode}"]["p95_ms"],
                                                         stats[f"baseline {mode}"]["p95_ms"])
    for label in FILTERS:
        stats[label]["p95_vs_unfiltered_hybrid"] = ratio(stats[label]["p95_ms"], stats["ours hybrid"]["p95_ms"])
    if chroma is not None:
        stats["ours vector"]["p95_vs_chromadb"] = ratio(stats["ours vector"]["p95_ms"],
                                                        stats["chromadb vector (HNSW)"]["p95_ms"])
    return {"chunks": chunks, "build_seconds": build_s, "index_load_seconds": load_s,
            "index_reload_seconds": reload_s, "queries": len(queries),
            "keyword_matches_p50": float(np.percentile(matches, 50)) if matches else 0.0,
            "keyword_matches_p95": float(np.percentile(matches, 95)) if matches else 0.0,
            "latency": stats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts (default 10000,100000)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per size (default 200)")
    ap.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    ap.add_argument("--no-chroma", action="store_true", help="skip the chromadb baseline even if importable")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print

    words, probs = vocabulary()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = {}
    for n in sizes:
        r = bench_size(n, args, words, probs)
        results[n] = r
        out(f"\n== {r['chunks']:,} chunks, dim {DIM}, k={K}, {r['queries']} queries "
            f"(store built in {r['build_seconds']:.1f}s; vector index load {r['index_load_seconds'] * 1000:.0f} ms, "
            f"reload after a write {r['index_reload_seconds'] * 1000:.0f} ms) ==")
        out(f"keyword workload: each query's terms match {r['keyword_matches_p50']:,.0f} chunks at the median, "
            f"{r['keyword_matches_p95']:,.0f} at p95")
        rows = []
        for name, s in r["latency"].items():
            if "p95_vs_baseline" in s:
                cmp = f"{fmt_ratio(s['p95_vs_baseline'])} of baseline"
            elif "p95_vs_unfiltered_hybrid" in s:
                cmp = f"{fmt_ratio(s['p95_vs_unfiltered_hybrid'])} of unfiltered"
            else:
                cmp = ""
            rows.append([name, ms(s["p50_ms"] / 1000), ms(s["p95_ms"] / 1000), cmp])
        out(table(["variant", "p50 ms", "p95 ms", "p95 vs"], rows))
        if "p95_vs_chromadb" in r["latency"]["ours vector"]:
            out(f"ours vector p95 vs chromadb p95: {fmt_ratio(r['latency']['ours vector']['p95_vs_chromadb'])}")
    out("\nchromadb baseline: " + ("included" if any("chromadb vector (HNSW)" in r["latency"]
                                                     for r in results.values()) else "not importable (skipped)"))
    goal = None
    if 100_000 in results:
        p95 = results[100_000]["latency"]["ours hybrid"]["p95_ms"]
        goal = {"target_ms": 50.0, "hybrid_p95_ms": p95, "met": p95 <= 50.0}
        out(f"goal: hybrid p95 <= 50 ms at 100k chunks: {p95:.1f} ms -> {'met' if goal['met'] else 'NOT met'}")
    if args.json:
        dump_json({"benchmark": "search", "dim": DIM, "k": K, "query_embedder": "hashing-384",
                   "sizes": {str(n): r for n, r in results.items()}, "goal_100k_hybrid_p95": goal})
    return 0


if __name__ == "__main__":
    sys.exit(main())
