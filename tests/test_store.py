import sqlite3

import numpy as np
import pytest

from secondself.errors import SourceNotFoundError, StoreError
from secondself.migrations import MIGRATIONS
from secondself.store import Store
from secondself.types import ChunkDraft, SearchFilters


def _add(store: Store, source="notes", path="a.md", texts=("hello world",), model="m", dim=4):
    with store.transaction():
        sid = store.ensure_source(source, "/tmp/" + source)
        fid = store.record_file(sid, path, content_hash="h-" + path, size=1, mtime=1.0, status="ok")
        did = store.insert_document(fid, "", "Title", "note", None, {})
        ids = [store.insert_chunk(did, sid, "Title", ChunkDraft(t, i), None, np.ones(dim, np.float32), model)
               for i, t in enumerate(texts)]
    return sid, fid, ids


def test_migrations_apply_once_and_are_recorded(tmp_path):
    p = tmp_path / "m.sqlite3"
    Store(p).close()
    s = Store(p)
    names = [r[0] for r in s.db.execute("SELECT name FROM _migrations")]
    assert names == [m.__name__ for m in MIGRATIONS]
    s.close()


def test_newer_database_is_refused(tmp_path):
    p = tmp_path / "m.sqlite3"
    Store(p).close()
    db = sqlite3.connect(p)
    db.execute("INSERT INTO _migrations VALUES ('m999_future', 'x')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer secondself"):
        Store(p)


def test_not_a_database_gives_store_error(tmp_path):
    p = tmp_path / "bad.sqlite3"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store(p)


def test_transaction_rolls_back_on_interrupt(store):
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.ensure_source("x", "/x")
        raise KeyboardInterrupt
    assert store.source_roots() == {}


def test_generation_bumps_on_commit_only(store):
    g = store.generation
    _add(store)
    assert store.generation == g + 1
    with pytest.raises(RuntimeError), store.transaction():
        store.ensure_source("y", "/y")
        raise RuntimeError
    assert store.generation == g + 1


def test_delete_source_removes_everything_derived(store):
    _add(store, "notes", "a.md", ("alpha beta", "gamma"))
    _add(store, "mail", "b.eml", ("alpha mail",))
    counts = store.delete_source("notes")
    assert counts == {"files": 1, "chunks": 2}
    db = store.db
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    assert store.keyword_search(["gamma"], SearchFilters(), 10) == []            # gone from the keyword index
    assert [cid for cid, _ in store.keyword_search(["alpha"], SearchFilters(), 10)] == [
        r[0] for r in db.execute("SELECT id FROM chunks")]
    with pytest.raises(SourceNotFoundError):
        store.delete_source("notes")


def test_vectors_are_kept_per_model(store):
    _, _, ids = _add(store, model="a", dim=4)
    with store.transaction():
        store.put_vector(ids[0], "b", np.ones(8, np.float32))
    assert store.vector_models() == {"a": 1, "b": 1}
    assert store.count_missing_vectors("b") == 0
    assert store.count_missing_vectors("c") == 1
    ids_, matrix, _, _ = store.load_vectors("b")
    assert matrix.shape == (1, 8) and list(ids_) == ids


def test_chunk_round_trip_keeps_provenance(store):
    with store.transaction():
        sid = store.ensure_source("chat", "/c")
        fid = store.record_file(sid, "t.jsonl", content_hash="h", size=1, mtime=1.0, status="ok")
        did = store.insert_document(fid, "conv1", "Chat", "chat", None, {})
        cid = store.insert_chunk(did, sid, "Chat", ChunkDraft("Maya: hi", 0, "", None, ("Maya", "Tomás")),
                                 None, None, None)
    c = store.chunks([cid])[cid]
    assert (c.source, c.path, c.speakers, c.kind) == ("chat", "t.jsonl#conv1", ("Maya", "Tomás"), "chat")


def test_embedder_name_matches_the_built_embedder():
    from secondself.backends.embedders import embedder_name, make_embedder

    for spec in ("hashing", "hashing-64"):
        assert embedder_name(spec) == make_embedder(spec).name
    assert embedder_name("minilm") == "all-MiniLM-L6-v2"
