"""The bridge's three operations — enhance, critique, ask — each logged as a run (see the package
docstring for what each does and what it may disclose).

The boundary: these functions receive what they use of the process that runs them as `BridgeServices`
(the CLI's or the server's `Runtime` provides it); they hold no resources of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..errors import BackendError, ConfigError, EndpointError, SecondSelfError
from ..prompts import render
from ..store import Store
from ..types import Profile
from .critic import Point, check_answer
from .disclosure import Item, Policy, allowed_sources, select
from .log import BridgeRun, save_run
from .prose import check_feedback, check_rewrite, compose

if TYPE_CHECKING:
    from ..backends.embedders import Embedder
    from ..config import Settings
    from ..memory.search import Searcher

__all__ = ["BridgeServices", "Enhanced", "Critique", "enhance", "critique", "ask", "resolve_expert",
           "MAX_REQUEST_CHARS"]

MAX_REQUEST_CHARS = 20_000
Turn = Callable[[str], AbstractContextManager[Any]]   # a model's turn (the server's gate); none in the CLI
_WRITE = Sampling(temperature=0.0, max_tokens=240)
_EXPERT = Sampling(temperature=0.0, max_tokens=1024)


class BridgeServices(Protocol):
    """What the bridge uses of the process that runs it; `Runtime` provides all of it."""

    @property
    def settings(self) -> Settings: ...          # person_dir, persona_model, api_key_env

    @property
    def lock(self) -> AbstractContextManager[Any]: ...   # held around every use of the shared store

    @property
    def store(self) -> Store: ...

    @property
    def searcher(self) -> Searcher: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def person(self) -> str: ...                 # the person's display name

    def notify(self, message: str) -> None: ...  # a notice the user must see before data leaves the machine

    def reembed_if_stale(self) -> int: ...       # embed what the configured embedder lacks

    def chat_model(self, spec: str, purpose: str = "persona") -> ChatModel: ...


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


# -- models -------------------------------------------------------------------------------------------------

def _writer(services: BridgeServices, spec: str | None) -> tuple[ChatModel, str, str] | None:
    """(model, spec, mode) for prose: mode 'trained' is the personal adapter with its training format,
    'prompted' any other model with instructions. None: templates only (the embedded model, or 'template')."""
    from ..backends.registry import parse_spec
    from ..train import adapters

    if spec is None:
        with services.lock:
            personal = adapters.current(services.store, services.settings.person_dir) is not None
        if personal:
            spec = "personal"
        elif parse_spec(services.settings.persona_model).kind == "local":
            spec = services.settings.persona_model
        else:
            return None
    if spec == "template" or (spec != "personal" and parse_spec(spec).kind == "embedded"):
        return None
    return services.chat_model(spec), spec, "trained" if spec == "personal" else "prompted"


def _write(writer: tuple[ChatModel, str, str], turn: Turn, trained: list[Message], system: str, user: str) -> str:
    """One short text from the writer: the personal model in its training format (`trained`), any other with
    the instructions `system` and the material `user`, in the model's own chat template. The text is prose,
    not a structure, so nothing is constrained; the caller checks it (an unreachable model is an error)."""
    from ..backends.catalog import follows_system_prompt

    model, spec, mode = writer
    if mode == "trained":
        messages = trained
    elif follows_system_prompt(model.name):
        messages = [Message("system", system), Message("user", user)]
    else:                                   # a model that loops on a system prompt gets one user message
        messages = [Message("user", f"{system}\n\n{user}")]
    with turn(spec):
        return _prose(complete(model, messages, _WRITE).text())


_LEAD = re.compile(r"^\s*(?:(?:here is|here's)\b[^\n:]*:|(?:rewritten request|request|feedback)\s*:)\s*", re.I)


def _prose(text: str) -> str:
    """The model's text without what models wrap around it: a code fence, a "Here is the rewritten request:"
    lead, list markers ("1.", "-": small models list the points; the numbers are not theirs to add),
    surrounding quotes."""
    text = re.sub(r"^\s*```\w*\s*|\s*```\s*$", "", text.strip())
    text = _LEAD.sub("", text).strip()
    text = " ".join(re.sub(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+", "", line).strip() for line in text.splitlines()
                    if line.strip())
    if len(text) > 1 and text[0] in "\"“" and text[-1] in "\"”" and text.count('"') <= 2:
        text = text[1:-1].strip()
    return text


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

def _profile(services: BridgeServices) -> Profile | None:
    from ..memory.versions import current_version, load_version

    return load_version(services.store) if current_version(services.store) is not None else None


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


def enhance(services: BridgeServices, request: str, policy: Policy | None = None, *, model: str | None = None,
            turn: Turn | None = None, record: bool = True) -> Enhanced:
    """The request plus only the personal details it needs, under `policy`; logged as a run unless `record`
    is False. `model`: the spec that may rewrite it fluently ('template' for none; default: the personal
    model when one is trained)."""
    policy, turn = policy or Policy(), turn or _no_turn
    request = _check_request(request)
    with services.lock:
        services.reembed_if_stale()
        sel = select(services.store, services.searcher, services.embedder, _profile(services), services.person,
                     request, policy)
    out = Enhanced(request, compose(request, sel.disclosed), sel.disclosed, sel.withheld, "template",
                   policy=policy)
    writer = _writer(services, model) if sel.disclosed else None
    if writer is not None:
        details = "\n".join(f"- {i.text}" for i in sel.disclosed)
        trained = [Message("system", render("enhance_system", person=services.person)), Message("user", request)]
        draft = _write(writer, turn, trained, render("bridge_enhance_system", person=services.person),
                       render("bridge_enhance", person=services.person, request=request, details=details))
        problem = check_rewrite(draft, request, sel, policy)
        if problem is None:
            out.text, out.model = draft, writer[1]
        else:
            out.note = f"the rewrite by {writer[1]} was not used: {problem}"
    if record:
        out.run_id = _log(services, BridgeRun("enhance", request, [_enhance_step(out)]))
    return out


def _enhance_step(e: Enhanced) -> dict[str, Any]:
    return {"step": "enhance", "model": e.model, "input": e.request, "output": e.text, "note": e.note,
            "disclosed": [i.to_dict() for i in e.disclosed],
            "withheld": [i.to_dict() | {"why": why} for i, why in e.withheld], "policy": e.policy.to_dict()}


# -- critique -------------------------------------------------------------------------------------------------

def critique(services: BridgeServices, request: str, answer: str, policy: Policy | None = None, *,
             model: str | None = None, turn: Turn | None = None, record: bool = True) -> Critique:
    """What `answer` got wrong or missed about the person, in their voice (the points of
    `critic.check_answer`, which a model may reword, checked); logged unless `record` is False. `model` as in
    `enhance`."""
    policy, turn = policy or Policy(), turn or _no_turn
    request, answer = _check_request(request), _check_text(answer or "", "answer").strip()
    if not answer:
        raise ConfigError("the answer to critique is empty")
    with services.lock:
        services.reembed_if_stale()
        points, withheld, relevant = check_answer(services.store, services.searcher, services.embedder,
                                                  _profile(services), services.person, request, answer, policy)
    text = " ".join(p.text for p in points) or "That fits what I know about myself; nothing to correct."
    out = Critique(request, answer, points, text, "template", withheld=withheld, policy=policy)
    writer = _writer(services, model) if points else None
    if writer is not None:
        trained = [Message("system", render("critic_system", person=services.person)),
                   Message("user", render("critic_user", request=request, answer=answer))]
        listed = "\n".join(f"- {p.text}" for p in points)
        draft = _write(writer, turn, trained, render("bridge_critique_system", person=services.person),
                       render("bridge_critique", request=request, answer=answer, points=listed))
        problem = check_feedback(draft, request, answer, points, relevant, policy)
        if problem is None:
            out.text, out.model = draft, writer[1]
        else:
            out.note = f"the feedback by {writer[1]} was not used: {problem}"
    if record:
        out.run_id = _log(services, BridgeRun("critique", request, [_critique_step(out)]))
    return out


def _critique_step(c: Critique, step: str = "critique") -> dict[str, Any]:
    return {"step": step, "model": c.model, "input": c.answer, "output": c.text, "note": c.note,
            "points": [p.to_dict() for p in c.points], "disclosed": [i.to_dict() for i in c.disclosed],
            "withheld": [i.to_dict() | {"why": why} for i, why in c.withheld], "policy": c.policy.to_dict()}


# -- ask --------------------------------------------------------------------------------------------------------

def ask(services: BridgeServices, request: str, expert: str, policy: Policy | None = None, rounds: int = 1, *,
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
    with services.lock:
        allowed_sources(services.store, policy)      # a bad policy is the caller's error, not a failed run
    current = "enhance"

    def add(step: dict[str, Any]) -> None:
        run.steps.append(step)
        if on_step is not None:
            on_step(step)

    failure: SecondSelfError | None = None
    try:
        enhanced = enhance(services, request, policy, model=model, turn=turn, record=False)
        add(_enhance_step(enhanced))
        current = "expert"
        if dry_run:
            add({"step": "expert", "model": expert, "input": enhanced.text, "output": None,
                 "skipped": "dry run: nothing was sent"})
            return run
        spec = resolve_expert(expert, expert_model, services.settings.api_key_env)
        convo = [Message("user", enhanced.text)]
        answer = _expert(services, spec, convo, enhanced.disclosed, "expert", add, turn)
        for n in range(1, rounds + 1):
            current = "critique" if n == 1 else f"critique_{n}"
            crit = critique(services, request, answer, policy, model=model, turn=turn, record=False)
            add(_critique_step(crit, current))
            if n == rounds or not crit.points:
                break
            current = f"expert_{n + 1}"
            convo += [Message("assistant", answer), Message("user", render("bridge_revise", feedback=crit.text))]
            answer = _expert(services, spec, convo, crit.disclosed, current, add, turn)
        add({"step": "final", "model": spec, "input": None, "output": answer})
    except SecondSelfError as e:
        failure = e
        if not (run.steps and run.steps[-1]["step"] == current and "error" in run.steps[-1]):
            add({"step": current, "model": None, "input": None, "output": None, "error": str(e)})
    finally:
        run.id = _log(services, run)
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


def _expert(services: BridgeServices, spec: str, convo: list[Message], disclosed: Sequence[Item], step: str,
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
        services.notify(record["notice"])
    started = time.perf_counter()
    try:
        model = services.chat_model(spec, purpose="expert")
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


def _log(services: BridgeServices, run: BridgeRun) -> int:
    with services.lock:
        return save_run(services.store, run)
