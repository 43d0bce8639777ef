"""The example people: every file carries a date of its own that ingest reads (front matter, headers, a date in
the file name, ...), so nothing is dated by its modification time, which in a fresh clone is the clone time."""

from __future__ import annotations

import os
import shutil

import pytest

from secondself.ingest.pipeline import ingest

from .conftest import EXAMPLES

_Y2K = 946_684_800  # 2000-01-01: every copied file gets this mtime, so a date taken from it stands out


@pytest.mark.parametrize("person", ["maya", "heldout", "blind"])
def test_every_example_file_is_dated_by_its_content_or_name(person, tmp_path, store, embedder):
    corpus = tmp_path / "corpus"
    shutil.copytree(EXAMPLES / person / "corpus", corpus)
    for path in corpus.rglob("*"):
        os.utime(path, (_Y2K, _Y2K))
    report = ingest(store, embedder, [corpus], source_name=person, person_name="Me")
    assert not report.failed
    undated = sorted({c.path for c in store.chunks(store.undated_chunks()).values()})
    assert undated == [], f"dated by their modification time: {undated}"
    years = {(c.date or "")[:4] for c in store.all_chunks()}
    assert years <= {str(y) for y in range(2019, 2027)}, years
