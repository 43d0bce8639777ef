"""Chat models: one small protocol, the lazy `Response` above it, and a deterministic fake.

A backend implements exactly one real method, `stream(messages, sampling)`, which yields text deltas.
Everything every backend would otherwise repeat lives here, once: stop strings, usage, timing.

    model = FakeChatModel(["Hello there."])
    reply = complete(model, [Message("user", "hi")], Sampling(max_tokens=64))
    for delta in reply: print(delta, end="")     # streams (and records)
    reply.text()                                 # the full text; drains what is left

Breaking out of the iteration cancels the reply: the backend's generator is closed, so local
generation stops and an HTTP stream is dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ConfigError, ContextOverflowError

__all__ = ["Message", "Sampling", "Usage", "ChatModel", "Response", "complete", "FakeChatModel", "MeteredModel"]

Role = Literal["system", "user", "assistant"]
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def __post_init__(self) -> None:
        # A wrong role is a programming error, not a user setting: ValueError, not ConfigError.
        if self.role not in _ROLES:
            raise ValueError(f"message role must be one of {_ROLES}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise ValueError(f"message content must be str, not {type(self.content).__name__}")


@dataclass(frozen=True)
class Sampling:
    """How to sample. temperature 0 means greedy (deterministic for local models).

    `stop`: up to 4 strings; the reply is cut before the first one (applied by `Response`).
    `seed`: makes sampling repeatable where the backend supports it.
    `json_schema`: constrain the reply to JSON valid under this schema, where the backend can (its
    `constrains_output` attribute is true: llama.cpp). Other backends ignore it, so callers still validate.
    """

    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_schema: Mapping[str, Any] | None = field(default=None, hash=False)  # a dict cannot be hashed

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a bare string would silently become single characters
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2 (0 = greedy), not {self.temperature}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or not 1 <= self.max_tokens <= 8192:
            raise ConfigError(f"max_tokens must be an integer from 1 to 8192, not {self.max_tokens!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], not {self.top_p}")
        if len(self.stop) > 4 or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be at most 4 non-empty strings, not {self.stop!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an integer or None, not {self.seed!r}")
        if self.json_schema is not None and not isinstance(self.json_schema, Mapping):
            raise ConfigError(f"json_schema must be a JSON Schema object (a dict) or None, not {self.json_schema!r}")


@dataclass(frozen=True)
class Usage:
    """Token counts by the model's own `count_tokens` (approximate for HTTP backends).

    prompt_tokens counts message contents only, not the chat template's few framing tokens.
    """

    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class ChatModel(Protocol):
    """What the rest of secondself needs from a chat model. Read-only attributes:

    name: the model's name ("SmolLM2-135M-Instruct", "llama3.1:8b", "fake").
    context_window: how many tokens prompt + reply may hold together.
    where: for humans — "local CPU", "local CUDA", "https://api.example.com/v1 (remote)".
    """

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    @property
    def where(self) -> str: ...

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        """Yield the reply as text deltas. Stop strings need no handling here (Response does it)."""
        ...

    def count_tokens(self, text: str) -> int: ...


class Response:
    """A reply that is generated only when read.

    Iterate to stream deltas (each is recorded); `text()` drains the rest and returns the whole text.
    After the reply ends: `usage`, `ttft_s` (seconds to the first non-empty delta), `seconds` (total),
    `finish_reason` ("stop": the model ended or a stop string was hit; "length": max_tokens reached,
    as counted by `count_tokens`; "cancelled": the reader stopped early).
    Errors of the backend propagate from the iteration / `text()`; what arrived before is kept.
    """

    def __init__(self, model: ChatModel, messages: Sequence[Message], sampling: Sampling) -> None:
        self.model = model
        self.messages = tuple(messages)
        self.sampling = sampling
        self.usage: Usage | None = None
        self.ttft_s: float | None = None
        self.seconds: float | None = None
        self.finish_reason: str | None = None
        self._parts: list[str] = []
        self._source: Iterator[str] | None = None  # the shared generator, created on first read
        self._t0: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def __iter__(self) -> Iterator[str]:
        if self._done:  # a finished reply replays what was recorded
            yield from list(self._parts)
            return
        if self._source is None:
            self._source = self._generate()
        try:
            yield from self._source
        except (GeneratorExit, KeyboardInterrupt):
            self.close()  # the reader broke off: stop the backend now
            raise
        except BaseException:
            self._finish("error")
            raise

    def text(self) -> str:
        """The full reply text (generating whatever has not been read yet)."""
        for _ in self:
            pass
        return "".join(self._parts)

    def close(self) -> None:
        """Cancel the reply: the backend stops generating. Safe to call more than once."""
        if self._source is not None and not self._done:
            self._source.close()
        self._finish("cancelled")

    def __repr__(self) -> str:
        state = "done" if self._done else ("streaming" if self._source else "not started")
        return f"<Response from {self.model.name!r}: {state}, {sum(map(len, self._parts))} chars>"

    def _generate(self) -> Iterator[str]:
        self._t0 = time.perf_counter()
        stops = self.sampling.stop
        hold = max((len(s) for s in stops), default=1) - 1  # a stop string may straddle two deltas
        pending = ""
        backend = self.model.stream(self.messages, self.sampling)
        try:
            for delta in backend:
                if not delta:
                    continue
                if self.ttft_s is None:
                    self.ttft_s = time.perf_counter() - self._t0
                pending += delta
                cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    yield from self._emit(pending[:cut])
                    pending = ""
                    break  # closes the backend generator below
                keep = len(pending) - hold
                if keep > 0:
                    yield from self._emit(pending[:keep])
                    pending = pending[keep:]
            else:
                yield from self._emit(pending)
                self._finish(None)
                return
            self._finish("stop")
        finally:
            # Close explicitly rather than relying on garbage collection: a local model stops computing.
            close = getattr(backend, "close", None)
            if close is not None:
                close()

    def _emit(self, text: str) -> Iterator[str]:
        if text:
            self._parts.append(text)
            yield text

    def _finish(self, reason: str | None) -> None:
        if self._done:
            return
        self._done = True
        t0 = self._t0
        self.seconds = None if t0 is None else time.perf_counter() - t0
        text = "".join(self._parts)
        completion = 0
        try:
            prompt = sum(self.model.count_tokens(m.content) for m in self.messages) if t0 is not None else 0
            completion = self.model.count_tokens(text) if text else 0
            self.usage = Usage(prompt, completion)
        except Exception:  # bookkeeping must never mask the backend's own error
            self.usage = None
        if reason is None:
            reason = "length" if completion >= self.sampling.max_tokens else "stop"
        self.finish_reason = reason


# Sampling is frozen, so one shared default instance is safe.
def complete(model: ChatModel, messages: Sequence[Message], sampling: Sampling = Sampling()) -> Response:  # noqa: B008
    """Ask `model` for a reply. Nothing runs until the Response is iterated or `.text()` is called."""
    if not messages:
        raise ValueError("complete() needs at least one message")
    return Response(model, messages, sampling)


class FakeChatModel:
    """A deterministic chat model for tests and demos.

    Replies come from a queue (`FakeChatModel(["a", "b"])`, `.enqueue("c")`) in order; an enqueued
    exception is raised instead of replying. With the queue empty it calls `respond(messages)` if given
    (a scripted teacher that answers by what it is asked), else answers "fake: <last user message>".
    Replies stream word by word and are cut at `max_tokens` words. Every call is recorded in `.calls`
    as (messages, sampling). Tokens are whitespace-separated words.
    """

    def __init__(self, replies: list[str] | None = None, name: str = "fake", context_window: int = 8192,
                 respond: Callable[[Sequence[Message]], str] | None = None) -> None:
        self.name = name
        self.respond = respond
        self.context_window = context_window
        self.where = "in-process fake"
        self.calls: list[tuple[tuple[Message, ...], Sampling]] = []
        self._queue: list[str | BaseException] = list(replies or [])

    def enqueue(self, *replies: str | BaseException) -> None:
        self._queue.extend(replies)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        # Not a generator function itself, so the call is recorded even if the stream is never read.
        messages = tuple(messages)
        self.calls.append((messages, sampling))
        reply = self._queue.pop(0) if self._queue else (self.respond or self._default)(messages)
        prompt = sum(self.count_tokens(m.content) for m in messages)
        if prompt + sampling.max_tokens > self.context_window:
            raise ContextOverflowError(
                f"the prompt is {prompt} tokens plus up to {sampling.max_tokens} for the reply, but "
                f"{self.name} holds {self.context_window}: shorten the conversation or lower max_tokens")
        if isinstance(reply, BaseException):
            raise reply
        return self._words(reply, sampling.max_tokens)

    @staticmethod
    def _default(messages: Sequence[Message]) -> str:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return f"fake: {last}"

    @staticmethod
    def _words(reply: str, limit: int) -> Iterator[str]:
        # "\s*\S+" is one word with the space before it; a trailing "\s+" keeps the reply's last spaces.
        for i, match in enumerate(re.finditer(r"\s*\S+|\s+", reply)):
            if i >= limit:
                return
            yield match.group()


class MeteredModel:
    """Wraps a chat model and counts what is asked of it: calls, prompt and completion tokens, seconds.

    Used by builds and benchmarks to report teacher cost; token counts use the model's `count_tokens`.
    """

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seconds = 0.0

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def context_window(self) -> int:
        return self.model.context_window

    @property
    def where(self) -> str:
        return self.model.where

    @property
    def constrains_output(self) -> bool:  # Sampling.json_schema is honoured by the wrapped model
        return bool(getattr(self.model, "constrains_output", False))

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        self.calls += 1
        self.prompt_tokens += sum(self.model.count_tokens(m.content) for m in messages)
        return self._counted(self.model.stream(messages, sampling))

    def _counted(self, deltas: Iterator[str]) -> Iterator[str]:
        t0, parts = time.perf_counter(), []
        try:
            for d in deltas:
                parts.append(d)
                yield d
        finally:
            self.seconds += time.perf_counter() - t0
            self.completion_tokens += self.model.count_tokens("".join(parts)) if parts else 0

    def snapshot(self) -> dict[str, float]:
        return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 2)}
