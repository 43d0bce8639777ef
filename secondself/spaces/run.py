"""Running a space: what each participant is shown (the disclosure rules for remote ones), each turn, the
host's summary, and the run that stores every turn as it is spoken. See the package docstring.

The boundary: the run receives what it uses of the process that runs it as `SpaceServices` (the CLI's or the
server's `Runtime` provides it); it holds no resources of its own."""

from __future__ import annotations

import os
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..backends.openai_compat import OpenAIChatModel
from ..errors import ConfigError, EndpointError, JobCancelled, SecondSelfError
from ..prompts import literal, render
from ..prompts import names as prompt_names
from ..store import Store
from .space import WITHHELD, Participant, Space, Turn, add_turn, get_space, reset_space, set_status

if TYPE_CHECKING:
    from ..persona import Persona
    from ..roles import Role

__all__ = ["SpaceServices", "run_space", "redact", "outgoing_messages", "TRANSCRIPT_WORDS", "TURN_WORDS"]

TRANSCRIPT_WORDS = 320   # what a participant is shown of the transcript: the embedded model holds 2k tokens
TURN_WORDS = 80          # each turn in it cut to this
MAX_TURN_CHARS = 4000    # what is kept of a remote participant's answer
_TURN = Sampling(temperature=0.0, max_tokens=200)
_SUMMARY = Sampling(temperature=0.0, max_tokens=240)
_ACK = "I have read the discussion so far."
# every prompt whose fixed text reaches a space's models: a turn or summary that repeats it says nothing
# (the persona's prompt files that exist: its own helper re-tunes them)
_INSTRUCTION_PROMPTS = ("space_context", "space_ask", "space_summary_system", "space_summary", "persona_system",
                        "persona_user", "persona_question", "persona_role")


class SpaceServices(Protocol):
    """What a space run uses of the process that runs it; `Runtime` provides all of it."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...   # held around every use of the shared store

    @property
    def store(self) -> Store: ...

    @property
    def person(self) -> str: ...                 # the person's display name

    def notify(self, message: str) -> None: ...  # a notice the user must see before data leaves the machine

    def role(self, name: str) -> Role: ...       # RoleNotFoundError when there is none

    def persona(self, *, role: Role | None = None) -> Persona: ...   # answers as the person, or as `role`

    def model_spec(self, role: Role | None = None) -> str: ...       # the model `role` (or the person) uses

    def chat_model(self, spec: str) -> ChatModel: ...


# -- what each participant is shown -----------------------------------------------------------------------

def _fold(text: str) -> str:
    """Lower case without accents, one character for one (so positions in the original still hold)."""
    out = []
    for c in text:
        base = unicodedata.normalize("NFKD", c)[:1] or c
        low = base.lower()
        out.append(low if len(low) == 1 else base)
    return "".join(out)


def redact(text: str, terms: Sequence[str]) -> tuple[str, int]:
    """`text` with every never-share term (whole words, any case or accent, plurals) replaced by WITHHELD; and
    how many were replaced. `source:`/`tag:` entries are not terms and are left to `outgoing_messages`."""
    count = 0
    for term in sorted((t for t in terms if not t.lower().startswith(("source:", "tag:"))), key=len, reverse=True):
        key = _fold(term.strip())
        if not key:
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(key)}(?:s|es|'s)?(?!\w)")
        spans = [m.span() for m in pattern.finditer(_fold(text))]
        for start, end in reversed(spans):
            text = text[:start] + WITHHELD + text[end:]
        count += len(spans)
    return text, count


def _cut(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts) if len(parts) <= words else " ".join(parts[:words]) + " …"


_MARKER = re.compile(r"\s*\[\d+\]")


def _lines(space: Space, recipient: Participant | None, store: Store | None) -> tuple[list[str], dict]:
    """The transcript's lines as `recipient` may see them (None or a local participant: everything; a remote
    one: after the disclosure rules), and what was withheld."""
    share = recipient is not None and recipient.remote and (
        space.share_citations if recipient.share_citations is None else recipient.share_citations)
    rules = [*space.never_share, *(recipient.never_share if recipient is not None else ())]
    excluded: set[str] = set()
    if recipient is not None and recipient.remote and store is not None:
        from ..memory.scope import source_tags

        tags = {t.split(":", 1)[1].strip() for t in rules if t.lower().startswith("tag:")}
        excluded = {t.split(":", 1)[1].strip() for t in rules if t.lower().startswith("source:")}
        excluded |= {s for s, ts in source_tags(store).items() if tags & set(ts)}
    withheld_turns = 0
    lines = []
    for t in space.turns:
        if t.status != "ok":
            continue
        label = t.meta.get("label", t.speaker)
        citations = t.meta.get("citations") or []
        if excluded and any(c.get("source") in excluded for c in citations):
            lines.append(f"{label}: {WITHHELD}")
            withheld_turns += 1
            continue
        text = _MARKER.sub("", t.content).strip()
        if share and citations:
            text += " (from my memories: " + "; ".join(
                f"{c.get('title') or c.get('path') or 'a note'}, {str(c.get('date') or 'undated')[:10]}: "
                f"{_cut(c.get('snippet') or '', 30)}" for c in citations) + ")"
        lines.append(f"{label}: {text}")
    return lines, {"turns": withheld_turns, "citations_shared": bool(share)}


def _fit(lines: list[str], budget: int = TRANSCRIPT_WORDS) -> str:
    """The opening and as many of the latest turns as fit in `budget` words, each cut to TURN_WORDS."""
    lines = [_cut(line, TURN_WORDS) for line in lines]
    if not lines:
        return "(nothing yet)"
    head, rest = lines[0], lines[1:]
    used, kept = len(head.split()), []
    for line in reversed(rest):
        used += len(line.split())
        if used > budget:
            break
        kept.append(line)
    omitted = len(rest) - len(kept)
    return "\n".join([head, *([f"(… {omitted} earlier turn(s) not shown)"] if omitted else []), *reversed(kept)])


def outgoing_messages(space: Space, recipient: Participant, person: str, store: Store | None = None
                      ) -> tuple[list[Message], dict[str, Any]]:
    """Exactly what a remote `recipient` is sent for its next turn, and what the rules withheld from it: the
    transcript as context, then a short question naming the topic (a second self searches its memories for
    its last message, so the question must not drown in the transcript)."""
    lines, withheld = _lines(space, recipient, store)
    context = render("space_context", topic=space.topic, transcript=_fit(lines), speaker=recipient.label(person))
    messages = [Message("user", context), Message("assistant", _ACK), Message("user", _ask(space))]
    if recipient.remote:
        rules, count = [*space.never_share, *recipient.never_share], 0
        for i, m in enumerate(messages):
            text, n = redact(m.content, rules)
            messages[i], count = Message(m.role, text), count + n
        withheld["terms"] = count
    return messages, withheld


def _ask(space: Space) -> str:
    return render("space_ask", topic=space.topic)


# -- running ----------------------------------------------------------------------------------------------

class _RemoteModel(OpenAIChatModel):
    """A remote participant's endpoint: its token from the space's secrets or its environment variable (never
    $OPENAI_API_KEY by default: that key is not for other people's second selves). One try per turn."""

    def __init__(self, p: Participant, secret: str | None, timeout: float) -> None:
        env = p.key[4:] if p.key and p.key.startswith("env:") else ""
        super().__init__(p.url or "", p.model, api_key_env=env, timeout=timeout, max_retries=0)
        self._secret = secret

    def _api_key(self) -> str:
        if self._secret is not None:
            return self._secret
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def _key_source(self) -> str:
        if self._secret is not None:
            return "the token given with this participant"
        return f"${self.api_key_env}" if self.api_key_env else "a token (add #env:VAR or #TOKEN to its URL)"


def _secret(store: Store, space_id: int, name: str) -> str | None:
    row = store.db.execute("SELECT secret FROM space_secrets WHERE space_id = ? AND participant = ?",
                           (space_id, name)).fetchone()
    return row[0] if row else None


def _speak_remote(services: SpaceServices, space: Space, p: Participant) -> Turn:
    with services.lock:
        messages, withheld = outgoing_messages(space, p, services.person, services.store)
        secret = _secret(services.store, space.id, p.name) if p.key == "stored" else None
    meta = {"label": p.name, "url": p.url, "model": p.model, "withheld": withheld,
            "sent_chars": sum(len(m.content) for m in messages)}
    model = _RemoteModel(p, secret, space.timeout)
    t0 = time.monotonic()
    response = complete(model, messages, _TURN)
    parts: list[str] = []
    try:
        for delta in response:
            parts.append(delta)
            if time.monotonic() - t0 > space.timeout:
                raise EndpointError(f"timed out: {p.url} did not finish its answer within {space.timeout:g} s")
        text = "".join(parts).strip()[:MAX_TURN_CHARS]
        if not text:
            raise EndpointError(f"{p.url} answered with nothing")
        if echo := echoed(text):
            raise EndpointError(f'{p.url} answered with the discussion\'s own instructions ("{echo}")')
    except EndpointError as e:
        error = str(e).replace("Check `base_url`", "Check its URL")
        if "timed out after" in error:
            error = f"timed out: no answer from {p.url} within {space.timeout:g} s"
        return Turn(0, p.name, "", "skipped", error, meta)
    finally:
        response.close()
        model.close()
    meta["seconds"] = round(time.monotonic() - t0, 2)
    return Turn(0, p.name, text, "ok", None, meta)


def _speak_local(services: SpaceServices, space: Space, p: Participant) -> Turn:
    meta: dict[str, Any] = {"label": p.label(services.person)}
    try:
        with services.lock:
            role = services.role(p.role) if p.kind == "role" else None
            messages, _ = outgoing_messages(space, p, services.person)
            persona = services.persona(role=role)
            # the whole transcript in the question: what others said is then evidence for the support check
            # (an answer that builds on it is not withdrawn); the memories are searched for the topic
            reply = persona.ask(f"{messages[0].content}\n\n{messages[-1].content}", query=space.topic)
        answer = reply.answer()
    except SecondSelfError as e:
        return Turn(0, p.name, "", "skipped", str(e), meta)
    meta.update(citations=answer.citations, abstained=answer.abstained, reason=answer.reason)
    echo = "" if answer.abstained else echoed(answer.text, role.instructions if role is not None else "")
    if echo:
        meta.update(citations=[], abstained=True, fallback=True,
                    note=f'the model repeated its instructions ("{echo}"); this turn says so instead')
        return Turn(0, p.name, render("space_pass", topic=space.topic), "ok", None, meta)
    return Turn(0, p.name, answer.text, "ok", None, meta)


def echoed(text: str, extra: str = "") -> str:
    """The first run of words `text` repeats from the instructions the space's models are given (every
    prompt in _INSTRUCTION_PROMPTS, and `extra`: a role's own), or "" when it repeats none."""
    from ..text.grounding import echoed_instructions

    known = set(prompt_names())
    instructions = [*(literal(name) for name in _INSTRUCTION_PROMPTS if name in known), *extra.splitlines()]
    # runs of five words: "I don't know" (four) is an honest answer, and the persona's instructions name it
    return echoed_instructions(text, "\n".join(instructions), n=5)


def _opening(services: SpaceServices, space: Space) -> Turn:
    names = ", ".join(p.label(services.person) for p in space.participants)
    text = render("space_opening", topic=space.topic, participants=names, rounds=space.rounds)
    return Turn(0, space.host.name, text, "ok", None, {"label": space.host.label(services.person) + " (host)"})


def _not_heard(space: Space) -> list[str]:
    """'name (last error)' for each participant that was skipped at least once."""
    out: dict[str, str] = {}
    for t in space.turns:
        if t.status == "skipped" and 0 < t.round <= space.rounds:
            out[t.meta.get("label", t.speaker)] = t.error or "failed"
    return [f"{name} ({error})" for name, error in out.items()]


def summary_problem(text: str, transcript: str) -> str:
    """Why a model-written summary cannot stand ("" when it can): it repeats its instructions (the 135M model
    answered with them), it loops ("a long-distance, long-distance, long-distance, ..."), or it names people,
    places or numbers that nobody said."""
    from ..text.grounding import unsupported_specifics

    if echo := echoed(text):
        return f'repeats the instructions ("{echo}")'
    words = re.findall(r"\w[\w'-]*", text.lower())
    pairs = [tuple(words[i:i + 2]) for i in range(len(words) - 1)]
    if pairs and max(pairs.count(p) for p in set(pairs)) >= 3:
        return "repeats itself"
    invented = unsupported_specifics(text, transcript)
    if invented:
        return f"mentions {', '.join(invented)}, which nobody said"
    return ""


def _summary(services: SpaceServices, space: Space) -> Turn:
    host = space.host
    meta: dict[str, Any] = {"label": host.label(services.person) + " (host)"}
    lines, _ = _lines(space, None, None)
    said = [t for t in space.turns if 0 < t.round <= space.rounds and t.status == "ok" and not t.meta.get("abstained")]
    if said:
        text = _model_summary(services, space, lines, meta)
    else:              # a model asked to sum up nothing invents ("Maya and Inês are both musicians")
        text, meta["note"] = "", "nobody said anything to sum up; this summary lists the turns"
    if not text:
        text = f"We talked about \"{space.topic}\". " + " ".join(_cut(line, 30) for line in lines[1:])
    skipped = _not_heard(space)
    if skipped:
        text += "\n\nNot heard: " + "; ".join(skipped) + "."
    return Turn(space.rounds + 1, host.name, text, "ok", None, meta)


def _model_summary(services: SpaceServices, space: Space, lines: list[str], meta: dict[str, Any]) -> str:
    """The host's model's summary of `lines`, or "" (and why in `meta["note"]`) when it cannot stand."""
    host = space.host
    system = render("space_summary_system", topic=space.topic, speaker=host.label(services.person))
    prompt = render("space_summary", transcript=_fit(lines))
    try:
        with services.lock:
            role = services.role(host.role) if host.kind == "role" else None
            model = services.chat_model(services.model_spec(role))
        from ..backends.catalog import follows_system_prompt
        from ..persona import collapse_repeats

        # a model that does not follow a system prompt (the embedded 135M loops on one) gets one user message
        messages = [Message("system", system), Message("user", prompt)] if follows_system_prompt(model.name) else \
            [Message("user", f"{system}\n\n{prompt}")]
        text = collapse_repeats(complete(model, messages, _SUMMARY).text().strip())
    except SecondSelfError as e:
        meta["note"] = f"the host's model failed ({e}); this summary lists the turns instead"
        return ""
    problem = summary_problem(text, " ".join([space.topic, services.person, *lines]))
    if problem:
        meta["note"] = f"the host's model wrote a summary that {problem}; this summary lists the turns instead"
        return ""
    return text


def run_space(services: SpaceServices, space_id: int, *, restart: bool = False,
              on_turn: Callable[[Space, Turn], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> Space:
    """Run (or continue) a space; returns it, finished or failed. Each turn is stored before `on_turn` hears
    of it. `should_stop()` is checked between turns (JobCancelled: the space is 'stopped' and continues at
    the next run). Remote participants are announced through `services.notify` before anything is sent."""
    store = services.store
    with services.lock:
        space = get_space(store, space_id)
        if space.status in ("done", "failed") and not restart:
            raise ConfigError(f"space {space_id} is {space.status}; run it with restart "
                              f"(`secondself space run {space_id} --restart`) to replace its transcript")
        if restart:
            reset_space(store, space_id)
            space = get_space(store, space_id)
        set_status(store, space_id, "running")
        space.status = "running"
    for notice in space.notices():
        services.notify(notice)
    try:
        for rnd, p in space.pending():
            if should_stop is not None and should_stop():
                raise JobCancelled(f"space {space_id} stopped; running it again continues where it stopped")
            if rnd == 0:
                turn = _opening(services, space)
            elif rnd > space.rounds:
                turn = _summary(services, space)
            else:
                turn = _speak_remote(services, space, p) if p.remote else _speak_local(services, space, p)
            turn.round = rnd
            with services.lock:
                add_turn(store, space_id, turn)
            space.turns.append(turn)
            if on_turn is not None:
                on_turn(space, turn)
            if rnd == 1 and p is space.participants[-1]:
                first = [t for t in space.turns if t.round == 1]
                if not any(t.status == "ok" for t in first):
                    message = ("No participant answered, so the space stopped after the first round: "
                               + "; ".join(_not_heard(space)) + ". Check their URLs, tokens and the timeout, then "
                               f"run it again with restart (`secondself space run {space_id} --restart`).")
                    with services.lock:
                        set_status(store, space_id, "failed", message)
                    space.status, space.summary = "failed", message
                    return space
        summary = next((t.content for t in reversed(space.turns) if t.round > space.rounds), None)
        with services.lock:
            set_status(store, space_id, "done", summary)
        space.status, space.summary = "done", summary
        return space
    except BaseException:
        with services.lock:
            set_status(store, space_id, "stopped")
        raise
