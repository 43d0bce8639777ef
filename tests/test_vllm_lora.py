"""Personal models on a vLLM server with multi-LoRA (backends/vllm_lora.py), against FakeVLLMServer."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from secondself.backends.chat import Message, complete
from secondself.backends.fake_vllm_server import FakeVLLMServer
from secondself.backends.vllm_lora import LoRAEndpoint, adapter_name, parse_endpoint
from secondself.errors import ConfigError, EndpointError
from secondself.runtime import Runtime
from secondself.train import adapters as registry

HI = [Message("user", "Where do you live?")]


def trained(person_dir: Path, rank: int = 8) -> registry.AdapterInfo:
    """A registered, selected adapter version (a peft directory; the weights do not matter to the fake)."""
    folder = person_dir / "incoming"  # moved into adapters/vNNN by register
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank}))
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((rank, 4), np.float32)},
              str(folder / "adapter_model.safetensors"))
    return registry.register(person_dir, folder, {"base": "SmolLM2-135M-Instruct"})


def runtime(tmp_path: Path, person: str, endpoint: str, notices: list[str] | None = None) -> Runtime:
    return Runtime.from_options(str(tmp_path / "home"), {"person": person, "personal_endpoint": endpoint},
                                notify=(notices.append if notices is not None else None))


def fake_training(rt: Runtime, monkeypatch, rank: int = 8) -> None:
    """`train_model` through its real path, with the run itself replaced by registering a version."""
    from secondself.train import pipeline

    def run_training(store, person_dir, *args, **kwargs):
        return registry.use(store, person_dir, trained(person_dir, rank).version)

    monkeypatch.setattr(pipeline, "run_training", run_training)
    monkeypatch.setattr(rt, "train_base", lambda spec=None: (rt.settings.person_dir, "SmolLM2-135M-Instruct"))
    rt.train_model("fake")  # a base without a GGUF: nothing to convert


@pytest.fixture
def vllm():
    with FakeVLLMServer(model="smollm2") as server:
        yield server


def test_training_registers_the_new_version_and_unregisters_the_one_it_replaces(tmp_path, vllm, monkeypatch):
    notices: list[str] = []
    rt = runtime(tmp_path, "maya", f"openai:smollm2@{vllm.base_url}", notices)
    fake_training(rt, monkeypatch)
    first = registry.current(rt.store, rt.settings.person_dir)
    name1 = adapter_name("maya", first.version, first.path)
    assert vllm.loras == {name1: str(first.path)} and name1.startswith("maya-v001-")
    assert any("registered as" in n and name1 in n for n in notices)
    fake_training(rt, monkeypatch)
    second = registry.current(rt.store, rt.settings.person_dir)
    name2 = adapter_name("maya", second.version, second.path)
    assert second.version == "v002" and vllm.loras == {name2: str(second.path)}
    assert [kind for kind, _ in vllm.calls] == ["load_lora_adapter", "load_lora_adapter", "unload_lora_adapter"]
    assert LoRAEndpoint(vllm.base_url, "smollm2").registered() == {name2: str(second.path)}


def test_each_person_chats_with_their_own_adapters_name(tmp_path, vllm):
    spec = f"openai:smollm2@{vllm.base_url}"
    answers = {}
    for person in ("maya", "tom"):
        rt = runtime(tmp_path, person, spec)
        info = trained(rt.settings.person_dir)
        registry.use(rt.store, rt.settings.person_dir, info.version)
        model = rt.chat_model("personal")
        answers[person] = (adapter_name(person, "v001", info.path), complete(model, HI).text())
        rt.close()
    assert [r["model"] for r in vllm.requests] == [answers["maya"][0], answers["tom"][0]]
    assert answers["maya"][0] != answers["tom"][0]  # the same version number, another person, another adapter
    for name, reply in answers.values():
        assert reply.startswith(f"{name}:")
    assert set(vllm.loras) == {answers["maya"][0], answers["tom"][0]}  # registered on first use


def test_a_restarted_server_gets_the_adapter_again(tmp_path, vllm):
    rt = runtime(tmp_path, "maya", f"openai:smollm2@{vllm.base_url}")
    registry.use(rt.store, rt.settings.person_dir, trained(rt.settings.person_dir).version)
    model = rt.chat_model("personal")
    assert complete(model, HI).text().startswith(model.name)
    vllm.restart()
    assert complete(model, HI).text().startswith(model.name)
    assert [kind for kind, _ in vllm.calls] == ["load_lora_adapter", "load_lora_adapter"]


def test_selecting_another_version_unregisters_the_previous_one(tmp_path, vllm):
    rt = runtime(tmp_path, "maya", f"openai:smollm2@{vllm.base_url}")
    first, second = trained(rt.settings.person_dir), trained(rt.settings.person_dir)
    registry.use(rt.store, rt.settings.person_dir, first.version)
    complete(rt.chat_model("personal"), HI).text()
    registry.use(rt.store, rt.settings.person_dir, second.version)
    complete(rt.chat_model("personal"), HI).text()
    assert list(vllm.loras) == [adapter_name("maya", second.version, second.path)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_down_endpoint_is_a_clear_error_and_training_keeps_its_adapter(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    notices: list[str] = []
    rt = runtime(tmp_path, "maya", f"openai:smollm2@{url}", notices)
    fake_training(rt, monkeypatch)
    assert registry.current(rt.store, rt.settings.person_dir).version == "v001"
    assert any("not registered" in n and url in n for n in notices)
    with pytest.raises(EndpointError, match=f"cannot reach the vLLM server {url}.*Is it running"):
        complete(rt.chat_model("personal"), HI).text()


def test_an_adapter_directory_the_server_cannot_read_says_it_must_see_the_same_path(tmp_path):
    with FakeVLLMServer(model="smollm2", rank_of=lambda path: None) as server, \
            pytest.raises(EndpointError, match="cannot read the adapter directory .*same path"):  # another disk
        LoRAEndpoint(server.base_url, "smollm2").register("maya-v001", tmp_path)


def test_a_server_without_runtime_lora_updating_says_how_to_start_it(tmp_path):
    with FakeVLLMServer(model="smollm2", lora_updating=False) as server, \
            pytest.raises(EndpointError, match="--enable-lora.*VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"):
        LoRAEndpoint(server.base_url, "smollm2").register("maya-v001", tmp_path)


def test_a_rank_above_the_servers_bound_is_refused_with_the_reason(tmp_path, vllm):
    rt = runtime(tmp_path, "maya", f"openai:smollm2@{vllm.base_url}")
    info = trained(rt.settings.person_dir, rank=64)
    endpoint = LoRAEndpoint(vllm.base_url, "smollm2")
    with pytest.raises(EndpointError, match="max_lora_rank 16.*--max-lora-rank"):
        endpoint.register("maya-v001", info.path)
    endpoint.register("maya-v001", trained(rt.settings.person_dir).path)
    endpoint.register("maya-v001", info.path)  # already loaded under that name: nothing to do
    endpoint.unregister("maya-v001")
    endpoint.unregister("maya-v001")           # not loaded: nothing to do
    assert vllm.loras == {}


def test_the_setting_is_checked_and_a_remote_server_is_announced(tmp_path):
    assert parse_endpoint("openai:smollm2@http://gpu:8000/v1") == ("smollm2", "http://gpu:8000/v1")
    with pytest.raises(ConfigError, match="personal_endpoint"):
        parse_endpoint("http://gpu:8000/v1")
    notices: list[str] = []
    rt = runtime(tmp_path, "maya", "openai:smollm2@http://gpu.example:8000/v1", notices)
    registry.use(rt.store, rt.settings.person_dir, trained(rt.settings.person_dir).version)
    model = rt.chat_model("personal")  # built without a request: registration waits for the first chat
    assert model.name.startswith("maya-v001-") and "gpu.example" in model.where
    assert notices and "personal model runs on http://gpu.example:8000/v1" in notices[0]


def test_cli_models_says_the_personal_model_runs_on_the_endpoint(tmp_path, capsys, monkeypatch):
    from .test_cli import run

    monkeypatch.setenv("SECONDSELF_PERSONAL_ENDPOINT", "openai:smollm2@http://gpu.example:8000/v1")
    rt = Runtime.from_options(str(tmp_path / "home"))  # the home of the autouse fixture
    info = trained(rt.settings.person_dir)
    registry.use(rt.store, rt.settings.person_dir, info.version)
    rt.close()
    code, out, err = run(capsys, "models")
    assert code == 0, err
    line = next(row for row in out.splitlines() if row.startswith("personal"))
    assert adapter_name(rt.settings.person, "v001", info.path) in line and "http://gpu.example:8000/v1" in line
    assert "REMOTE" in line
