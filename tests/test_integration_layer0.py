"""Layer 0 end to end with the real embedding model on the example person (slow: run with --slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from secondself.evaluation import is_relevant, load_queries
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CORPUS = EXAMPLES / "maya" / "corpus"


@pytest.fixture
def maya(maya_memory):
    return maya_memory


def test_example_person_ingests_completely(maya):
    store, embedder, report = maya
    s = report.summary()
    assert s["failed"] == 0 and s["skipped"] == 0 and s["added"] >= 60
    kinds = {r[0] for r in store.db.execute("SELECT DISTINCT kind FROM documents")}
    assert kinds >= {"note", "document", "email", "chat", "web"}
    assert store.count_missing_vectors(embedder.name) == 0
    speakers = {sp for c in store.all_chunks() for sp in c.speakers}
    assert {"Maya", "Tomás", "ChatGPT"} <= speakers and "me" not in speakers


def test_reingest_is_a_noop(maya):
    store, embedder, _ = maya
    gen_chunks = store.db.execute("SELECT max(id), count(*) FROM chunks").fetchone()
    r = ingest(store, embedder, [CORPUS], source_name="maya")
    assert r.summary()["unchanged"] == len(r.outcomes)
    assert r.chunks_written == 0 and r.embedded == 0
    assert store.db.execute("SELECT max(id), count(*) FROM chunks").fetchone() == gen_chunks


def test_hybrid_search_finds_labelled_passages(maya):
    store, embedder, _ = maya
    searcher = Searcher(store, embedder)
    answerable = [q for q in load_queries(EXAMPLES / "maya" / "queries.jsonl") if q.answerable]
    hit = {}
    for mode in ("keyword", "vector", "hybrid"):
        found = 0
        for q in answerable:
            hits = searcher.search(q.question, k=5, mode=mode)
            found += any(is_relevant(h.chunk, q) for h in hits)
        hit[mode] = found / len(answerable)
    print("hit@5", hit)
    # Measured 2026-11-22 with bench/retrieval.py: keyword 0.714, vector 0.571, hybrid 0.714 hit@5.
    # The thresholds sit a little below, so a retrieval regression fails this test.
    assert hit["hybrid"] >= 0.68
    assert hit["hybrid"] >= max(hit["keyword"], hit["vector"]) - 0.05


def test_citations_carry_provenance(maya):
    store, embedder, _ = maya
    hits = Searcher(store, embedder).search("When did I start at Tidewater Labs?", k=5)
    assert any(h.chunk.path == "journal/2025-09-08.md" and "started" in h.chunk.text for h in hits[:3])
    for h in hits:
        assert h.chunk.source == "maya" and h.chunk.path and h.chunk.date and h.snippet


def test_cli_end_to_end_with_real_model(tmp_path):
    env = {**os.environ, "SECONDSELF_HOME": str(tmp_path / "home")}
    env.pop("SECONDSELF_REAL_MODELS", None)
    cmd = [sys.executable, "-m", "secondself"]
    r = subprocess.run(cmd + ["ingest", str(CORPUS / "chats"), "--json"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["search", "breakup", "--speaker", "Tomás", "--json"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert results and all("Tomás" in x["speakers"] for x in results)
    r = subprocess.run(cmd + ["forget", "chats", "--yes"], env=env, capture_output=True, text=True)
    assert r.returncode == 0
    r = subprocess.run(cmd + ["status", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(r.stdout)["chunks"] == 0
