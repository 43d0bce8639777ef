"""A fake vLLM server with runtime LoRA updating, for tests and demos (standard library only, loopback only).

It keeps the contract of `vllm serve BASE --enable-lora` started with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`
(vllm/entrypoints/openai/serving_models.py), as far as secondself relies on it:

- `POST /v1/load_lora_adapter {"lora_name", "lora_path"}`: 200 with a plain-text "Success: ..."; 400 when a
  field is missing, when the name is already loaded ("has already been loaded") or the rank is above
  `--max-lora-rank`; 404 with "No adapter found" when the server cannot read a peft adapter directory
  (adapter_config.json) at that path, on ITS file system;
- `POST /v1/unload_lora_adapter {"lora_name"}`: 200, or 404 "cannot be found";
- both routes answer FastAPI's bare 404 `{"detail": "Not Found"}` when runtime updating is off;
- `GET /v1/models`: the base and every loaded adapter (`root` = its path, `parent` = the base);
- chat completions accept the base's name or a loaded adapter's as `model`, else 404 "The model `X` does not
  exist."; a reply without a script names the model that answered ("<model>: <question>").

`restart()` forgets the loaded adapters, as a restarted vLLM does.

    with FakeVLLMServer(model="smollm2") as server:
        ...  # personal_endpoint = f"openai:smollm2@{server.base_url}"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .fake_openai_server import FakeOpenAIServer

__all__ = ["FakeVLLMServer"]


def _peft_rank(path: str) -> int | None:
    """The adapter's rank when `path` is a readable peft adapter directory, else None."""
    try:
        return int(json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8")).get("r", 8))
    except (OSError, ValueError, TypeError):
        return None


class FakeVLLMServer(FakeOpenAIServer):
    def __init__(self, replies: Sequence[str] = (), model: str = "base", api_key: str | None = None,
                 lora_updating: bool = True, max_lora_rank: int = 16,
                 rank_of: Callable[[str], int | None] = _peft_rank) -> None:
        super().__init__(replies, model=model, api_key=api_key)
        self.lora_updating = lora_updating
        self.max_lora_rank = max_lora_rank
        self.rank_of = rank_of           # what the server can read at a path (its own file system)
        self.loras: dict[str, str] = {}  # lora_name -> lora_path
        self.calls: list[tuple[str, dict]] = []

    def restart(self) -> None:
        self.loras.clear()

    def _model_cards(self) -> list[dict]:
        return [{"id": self.model, "object": "model", "root": self.model}] + [
            {"id": name, "object": "model", "root": path, "parent": self.model} for name, path in self.loras.items()]

    def _route(self, path: str, body: dict) -> tuple[int, dict | str]:
        if not self.lora_updating or path not in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            return 404, {"detail": "Not Found"}
        self.calls.append((path.rsplit("/", 1)[1], body))
        name = body.get("lora_name")
        if path.endswith("/unload_lora_adapter"):
            if name not in self.loras:
                return 404, _error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
            del self.loras[name]
            return 200, f"Success: LoRA adapter '{name}' removed successfully."
        lora_path = body.get("lora_path")
        if not name or not lora_path:
            return 400, _error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
        if name in self.loras:
            return 400, _error(f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput", 400)
        rank = self.rank_of(lora_path)
        if rank is None:
            return 404, _error(f"Loading lora {name} failed: No adapter found for {lora_path}", "NotFoundError", 404)
        if rank > self.max_lora_rank:
            return 400, _error(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.",
                               "BadRequestError", 400)
        self.loras[name] = lora_path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def _refuse(self, body: dict) -> tuple[int, dict] | None:
        model = body.get("model")
        if model != self.model and model not in self.loras:
            return 404, _error(f"The model `{model}` does not exist.", "NotFoundError", 404)
        return None

    def _next_reply(self, body: dict) -> str:
        if self.replies:
            return self.replies.pop(0)
        last = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        return f"{body.get('model')}: {last[-60:]}"


def _error(message: str, kind: str, code: int) -> dict:
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}
