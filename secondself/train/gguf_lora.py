"""LoRA adapters in llama.cpp's GGUF form: a writer, and a converter from peft adapter directories.

The format (llama.cpp's convert_lora_to_gguf.py and src/llama-adapter.cpp): a GGUF with
`general.architecture` = the base's, `general.type` = "adapter", `adapter.type` = "lora",
`adapter.lora.alpha`, and for every adapted base tensor W (e.g. "blk.3.attn_q.weight") the pair
"<W>.lora_a" (numpy shape (r, in)) and "<W>.lora_b" (numpy shape (out, r)) — the same layout as peft's
lora_A / lora_B. llama.cpp adds scale * alpha / r * B @ A to W, where `scale` is chosen per request.

The one trap (found in issue 12): llama.cpp's converter permutes the rows of the q and k projections of
"llama"-architecture models (it reorders each head's rotary halves), so an adapter's lora_B rows of q/k
must be permuted the same way; lora_A (the input side) is unchanged. Without it the logits are off.

Files appear only complete: each is written to a temp file beside it (named with the writer's pid) and
renamed into place; a temp file left by a killed writer is removed by the next write of the same file.
`ensure_gguf_adapter` converts an adapter version once (idempotent); `merge_lora_gguf` writes a base GGUF
with an adapter merged in and requantized (for `model export --format gguf`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..backends.gguf_files import atomic_file
from ..errors import AdapterMismatchError, TrainingError

__all__ = ["write_lora_gguf", "peft_to_gguf", "permute_qk_rows", "ensure_gguf_adapter", "merge_lora_gguf",
           "GGUF_ADAPTER", "MERGE_TYPES", "CONVERTIBLE"]

log = logging.getLogger(__name__)

GGUF_ADAPTER = "adapter_model.gguf"   # the converted adapter, beside peft's adapter_model.safetensors

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
CONVERTIBLE = _PERMUTES_QK | _NO_PERMUTE


def write_lora_gguf(path: str | Path, *, arch: str, alpha: float,
                    tensors: Mapping[str, tuple[np.ndarray, np.ndarray]], name: str = "adapter") -> Path:
    """Write a GGUF LoRA adapter atomically. `tensors`: base tensor name -> (A (r, in), B (out, r))."""
    import gguf

    path = Path(path)
    if not tensors:
        raise ValueError("an adapter needs at least one tensor pair")
    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
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
    return path


    return True


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
        raise TrainingError(f"{adapter_dir}: converting adapters for {base.arch!r} models ({base_gguf}) to "
                            f"GGUF is not supported yet (only {', '.join(sorted(CONVERTIBLE))})")
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


def ensure_gguf_adapter(adapter_dir: str | Path, base_gguf: str | Path) -> Path:
    """`adapter_dir/adapter_model.gguf`: the peft adapter converted for `base_gguf`, once. A file already there
    is kept when it fits the base and is not older than the peft weights; otherwise it is written again."""
    from ..backends.gguf_files import check_adapter, read_gguf
    from ..errors import ModelFileError

    adapter_dir = Path(adapter_dir)
    target, weights = adapter_dir / GGUF_ADAPTER, adapter_dir / "adapter_model.safetensors"
    if target.is_file() and weights.is_file() and target.stat().st_mtime_ns >= weights.stat().st_mtime_ns:
        try:
            check_adapter(target, read_gguf(base_gguf), base_gguf)
            return target
        except (AdapterMismatchError, ModelFileError) as e:
            log.info("converting %s again: %s", adapter_dir, e)
    log.info("converting the adapter %s to a GGUF LoRA for %s", adapter_dir, Path(base_gguf).name)
    return peft_to_gguf(adapter_dir, base_gguf, target)


# Output types of a merged export (F16/F32: unrounded, e.g. to quantize further with llama.cpp's tools). Q4_0
# keeps the token embeddings and output head at Q8_0, as llama.cpp's own 4-bit mixes keep them higher (the
# 135M ties them: one 4-bit matrix would be both its input and its output).
MERGE_TYPES = ("Q8_0", "Q4_0", "F16", "F32")
_KEEP_HIGH = ("token_embd.weight", "output.weight")
_ROWS = 8192  # rows of a matrix dequantized at once: 0.5 GB of float32 at most for a 16k-wide one
_FILE_TYPE = {"Q8_0": 7, "Q4_0": 2, "F16": 1, "F32": 0}  # llama_ftype (general.file_type)


def merge_lora_gguf(base_gguf: str | Path, adapter_gguf: str | Path, out: str | Path, qtype: str = "Q8_0") -> Path:
    """Write `out`: the base GGUF with the GGUF LoRA adapter merged in (W + alpha/r * B @ A, in the base's own
    q/k row order, which the adapter already has), every matrix as `qtype`, every other tensor and all
    metadata copied. Streams one tensor at a time; written atomically."""
    import gguf
    from gguf.quants import dequantize, quantize

    from ..backends.gguf_files import check_adapter, read_gguf

    if qtype not in MERGE_TYPES:
        raise TrainingError(f"cannot write {qtype!r}: choose one of {', '.join(MERGE_TYPES)}")
    base_gguf, out = Path(base_gguf), Path(out)
    info = check_adapter(adapter_gguf, read_gguf(base_gguf), base_gguf)
    lora = {t.name: np.array(t.data, dtype=np.float32) for t in gguf.GGUFReader(str(adapter_gguf)).tensors}
    deltas: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in lora:
        if name.endswith(".lora_a"):
            target = name[:-len(".lora_a")]
            if target.startswith("token_embd"):
                raise TrainingError(f"{adapter_gguf}: merging an adapter on the token embeddings is not supported")
            a, b = lora[name], lora[f"{target}.lora_b"]
            deltas[target] = (a * (float(info.alpha or a.shape[0]) / a.shape[0]), b)
    reader = gguf.GGUFReader(str(base_gguf), "r")
    plan = []  # (tensor, output type) in file order
    for t in reader.tensors:
        want = t.tensor_type
        if len(t.shape) >= 2:
            want = gguf.GGMLQuantizationType["Q8_0" if qtype == "Q4_0" and t.name in _KEEP_HIGH else qtype]
            if int(t.shape[0]) % gguf.GGML_QUANT_SIZES[want][0]:
                want = t.tensor_type if t.name not in deltas else gguf.GGMLQuantizationType.F32
        plan.append((t, want))
    with atomic_file(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), str(reader.fields["general.architecture"].contents()))
        for f in reader.fields.values():
            if f.name == "general.architecture" or f.name.startswith("GGUF."):
                continue  # the writer adds these itself
            if f.name == "general.file_type":
                writer.add_uint32(f.name, _FILE_TYPE[qtype])
                continue
            sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
        for t, want in plan:
            shape = tuple(int(n) for n in reversed(t.shape))     # numpy order (rows, columns)
            block, size = gguf.GGML_QUANT_SIZES[want]
            writer.add_tensor_info(t.name, shape, np.dtype(np.float32), math.prod(shape) // block * size,
                                   raw_dtype=want)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, want in plan:
            if t.name not in deltas and want == t.tensor_type:
                writer.write_tensor_data(t.data)                 # untouched and already the wanted type
                continue
            delta = deltas.pop(t.name, None)
            shape = tuple(int(n) for n in reversed(t.shape))
            parts = []
            for i in range(0, shape[0], _ROWS if len(shape) == 2 else shape[0]):  # bounded memory on big vocabularies
                try:
                    w = dequantize(t.data[i:i + _ROWS] if len(shape) == 2 else t.data, t.tensor_type)
                except NotImplementedError as e:
                    raise TrainingError(f"{base_gguf} stores {t.name} as {t.tensor_type.name}, which the gguf "
                                        "package cannot read back: export with --format merged instead") from e
                if delta is not None:
                    w = w + delta[1][i:i + _ROWS] @ delta[0]
                parts.append(quantize(w.astype(np.float32).reshape((-1, *shape[1:])), want))
            writer.write_tensor_data(np.concatenate(parts) if len(parts) > 1 else parts[0])
        writer.close()
    return out
