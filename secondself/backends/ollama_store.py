"""Models the person already pulled with Ollama, read straight from Ollama's local store (no Ollama process).

    ollama:qwen2.5:1.5b   →  <store>/manifests/registry.ollama.ai/library/qwen2.5/1.5b   (a JSON manifest)
                          →  its layer of mediaType application/vnd.ollama.image.model, digest sha256:<hex>
                          →  <store>/blobs/sha256-<hex>                                   (a GGUF file)

The store is $OLLAMA_MODELS, else ~/.ollama/models, else the Linux service's /usr/share/ollama/.ollama/models.
Names follow Ollama's: NAME[:TAG] (tag `latest` by default), NAMESPACE/NAME[:TAG], HOST/NAMESPACE/NAME[:TAG].
Blobs are content-addressed, so the digest doubles as the pinned SHA-256 (checked once before first use).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelNotAvailableError

__all__ = ["OllamaModel", "store_dir", "split_name", "resolve", "list_models"]

MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
_DEFAULT_HOST, _DEFAULT_NAMESPACE = "registry.ollama.ai", "library"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


@dataclass(frozen=True)
class OllamaModel:
    name: str       # as the person wrote it, e.g. "qwen2.5:1.5b"
    path: Path      # the GGUF blob
    sha256: str     # its digest, from the manifest
    manifest: Path


def store_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("OLLAMA_MODELS"):
        return Path(env["OLLAMA_MODELS"]).expanduser()
    home = Path(env.get("HOME") or Path.home()).expanduser() / ".ollama" / "models"
    service = Path("/usr/share/ollama/.ollama/models")
    return service if not home.exists() and service.exists() else home


def split_name(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of an Ollama name; ConfigError for one Ollama would not accept."""
    body, tag = name.strip(), "latest"
    head, sep, last = body.rpartition(":")
    if sep and "/" not in last:
        body, tag = head, last
    pieces = body.split("/")
    if len(pieces) == 1:
        pieces = [_DEFAULT_HOST, _DEFAULT_NAMESPACE, *pieces]
    elif len(pieces) == 2:
        pieces = [_DEFAULT_HOST, *pieces]
    if len(pieces) != 3 or not all(_PART.match(p) for p in [*pieces[1:], tag]) or not pieces[0] \
            or pieces[0].startswith(".") or "/" in pieces[0]:
        raise ConfigError(f"bad Ollama model name {name!r}: use ollama:NAME[:TAG], e.g. ollama:qwen2.5:1.5b")
    return pieces[0], pieces[1], pieces[2], tag


def _short(host: str, namespace: str, model: str, tag: str) -> str:
    if host == _DEFAULT_HOST:
        return f"{model}:{tag}" if namespace == _DEFAULT_NAMESPACE else f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def list_models(root: Path) -> list[str]:
    """Every model name the store holds (as `ollama list` would print it), sorted."""
    base = root / "manifests"
    if not base.is_dir():
        return []
    names = []
    for manifest in base.glob("*/*/*/*"):
        host, namespace, model, tag = manifest.relative_to(base).parts
        if manifest.is_file() and all(_PART.match(p) for p in (host, namespace, model, tag)):
            names.append(_short(host, namespace, model, tag))
    return sorted(names)


def resolve(name: str, environ: Mapping[str, str] | None = None) -> OllamaModel:
    """The GGUF blob of Ollama model `name`; ModelNotAvailableError listing the store when it is not there."""
    host, namespace, model, tag = split_name(name)
    root = store_dir(environ)
    manifest = root / "manifests" / host / namespace / model / tag
    if not (root / "manifests").is_dir():
        raise ModelNotAvailableError(f"there is no Ollama store at {root}, so {name!r} cannot be read from it: "
                                     "set OLLAMA_MODELS to the folder Ollama keeps its models in")
    if not manifest.is_file():
        have = list_models(root)
        listing = ", ".join(have) if have else "none"
        raise ModelNotAvailableError(
            f"Ollama model {name!r} is not in the store at {root} (no {manifest}). Models there: {listing}. "
            "Pull it with `ollama pull NAME`, or set OLLAMA_MODELS to the store that has it.")
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
        layer = next(x for x in layers if isinstance(x, dict) and x.get("mediaType") == MODEL_MEDIA_TYPE)
        digest = _DIGEST.match(str(layer.get("digest", "")))
    except (OSError, ValueError, AttributeError) as e:
        raise ModelNotAvailableError(f"cannot read Ollama's manifest {manifest}: {e}") from e
    except StopIteration:
        raise ModelNotAvailableError(f"Ollama's manifest {manifest} names no model layer "
                                     f"({MODEL_MEDIA_TYPE}); is {name!r} a model?") from None
    if digest is None:
        raise ModelNotAvailableError(f"Ollama's manifest {manifest} has a model layer without a sha256 digest")
    blob = root / "blobs" / f"sha256-{digest.group(1)}"
    if not blob.is_file():
        raise ModelNotAvailableError(f"Ollama model {name!r}: its weights {blob} are missing from the store; "
                                     f"run `ollama pull {name}` again")
    with blob.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelNotAvailableError(f"Ollama model {name!r}: {blob} is not a GGUF file, which llama.cpp "
                                         "needs; choose another model")
    return OllamaModel(name, blob, digest.group(1), manifest)
