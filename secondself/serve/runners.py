"""The default job runners: thin calls into the same library functions as the CLI (`ingest`,
`Runtime.build_profile`, `Runtime.train_model`, `spaces.run_space`), so a command and its job cannot drift
apart, plus the check of each kind's parameters at submit time (a bad request fails at once, before anything
is queued).

A runner is `runner(runtime, params, progress, should_stop) -> JSON-able result` (see jobs.py); it stops by
raising JobCancelled (or TrainingCancelled) when `should_stop()` turns True in its progress callbacks. The
library's long steps report `Progress` values; `record` turns each into the job's progress record, here only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, JobCancelled, TrainingCancelled
from ..progress import OnProgress, Progress
from ..runtime import Runtime

__all__ = ["RUNNERS", "Runner", "JobProgress", "StopCheck", "check_params", "record", "run_ingest", "run_build",
           "run_train", "run_space"]

JobProgress = Callable[[dict[str, Any]], None]
"""progress(fields): merged into the job's progress record (JSON, as the API shows it), e.g. {"stage": "ingest",
"done": 3, "total": 10}. A report with "step" and "loss" also extends progress["losses"], the loss curve
([[step, loss], ...])."""
StopCheck = Callable[[], bool]
"""should_stop(): True once the job should stop (cancelled, or the server is stopping)."""
Runner = Callable[[Runtime, dict[str, Any], JobProgress, StopCheck], Any]
"""runner(runtime, params, progress, should_stop) -> a JSON-able result."""

_TRAIN_KEYS = ("loss", "tokens", "tokens_per_s", "eta_s", "elapsed_s")


def record(p: Progress) -> dict[str, Any]:
    """A library `Progress` as the job's progress record: {"stage", "done", "total"}; a training step as
    {"stage", "step", "steps", "loss", ...} (the loss curve is drawn from these); synthesis as its counts."""
    if p.stage == "train":
        return {"stage": p.stage, "step": p.done, "steps": p.total, **{k: p.info[k] for k in _TRAIN_KEYS
                                                                          if k in p.info}}
    if p.stage == "synthesize":
        return {"stage": p.stage, "counts": p.info.get("counts", {}), "dropped": p.info.get("dropped", {})}
    return {"stage": p.stage, "done": p.done, "total": p.total}


def _stage_reporter(progress: JobProgress, should_stop: StopCheck, what: str) -> OnProgress:
    """An on_progress for ingest and build that also stops the job when asked."""

    def report(p: Progress) -> None:
        if should_stop():
            raise JobCancelled(f"{what} stopped; what it finished is kept and running it again continues")
        progress(record(p))
    return report


def run_ingest(rt: Runtime, params: dict[str, Any], progress: JobProgress, should_stop: StopCheck) -> dict:
    """params: paths (list of str; none = re-scan every source), source_name, prune (and files, the uploaded
    names, for display). Result: the counts per outcome, chunks_written, seconds, and "failed" as the list of
    files that could not be read, with their reasons (a report with failed files is still 'done')."""
    from ..ingest.pipeline import ingest

    report = ingest(rt.store, rt.embedder, params.get("paths") or [], source_name=params.get("source_name"),
                    prune=bool(params.get("prune")), person_name=rt.settings.person_name,
                    chunk_words=rt.settings.chunk_words, on_progress=_stage_reporter(progress, should_stop, "ingest"))
    return {**report.summary(), "chunks_written": report.chunks_written, "seconds": round(report.seconds, 3),
            "failed": [{"source": o.source, "path": o.path, "reason": o.reason} for o in report.failed]}


def run_build(rt: Runtime, params: dict[str, Any], progress: JobProgress, should_stop: StopCheck) -> dict:
    """params: full, seed, teacher (a model spec; None = the configured teacher), and optionally topics,
    teacher_facts, slots, prose as in `secondself build`."""
    report, _, _ = rt.build_profile(params.get("teacher"), full=bool(params.get("full")),
                                    seed=int(params.get("seed") or 0), topics=params.get("topics"),
                                    teacher_facts=bool(params.get("teacher_facts")), slots=params.get("slots"),
                                    prose=params.get("prose"),
                                    on_progress=_stage_reporter(progress, should_stop, "build"))
    return report.to_dict()


def run_train(rt: Runtime, params: dict[str, Any], progress: JobProgress, should_stop: StopCheck) -> dict:
    """params: base (a spec or model directory; None = embedded), steps, epochs, rank, resume.

    While the model trains, a stop request writes the run's CANCEL file (`request_cancel`): the trainer saves a
    checkpoint after the current step and raises TrainingCancelled. In the other stages (retention set,
    evaluation) the callback raises TrainingCancelled itself, so the run's state says 'cancelled' and a resume
    redoes that stage. `resume` with no unfinished run (stopped before its run existed) starts a new run.
    """
    from ..train.pipeline import latest_run, request_cancel

    person_dir = rt.settings.person_dir
    asked = False

    def on_progress(p: Progress) -> None:
        nonlocal asked
        if p.stage == "train":
            progress(record(p))
            if should_stop() and not asked:
                request_cancel(person_dir)
                asked = True
            return
        if should_stop():
            raise TrainingCancelled(f"training stopped during '{p.stage}'; resuming redoes that stage")
        progress(record(p))

    resume = bool(params.get("resume")) and latest_run(person_dir, unfinished=True) is not None
    info = rt.train_model(params.get("base"), steps=params.get("steps"), epochs=params.get("epochs"),
                          rank=params.get("rank"), resume=resume, on_progress=on_progress)
    return {"version": info.version, "path": str(info.path), **info.metadata}


def run_space(rt: Runtime, params: dict[str, Any], progress: JobProgress, should_stop: StopCheck) -> dict:
    """params: space_id. Runs or continues the space (a restart is done by the route before submitting, so a
    job requeued after a server stop continues rather than starting over). Progress: the turn just stored."""
    from .. import spaces

    def on_turn(space: spaces.Space, turn: spaces.Turn) -> None:
        stage = "opening" if turn.round == 0 else "summary" if turn.round > space.rounds else f"round {turn.round}"
        progress({"stage": stage, "done": len(space.turns), "total": len(space.plan()), "speaker": turn.speaker,
                  "skipped": turn.status == "skipped"})

    space = spaces.run_space(rt, int(params["space_id"]), on_turn=on_turn, should_stop=should_stop)
    return {"space_id": space.id, "status": space.status, "turns": len(space.turns),
            "skipped": sum(t.status == "skipped" for t in space.turns)}


RUNNERS: dict[str, Runner] = {"ingest": run_ingest, "build": run_build, "train": run_train, "space": run_space}

# params each default kind accepts (and their types), checked at submit so a bad request fails at once
_OPT_INT, _OPT_STR, _OPT_BOOL = (int, type(None)), (str, type(None)), (bool, type(None))
_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "ingest": {"paths": (list,), "source_name": _OPT_STR, "prune": (bool,), "files": (list,)},
    "build": {"full": (bool,), "seed": (int,), "teacher": _OPT_STR, "topics": _OPT_INT, "teacher_facts": (bool,),
              "slots": _OPT_BOOL, "prose": _OPT_BOOL},
    "train": {"base": _OPT_STR, "steps": _OPT_INT, "epochs": (int, float, type(None)), "rank": _OPT_INT,
              "resume": (bool,)},
    "space": {"space_id": (int,)},
}
_POSITIVE = ("topics", "steps", "epochs", "rank", "space_id")


def check_params(kind: str, params: dict[str, Any]) -> None:
    allowed = _PARAMS.get(kind)
    if allowed is None:
        return
    for key, value in params.items():
        types = allowed.get(key)
        if types is None:
            raise ConfigError(f"{kind} job: unknown parameter {key!r}; known: {', '.join(allowed)}")
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f"{kind} job: {key} must be {' or '.join(t.__name__ for t in types)}, not {value!r}")
        if key in _POSITIVE and value is not None and value <= 0:
            raise ConfigError(f"{kind} job: {key} must be positive, not {value!r}")
    if kind == "space" and "space_id" not in params:
        raise ConfigError("space job: space_id is required")
    if not all(isinstance(p, str) for p in params.get("paths") or []):
        raise ConfigError(f"{kind} job: paths must be a list of strings")
