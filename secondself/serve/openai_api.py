"""The OpenAI-compatible routes: `/v1/models` and `/v1/chat/completions` (streaming and not).

The OpenAI wire format lives here and nowhere else: a request becomes a question, a history and a
`Sampling` for `Persona.ask`; the `Answer` becomes a completion. What standard clients do not know about
(citations, whether the support check withdrew the draft, the conversation id) travels in an extra
top-level field `secondself`, which they ignore (the official Python client keeps it in `model_extra`).

Models: `secondself` answers with the configured persona model; `secondself:personal` with the trained
adapter, listed only once one exists; `secondself:ROLE` as that role (roles.py): its instructions, its model,
and only the memories its scope may read. A token bound to a role sees and may use only its role's model id
(any other is 403). Client `system` messages are ignored: the second self has its own
instructions, and a caller cannot switch them off.

If the support check withdraws a streamed draft, the text already sent cannot be unsent; the stream then
ends with a visible "(withdrawn: reason)" and the final answer, and `secondself.abstained` is true.
Each exchange is logged in the person's conversation history (`conversation_id` continues one: when it is
given with a single message, the earlier turns come from the stored conversation).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..backends.chat import Message, Sampling
from ..errors import ConfigError, RoleForbiddenError, RoleNotFoundError, SecondSelfError
from ..roles import MODEL_PREFIX
from .auth import Principal, RoleChatter, acting_role
from .responses import error_response
from .state import state_of

router = APIRouter(tags=["openai"])
log = logging.getLogger("secondself.serve")

MODEL = "secondself"
PERSONAL = "secondself:personal"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI request; unknown fields are accepted and ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="allow")
    model: str = MODEL
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=128)
    conversation_id: int | None = Field(default=None, ge=1, le=2**53,
                                        description="secondself: continue this logged conversation")


def served_models(state, principal: Principal | None = None) -> list[str]:
    """The model ids a caller may use: a role-bound token only its role's."""
    from ..roles import list_roles
    from ..train import adapters as registry

    rt = state.runtime
    with rt.lock:
        roles = [r.model_id for r in list_roles(rt.store)]
        if principal is not None and principal.role is not None:
            return [m for m in roles if m == MODEL_PREFIX + principal.role]
        ids = [MODEL]
        if registry.current(rt.store, rt.settings.person_dir) is not None:
            ids.append(PERSONAL)
    return ids + roles


@router.get("/v1/models")
def list_models(request: Request, principal: RoleChatter) -> dict:
    """The models this server answers with (OpenAI `models.list`)."""
    created = int(time.time())
    return {"object": "list", "data": [{"id": m, "object": "model", "created": created, "owned_by": "secondself"}
                                       for m in served_models(state_of(request), principal)]}


def _resolve(request: Request, model: str, principal: Principal):
    """(model spec, role or None) for a requested model id; a role-bound caller may ask only for its role's."""
    state = state_of(request)
    name = model[len(MODEL_PREFIX):] if model.startswith(MODEL_PREFIX) and model != PERSONAL else None
    if principal.role is not None and name != principal.role:
        raise RoleForbiddenError(f"this token is confined to the role {principal.role!r}: use the model "
                                 f"{MODEL_PREFIX + principal.role!r}")
    if name is not None:
        try:
            role = acting_role(request, principal, name)
        except RoleNotFoundError:
            role = None
        if role is not None:
            return state.runtime.model_spec(role), role
    elif model == MODEL:
        return state.runtime.settings.persona_model, None
    elif model == PERSONAL:
        return "personal", None
    raise _ModelNotFound(f"the model {model!r} does not exist here; GET /v1/models lists: "
                         f"{', '.join(served_models(state, principal))}")


class _ModelNotFound(SecondSelfError):
    pass


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request, principal: RoleChatter):
    """Chat with the second self: it answers as the person, from their memories, and cites them.

    Async on purpose: a request waiting for a busy model waits on the event loop, not in a worker thread,
    so a long line cannot starve the thread pool that the answers being streamed need. Store work and
    generation run in worker threads."""
    state = state_of(request)
    rt = state.runtime
    if body.n != 1:
        raise ConfigError("n must be 1: the second self gives one answer")
    try:
        spec, role = await run_in_threadpool(_resolve, request, body.model, principal)
    except _ModelNotFound as e:
        return JSONResponse({"error": {"message": str(e), "type": "invalid_request_error", "param": "model",
                                       "code": "model_not_found"}}, status_code=404)
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
        raise ConfigError("the last message must be a non-empty user message")
    question = turns[-1].text().strip()
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    limit = body.max_completion_tokens or body.max_tokens

    from ..conversations import ConversationLog, Turn

    def prepare():
        """Retrieval and the prompt, under the store lock; returns the lazy reply and the conversation id.
        A cold model is loaded first, without that lock: everything else that needs the store (every other
        route, a job's progress) would otherwise wait the seconds a load takes."""
        with rt.lock:
            model = rt.chat_model(spec)  # made, not loaded: loading is lazy
        _load(model)
        with rt.lock:
            log = ConversationLog(rt.store)
            if body.conversation_id is not None:
                # 'no conversation N' before anything is generated; a role continues only its own conversations
                stored = log.turns(body.conversation_id, model=body.model if role else None)
                history = [Message(t.role, t.content) for t in stored
                           if t.role in ("user", "assistant") and t.status == "complete"] if len(turns) == 1 \
                    else [Message(m.role, m.text()) for m in turns[:-1]]
            else:
                history = [Message(m.role, m.text()) for m in turns[:-1]]
            persona = rt.persona(spec, role=role)
            sampling = Sampling(temperature=body.temperature or 0.0, top_p=body.top_p or 1.0, stop=stop,
                                seed=body.seed, max_tokens=min(limit or persona.config.max_tokens, 8192))
            cid = body.conversation_id or log.start(question, body.model)
            reply = persona.ask(question, history=history, sampling=sampling)
            log.add(cid, Turn("user", question))
        return reply, cid

    gate = state.gate(spec)
    await gate.acquire_async()  # Busy → 503 before anything streams
    try:
        reply, cid = await run_in_threadpool(prepare)
    except BaseException:
        gate.release()
        raise

    def finish(answer) -> dict:
        with rt.lock:
            ConversationLog(rt.store).add(cid, Turn(
                "assistant", answer.text, answer.citations,
                meta={"abstained": answer.abstained, "reason": answer.reason, "model": body.model,
                      "client": principal.name, "timings": answer.timings, "usage": answer.usage}))
        return {"citations": answer.citations, "abstained": answer.abstained, "reason": answer.reason,
                "conversation_id": cid, "text": answer.text}

    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.stream:
        try:
            answer = await run_in_threadpool(reply.answer)
        finally:
            gate.release()
        extra = await run_in_threadpool(finish, answer)
        return {"id": rid, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": _usage(answer), "secondself": extra}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(_stream(reply, gate, finish, rid, created, body.model, include_usage),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache",
                                                                      "X-Accel-Buffering": "no"})


def _load(model) -> None:
    """What building a prompt needs from the model: its context window (reading it may convert the embedded
    GGUF) and its tokenizer. Both are loaded once and cached by the model."""
    _ = model.context_window
    model.count_tokens(" ")


def _usage(answer) -> dict[str, int]:
    p, c = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


_END = object()


async def _stream(reply, gate, finish, rid: str, created: int, model: str, include_usage: bool) -> AsyncIterator[str]:
    """SSE chunks. Each `next()` on the model runs in a worker thread; the gate is released however the
    stream ends (finished, failed, or the client went away)."""

    def chunk(delta: dict, finish_reason: str | None = None, **extra: Any) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    deltas = iter(reply)
    sent: list[str] = []
    try:
        yield chunk({"role": "assistant", "content": ""})
        while True:
            delta = await run_in_threadpool(next, deltas, _END)
            if delta is _END:
                break
            sent.append(delta)
            yield chunk({"content": delta})
        answer = await run_in_threadpool(reply.answer)
        gate.release()
        gate = None
        extra = await run_in_threadpool(finish, answer)
        streamed = "".join(sent).strip()
        if answer.abstained and answer.text.strip() != streamed:
            tail = f"\n\n(withdrawn: {answer.reason}) {answer.text}" if streamed else answer.text
            yield chunk({"content": tail})
        yield chunk({}, "stop", secondself=extra)
        if include_usage:
            usage = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": _usage(answer)}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as e:  # noqa: BLE001 - the stream must end with an error event, never just stop
        if gate is not None:  # give the turn back before the client hears of the failure
            gate.release()
            gate = None
        if not isinstance(e, SecondSelfError):
            log.exception("chat stream failed")
        err = json.loads(error_response(e).body) if isinstance(e, SecondSelfError) else \
            {"error": {"message": "internal error while answering; the server log has the details",
                       "type": "server_error", "param": None, "code": "internal_error"}}
        yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if gate is not None:
            gate.release()
        close = getattr(deltas, "close", None)
        if close is not None:
            await run_in_threadpool(close)
