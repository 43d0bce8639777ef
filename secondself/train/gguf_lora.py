"""LoRA adapters in llama.cpp's GGUF form: a writer, and a converter from peft adapter directories.

The format (llama.cpp's convert_lora_to_gguf.py and src/llama-adapter.cpp): a GGUF with
`general.architecture` = the base's, `general.type` = "adapter", `adapter.type` = "lora",
`adapter.lora.alpha`, and for every adapted base tensor W (e.g. "blk.3.attn_q.weight") the pair
"<W>.lora_a" (numpy shape (r, in)) and "<W>.lora_b" (numpy shape (out, r)) — the same layout as peft's
lora_A / lora_B. llama.cpp adds scale * alpha / r * B @ A to W, where `scale` is chosen per request.

The one trap (found in issue 12): llama.cpp's converter permutes the rows of the q and k projections of
"llama"-architecture models (it reorders each head's rotary halves), so an adapter's lora_B rows of q/k
must be permuted the same way; lora_A (the input side) is unchanged. Without it the logits are off.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import AdapterMismatchError, TrainingError

__all__ = ["write_lora_gguf", "peft_to_gguf", "permute_qk_rows"]

# peft module name (HF) -> GGUF tensor name; {n} is the layer number
_HF_TO_GGUF = {
    "self_attn.q_proj": "blk.{n}.attn_q.weight",
    "self_attn.k_proj": "blk.{n}.attn_k.weight",
    "self_attn.v_proj": "blk.{n}.attn_v.weight",
    "self_attn.o_proj": "blk.{n}.attn_output.weight",
    "mlp.gate_proj": "blk.{n}.ffn_gate.weight",
    "mlp.up_proj": "blk.{n}.ffn_up.weight",
    "mlp.down_proj": "blk.{n}.ffn_down.weight",
}
_PEFT_KEY = re.compile(r"(?:.*\.)?layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
                       r"\.lora_([AB])(?:\.default)?\.weight$")
# Architectures whose llama.cpp conversion permutes q/k rows, and those known not to; others are refused
# rather than converted wrongly.
_PERMUTES_QK = {"llama"}
_NO_PERMUTE = {"qwen2", "qwen3"}


def write_lora_gguf(path: str | Path, *, arch: str, alpha: float,
                    tensors: Mapping[str, tuple[np.ndarray, np.ndarray]], name: str = "adapter") -> Path:
    """Write a GGUF LoRA adapter atomically. `tensors`: base tensor name -> (A (r, in), B (out, r))."""
    import gguf

    path = Path(path)
    if not tensors:
        raise ValueError("an adapter needs at least one tensor pair")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("general.name", name)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        for target, (a, b) in tensors.items():
            a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
                raise ValueError(f"{target}: A must be (r, in) and B (out, r), not {a.shape} and {b.shape}")
            writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a))
            writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def permute_qk_rows(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf.LlamaModel.permute), applied to rows of `w` (out, ...)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def peft_to_gguf(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """Convert a peft LoRA adapter directory (adapter_config.json + adapter_model.safetensors), trained on
    the model that `base_gguf` holds, into a GGUF adapter at `out`. Checked against the base afterwards."""
    from ..backends.gguf_files import check_adapter, read_gguf

    adapter_dir = Path(adapter_dir)
    base = read_gguf(base_gguf)
    config = _peft_config(adapter_dir)
    if base.arch not in _PERMUTES_QK | _NO_PERMUTE:
        raise AdapterMismatchError(adapter_dir, base_gguf, f"converting adapters for {base.arch!r} models is "
                                   "not supported yet (only llama, qwen2, qwen3)")
    from safetensors.numpy import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            raise TrainingError(f"{adapter_dir}: cannot convert the adapter weight {key!r} (only LoRA on the "
                                "attention and MLP projections of decoder layers is supported)")
        pairs.setdefault(_HF_TO_GGUF[m.group(2)].format(n=m.group(1)), {})[m.group(3)] = value.astype(np.float32)
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for target, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise TrainingError(f"{adapter_dir}: {target} has only lora_{''.join(ab)}")
        a, b = ab["A"], ab["B"]
        if base.arch in _PERMUTES_QK and target.endswith((".attn_q.weight", ".attn_k.weight")):
            if not base.head_count:
                raise AdapterMismatchError(adapter_dir, base_gguf, "the base names no attention head count")
            kv = base.head_count_kv if target.endswith(".attn_k.weight") else base.head_count
            b = permute_qk_rows(b, base.head_count, kv)
        tensors[target] = (a, b)
    rank = int(config["r"])
    # peft scales B @ A by alpha / r (alpha / sqrt(r) with rsLoRA); llama.cpp by alpha / r
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1.0)
    path = write_lora_gguf(out, arch=base.arch, alpha=alpha, tensors=tensors, name=adapter_dir.name)
    try:
        check_adapter(path, base, base_gguf)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return path


def _peft_config(adapter_dir: Path) -> dict:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise TrainingError(f"{adapter_dir} is not a peft adapter directory (adapter_config.json: {e})") from e
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise TrainingError(f"{adapter_dir}: only plain LoRA adapters convert to GGUF (not DoRA or "
                            f"{config.get('peft_type')})")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("modules_to_save"):
        raise TrainingError(f"{adapter_dir}: per-module ranks/alphas and modules_to_save cannot be converted")
    if config.get("fan_in_fan_out"):
        raise TrainingError(f"{adapter_dir}: fan_in_fan_out adapters (GPT-2 style) are not supported")
    return config
