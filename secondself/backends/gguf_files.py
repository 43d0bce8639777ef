"""What a GGUF file is, read from its header without loading it: a model or a LoRA adapter, which
architecture, its context length and tensor shapes. Used to refuse a corrupt file or a mismatched adapter
with a message that names the file, before llama.cpp would fail with a bare "could not load".
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import AdapterMismatchError, ModelFileError

__all__ = ["GGUFInfo", "read_gguf", "check_adapter", "atomic_file", "pid_alive"]

log = logging.getLogger(__name__)

_REDOWNLOAD = "The file is damaged or not a GGUF: download, assemble or convert it again."


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    arch: str
    kind: str                                  # "model" or "adapter" (general.type)
    context_length: int | None = None          # <arch>.context_length (models)
    head_count: int | None = None
    head_count_kv: int | None = None
    adapter_type: str | None = None            # "lora" for LoRA adapters
    alpha: float | None = None                 # adapter.lora.alpha
    chat_template: str | None = None           # tokenizer.chat_template (models)
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)  # name -> ne (ggml order)
    types: dict[str, str] = field(default_factory=dict, repr=False)                # name -> "Q4_1", "F32", ...


def read_gguf(path: str | Path) -> GGUFInfo:
    """The header of `path`; ModelFileError if it is missing, not a GGUF or cut short."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            fields, tensors, end = _parse_header(f, path)
        size = path.stat().st_size
    except OSError as e:
        raise ModelFileError(path, f"cannot be read ({e.strerror or e})",
                             "Check the path and its permissions.") from e
    if end > size:
        raise ModelFileError(path, f"truncated: its tensors need {end} bytes, the file has {size}", _REDOWNLOAD)
    arch = str(fields.get("general.architecture") or "")
    if not arch:
        raise ModelFileError(path, "its header names no architecture (general.architecture)", _REDOWNLOAD)

    def number(key: str) -> int | None:
        value = fields.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int | float) else None

    alpha = fields.get("adapter.lora.alpha")
    return GGUFInfo(path=path, arch=arch, kind=str(fields.get("general.type") or "model"),
                    context_length=number("context_length"), head_count=number("attention.head_count"),
                    head_count_kv=number("attention.head_count_kv"),
                    adapter_type=fields.get("adapter.type"), alpha=float(alpha) if alpha is not None else None,
                    chat_template=fields.get("tokenizer.chat_template"),
                    tensors={name: shape for name, (shape, _) in tensors.items()},
                    types={name: kind for name, (_, kind) in tensors.items()})


# GGUF value types -> struct formats (8: string, 9: array are read by hand)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _parse_header(f: BinaryIO, path: Path) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, ...], str]], int]:
    """(scalar and string metadata, {tensor: (ne, type name)}, end of the last tensor's data).

    Our own reader: gguf.GGUFReader builds numpy views of every tokenizer entry, seconds for a small model;
    this skips arrays, which is all we need.
    """
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        value = struct.unpack_from("<" + fmt, buf, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("Q")
        if pos + n > len(buf):
            raise ValueError("a string runs past the end of the file")
        pos += n
        return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

    def value(kind: int) -> Any:
        nonlocal pos
        if kind in _SCALARS:
            return take(_SCALARS[kind])
        if kind == 8:
            return string()
        if kind == 9:  # arrays are skipped: only their items' sizes are read
            item, count = take("I"), take("Q")
            if item in _SCALARS:
                pos += struct.calcsize(_SCALARS[item]) * count
            else:
                for _ in range(count):
                    value(item)
            return None
        raise ValueError(f"unknown metadata value type {kind}")

    try:
        if bytes(buf[:4]) != b"GGUF":
            raise _NotGGUF
        pos = 4
        version = take("I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        n_tensors, n_fields = take("Q"), take("Q")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = string()
            fields[key] = value(take("I"))
        infos = []
        for _ in range(n_tensors):
            name = string()
            shape = tuple(take("Q") for _ in range(take("I")))
            infos.append((name, shape, take("I"), take("Q")))
        align = int(fields.get("general.alignment") or 32)
        data = (pos + align - 1) // align * align
        tensors, end = {}, data
        for name, shape, kind, offset in infos:
            qtype = GGMLQuantizationType(kind)
            block, size = GGML_QUANT_SIZES[qtype]
            tensors[name] = (shape, qtype.name)
            end = max(end, data + offset + math.prod(shape) // block * size)
        return fields, tensors, end
    except _NotGGUF:
        raise ModelFileError(path, "not a GGUF file (wrong magic bytes)", _REDOWNLOAD) from None
    except (struct.error, ValueError, KeyError, OverflowError) as e:
        raise ModelFileError(path, f"its GGUF header cannot be read ({type(e).__name__}: {e})", _REDOWNLOAD) from e
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


class _NotGGUF(Exception):
    pass


def check_adapter(path: str | Path, base: GGUFInfo, base_path: str | Path | None = None) -> GGUFInfo:
    """The adapter's header if it is a LoRA adapter that fits `base`, else a typed error naming the file."""
    info = read_gguf(path)
    base_name = base_path or base.path
    if info.kind != "adapter" or info.adapter_type != "lora":
        raise ModelFileError(path, f"not a GGUF LoRA adapter (general.type={info.kind!r}, adapter.type="
                             f"{info.adapter_type!r})", "Convert the adapter with secondself.train.gguf_lora.")
    if info.arch != base.arch:
        raise AdapterMismatchError(path, base_name, f"it is for a {info.arch!r} model, the base is {base.arch!r}")
    pairs = {name[:-len(".lora_a")] for name in info.tensors if name.endswith(".lora_a")}
    if not pairs or pairs != {name[:-len(".lora_b")] for name in info.tensors if name.endswith(".lora_b")}:
        raise ModelFileError(path, "its lora_a and lora_b tensors do not come in pairs", _REDOWNLOAD)
    for target in sorted(pairs):
        a, b = info.tensors[f"{target}.lora_a"], info.tensors[f"{target}.lora_b"]
        weight = base.tensors.get(target)
        if weight is None:
            raise AdapterMismatchError(path, base_name, f"the base has no tensor {target}")
        if target.startswith("token_embd"):  # llama.cpp stores this pair flipped (see llm_build_inp_embd)
            fits = weight[0] == b[1] and weight[1] == a[1]
        else:
            fits = len(weight) >= 2 and weight[0] == a[0] and weight[1] == b[1] and a[1] == b[0]
        if not fits:
            raise AdapterMismatchError(path, base_name, f"{target} is {list(weight)} in the base but the "
                                       f"adapter's A/B are {list(a)}/{list(b)}")
    return info


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it to `path`, else remove it. Temp files of the
    same target left by a writer that was killed (its pid is gone) are removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2:-len(".tmp")].split("-", 1)[0]  # "<pid>-<thread>" or "<pid>"
        if pid.isdigit() and not pid_alive(int(pid)):
            log.info("removing %s, left by an interrupted write", stale)
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Weight types llama.cpp's CPU backend multiplies without a fast matrix-matrix kernel (no llamafile sgemm
# and no repacking on x86): prompt processing then runs row by row, ~1.6x slower than with Q8_0 on the
# 135M (bench/engine.py). Generation speed is the same; Q8_0 holds these values almost exactly.
_SLOW_PREFILL = ("Q4_1", "Q5_1")


def requantized_copy(src: str | Path, cache_dir: str | Path) -> Path:
    """`src` itself, or (once, cached under `cache_dir`) a copy whose Q4_1/Q5_1 matrices are Q8_0.

    The copy is named by the source's name and size, written to a temp file and renamed into place
    (`atomic_file`: a temp file left by a killed copy is removed by the next).
    """
    import gguf
    import numpy as np
    from gguf.quants import dequantize, quantize

    src = Path(src)
    if not any(t in _SLOW_PREFILL for t in read_gguf(src).types.values()):
        return src
    target = Path(cache_dir) / f"{src.stem}.{src.stat().st_size}.q8_0.gguf"
    if target.is_file():
        return target
    q8 = gguf.GGMLQuantizationType.Q8_0
    reader = gguf.GGUFReader(str(src), "r")
    with atomic_file(target) as tmp:
        writer = gguf.GGUFWriter(str(tmp), str(reader.fields["general.architecture"].contents()))
        for f in reader.fields.values():
            if f.name == "general.architecture" or f.name.startswith("GGUF."):
                continue  # the writer adds these itself
            sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
        for t in reader.tensors:
            if t.tensor_type.name in _SLOW_PREFILL:
                values = dequantize(t.data, t.tensor_type).astype(np.float32)
                writer.add_tensor(t.name, quantize(values, q8), raw_dtype=q8)
            else:
                writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target
