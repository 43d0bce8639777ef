"""Personal models on a GPU server: one vLLM serving the base model with multi-LoRA, an adapter per person.

vLLM (`vllm serve BASE --enable-lora --max-loras N --max-lora-rank R`, started with
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`) serves each registered adapter as a model of its own name, batching
requests for different adapters together. secondself registers a person's adapter version with
`POST /v1/load_lora_adapter {"lora_name", "lora_path"}` when it is trained (and unregisters the version it
replaces with `/v1/unload_lora_adapter`), then chats through the OpenAI API with the adapter's name as
`model`. The path is the version's peft directory (adapter_model.safetensors + adapter_config.json), read by
the vLLM server on ITS file system: it must see the person's directory at the same path (a shared disk).

Chosen by the setting `personal_endpoint = "openai:BASE@URL"` (BASE: the base model's name on that server).
A restarted vLLM forgets runtime-loaded adapters: a chat that finds its adapter unknown registers it again
and retries once, before any text was streamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EndpointError
from .chat import Message, Sampling
from .openai_compat import OpenAIChatModel, _describe, _message

__all__ = ["LoRAEndpoint", "EndpointAdapterModel", "adapter_name", "parse_endpoint", "endpoint_model",
           "register_version"]

log = logging.getLogger(__name__)


def parse_endpoint(spec: str) -> tuple[str, str]:
    """(base model name, base URL) of a `personal_endpoint` setting: `openai:BASE@URL`."""
    from .registry import parse_spec

    parsed = parse_spec(spec) if spec.startswith("openai:") else None
    if parsed is None or parsed.kind != "openai":
        raise ConfigError(f"personal_endpoint must be openai:BASE@http://host:port/v1 (a vLLM server with "
                          f"--enable-lora), not {spec!r}")
    return parsed.target, parsed.base_url


def adapter_name(person: str, version: str, path: Path) -> str:
    """The adapter's model name on the server: person and version, and a hash of its directory, so two homes
    (or two deployments) sharing one vLLM never take each other's adapter."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]
    return f"{person}-{version}-{digest}"


class LoRAEndpoint:
    """vLLM's runtime LoRA routes at `base_url` (ending in /v1). `transport`: an httpx transport for tests."""

    def __init__(self, base_url: str, base_model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60,
                 transport: Any = None) -> None:
        self.base_url, self.base_model = base_url.rstrip("/"), base_model
        self.api_key_env, self.timeout, self._transport = api_key_env, timeout, transport

    def __repr__(self) -> str:
        return f"LoRAEndpoint({self.base_url!r}, base={self.base_model!r})"

    def registered(self) -> dict[str, str]:
        """{adapter name: its path as the server knows it} for the adapters loaded now."""
        response = self._call("GET", "/models", None, "list its models")
        cards = response.json().get("data") or []
        return {c["id"]: c.get("root", "") for c in cards if isinstance(c, dict) and c.get("id") != self.base_model
                and c.get("parent")}

    def register(self, name: str, path: Path) -> None:
        """Load adapter directory `path` as model `name` (already loaded under that name: nothing to do)."""
        response = self._call("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": str(path)},
                              f"register the adapter {name}", allowed=(400, 404))
        if response.status_code == 200:
            log.info("registered adapter %s (%s) with %s", name, path, self.base_url)
            return
        message = self._error(response)
        if response.status_code == 400 and "already been loaded" in message:
            return
        if response.status_code == 404 and "no adapter found" in message.lower():
            raise EndpointError(f"the server {self.base_url} cannot read the adapter directory {path} ({message}): "
                                "the vLLM server must see the person's directory at the same path (a shared disk "
                                "mounted at the same place), see README 'Many persons'")
        raise EndpointError(f"{self.base_url} refused the adapter {name} from {path} (HTTP {response.status_code}):"
                            f" {message}. Is it an adapter of {self.base_model}, with a rank up to the server's "
                            "--max-lora-rank?")

    def unregister(self, name: str) -> None:
        """Unload adapter `name` (not loaded: nothing to do)."""
        self._call("POST", "/unload_lora_adapter", {"lora_name": name}, f"unregister the adapter {name}",
                   allowed=(404,))

    def _call(self, method: str, route: str, body: dict | None, what: str, allowed: tuple[int, ...] = ()) -> Any:
        import httpx

        key = os.environ.get(self.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            with httpx.Client(transport=self._transport, timeout=self.timeout) as client:
                response = client.request(method, self.base_url + route, json=body, headers=headers)
        except httpx.TransportError as e:
            raise EndpointError(f"cannot reach the vLLM server {self.base_url} to {what}: "
                                f"{_describe(e, self.timeout)}. Is it running? (personal_endpoint)") from e
        if response.status_code == 404 and response.headers.get("content-type", "").startswith("application/json") \
                and response.json() == {"detail": "Not Found"}:
            raise EndpointError(f"{self.base_url} has no {route} route: start vLLM with --enable-lora and the "
                                "environment variable VLLM_ALLOW_RUNTIME_LORA_UPDATING=True")
        if response.status_code in (401, 403):
            raise EndpointError(f"{self.base_url} refused the API key (HTTP {response.status_code}): set "
                                f"${self.api_key_env} to the server's --api-key")
        if response.status_code != 200 and response.status_code not in allowed:
            raise EndpointError(f"{self.base_url} could not {what} (HTTP {response.status_code}): "
                                f"{self._error(response)}")
        return response

    def _error(self, response: Any) -> str:
        try:
            return _message(response.json(), os.environ.get(self.api_key_env, ""))
        except ValueError:
            return response.text[:300]


def endpoint_model(spec: str, person: str, info: Any, api_key_env: str = "OPENAI_API_KEY",
                   transport: Any = None) -> EndpointAdapterModel:
    """The personal model of adapter version `info` (train/adapters.AdapterInfo) on the server of `spec`."""
    base, url = parse_endpoint(spec)
    endpoint = LoRAEndpoint(url, base, api_key_env, transport=transport)
    return EndpointAdapterModel(endpoint, adapter_name(person, info.version, info.path), info.path,
                                transport=transport)


def register_version(spec: str, person: str, new: Any, old: Any | None, api_key_env: str = "OPENAI_API_KEY",
                     transport: Any = None) -> str:
    """After training: register version `new` with the server and unregister `old` (the version it replaces,
    if any and another); returns the new adapter's model name."""
    base, url = parse_endpoint(spec)
    endpoint = LoRAEndpoint(url, base, api_key_env, transport=transport)
    name = adapter_name(person, new.version, new.path)
    endpoint.register(name, new.path)
    if old is not None and old.path != new.path:
        endpoint.unregister(adapter_name(person, old.version, old.path))
    return name


class EndpointAdapterModel:
    """A person's personal model on a vLLM server: chat with `model` = the adapter's name, the adapter
    registered on first use (and again after a server restart made it unknown)."""

    def __init__(self, endpoint: LoRAEndpoint, name: str, path: Path, *, transport: Any = None) -> None:
        self.endpoint, self.adapter_path = endpoint, Path(path)
        self._chat = OpenAIChatModel(endpoint.base_url, name, api_key_env=endpoint.api_key_env, transport=transport)
        self.name = name
        self.where = self._chat.where
        self.context_window = self._chat.context_window
        self._registered = False

    def __repr__(self) -> str:
        return f"EndpointAdapterModel({self.name!r} at {self.endpoint.base_url!r})"

    def count_tokens(self, text: str) -> int:
        return self._chat.count_tokens(text)

    def ensure_registered(self) -> None:
        if not self._registered:
            self.endpoint.register(self.name, self.adapter_path)
            self._registered = True

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        return self._stream(messages, sampling)

    def _stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        self.ensure_registered()
        started = False
        try:
            for delta in self._chat.stream(messages, sampling):
                started = True
                yield delta
        except EndpointError as e:
            if started or "was not found" not in str(e):
                raise
            log.info("adapter %s is unknown to %s (restarted?): registering it again", self.name,
                     self.endpoint.base_url)
            self._registered = False
            self.ensure_registered()
            yield from self._chat.stream(messages, sampling)

    def close(self) -> None:
        """Released (another version was selected): unregistered from the server, best effort."""
        try:
            if self._registered:
                self.endpoint.unregister(self.name)
        except EndpointError as e:
            log.warning("could not unregister adapter %s from %s: %s", self.name, self.endpoint.base_url, e)
        self._registered = False
        self._chat.close()
