"""Progress of long steps: one `Progress` type reported by the library, drawn by the CLI as one bar per stage
(rate and ETA) on a terminal, one summary line per stage in a log, nothing with --json — never a line per item."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest

from .conftest import EXAMPLES


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(bars, stage: str, total: int, **info) -> None:
    for done in range(1, total + 1):
        bars(_progress(stage, done, total, info))


def _progress(stage, done, total, info=None):
    from secondself.progress import Progress

    return Progress(stage, done, total, info or {})


def test_a_terminal_gets_one_self_updating_bar_per_stage_with_its_eta():
    from secondself.cli.progress import Bars

    term = _Terminal()
    bars = Bars({"evaluate": ("evaluate", "answer"), "train": ("train", "step")}, keep=True, file=term)
    _feed(bars, "evaluate", 64)
    _feed(bars, "train", 5, loss=1.25, tokens_per_s=300.0)
    bars.close()
    text = term.getvalue()
    assert text.count("\n") == 2                          # one kept line per stage, redrawn in place with \r
    assert "64/64" in text and "5/5" in text and "loss 1.250" in text and "300 tok/s" in text
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", text)       # elapsed<remaining: the ETA


def test_without_a_terminal_only_kept_stages_leave_one_summary_line_each():
    from secondself.cli.progress import Bars

    log = io.StringIO()
    bars = Bars({"retention": ("base model answering generic prompts", "prompt"),
                 "evaluate": ("evaluate", "answer")}, keep=True, file=log)
    _feed(bars, "retention", 24)
    _feed(bars, "evaluate", 64)
    _feed(bars, "not drawn", 3)
    bars.close()
    lines = log.getvalue().splitlines()
    assert [re.sub(r"\d\d:\d\d", "T", line) for line in lines] == [
        "base model answering generic prompts: 24/24 prompts in T", "evaluate: 64/64 answers in T"]
    quiet = io.StringIO()
    plain = Bars({"ingest": ("ingest", "file")}, file=quiet)       # not kept: the command prints its own report
    _feed(plain, "ingest", 10)
    plain.close()
    assert quiet.getvalue() == ""


def test_json_draws_nothing_even_on_a_terminal_and_a_restarted_stage_gets_a_new_bar():
    from secondself.cli.progress import Bars

    term = _Terminal()
    bars = Bars({"ingest": ("ingest", "file")}, quiet=True, file=term)
    _feed(bars, "ingest", 10)
    bars.close()
    assert term.getvalue() == ""
    log = io.StringIO()
    bars = Bars({"ingest": ("ingest", "file")}, keep=True, file=log)
    _feed(bars, "ingest", 3)                                       # two sources: the stage starts again
    _feed(bars, "ingest", 3)
    bars.close()
    assert len(log.getvalue().splitlines()) == 2


def test_the_library_reports_through_the_one_progress_type(store, embedder, journal_dir):
    from secondself.backends.chat import FakeChatModel
    from secondself.ingest.pipeline import ensure_embeddings, ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.progress import Progress

    seen: list[Progress] = []
    ingest(store, embedder, [journal_dir], on_progress=seen.append)
    build(store, embedder.name, FakeChatModel(), "Maya", BuildOptions(slots=False), on_progress=seen.append)

    class Other:
        name, dim, max_words = "other", 8, 256

        def embed(self, texts):
            import numpy as np

            return np.ones((len(texts), 8), dtype=np.float32)
    ensure_embeddings(store, Other(), on_progress=seen.append, batch=4)
    assert all(isinstance(p, Progress) for p in seen)
    stages = {p.stage for p in seen}
    assert {"scan", "ingest", "topics", "facts", "embed"} <= stages
    ingested = [p for p in seen if p.stage == "ingest"]
    assert [(p.done, p.total) for p in ingested] == [(i, 6) for i in range(1, 7)]
    assert [p for p in seen if p.stage == "embed"][-1].done == store.chunk_count()


@pytest.fixture(scope="module")
def trainable(tmp_path_factory):
    pytest.importorskip("peft")
    from secondself.backends.chat import FakeChatModel
    from secondself.backends.embedders import HashingEmbedder
    from secondself.ingest.pipeline import ingest
    from secondself.memory.build import BuildOptions, build
    from secondself.store import Store
    from secondself.train.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("progress")
    with Store(root / "memory.sqlite3") as s:
        ingest(s, HashingEmbedder(128), [EXAMPLES / "maya" / "corpus"], source_name="maya", person_name="Maya")
        build(s, "hashing-128", FakeChatModel(), "Maya", BuildOptions(slots=False))
    return root / "memory.sqlite3", make_tiny_model(root / "tiny")


def test_cli_train_in_a_log_prints_a_line_per_stage_not_per_item_and_nothing_with_json(trainable, tmp_path,
                                                                                        monkeypatch, capsys):
    """Before: "evaluating 1/12", "evaluating 2/12", ... and a line per generic prompt, when not a terminal."""
    import torch

    from secondself.train import pipeline

    from .test_cli import run

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")        # the tiny model is built in code, not real
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    monkeypatch.setattr(pipeline, "TrainOptions", _quick(pipeline.TrainOptions))
    torch.set_num_threads(1)
    db, tiny = trainable
    (tmp_path / "home" / "persons" / "me").mkdir(parents=True)    # SECONDSELF_HOME of the autouse fixture
    shutil.copy(db, tmp_path / "home" / "persons" / "me" / "memory.sqlite3")
    code, _, err = run(capsys, "train", "--base", str(tiny), "--steps", "3")
    assert code == 0, err
    counted = [line for line in err.splitlines() if re.search(r"\b\d+/\d+\b", line)]
    assert len(counted) == 3, err                                     # retention, train, evaluate: once each
    assert [line.split(":")[0] for line in counted] == ["base model answering generic prompts", "train", "evaluate"]
    assert "3/3 steps" in counted[1] and "loss" in counted[1]
    # nothing new was learnt since v001, so a second run continues nothing: --full trains from scratch again
    code, out, err = run(capsys, "train", "--base", str(tiny), "--steps", "3", "--full", "--json")
    assert code == 0 and json.loads(out)["version"] == "v002", err
    assert not re.search(r"\b\d+/\d+\b", err) and "samples" not in err, err


def _quick(options):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Quick(options):
        eval_questions: int = 4
        retention_prompts: int = 3
    return Quick


def test_cli_ingest_and_build_print_no_progress_lines_in_a_log_or_with_json(journal_dir, capsys):
    from .test_cli import run

    for args in (("ingest", str(journal_dir)), ("ingest", str(journal_dir), "--json"), ("build", "--teacher", "fake"),
                 ("build", "--full", "--teacher", "fake", "--json")):
        code, _, err = run(capsys, *args)
        assert code == 0, err
        assert not re.search(r"\b\d+/\d+\b", err) and "\r" not in err, (args, err)
