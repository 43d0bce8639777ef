"""One llama.cpp base per process with the persons' adapters in a bounded LRU (backends/llama_engine.py).

Fast tests run the engine's real leases, LRU and restarts over a fake llama.cpp server (`_start` replaced)
whose reply names the adapter it was asked to apply at scale 1, so which adapter each request got is visible;
slow ones run the embedded 135M GGUF with random adapters and compare greedy answers.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from secondself.backends import llama_engine
from secondself.backends.chat import Message, Sampling, complete
from secondself.backends.llamacpp import LlamaCppChatModel
from secondself.errors import AdapterMismatchError, BackendError, ConfigError

from .test_llamacpp import lora_for, write_base

HI = [Message("user", "hi")]


class FakeServer:
    """Answers with the stem of the adapter at scale 1 ('base' for none), in `pieces` chunks; fails a request
    that runs after the server was stopped."""

    pieces = 2
    delay = 0.0

    def __init__(self, adapters):
        self.adapters = list(adapters)
        self.stopped = False
        self.requests = []

    def handle_chat_completions(self, request, on_chunk):
        self.requests.append(request)
        names = [self.adapters[x["id"]].stem for x in request.get("lora", []) if x["scale"] == 1.0]
        for i in range(self.pieces):
            time.sleep(self.delay)
            if self.stopped:
                raise RuntimeError("generation on a stopped server")
            text = "+".join(names) or "base"
            if on_chunk({"choices": [{"delta": {"content": text if i == 0 else ""}}]}):
                return

    def handle_metrics(self):
        return "llamacpp:requests_processing 0"


class FakeHttp:
    def post(self, route, json):
        return httpx.Response(200, json={"tokens": [1, 2], "input_tokens": 3})

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch):
    """llama.cpp replaced by FakeServer; returns the list of servers started."""
    started = []

    def start(self, adapters):
        self.server, self._http, self.loaded = FakeServer(adapters), FakeHttp(), list(adapters)
        self.starts += 1
        started.append(self.server)

    stop = llama_engine._Engine._stop

    def stopping(self):
        if self.server is not None:
            self.server.stopped = True
        stop(self)

    monkeypatch.setattr(llama_engine._Engine, "_start", start)
    monkeypatch.setattr(llama_engine._Engine, "_stop", stopping)
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")
    return started


def adapters(tmp_path, *names):
    base = write_base(tmp_path / "base.gguf")
    return base, {n: lora_for(base, tmp_path / f"{n}.gguf", seed=i) for i, n in enumerate(names)}


def ask(model):
    return complete(model, HI, Sampling(max_tokens=4)).text()


def test_each_request_gets_its_own_adapter_and_names_every_loaded_one(tmp_path, fake):
    base, files = adapters(tmp_path, "a", "b")
    model = LlamaCppChatModel(base, adapters=files, requantize=False)
    assert "lora" not in model._request(HI, Sampling())  # nothing loaded yet
    assert model.with_adapter("b")._request(HI, Sampling())["lora"] == [{"id": 0, "scale": 1.0}]
    assert [ask(model.with_adapter("a")), ask(model.with_adapter("b")), ask(model)] == ["a", "b", "base"]
    assert model._engine.loaded == [files["a"].resolve(), files["b"].resolve()] and len(fake) == 2
    assert fake[-1].requests[-2]["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
    assert fake[-1].requests[-1]["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]
    assert ask(model.with_adapter("a")) == "a" and len(fake) == 2  # loaded: no restart
    assert model.with_adapter("b").name == "base+b" and model.with_adapter(None).name == "base"
    with pytest.raises(ConfigError, match="a, b"):
        model.with_adapter("c")


def test_the_bound_evicts_the_least_recently_used_and_an_evicted_adapter_reloads(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "2")
    base, files = adapters(tmp_path, "a", "b", "c")
    model = LlamaCppChatModel(base, adapters=files, requantize=False)
    engine = model._engine

    def loaded():
        return sorted(p.stem for p in engine.loaded)

    for name in ("a", "b", "a"):
        assert ask(model.with_adapter(name)) == name
    assert loaded() == ["a", "b"] and engine.starts == 2
    assert ask(model.with_adapter("c")) == "c"
    assert loaded() == ["a", "c"] and engine.starts == 3  # b was the least recently used
    assert ask(model.with_adapter("b")) == "b"             # evicted: loaded again on its next request
    assert loaded() == ["b", "c"] and engine.starts == 4
    assert ask(model) == "base" and engine.starts == 4     # the base needs no adapter loaded


def test_adapters_stay_loaded_up_to_the_bound(tmp_path, fake):
    names = [f"p{i}" for i in range(6)]
    base, files = adapters(tmp_path, *names)
    model = LlamaCppChatModel(base, adapters=files, requantize=False)  # the default bound: 8
    for name in names + names:
        assert ask(model.with_adapter(name)) == name
    assert sorted(p.stem for p in model._engine.loaded) == names and model._engine.starts == 6


def test_every_model_on_one_file_shares_one_engine_and_persons_adapters_never_mix(tmp_path, fake):
    base = write_base(tmp_path / "base.gguf")
    for person in ("maya", "tom"):
        (tmp_path / person).mkdir()
    maya = lora_for(base, tmp_path / "maya" / "v001.gguf")
    tom = lora_for(base, tmp_path / "tom" / "v001.gguf", seed=1)
    persona = LlamaCppChatModel(base, requantize=False)
    hers = LlamaCppChatModel(base, requantize=False, adapters={"v001": maya}).with_adapter("v001")
    his = LlamaCppChatModel(base, requantize=False, adapters={"v001": tom}).with_adapter("v001")
    assert persona._engine is hers._engine is his._engine
    assert LlamaCppChatModel(base, requantize=False, n_ctx=64)._engine is not persona._engine
    assert [ask(hers), ask(his), ask(persona)] == ["v001", "v001", "base"]
    served = [s.adapters[x["id"]] for s in fake for r in s.requests for x in r.get("lora", []) if x["scale"]]
    assert served == [maya.resolve(), tom.resolve()] and len(fake) == 2
    hers.close()  # a person's model released: its adapter goes first, the shared base stays loaded
    assert persona._engine.server is not None and next(iter(persona._engine._recent)) == maya.resolve()


def test_concurrent_requests_for_many_adapters_each_get_their_own(tmp_path, fake, monkeypatch):
    """Bound 1: nearly every request restarts the engine; no generation runs on a stopped server (a restart
    waits for the requests in flight) and every reply names the adapter its request asked for."""
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "1")
    monkeypatch.setattr(FakeServer, "pieces", 4)
    monkeypatch.setattr(FakeServer, "delay", 0.002)
    base, files = adapters(tmp_path, "a", "b", "c")
    model = LlamaCppChatModel(base, adapters=files, requantize=False)
    wrong, errors = [], []

    def person(name):
        try:
            for _ in range(6):
                got = ask(model.with_adapter(name) if name != "base" else model)
                if got != name:
                    wrong.append((name, got))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=person, args=(n,)) for n in ("a", "b", "c", "base", "a")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
    assert len(fake) > 3 and model._engine._active == 0


def test_a_reply_left_open_on_this_thread_is_an_error_not_a_deadlock(tmp_path, fake, monkeypatch):
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "1")
    base, files = adapters(tmp_path, "a", "b")
    model = LlamaCppChatModel(base, adapters=files, requantize=False)
    open_reply = iter(complete(model.with_adapter("a"), HI, Sampling(max_tokens=4)))
    assert next(open_reply) == "a"
    with pytest.raises(BackendError, match="still open"):
        ask(model.with_adapter("b"))
    with pytest.raises(BackendError, match="still open"):
        model.close()
    open_reply.close()
    assert ask(model.with_adapter("b")) == "b"


def test_an_adapter_for_another_base_is_refused_and_does_not_disturb_the_others(tmp_path, fake):
    base, files = adapters(tmp_path, "a")
    other = lora_for(write_base(tmp_path / "other.gguf", arch="qwen2"), tmp_path / "qwen-lora.gguf")
    good = LlamaCppChatModel(base, adapters=files, requantize=False).with_adapter("a")
    bad = LlamaCppChatModel(base, adapters={"x": other}, requantize=False).with_adapter("x")
    with pytest.raises(AdapterMismatchError, match="qwen-lora.gguf"):
        ask(bad)
    assert ask(good) == "a"


def test_the_bound_comes_from_the_environment(monkeypatch):
    assert llama_engine.max_adapters() == llama_engine.DEFAULT_MAX_ADAPTERS == 8
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "3")
    assert llama_engine.max_adapters() == 3
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "0")
    with pytest.raises(ConfigError, match="SECONDSELF_MAX_ADAPTERS"):
        llama_engine.max_adapters()


# -- slow: the embedded SmolLM2-135M GGUF --------------------------------------------------------------

@pytest.mark.slow
def test_adapters_on_one_base_answer_as_each_adapter_alone(tmp_path, monkeypatch):
    """Greedy answers with adapters A, B, C on one engine (bound 2: B is evicted by C and reloaded) equal
    the answers of an engine that only ever holds one adapter at a time (bound 1); so do concurrent ones, on
    the bound-1 engine (restarting between them) and on one server holding B and C."""
    from secondself.backends.local import embedded_gguf_path

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")
    monkeypatch.setenv("SECONDSELF_THREADS", "1")
    gguf_path = embedded_gguf_path()
    files = {n: lora_for(gguf_path, tmp_path / f"{n}.gguf", rank=4, scale=0.15, targets=("attn_q", "attn_v"),
                         seed=i) for i, n in enumerate("ABC")}
    greedy = Sampling(max_tokens=12)
    question = [Message("user", "Write three sentences about the sea.")]
    cache = tmp_path / "cache"

    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "1")
    alone = LlamaCppChatModel(gguf_path, n_ctx=384, adapters=files, cache_dir=cache)
    monkeypatch.setenv("SECONDSELF_MAX_ADAPTERS", "2")
    shared = LlamaCppChatModel(gguf_path, n_ctx=448, adapters=files, cache_dir=cache)
    try:
        expected = {n: complete(alone.with_adapter(n), question, greedy).text() for n in "ABC"}
        expected["base"] = complete(alone, question, greedy).text()
        assert len(set(expected.values())) == 4  # each random adapter changes the answer
        got = {}
        for n in ("A", "B", "A", "C", "B"):
            got.setdefault(n, []).append(complete(shared.with_adapter(n), question, greedy).text())
        got["base"] = [complete(shared, question, greedy).text()]
        assert got == {n: [expected[n]] * (2 if n in "AB" else 1) for n in expected}
        assert shared._engine.starts == 4 and sorted(p.stem for p in shared._engine.loaded) == ["B", "C"]

        for model, names in ((alone, ["A", "B", "C", "A"]),         # restarts between them
                             (shared, ["B", "C", "base", "C", "B"])):  # B and C loaded: one server, no restart
            answers: dict[int, str] = {}
            starts = shared._engine.starts

            def run(i, model=model, names=names, answers=answers):
                view = model if names[i] == "base" else model.with_adapter(names[i])
                answers[i] = complete(view, question, greedy).text()

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert [answers[i] for i in range(len(names))] == [expected[n] for n in names]
        assert shared._engine.starts == starts
    finally:
        alone.close()
        shared.close()


def test_the_persona_model_and_each_persons_personal_model_share_one_base(tmp_path, monkeypatch):
    from secondself.backends.registry import make_chat_model
    from secondself.train import adapters as registry

    from .test_personal_gguf import _adapter
    from .test_personal_gguf import write_base as tiny_base

    base = tiny_base(tmp_path / "base.gguf")
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")  # builds the backends; nothing is loaded here
    persona = make_chat_model(str(base), tmp_path / "models").model
    maya = registry.personal_chat_model(_adapter(tmp_path / "maya", base), tmp_path / "models")
    tom = registry.personal_chat_model(_adapter(tmp_path / "tom", base), tmp_path / "models")
    assert persona._engine is maya._engine is tom._engine and persona._engine.server is None
    assert maya.adapter == tom.adapter == "v001" and maya._lora != tom._lora
