"""What a GGUF file is, read from its header without loading it: a model or a LoRA adapter, which
architecture, its context length and tensor shapes. Used to refuse a corrupt file or a mismatched adapter
with a message that names the file, before llama.cpp would fail with a bare "could not load".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdapterMismatchError, ModelFileError, ModelNotAvailableError

__all__ = ["GGUFInfo", "read_gguf", "check_adapter"]

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
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)  # name -> ne (ggml order)


def read_gguf(path: str | Path) -> GGUFInfo:
    """The header of `path`; ModelFileError if it is missing, not a GGUF or cut short."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelFileError(path, f"cannot be read ({e.strerror or e})",
                             "Check the path and its permissions.") from e
    if magic != b"GGUF":
        raise ModelFileError(path, "not a GGUF file (wrong magic bytes)", _REDOWNLOAD)
    try:
        import gguf
    except ImportError as e:
        raise ModelNotAvailableError("reading GGUF headers needs the gguf package: run `pip install -e .`") from e
    try:
        reader = gguf.GGUFReader(str(path), "r")
        fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("tokenizer.")}
        tensors = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors, ... on a cut file
        raise ModelFileError(path, f"its GGUF header cannot be read ({type(e).__name__}: {e})", _REDOWNLOAD) from e
    if end > path.stat().st_size:
        raise ModelFileError(path, f"truncated: its tensors need {end} bytes, the file has {path.stat().st_size}",
                             _REDOWNLOAD)
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
                    tensors=tensors)


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
