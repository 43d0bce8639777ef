import json
from pathlib import Path

import numpy as np
import pytest

from secondself.errors import ConfigError, SourceNotFoundError
from secondself.ingest.pipeline import ingest
from secondself.memory.search import Searcher, fts_query, hit_to_dict, make_snippet
from secondself.memory.vectors import VectorIndex
from secondself.types import SearchFilters


@pytest.fixture
def mem(store, embedder, tmp_path: Path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "porto.md").write_text("---\ndate: 2025-03-02\n---\nI live in Porto, near the Douro river.\n")
    (notes / "lisbon.md").write_text("---\ndate: 2025-07-02\n---\nMoved to Lisbon. The flat on Rua dos Anjos is bright.\n")
    chats = tmp_path / "chats"
    chats.mkdir()
    (chats / "t.jsonl").write_text("\n".join(json.dumps(m) for m in [
        {"speaker": "Tomás", "text": "The kiln is finally fixed, come see the bowls", "timestamp": "2025-05-01T10:00:00Z",
         "conversation": "a"},
        {"speaker": "Inês", "text": "Stockholm is cold, bring the river photos", "timestamp": "2025-05-02T10:00:00Z",
         "conversation": "b"},
    ]))
    ingest(store, embedder, [notes])
    ingest(store, embedder, [chats])
    return Searcher(store, embedder)


def test_keyword_finds_names_and_places(mem):
    hits = mem.search("Rua dos Anjos", mode="keyword")
    assert hits[0].chunk.path == "lisbon.md" and hits[0].keyword_rank == 1


def test_hybrid_fuses_both_sides(mem):
    hits = mem.search("Douro river Porto", k=3)
    assert hits[0].chunk.path == "porto.md"
    assert hits[0].keyword_rank == 1 and hits[0].vector_rank is not None
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "vector"])
def test_filters_apply_to_every_side(mem, mode):
    river = "river"
    assert {h.chunk.source for h in mem.search(river, k=10, mode=mode, filters=SearchFilters(("chats",)))} <= {"chats"}
    since = mem.search(river, k=10, mode=mode, filters=SearchFilters(since="2025-04-01"))
    assert since and all(h.chunk.date >= "2025-04-01" for h in since)
    until = mem.search(river, k=10, mode=mode, filters=SearchFilters(until="2025-03-02"))
    assert [h.chunk.path for h in until] == ["porto.md"]  # the whole day is included
    by = mem.search(river, k=10, mode=mode, filters=SearchFilters(speaker="inês"))
    assert [h.chunk.speakers for h in by] == [("Inês",)]


def test_unknown_source_filter_is_a_clear_error(mem):
    with pytest.raises(SourceNotFoundError):
        mem.search("x", filters=SearchFilters(("nope",)))


def test_bad_arguments(mem):
    with pytest.raises(ConfigError):
        mem.search("x", mode="fuzzy")
    with pytest.raises(ConfigError):
        mem.search("x", k=0)
    with pytest.raises(ConfigError, match="date"):
        mem.search("x", filters=SearchFilters(since="last tuesday-ish"))


@pytest.mark.parametrize("q", ['"unbalanced', "AND OR NOT", "col:umn*", "NEAR(a b)", "-x", "?!"])
def test_hostile_queries_do_not_break_fts(mem, q):
    mem.search(q)  # no exception


def test_fts_query_quotes_terms_and_drops_stopwords():
    assert fts_query('Where was I living in "March"?') == '"living" OR "march"'
    assert fts_query("the") == '"the"'  # only stopwords: keep them
    assert fts_query("") == ""


def test_snippet_picks_window_with_query_terms():
    text = " ".join(["filler"] * 100 + ["cello", "lesson", "Friday"] + ["filler"] * 100)
    s = make_snippet(text, "cello lesson", width=10)
    assert "cello lesson" in s and s.startswith("…") and s.endswith("…")


def test_json_shape_is_stable(mem):
    d = hit_to_dict(mem.search("kiln")[0])
    assert list(d) == ["chunk_id", "score", "snippet", "text", "source", "path", "title", "heading", "position",
                       "date", "speakers", "kind", "keyword_rank", "vector_rank"]
    assert d["path"] == "t.jsonl#a" and d["speakers"] == ["Tomás"] and d["kind"] == "chat"


def test_index_cache_reloads_after_writes(mem, tmp_path, store, embedder):
    first = mem.index()
    assert mem.index() is first
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "x.txt").write_text("sourdough starter named Gertrude")
    ingest(store, embedder, [extra])
    assert mem.index() is not first
    assert mem.search("Gertrude sourdough", mode="vector")[0].chunk.path == "x.txt"


def test_vector_index_top_k_and_mask():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(50, 8)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    idx = VectorIndex(np.arange(100, 150), m, np.zeros(50, np.int64), np.arange(50, dtype=float), "t", 0)
    top = idx.top_k(m[7], 3)
    assert top[0][0] == 107 and abs(top[0][1] - 1.0) < 1e-5
    expected = np.argsort(-(m @ m[7]))[:3] + 100
    assert [i for i, _ in top] == list(expected)
    mask = idx.mask(None, since=10.0, until=20.0, allowed_ids=None)
    assert all(110 <= i <= 120 for i, _ in idx.top_k(m[7], 50, mask))
    assert idx.top_k(m[7], 5, np.zeros(50, bool)) == []


def test_term_document_counts_use_the_index_stemming(mem, store):
    counts = store.term_document_counts(["river", "rivers", "living", "zebra"])
    assert counts == {"river": 2, "rivers": 2, "living": 1, "zebra": 0}  # "I live in Porto" counts for living


def test_common_terms_are_pruned_only_on_large_memories(mem, monkeypatch):
    import secondself.memory.search as search

    assert mem.common_terms("river Porto") == frozenset()  # small memory: every term kept
    monkeypatch.setattr(search, "PRUNE_FROM", 1)
    monkeypatch.setattr(search, "COMMON_SHARE", 0.4)  # "river" is in 2 of 4 chunks
    assert mem.common_terms("river Porto") == {"river"}
    assert mem.search("river Porto", mode="keyword")[0].chunk.path == "porto.md"
    assert mem.common_terms("river") == frozenset()  # never drop every term


def test_words_about_the_memories_themselves_are_no_query_terms():
    from secondself.memory.search import query_terms

    # a space asks each second self this; "memories" and "say" halved the coverage of a note on the move
    assert query_terms('What do your memories say about "Move to Lisbon"?') == ["move", "lisbon"]
    assert query_terms("Do you remember the kiln?") == ["kiln"]
    assert query_terms("memories") == ["memories"]          # a question of nothing else keeps its words
