"""The bridge's three operations — enhance, critique, ask — and the log of every run (see the package
docstring for what each does and what it may disclose)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from ..backends.chat import Message, Sampling, complete
from ..errors import BackendError, ConfigError, EndpointError, SecondSelfError, StructuredOutputError
from ..grounding import content_overlap, unsupported_specifics
from ..prompts import render
from ..store import Store, now_iso
from ..structured import Field, structured
from .critic import Point, check_answer
from .disclosure import Item, Policy, Selection, allowed_sources, mentions, select

__all__ = ["Policy", "Item", "Enhanced", "Point", "Critique", "BridgeRun", "RunNotFoundError", "enhance",
           "critique", "ask", "resolve_expert", "compose", "check_rewrite", "list_runs", "get_run",
           "MAX_REQUEST_CHARS"]

MAX_REQUEST_CHARS = 20_000
Turn = Callable[[str], AbstractContextManager[Any]]   # a model's turn (the server's gate); none in the CLI
_WRITE = Sampling(temperature=0.0, max_tokens=240)
_EXPERT = Sampling(temperature=0.0, max_tokens=1024)


class RunNotFoundError(SecondSelfError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"no bridge run with id {run_id}; `secondself bridge log` lists them")


# -- results ----------------------------------------------------------------------------------------------

@dataclass
class Enhanced:
    """The enhanced request: `text` is what would be sent; `disclosed` exactly the personal details in it."""

    request: str
    text: str
    disclosed: list[Item]
    withheld: list[tuple[Item, str]]
    model: str                     # "template", or the spec whose rewrite was kept
    note: str = ""                 # why a model's rewrite was not used, when it was not
    policy: Policy = field(default_factory=Policy)
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "enhanced": self.text, "model": self.model, "note": self.note,
                "disclosed": [i.to_dict() for i in self.disclosed],
                "withheld": [i.to_dict() | {"why": why} for i, why in self.withheld],
                "policy": self.policy.to_dict(), "run_id": self.run_id}


@dataclass
class Critique:
    request: str
    answer: str
    points: list[Point]
    text: str                      # the feedback, first person
    model: str
    note: str = ""
    withheld: list[tuple[Item, str]] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    run_id: int | None = None

    @property
    def disclosed(self) -> list[Item]:
        return [p.item for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "answer": self.answer, "critique": self.text, "model": self.model,
                "note": self.note, "points": [p.to_dict() for p in self.points],
                "disclosed": [i.to_dict() for i in self.disclosed],
                "withheld": [i.to_dict() | {"why": why} for i, why in self.withheld],
                "policy": self.policy.to_dict(), "run_id": self.run_id}


@dataclass
class BridgeRun:
    """One logged run. `status`: done | failed | dry_run; `final` is the last answer (None if none came)."""

    kind: str
    request: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    id: int | None = None
    created_at: str = field(default_factory=now_iso)

    @property
    def status(self) -> str:
        return _status(self.steps)

    @property
    def final(self) -> str | None:
        return next((s["output"] for s in reversed(self.steps) if s["step"] == "final"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "request": self.request, "status": self.status,
                "final": self.final, "created_at": self.created_at, "steps": self.steps}


def _status(steps: Sequence[dict[str, Any]]) -> str:
    if any("error" in s for s in steps):
        return "failed"
    return "dry_run" if any(s.get("skipped") for s in steps) else "done"


# -- models -------------------------------------------------------------------------------------------------

def _writer(runtime: Any, spec: str | None) -> tuple[Any, str, str] | None:
    """(model, spec, mode) for prose: mode 'trained' is the personal adapter with its training format,
    'prompted' any other model with instructions. None: templates only (the embedded model, or 'template')."""
    from ..backends.registry import parse_spec
    from ..train import adapters

    if spec is None:
        with runtime.lock:
            personal = adapters.current(runtime.store, runtime.settings.person_dir) is not None
        if personal:
            spec = "personal"
        elif parse_spec(runtime.settings.persona_model).kind == "local":
            spec = runtime.settings.persona_model
        else:
            return None
    if spec == "template" or (spec != "personal" and parse_spec(spec).kind == "embedded"):
        return None
    return runtime.chat_model(spec), spec, "trained" if spec == "personal" else "prompted"


def _write(writer: tuple[Any, str, str], turn: Turn, trained: list[Message], prompt: str, label: str) -> str:
    """One short text from the writer, or "" when it produced nothing usable (a malformed answer is a
    fallback, not an error; an unreachable model is an error)."""
    model, spec, mode = writer
    with turn(spec):
        if mode == "trained":
            return complete(model, trained, _WRITE).text().strip()
        try:
            from ..backends.registry import parse_spec

            strong = parse_spec(spec).kind in ("openai", "local")
            got = structured(model, prompt, [Field("text", label, max_words=160)], prefer_json=strong)
        except StructuredOutputError:
            return ""
    return str(got.get("text", "")).strip()


def _no_turn(spec: str) -> AbstractContextManager[Any]:
    return nullcontext()


def resolve_expert(expert: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                   transport: Any = None) -> str:
    """A model spec for `--expert`: a URL becomes `openai:MODEL@URL` (MODEL from `model`, else the first one
    the endpoint lists); anything else must already be a spec."""
    from ..backends.registry import parse_spec

    expert = expert.strip()
    if not expert.startswith(("http://", "https://")):
        if model:
            raise ConfigError("--expert-model goes with an expert URL; with a model spec, name the model in it")
        parse_spec(expert)
        return expert
    url = expert.rstrip("/")
    if not model:
        import os

        import httpx

        key = os.environ.get(api_key_env, "")
        try:
            with httpx.Client(transport=transport, timeout=10) as client:
                r = client.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"} if key else {})
                r.raise_for_status()
                listed = [m["id"] for m in r.json().get("data", []) if isinstance(m, dict) and m.get("id")]
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as e:
            raise EndpointError(f"cannot list the models at {url} ({type(e).__name__}); is the server running? "
                                "Or name the model with --expert-model") from e
        if not listed:
            raise EndpointError(f"{url} lists no models; name one with --expert-model")
        model = listed[0]
    return f"openai:{model}@{url}"


# -- enhance ------------------------------------------------------------------------------------------------

def _profile(runtime: Any):
    from ..memory.versions import current_version, load_version

    return load_version(runtime.store) if current_version(runtime.store) is not None else None


def _check_text(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:          # a lone surrogate from JSON ("\ud800"): SQLite cannot store it
        raise ConfigError(f"the {what} is not valid text ({e.reason})") from e
    return text


def _check_request(request: str) -> str:
    request = " ".join(_check_text(request, "request").split()) if request else ""
    if not request:
        raise ConfigError("the request is empty")
    if len(request) > MAX_REQUEST_CHARS:
        raise ConfigError(f"the request is longer than {MAX_REQUEST_CHARS} characters")
    return request


def compose(request: str, details: Sequence[Item]) -> str:
    """The template: the request, then "For context:" and the details (the personal model's training format)."""
    if not details:
        return request
    end = "" if request[-1:] in ".?!" else "."
    return f"{request}{end} For context: {' '.join(i.text for i in details)}"


def check_rewrite(text: str, request: str, sel: Selection, policy: Policy) -> str | None:
    """Why a model's rewrite of the enhanced request may not be used, or None when it may: it must keep the
    request and every disclosed detail and add no personal detail that was not selected."""
    if len(text.split()) < 3 or text.lower().startswith("fake"):
        return "it is empty"
    evidence = " ".join([request, "For context:"] + [i.text for i in sel.disclosed])
    if extra := unsupported_specifics(text, evidence):
        return f"it adds {', '.join(extra[:3])}, which was not selected for disclosure"
    words = {w.casefold() for w in re.findall(r"\w{4,}", text)}
    if leaked := sorted(words & sel.private):
        return f"it adds {', '.join(leaked[:3])}, which was not selected for disclosure"
    if said := [t for t in policy.terms if t.casefold() in text.casefold() and t.casefold() not in request.casefold()]:
        return f"it names the never-share term {said[0]!r}"
    if content_overlap(request, text) < 0.6:
        return "it drops part of the request"
    if missing := [i.key for i in sel.disclosed if not mentions(text, i.key)]:
        return f"it leaves out {missing[0]}"
    if len(text.split()) > 2 * len(compose(request, sel.disclosed).split()) + 30:
        return "it is too long"
    return None


def enhance(runtime: Any, request: str, policy: Policy | None = None, *, model: str | None = None,
            turn: Turn | None = None, record: bool = True) -> Enhanced:
    """The request plus only the personal details it needs, under `policy`; logged as a run unless `record`
    is False. `model`: the spec that may rewrite it fluently ('template' for none; default: the personal
    model when one is trained)."""
    policy, turn = policy or Policy(), turn or _no_turn
    request = _check_request(request)
    with runtime.lock:
        runtime.reembed_if_stale()
        sel = select(runtime.store, runtime.searcher, runtime.embedder, _profile(runtime), runtime.person,
                     request, policy)
    out = Enhanced(request, compose(request, sel.disclosed), sel.disclosed, sel.withheld, "template",
                   policy=policy)
    writer = _writer(runtime, model) if sel.disclosed else None
    if writer is not None:
        details = "\n".join(f"- {i.text}" for i in sel.disclosed)
        trained = [Message("system", render("enhance_system", person=runtime.person)), Message("user", request)]
        draft = _write(writer, turn, trained, render("bridge_enhance", person=runtime.person, request=request,
                                                     details=details), "Rewritten request:")
        problem = check_rewrite(draft, request, sel, policy)
        if problem is None:
            out.text, out.model = draft, writer[1]
        else:
            out.note = f"the rewrite by {writer[1]} was not used: {problem}"
    if record:
        out.run_id = _log(runtime, BridgeRun("enhance", request, [_enhance_step(out)]))
    return out


def _enhance_step(e: Enhanced) -> dict[str, Any]:
    return {"step": "enhance", "model": e.model, "input": e.request, "output": e.text, "note": e.note,
            "disclosed": [i.to_dict() for i in e.disclosed],
            "withheld": [i.to_dict() | {"why": why} for i, why in e.withheld], "policy": e.policy.to_dict()}


# -- critique -------------------------------------------------------------------------------------------------

def critique(runtime: Any, request: str, answer: str, policy: Policy | None = None, *, model: str | None = None,
             turn: Turn | None = None, record: bool = True) -> Critique:
    """What `answer` got wrong or missed about the person, in their voice (the points of
    `critic.check_answer`, which a model may reword, checked); logged unless `record` is False. `model` as in
    `enhance`."""
    policy, turn = policy or Policy(), turn or _no_turn
    request, answer = _check_request(request), _check_text(answer or "", "answer").strip()
    if not answer:
        raise ConfigError("the answer to critique is empty")
    with runtime.lock:
        runtime.reembed_if_stale()
        points, withheld, relevant = check_answer(runtime.store, runtime.searcher, runtime.embedder,
                                                  _profile(runtime), runtime.person, request, answer, policy)
    text = " ".join(p.text for p in points) or "That fits what I know about myself; nothing to correct."
    out = Critique(request, answer, points, text, "template", withheld=withheld, policy=policy)
    writer = _writer(runtime, model) if points else None
    if writer is not None:
        trained = [Message("system", render("critic_system", person=runtime.person)),
                   Message("user", render("critic_user", request=request, answer=answer))]
        listed = "\n".join(f"- {p.text}" for p in points)
        draft = _write(writer, turn, trained, render("bridge_critique", person=runtime.person, request=request,
                                                     answer=answer, points=listed), "Feedback:")
        problem = _check_feedback(draft, request, answer, points, relevant, policy)
        if problem is None:
            out.text, out.model = draft, writer[1]
        else:
            out.note = f"the feedback by {writer[1]} was not used: {problem}"
    if record:
        out.run_id = _log(runtime, BridgeRun("critique", request, [_critique_step(out)]))
    return out


def _check_feedback(text: str, request: str, answer: str, points: Sequence[Point], sel: Selection,
                    policy: Policy) -> str | None:
    if len(text.split()) < 4 or text.lower().startswith("fake") or not re.search(r"\b(?:I|my|me)\b", text):
        return "it is not first-person feedback"
    evidence = " ".join([request, answer] + [p.text for p in points])
    if extra := unsupported_specifics(text, evidence):
        return f"it adds {', '.join(extra[:3])}, which is not in what I know or what was said"
    words = {w.casefold() for w in re.findall(r"\w{4,}", text)} - {w.casefold() for w in re.findall(r"\w{4,}",
                                                                                                   evidence)}
    if leaked := sorted(words & sel.private):
        return f"it adds {', '.join(leaked[:3])}, which was not selected for disclosure"
    if said := [t for t in policy.terms if t.casefold() in text.casefold() and t.casefold() not in evidence.casefold()]:
        return f"it names the never-share term {said[0]!r}"
    if missing := [p.item.key for p in points if p.kind == "wrong" and not mentions(text, p.item.key)]:
        return f"it leaves out the correction about {missing[0]}"
    if len(text.split()) > 160:
        return "it is too long"
    return None


def _critique_step(c: Critique, step: str = "critique") -> dict[str, Any]:
    return {"step": step, "model": c.model, "input": c.answer, "output": c.text, "note": c.note,
            "points": [p.to_dict() for p in c.points], "disclosed": [i.to_dict() for i in c.disclosed],
            "withheld": [i.to_dict() | {"why": why} for i, why in c.withheld], "policy": c.policy.to_dict()}


# -- ask --------------------------------------------------------------------------------------------------------

def ask(runtime: Any, request: str, expert: str, policy: Policy | None = None, rounds: int = 1, *,
        expert_model: str | None = None, model: str | None = None, dry_run: bool = False,
        on_step: Callable[[dict[str, Any]], None] | None = None, turn: Turn | None = None) -> BridgeRun:
    """enhance → expert → critique (→ expert → critique when `rounds` is 2) → final, every step logged.

    `expert` is a model spec or an OpenAI-compatible URL (`resolve_expert`). `dry_run` stops after enhance:
    nothing is sent. `on_step(step)` sees each step as it is logged. A failing expert raises its error with
    the id of the run, which is logged as failed at that step."""
    if rounds not in (1, 2):
        raise ConfigError(f"rounds must be 1 or 2, not {rounds}")
    policy, turn = policy or Policy(), turn or _no_turn
    run = BridgeRun("ask", _check_request(request))
    with runtime.lock:
        allowed_sources(runtime.store, policy)      # a bad policy is the caller's error, not a failed run
    current = "enhance"

    def add(step: dict[str, Any]) -> None:
        run.steps.append(step)
        if on_step is not None:
            on_step(step)

    failure: SecondSelfError | None = None
    try:
        enhanced = enhance(runtime, request, policy, model=model, turn=turn, record=False)
        add(_enhance_step(enhanced))
        current = "expert"
        if dry_run:
            add({"step": "expert", "model": expert, "input": enhanced.text, "output": None,
                 "skipped": "dry run: nothing was sent"})
            return run
        spec = resolve_expert(expert, expert_model, runtime.settings.api_key_env)
        convo = [Message("user", enhanced.text)]
        answer = _expert(runtime, spec, convo, enhanced.disclosed, "expert", add, turn)
        for n in range(1, rounds + 1):
            current = "critique" if n == 1 else f"critique_{n}"
            crit = critique(runtime, request, answer, policy, model=model, turn=turn, record=False)
            add(_critique_step(crit, current))
            if n == rounds or not crit.points:
                break
            current = f"expert_{n + 1}"
            convo += [Message("assistant", answer), Message("user", render("bridge_revise", feedback=crit.text))]
            answer = _expert(runtime, spec, convo, crit.disclosed, current, add, turn)
        add({"step": "final", "model": spec, "input": None, "output": answer})
    except SecondSelfError as e:
        failure = e
        if not (run.steps and run.steps[-1]["step"] == current and "error" in run.steps[-1]):
            add({"step": current, "model": None, "input": None, "output": None, "error": str(e)})
    finally:
        run.id = _log(runtime, run)
    if failure is not None:
        raise _with_run(failure, run)
    return run


def _with_run(e: SecondSelfError, run: BridgeRun) -> SecondSelfError:
    step = run.steps[-1]["step"] if run.steps else "enhance"
    message = (f"{e} — bridge run {run.id} was logged as failed at the {step} step "
               f"(`secondself bridge log {run.id}` shows it)")
    try:
        new = type(e)(message)
    except TypeError:                  # an error class with its own constructor: keep its kind
        new = (EndpointError if isinstance(e, EndpointError) else BackendError)(message) \
            if isinstance(e, BackendError) else SecondSelfError(message)
    new.run_id = run.id  # type: ignore[attr-defined]
    return new


def _expert(runtime: Any, spec: str, convo: list[Message], disclosed: Sequence[Item], step: str,
            add: Callable[[dict[str, Any]], None], turn: Turn) -> str:
    """One expert call, logged as `step` (with the error if it fails). Announces a remote expert first."""
    from ..backends.registry import parse_spec

    record: dict[str, Any] = {"step": step, "model": spec, "input": convo[-1].content, "output": None,
                              "disclosed": [i.to_dict() for i in disclosed]}
    parsed = parse_spec(spec) if spec != "personal" else None
    if parsed is not None and parsed.remote:
        what = "; ".join(i.text for i in disclosed) or "none"
        record["notice"] = (f"note: the expert model is remote ({parsed.base_url}); sending it "
                            f"{'the enhanced request' if step == 'expert' else 'my critique'} with "
                            f"{len(disclosed)} personal detail(s): {what}")
        runtime.notify(record["notice"])
    started = time.perf_counter()
    try:
        model = runtime.chat_model(spec, purpose="expert")
        with turn(spec):
            answer = complete(model, convo, _EXPERT).text().strip()
        if not answer:
            raise EndpointError(f"the expert ({spec}) returned an empty answer")
    except SecondSelfError as e:
        record["error"] = str(e)
        add(record)
        raise
    record["output"], record["seconds"] = answer, round(time.perf_counter() - started, 3)
    add(record)
    return answer


# -- the log ----------------------------------------------------------------------------------------------------

def _log(runtime: Any, run: BridgeRun) -> int:
    with runtime.lock, runtime.store.transaction(memory=False) as db:
        cur = db.execute("INSERT INTO bridge_runs(kind, request, steps, created_at) VALUES (?, ?, ?, ?)",
                         (run.kind, run.request, json.dumps(run.steps, ensure_ascii=False), run.created_at))
        return int(cur.lastrowid or 0)


def list_runs(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The latest runs, newest first: id, kind, request, status, steps, created_at."""
    rows = store.db.execute("SELECT id, kind, request, steps, created_at FROM bridge_runs ORDER BY id DESC LIMIT ?",
                            (limit,)).fetchall()
    out = []
    for rid, kind, request, steps, created in rows:
        parsed = json.loads(steps)
        out.append({"id": rid, "kind": kind, "request": request, "status": _status(parsed),
                    "steps": [s["step"] for s in parsed], "created_at": created})
    return out


def get_run(store: Store, run_id: int) -> BridgeRun:
    row = store.db.execute("SELECT kind, request, steps, created_at FROM bridge_runs WHERE id = ?",
                           (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return BridgeRun(row[0], row[1], json.loads(row[2]), run_id, row[3])
