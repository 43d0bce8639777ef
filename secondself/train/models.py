"""Loading the model a training run works on: device and dtype, bf16 products on a CPU, the base checkpoint,
its tokenizer, base + adapter. torch, transformers and peft are imported inside functions only.

Boundary: files in, models out; no training loop (`sft`, `dpo`) and no data (`data`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import TrainingError

__all__ = ["load_model"]


def _resolve_device(device: str | None, dtype: str | None) -> tuple[str, str]:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, dtype or ("bfloat16" if device == "cuda" else "float32")


def _resolve_autocast(autocast: bool | None, device: str, dtype: str) -> bool:
    """bf16 products under fp32 weights: on a CPU with AVX512-BF16 or AMX a training step of the 135M took
    2.8 s instead of 4.5-5.2 s (2 threads) with the same loss to 3 decimals (2026-12-07); without those
    instructions bf16 is emulated and slower, so it stays off. CUDA trains in bf16 weights already."""
    if device != "cpu" or dtype != "float32":
        return False
    if autocast is not None:
        return autocast
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def _products(on: bool) -> Any:
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)


def _load_base(base_dir: Path, device: str, dtype: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_logging.disable_progress_bar()  # our on_progress reports the work
    try:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the base model from {base_dir}: {e}") from e
    return model.to(device)


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft (0.21) reads an attribute that transformers 5 deprecates, warning on every adapter load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _load_tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot load the tokenizer from {base_dir}: {e}") from e


def load_model(base_dir: str | Path, adapter_dir: str | Path | None = None,
               device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer): the base, or base + adapter (an unmerged peft model), in eval mode."""
    device, dtype = _resolve_device(device, None)
    tokenizer = _load_tokenizer(Path(base_dir))
    model = _load_base(Path(base_dir), device, dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        with _quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter_dir))
    return model.eval(), tokenizer
