import json
import os
from pathlib import Path

import numpy as np
import pytest

from secondself.backends.embedders import HashingEmbedder
from secondself.errors import IngestError
from secondself.ingest.pipeline import ensure_embeddings, ingest
from secondself.memory.search import Searcher


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    v = tmp_path / "vault"
    write(v / "journal" / "2025-03-02.md", "---\ndate: 2025-03-02\n---\n# March\n\nI live in Porto near the river.\n")
    write(v / "notes" / "cello.txt", "Practice the Elgar concerto every morning.\n\nCello lesson with Rui on Fridays.")
    write(v / "chat.jsonl", "\n".join(json.dumps(m) for m in [
        {"speaker": "Maya", "text": "Dinner at the ceramics studio?", "timestamp": "2025-04-12T19:00:00Z"},
        {"speaker": "Tomás", "text": "Yes, bring the sourdough.", "timestamp": "2025-04-12T19:05:00Z"},
    ]))
    return v


def counts(store):
    q = lambda sql: store.db.execute(sql).fetchone()[0]  # noqa: E731
    out = {t: q(f"SELECT count(*) FROM {t}") for t in ("files", "documents", "chunks", "embeddings")}
    out["chunks_fts"] = q("SELECT count(*) FROM chunks_fts")  # the keyword index: a table on both stores
    return out


def test_ingest_then_reingest_is_a_noop(store, embedder, vault):
    r1 = ingest(store, embedder, [vault])
    assert r1.summary()["added"] == 3 and not r1.failed
    before, gen = counts(store), store.generation
    r2 = ingest(store, embedder, [vault])
    assert r2.summary()["unchanged"] == 3 and r2.chunks_written == 0 and r2.embedded == 0
    assert counts(store) == before
    ids_before = [c.id for c in store.all_chunks()]
    os.utime(vault / "notes" / "cello.txt")  # touched, same content: skipped by hash
    r3 = ingest(store, embedder, [vault])
    assert r3.summary()["unchanged"] == 3
    assert [c.id for c in store.all_chunks()] == ids_before
    assert store.generation > gen


def test_changed_file_replaces_its_chunks(store, embedder, vault):
    ingest(store, embedder, [vault])
    write(vault / "notes" / "cello.txt", "I sold the old bow and bought a carbon one.")
    r = ingest(store, embedder, [vault])
    assert r.summary()["updated"] == 1
    s = Searcher(store, embedder)
    assert not s.search("Elgar concerto", mode="keyword")
    assert s.search("carbon bow", mode="keyword")[0].chunk.path == "notes/cello.txt"
    assert counts(store)["embeddings"] == counts(store)["chunks"] == counts(store)["chunks_fts"]


def test_provenance_source_date_speaker(store, embedder, vault):
    ingest(store, embedder, [vault], person_name="Maya")
    chunks = {c.path: c for c in store.all_chunks()}
    j = chunks["journal/2025-03-02.md"]
    assert j.source == "vault" and j.date.startswith("2025-03-02") and j.heading == "March"
    chat = next(c for p, c in chunks.items() if p.startswith("chat.jsonl"))
    assert set(chat.speakers) == {"Maya", "Tomás"} and chat.date.startswith("2025-04-12")
    assert "Tomás: Yes, bring the sourdough." in chat.text
    txt = chunks["notes/cello.txt"]
    assert txt.date is not None  # falls back to the file time


def test_duplicate_under_other_name_is_not_chunked_twice(store, embedder, vault):
    (vault / "copy.txt").write_bytes((vault / "notes" / "cello.txt").read_bytes())
    r = ingest(store, embedder, [vault])
    assert r.summary()["duplicate"] == 1
    assert len(Searcher(store, embedder).search("Elgar", mode="keyword")) == 1
    # the original goes away: the duplicate takes over on the next run
    (vault / "notes" / "cello.txt").unlink()
    ingest(store, embedder, [vault], prune=True)
    hits = Searcher(store, embedder).search("Elgar", mode="keyword")
    assert [h.chunk.path for h in hits] == ["copy.txt"]


def test_prune_removes_deleted_files_only_when_asked(store, embedder, vault):
    ingest(store, embedder, [vault])
    (vault / "notes" / "cello.txt").unlink()
    r = ingest(store, embedder, [vault])
    assert r.summary()["missing"] == 1
    assert Searcher(store, embedder).search("Elgar", mode="keyword")
    r = ingest(store, embedder, [vault], prune=True)
    assert r.summary()["removed"] == 1
    assert not Searcher(store, embedder).search("Elgar", mode="keyword")


def test_bad_files_are_reported_and_the_rest_continue(store, embedder, vault):
    (vault / "broken.pdf").write_bytes(b"%PDF-1.4 garbage garbage")
    (vault / "empty.md").write_text("")
    (vault / "photo.png").write_bytes(b"\x89PNG....")
    r = ingest(store, embedder, [vault])
    by = {o.path: o for o in r.outcomes}
    assert by["broken.pdf"].status == "failed" and "pdf" in by["broken.pdf"].reason.lower()
    assert by["empty.md"].status == "skipped"
    assert by["photo.png"].status == "skipped" and "unsupported" in by["photo.png"].reason
    assert r.summary()["added"] == 3
    assert [s.failed_files for s in store.sources()] == [1]


def test_file_that_becomes_corrupt_keeps_its_previous_chunks(store, embedder, tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Lease signed for Rua dos Anjos.")
    p = tmp_path / "docs" / "lease.pdf"
    p.parent.mkdir()
    pdf.output(str(p))
    ingest(store, embedder, [p.parent])
    p.write_bytes(b"%PDF-1.4 truncated")
    r = ingest(store, embedder, [p.parent])
    assert r.failed and "kept the previously ingested version" in r.failed[0].reason
    assert Searcher(store, embedder).search("Anjos", mode="keyword")


class ExplodingEmbedder(HashingEmbedder):
    def __init__(self, after: int):
        super().__init__(64)
        self.calls, self.after = 0, after

    def embed(self, texts):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return super().embed(texts)


def test_interrupt_leaves_consistent_db_and_next_run_completes(store, tmp_path, monkeypatch):
    import secondself.ingest.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_FLUSH_CHUNKS", 2)
    monkeypatch.setattr(pipeline, "_COMMIT_SECONDS", 0.0)  # one file per transaction
    v = tmp_path / "many"
    for i in range(6):
        write(v / f"n{i}.txt", f"note {i}\n\nsecond paragraph {i}\n\nthird {i}")
    with pytest.raises(KeyboardInterrupt):
        ingest(store, ExplodingEmbedder(after=3), [v])
    c = counts(store)
    assert 0 < c["files"] < 6
    assert c["chunks"] == c["embeddings"] == c["chunks_fts"] == c["files"]  # one chunk per small file
    r = ingest(store, HashingEmbedder(64), [v])
    assert r.summary()["unchanged"] == c["files"] and r.summary()["added"] == 6 - c["files"]
    assert counts(store)["chunks"] == 6


def test_embedding_model_switch_reembeds_and_keeps_old_vectors(store, vault):
    a, b = HashingEmbedder(64), HashingEmbedder(32)
    ingest(store, a, [vault])
    n = counts(store)["chunks"]
    s = Searcher(store, b)
    assert s.stale() == n
    assert ensure_embeddings(store, b) == n
    assert store.vector_models() == {a.name: n, b.name: n}
    assert s.search("Porto river", mode="vector")[0].chunk.path == "journal/2025-03-02.md"
    assert ensure_embeddings(store, a) == 0  # switching back is free


def test_symlink_loop_is_walked_once(store, embedder, vault):
    (vault / "journal" / "loop").symlink_to(vault, target_is_directory=True)
    r = ingest(store, embedder, [vault])
    assert r.summary()["added"] == 3


def test_missing_path_is_a_clear_error_and_writes_nothing(store, embedder, tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        ingest(store, embedder, [tmp_path / "nope"])
    assert store.source_roots() == {}


def test_single_file_source_and_source_name(store, embedder, vault):
    ingest(store, embedder, [vault / "chat.jsonl"], source_name="signal")
    assert [s.name for s in store.sources()] == ["signal"]
    assert all(c.source == "signal" for c in store.all_chunks())
    r = ingest(store, embedder, [])  # re-scan all known sources
    assert r.summary()["unchanged"] == 1


def test_large_files_stream_through_the_pipeline(store, embedder, tmp_path, monkeypatch):
    import secondself.ingest.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_MATERIALIZE_BYTES", 100)  # treat every file as large
    big = write(tmp_path / "big" / "log.txt", "\n\n".join(f"entry {i} about the harbour" for i in range(500)))
    r = ingest(store, embedder, [big.parent])
    assert r.summary()["added"] == 1 and r.chunks_written > 5
    assert Searcher(store, embedder).search("entry 499", mode="keyword")


def test_watch_keeps_a_folder_in_sync(store, embedder, tmp_path):
    import threading
    import time

    from secondself.ingest.watch import watch

    v = tmp_path / "watched"
    v.mkdir()
    synced = threading.Event()

    def sync():
        ingest(store, embedder, [v], prune=True)
        synced.set()

    stop = threading.Event()
    t = threading.Thread(target=watch, args=([v], sync, stop), kwargs={"debounce": 0.2}, daemon=True)
    t.start()
    time.sleep(0.5)  # let the observer start
    try:
        write(v / "new.md", "The harbour seals are back.")
        assert synced.wait(10)
        assert [h.chunk.path for h in Searcher(store, embedder).search("harbour seals", mode="keyword")] == ["new.md"]
        synced.clear()
        (v / "new.md").unlink()
        assert synced.wait(10)
        assert not Searcher(store, embedder).search("harbour seals", mode="keyword")
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()


def test_vectors_are_normalized(store, embedder, vault):
    ingest(store, embedder, [vault])
    _, m, _, _ = store.load_vectors(embedder.name)
    assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
