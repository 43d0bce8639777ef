"""OpenAIChatModel: any OpenAI-compatible `/chat/completions` endpoint (Ollama, llama.cpp server, vLLM,
LM Studio, OpenAI itself), streamed over server-sent events with plain `httpx`.

Retries (exponential backoff, `Retry-After` respected) cover connect errors, 429 and 5xx — but only
until the first token has been yielded: after that a failure raises `EndpointError`, so a reply is
never silently restarted or duplicated.

The API key is read from an environment variable at call time. It is never stored on the object and
never appears in an error message, repr or log (server messages are scrubbed of it, too).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import ContextOverflowError, EndpointError, ModelNotAvailableError
from .chat import Message, Sampling

__all__ = ["OpenAIChatModel", "is_remote_url", "is_loopback_host"]

_CONTEXT_HINTS = ("context_length", "context length", "maximum context", "context window", "too many tokens",
                  "prompt is too long", "exceeds the context")
_MAX_WAIT_S = 60.0  # a Retry-After longer than this is reported instead of slept through


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine: the name
    `localhost`, or an address in 127.0.0.0/8 or ::1 (also written IPv4-mapped, ::ffff:127.x.x.x).

    Decided from the parsed address, never a string prefix: `127.evil.example` is a name like any other, and
    every name but `localhost` is remote (a resolver may answer anything). Short or numeric IPv4 forms
    (`127.1`, `2130706433`) do not parse as addresses here, so they count as remote: the safe side."""
    host = host.strip()
    if host.lower() == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def is_remote_url(url: str) -> bool:
    """False when the URL's host is this machine (`is_loopback_host`), True otherwise, and True for anything
    that does not parse cleanly: a backslash or user info in the authority, where URL parsers disagree on
    which part is the host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return True
    if "\\" in parts.netloc or "@" in parts.netloc:
        return True
    return not is_loopback_host(host)


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class OpenAIChatModel:
    """Chat over HTTP. `transport` lets tests pass an `httpx.MockTransport`.

    `count_tokens` is an approximation (characters / 4): the server's tokenizer is not available here.
    `context_window` is what the caller says it is (default 8192); the server has the last word and a
    too-long prompt becomes `ContextOverflowError`.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60,
                 max_retries: int = 3, transport: Any = None, context_window: int = 8192) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.context_window = context_window
        self._transport = transport
        self._client: Any = None
        self._sleep: Callable[[float], None] = time.sleep  # tests replace it to skip the waiting
        self.where = f"{self.base_url} (remote)" if is_remote_url(self.base_url) else self.base_url

    def __repr__(self) -> str:
        return f"OpenAIChatModel(base_url={self.base_url!r}, model={self.name!r})"

    def count_tokens(self, text: str) -> int:
        """Approximate: about 4 characters per token for English text."""
        return math.ceil(len(text) / 4)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:  # Response cuts at stop strings anyway; this lets the server stop early
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return self._stream(body)

    # -- internals -------------------------------------------------------------------------------

    def _stream(self, body: dict[str, Any]) -> Iterator[str]:
        client = self._http()
        import httpx

        key = self._api_key()
        headers = {"Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            started = False
            try:
                with client.stream("POST", url, json=body, headers=headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        self._raise_for_status(response, key)
                    for delta in self._events(response, key):
                        started = True
                        yield delta
                return
            except _Retryable as e:
                reason, wait = str(e), e.wait
            except httpx.TransportError as e:
                if started:
                    raise EndpointError(f"the connection to {self.base_url} broke in the middle of the reply "
                                        f"({_describe(e, self.timeout)}); the partial reply was kept") from e
                if not isinstance(e, httpx.ConnectError | httpx.ConnectTimeout | httpx.ReadTimeout
                                  | httpx.RemoteProtocolError | httpx.ReadError):
                    raise EndpointError(f"cannot talk to {self.base_url}: {_describe(e, self.timeout)}") from e
                reason = (f"cannot reach {self.base_url}: {_describe(e, self.timeout)}. "
                          "Is the server running? Check `base_url`")
                wait = None
            attempt += 1
            if attempt > self.max_retries:
                raise EndpointError(reason if attempt == 1 else f"{reason} (after {attempt} attempts)")
            self._sleep(min(wait if wait is not None else 0.5 * 2 ** (attempt - 1), _MAX_WAIT_S))

    def _api_key(self) -> str:
        """The key for this call, read now (a subclass may take it from elsewhere: a space's stored token)."""
        return os.environ.get(self.api_key_env, "")

    def _key_source(self) -> str:
        """Where the key comes from, for error messages."""
        return f"${self.api_key_env}"

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as e:
                raise ModelNotAvailableError("HTTP chat models need httpx: run `pip install httpx`") from e
            self._client = httpx.Client(transport=self._transport,
                                        timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10)))
        return self._client

    def _events(self, response: Any, key: str) -> Iterator[str]:
        """Text deltas from an SSE body; stops at `data: [DONE]` or the end of the stream.

        A server that ignores `stream: true` and answers with one JSON object yields its whole message.
        """
        other: list[str] = []  # blank separators, ": keep-alive", "event:" lines — or a plain JSON body
        sse = False
        for line in response.iter_lines():
            if not line.startswith("data:"):
                if not sse:
                    other.append(line)
                continue
            sse = True
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise EndpointError(f"{self.base_url} sent something that is not JSON in its stream: "
                                    f"{_scrub(data, key)[:200]!r}") from None
            if not isinstance(event, dict):
                continue
            if event.get("error"):
                self._raise_error_body(event, response.status_code, key)
            choices = event.get("choices") or [{}]  # a final usage-only chunk has no choices
            content = (choices[0].get("delta") or {}).get("content")  # null on role / finish chunks
            if content:
                yield content
        if sse:
            return
        try:
            event = json.loads("\n".join(other))
        except ValueError:
            raise EndpointError(f"{self.base_url} answered with neither an event stream nor JSON: is "
                                "base_url an OpenAI-compatible API (ending in /v1)?") from None
        if isinstance(event, dict) and event.get("error"):
            self._raise_error_body(event, response.status_code, key)
        choices = (event.get("choices") or [{}]) if isinstance(event, dict) else [{}]
        content = (choices[0].get("message") or {}).get("content")
        if content:
            yield content

    def _raise_for_status(self, response: Any, key: str) -> None:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text}}
        if status in (401, 403):
            if not key:
                raise EndpointError(f"{self.base_url} wants an API key (HTTP {status}): set {self._key_source()}")
            raise EndpointError(f"the endpoint {self.base_url} rejected the API key from {self._key_source()} "
                                f"(HTTP {status}): check that it is valid for this server")
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("Retry-After"))
            what = "rate limited" if status == 429 else "server error"
            message = f"{self.base_url} answered HTTP {status} ({what}): {_message(payload, key)}"
            if wait is not None and wait > _MAX_WAIT_S:
                raise EndpointError(f"{message}; it asks to retry after {wait:.0f} s — try again later")
            raise _Retryable(message, wait)
        self._raise_error_body(payload, status, key)

    def _raise_error_body(self, payload: Any, status: int, key: str) -> None:
        message = _message(payload, key)
        if any(hint in message.lower() for hint in _CONTEXT_HINTS):
            raise ContextOverflowError(f"the conversation is too long for {self.name} at {self.base_url}: "
                                       f"{message}. Shorten it or lower max_tokens")
        if status == 404 or "not found" in message.lower():
            raise EndpointError(f"model {self.name!r} was not found at {self.base_url} (HTTP {status}): check "
                                "the model name (e.g. `ollama list`) and that base_url ends in /v1")
        raise EndpointError(f"{self.base_url} answered HTTP {status}: {message}")


def _message(payload: Any, key: str) -> str:
    """The human part of an error body ({"error": {"message": ...}} or {"error": "..."}), key removed."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        error = error.get("message") or error.get("code") or json.dumps(error)[:300]
    return _scrub(str(error).strip() or "no details given", key)[:500]


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "[API key]") if key else text


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare, and the backoff is a fine substitute


def _describe(error: Exception, timeout: float) -> str:
    import httpx

    text = str(error).lower()
    if isinstance(error, httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "host not found"
    return str(error) or type(error).__name__
