"""The server's background jobs: outcomes, cancel, restart recovery, graceful stop, progress, and the real
ingest and build runners on a few notes (hashing embedder, fake teacher)."""

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from secondself.config import load_settings
from secondself.errors import ConfigError, JobCancelled, JobNotFoundError
from secondself.serve.jobs import MAX_LOSS_POINTS, Jobs, add_loss
from secondself.serve.runners import run_build
from secondself.store import open_store


@pytest.fixture
def settings(backend):
    return load_settings(overrides={"embedder": "hashing", "teacher_model": "fake", "person_name": "Maya"})


@pytest.fixture
def make_jobs(settings):
    made = []

    def make(runners=None, start=True):
        jobs = Jobs(settings, runners)
        if start:
            jobs.start()
        made.append(jobs)
        return jobs
    yield make
    for jobs in made:
        jobs.stop(timeout=5)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def echo(rt, params, progress, should_stop):
    return {"twice": params["x"] * 2}


def until_stopped(started: threading.Event):
    """A runner that works until asked to stop, then raises JobCancelled (as the real runners do)."""
    def run(rt, params, progress, should_stop):
        started.set()
        deadline = time.monotonic() + 10
        while not should_stop():
            assert time.monotonic() < deadline, "never asked to stop"
            time.sleep(0.01)
        raise JobCancelled("stopped")
    return run


def test_jobs_run_one_at_a_time_in_order_and_record_the_result(make_jobs):
    order, running = [], []

    def slow(rt, params, progress, should_stop):
        running.append(params["x"])
        assert len(running) == 1, "two jobs ran at once"
        time.sleep(0.05)
        order.append(params["x"])
        running.pop()
        return {"twice": params["x"] * 2}

    jobs = make_jobs({"slow": slow})
    ids = [jobs.submit("slow", {"x": i})["id"] for i in range(3)]
    finished = [jobs.wait(i, 30) for i in ids]
    assert order == [0, 1, 2]
    assert [j["status"] for j in finished] == ["done"] * 3
    assert finished[2]["result"] == {"twice": 4} and finished[2]["error"] is None
    assert finished[2]["started_at"] and finished[2]["finished_at"] and finished[2]["params"] == {"x": 2}
    assert [j["id"] for j in jobs.list()] == ids[::-1]                       # newest first
    assert [j["id"] for j in jobs.list(limit=1)] == [ids[2]]


def test_typed_errors_fail_with_their_message_others_with_their_type(make_jobs, caplog):
    def typed(rt, params, progress, should_stop):
        raise ConfigError("the teacher 'x' is unknown: choose another")

    def bug(rt, params, progress, should_stop):
        raise ValueError("boom")

    jobs = make_jobs({"typed": typed, "bug": bug})
    with caplog.at_level(logging.ERROR, logger="secondself.serve.jobs"):
        a = jobs.wait(jobs.submit("typed", {})["id"], 30)
        b = jobs.wait(jobs.submit("bug", {})["id"], 30)
    assert a["status"] == "failed" and a["error"] == "the teacher 'x' is unknown: choose another"
    assert b["status"] == "failed" and b["error"] == "ValueError: boom" and b["result"] is None
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and "boom" in str(logged[0].exc_info[1])          # the bug's traceback, logged once


def test_submit_checks_kind_and_params_and_get_unknown_id(make_jobs):
    jobs = make_jobs(start=False)
    with pytest.raises(ConfigError, match="unknown job kind 'nope'"):
        jobs.submit("nope", {})
    for kind, params, message in [("ingest", {"paths": "notes"}, "paths must be list"),
                                  ("ingest", {"paths": [3]}, "list of strings"),
                                  ("train", {"steps": 0}, "steps must be positive"),
                                  ("train", {"rank": True}, "rank must be int"),
                                  ("build", {"colour": "red"}, "unknown parameter 'colour'")]:
        with pytest.raises(ConfigError, match=message):
            jobs.submit(kind, params)
    assert jobs.list() == []                                                 # nothing was queued
    with pytest.raises(JobNotFoundError, match="no job with id 99"):
        jobs.get(99)


def test_cancel_queued_at_once_and_running_when_it_stops(make_jobs):
    started, ran = threading.Event(), []

    def record(rt, params, progress, should_stop):
        ran.append(params)
        return {}

    jobs = make_jobs({"loop": until_stopped(started), "record": record})
    looping = jobs.submit("loop", {})["id"]
    queued = jobs.submit("record", {"x": 1})["id"]
    assert started.wait(30)
    assert jobs.cancel(queued)["status"] == "cancelled"
    asked = jobs.cancel(looping)
    assert asked["status"] == "running" and "cancel requested" in asked["note"]
    job = jobs.wait(looping, 30)
    assert job["status"] == "cancelled" and job["finished_at"] and job["result"] is None
    done = jobs.wait(jobs.submit("record", {"x": 2})["id"], 30)
    assert ran == [{"x": 2}]                                                 # the cancelled one never ran
    assert jobs.cancel(done["id"]) == done                                   # finished: unchanged


def test_a_real_build_cancelled_from_its_progress_callback_is_cancelled_not_failed(make_jobs, notes):
    """build wraps errors raised in its callbacks in BuildError; the stop must still be recognised."""
    jobs = make_jobs({"build_stopped": lambda rt, p, progress, _: run_build(rt, p, progress, lambda: True)})
    assert jobs.wait(jobs.submit("ingest", {"paths": [str(notes)]})["id"], 30)["status"] == "done"
    job = jobs.wait(jobs.submit("build_stopped", {})["id"], 30)
    assert job["status"] == "cancelled" and "build stopped" in job["note"]


def _insert(settings, kind, params, status="running"):
    with open_store(settings) as s:
        return s.db.execute("INSERT INTO jobs (kind, params, status, created_at, started_at) VALUES (?, ?, ?, ?, ?) "
                            "RETURNING id", (kind, json.dumps(params), status, "2026-01-01T00:00:00+00:00",
                                             "2026-01-01T00:00:01+00:00")).fetchone()[0]


def test_start_requeues_jobs_a_killed_process_left_running(settings, make_jobs):
    seen = []

    def fake_train(rt, params, progress, should_stop):
        seen.append(("train", params))
        return {"version": "v001"}

    def other(rt, params, progress, should_stop):
        seen.append(("other", params))
        return {}

    train_id = _insert(settings, "train", {"steps": 3})
    other_id = _insert(settings, "other", {"x": 1})
    jobs = make_jobs({"train": fake_train, "other": other})
    train, second = jobs.wait(train_id, 30), jobs.wait(other_id, 30)
    assert train["status"] == second["status"] == "done"
    assert seen == [("train", {"steps": 3, "resume": True}), ("other", {"x": 1})]   # train resumes its run
    assert "interrupted" in train["note"] and "resumed" in train["note"]
    assert train["params"]["resume"] is True and "resume" not in second["params"]


def test_cancel_of_a_row_no_worker_runs_marks_it_cancelled(settings, make_jobs):
    jobs = make_jobs({"other": echo}, start=False)
    job = jobs.cancel(_insert(settings, "other", {"x": 1}))
    assert job["status"] == "cancelled" and job["finished_at"]


def test_stop_puts_the_running_job_back_and_the_next_start_finishes_it(settings, make_jobs):
    started, calls = threading.Event(), []
    looping = until_stopped(started)

    def train(rt, params, progress, should_stop):
        calls.append(dict(params))
        if not params.get("resume"):
            looping(rt, params, progress, should_stop)
        return {"resumed": True}

    first = make_jobs({"train": train})
    job_id = first.submit("train", {"steps": 5})["id"]
    assert started.wait(30)
    first.stop(timeout=5)
    job = first.get(job_id)
    assert job["status"] == "queued" and "server shutting down" in job["note"]
    assert job["params"] == {"steps": 5, "resume": True} and job["finished_at"] is None
    second = make_jobs({"train": train})
    job = second.wait(job_id, 30)
    assert job["status"] == "done" and job["result"] == {"resumed": True}
    assert calls == [{"steps": 5}, {"steps": 5, "resume": True}]


def test_progress_is_live_persisted_throttled_and_final(settings, make_jobs, monkeypatch):
    """The throttle runs on a clock the test moves, so a slow machine cannot make it flaky."""
    from types import SimpleNamespace

    import secondself.serve.jobs as jobs_module

    clock = [1000.0]
    monkeypatch.setattr(jobs_module, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=time.sleep))
    seen = []

    def stored():
        with open_store(settings) as s:
            return json.loads(s.db.execute("SELECT progress FROM jobs").fetchone()[0])

    def reporting(rt, params, progress, should_stop):
        progress({"stage": "a", "done": 1, "total": 5})
        seen.append(("stage change", stored()))
        progress({"done": 2})
        seen.append(("throttled", stored(), jobs.get(1)["progress"]))
        clock[0] += 0.6
        progress({"done": 3})
        seen.append(("after 0.5 s", stored()))
        progress({"stage": "b", "done": 0})
        seen.append(("new stage", stored()))
        progress({"done": 4})
        return {}

    jobs = make_jobs({"reporting": reporting})
    job = jobs.wait(jobs.submit("reporting", {})["id"], 30)
    assert seen[0] == ("stage change", {"stage": "a", "done": 1, "total": 5})
    assert seen[1] == ("throttled", {"stage": "a", "done": 1, "total": 5}, {"stage": "a", "done": 2, "total": 5})
    assert seen[2][1]["done"] == 3 and seen[3][1] == {"stage": "b", "done": 0, "total": 5}
    assert job["progress"] == {"stage": "b", "done": 4, "total": 5} == stored()    # the last report, persisted


def test_progress_inside_the_jobs_own_write_transaction_does_not_wait(make_jobs):
    """ingest reports progress inside its write transaction; a blocking progress write would wait on itself."""
    def writer(rt, params, progress, should_stop):
        with rt.store.transaction():
            rt.store.set_meta("test", "1")
            for i in range(3):
                progress({"stage": f"s{i}", "done": i})
        return {}

    jobs = make_jobs({"writer": writer})
    t0 = time.monotonic()
    job = jobs.wait(jobs.submit("writer", {})["id"], 30)
    assert job["status"] == "done", job["error"]
    # not a performance figure: a blocking write would wait out SQLite's 5 s busy timeout per report (15 s)
    assert time.monotonic() - t0 < 10 and job["progress"] == {"stage": "s2", "done": 2}


def test_loss_curve_is_capped_thinned_evenly_and_resume_replaces_redone_steps(make_jobs):
    steps = 2000

    def training(rt, params, progress, should_stop):
        for step in range(1, steps + 1):
            progress({"stage": "train", "step": step, "steps": steps, "loss": 5 - step / 1000, "tokens_per_s": 10.0,
                      "eta_s": steps - step})
        return {}

    jobs = make_jobs({"training": training})
    job = jobs.wait(jobs.submit("training", {})["id"], 30)
    losses = job["progress"]["losses"]
    assert 400 <= len(losses) <= MAX_LOSS_POINTS
    assert losses[0] == [1, 4.999] and losses[-1] == [steps, 3.0]
    gaps = {b[0] - a[0] for a, b in zip(losses[1:-2], losses[2:-1], strict=True)}
    assert len(gaps) == 1                                                    # evenly spaced in between
    assert job["progress"]["step"] == steps and job["progress"]["eta_s"] == 0
    curve = [[s, 1.0] for s in range(1, 11)]
    assert add_loss(curve, 6, 0.5, 10) == [*curve[:5], [6, 0.5]]            # a resumed run redoes step 6 on
    unknown_length: list = []
    for step in range(1, 5001):
        unknown_length = add_loss(unknown_length, step, 1.0, None)
    assert len(unknown_length) <= MAX_LOSS_POINTS and unknown_length[-1][0] == 5000


@pytest.fixture
def notes(journal_dir: Path) -> Path:
    return journal_dir


def test_real_ingest_then_build(settings, make_jobs, notes, tmp_path):
    from secondself.memory.versions import current_version

    (notes / "broken.pdf").write_bytes(b"not a pdf")
    jobs = make_jobs()
    job = jobs.wait(jobs.submit("ingest", {"paths": [str(notes)], "source_name": "journal"})["id"], 30)
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["added"] == 6 and result["chunks_written"] >= 6
    assert result["failed"] == [{"source": "journal", "path": "broken.pdf", "reason": result["failed"][0]["reason"]}]
    assert job["progress"]["stage"] == "ingest" and job["progress"]["done"] == job["progress"]["total"] == 7
    with open_store(settings) as s:
        assert s.stats()["chunks"] == result["chunks_written"]
    again = jobs.wait(jobs.submit("ingest", {"paths": [str(notes)], "source_name": "journal"})["id"], 30)
    assert again["result"]["unchanged"] == 6 and again["result"]["chunks_written"] == 0

    build = jobs.wait(jobs.submit("build", {"teacher": "fake", "topics": 2})["id"], 20)
    assert build["status"] == "done", build["error"]
    assert build["result"]["version"] == 1 and not build["result"]["up_to_date"]
    with open_store(settings) as s:
        assert current_version(s) == 1
    assert jobs.wait(jobs.submit("build", {"teacher": "fake", "topics": 2})["id"], 20)["result"]["up_to_date"]


@pytest.mark.slow_on_postgres
def test_real_train_stopped_by_shutdown_resumes_from_its_checkpoint(settings, make_jobs, notes, tmp_path,
                                                                    monkeypatch):
    pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    from dataclasses import dataclass

    from secondself.serve.runners import run_train
    from secondself.train import adapters as registry
    from secondself.train import pipeline
    from secondself.train.tiny import make_tiny_model

    @dataclass(frozen=True)
    class Quick(pipeline.TrainOptions):          # a short evaluation keeps this test fast
        eval_questions: int = 4
        retention_prompts: int = 1

    monkeypatch.setattr(pipeline, "TrainOptions", Quick)
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")        # the tiny model is built in code, not real
    torch.set_num_threads(1)
    tiny = make_tiny_model(tmp_path / "tiny")

    def stop_server_after_step_1(rt, params, progress, should_stop):
        def spy(info):
            progress(info)
            if info.get("step") == 1:
                threading.Thread(target=first.stop).start()
                wait_until(should_stop)
        return run_train(rt, params, spy, should_stop)

    first = make_jobs({"train": stop_server_after_step_1})
    for kind, params in [("ingest", {"paths": [str(notes)]}), ("build", {"teacher": "fake", "topics": 2})]:
        assert first.wait(first.submit(kind, params)["id"], 20)["status"] == "done"
    job_id = first.submit("train", {"base": str(tiny), "steps": 3})["id"]
    wait_until(lambda: first.get(job_id)["status"] == "queued" and not first._thread.is_alive(), 60)
    job = first.get(job_id)
    assert job["params"]["resume"] is True and job["progress"]["step"] == 1
    assert registry.list_adapters(settings.person_dir) == []

    job = make_jobs().wait(job_id, 60)                                   # the default train runner resumes
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["version"] == "v001" and result["train"]["steps"] == 3 and result["train"]["resumed_from_step"] == 1
    assert [p[0] for p in job["progress"]["losses"]] == [1, 2, 3] and job["progress"]["stage"] == "evaluate"
    with open_store(settings) as s:
        assert registry.current(s, settings.person_dir).version == "v001"
