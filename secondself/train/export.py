"""Export the personal model for other runtimes: a merged checkpoint, an Ollama Modelfile, or a merged
quantized GGUF with a Modelfile beside it.

Each writes into a temp dir beside the target and renames it into place, so a target exists only complete
(a temp dir left by a killed export is removed by the next export to the same target).

GGUF (`export_gguf`): the base model's own GGUF with the adapter merged in, written directly with the `gguf`
package (train/gguf_lora.py:merge_lora_gguf) as Q8_0 or Q4_0 — no transformers, no llama.cpp tools; its
metadata (tokenizer, chat template) is the base's. The Modelfile is `FROM ./model.gguf`, with the template,
system prompt and parameters Ollama keeps for the base when the base is a model of Ollama's store.

Ollama: its `ollama create` imports a safetensors directory of a Llama-architecture model directly
(`FROM /path/to/dir`, ollama docs/import.md). `ADAPTER` would need the exact base model under an Ollama
name (`FROM <name>`); our base is a local checkpoint, not an Ollama library tag, so we export the merged
model instead (`FROM ./merged`), which needs nothing else. Ollama guesses the chat template from the
tokenizer config; for ChatML tokenizers (SmolLM2, Qwen) we write the TEMPLATE explicitly, with the stop
token, so the answer does not depend on that guess.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends.gguf_files import pid_alive
from ..errors import TrainingError
from .checkpoint import swap_in

__all__ = ["export_merged", "export_ollama", "export_gguf", "ollama_settings"]

_CHATML_TEMPLATE = '''{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{- end }}<|im_start|>assistant
'''


def _atomic_dir(out_dir: Path, write: Callable[[Path], None]) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        pid = stale.name.rsplit("-", 2)[-2] if stale.name.count("-") >= 2 else ""
        if pid.isdigit() and not pid_alive(int(pid)):  # left by an export that was killed
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        write(tmp)
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_merged(base_dir: Path, adapter_dir: Path, target: Path) -> None:
    from peft import PeftModel

    from .models import _load_base, _load_tokenizer, _quiet_peft

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise TrainingError(f"{adapter_dir} holds no adapter (adapter_config.json is missing): train one first")
    tokenizer = _load_tokenizer(Path(base_dir))
    base = _load_base(Path(base_dir), "cpu", "float32")  # merge in fp32: no rounding of the LoRA delta
    with _quiet_peft():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(target)  # safetensors
    tokenizer.save_pretrained(target)


def export_merged(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Base + adapter merged into one plain HF checkpoint (fp32 safetensors + tokenizer) at `out_dir`."""
    return _atomic_dir(Path(out_dir), lambda tmp: _write_merged(Path(base_dir), Path(adapter_dir), tmp))


def _modelfile(source: str, template: str, what: str, ollama: dict[str, Any] | None = None) -> str:
    """A Modelfile: the base's own Ollama template, parameters and system prompt when it came from Ollama's
    store (`ollama`), else an explicit ChatML template and stop for a ChatML model (else Ollama's guess)."""
    lines = [f"# Made by `secondself`: {what}.", "# Import with: ollama create <name> -f Modelfile", f"FROM {source}"]
    if ollama:
        if ollama.get("template"):
            lines.append(f'TEMPLATE """{ollama["template"]}"""')
        if ollama.get("system"):
            lines.append(f'SYSTEM """{ollama["system"]}"""')
        for key, value in (ollama.get("params") or {}).items():
            for v in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {key} {json.dumps(v) if isinstance(v, str) else v}")
    elif "<|im_start|>" in template:
        lines += [f'TEMPLATE """{_CHATML_TEMPLATE}"""', 'PARAMETER stop "<|im_end|>"']
    return "\n".join(lines) + "\n"


_OLLAMA_LAYERS = {"application/vnd.ollama.image.template": "template",
                  "application/vnd.ollama.image.system": "system",
                  "application/vnd.ollama.image.params": "params"}


def ollama_settings(gguf: Path) -> dict[str, Any] | None:
    """The template, system prompt and parameters Ollama keeps with `gguf` when it is a blob of Ollama's
    store (found through the manifest that lists it); None for any other file."""
    gguf = Path(gguf)
    if gguf.parent.name != "blobs" or not gguf.name.startswith("sha256-"):
        return None
    digest = "sha256:" + gguf.name[len("sha256-"):]
    for manifest in sorted(p for p in (gguf.parent.parent / "manifests").rglob("*") if p.is_file()):
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
        except (OSError, ValueError, AttributeError):
            continue
        if not any(isinstance(x, dict) and x.get("digest") == digest for x in layers):
            continue
        found: dict[str, Any] = {}
        for layer in layers:
            key = _OLLAMA_LAYERS.get(layer.get("mediaType", "")) if isinstance(layer, dict) else None
            blob = gguf.parent / str(layer.get("digest", "")).replace(":", "-") if key else None
            if blob is not None and blob.is_file():
                text = blob.read_text(encoding="utf-8")
                found[key] = json.loads(text) if key == "params" else text
        return found
    return None


def export_gguf(base_gguf: str | Path, adapter_dir: str | Path, out_dir: str | Path, qtype: str = "Q8_0") -> Path:
    """`out_dir/model.gguf` (the base GGUF with the adapter merged in, as `qtype`) and `out_dir/Modelfile`
    (`FROM ./model.gguf`); then `cd out_dir && ollama create <name> -f Modelfile`. The adapter is converted to
    a GGUF LoRA first if it has not been (beside its weights, once)."""
    from ..backends.gguf_files import read_gguf
    from .gguf_lora import ensure_gguf_adapter, merge_lora_gguf

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise TrainingError(f"{adapter_dir} holds no adapter (adapter_config.json is missing): train one first")
    lora = ensure_gguf_adapter(adapter_dir, base_gguf)

    def write(tmp: Path) -> None:
        merge_lora_gguf(base_gguf, lora, tmp / "model.gguf", qtype)
        what = f"{Path(base_gguf).name} with the personal adapter {Path(adapter_dir).name} merged in, {qtype}"
        template = read_gguf(base_gguf).chat_template or ""
        (tmp / "Modelfile").write_text(_modelfile("./model.gguf", template, what, ollama_settings(Path(base_gguf))),
                                       encoding="utf-8")

    return _atomic_dir(Path(out_dir), write)


def export_ollama(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """`out_dir/merged/` (the merged checkpoint) and `out_dir/Modelfile`; then
    `cd out_dir && ollama create <name> -f Modelfile`."""

    def write(tmp: Path) -> None:
        _write_merged(Path(base_dir), Path(adapter_dir), tmp / "merged")
        from .models import _load_tokenizer

        template = getattr(_load_tokenizer(Path(base_dir)), "chat_template", None) or ""
        (tmp / "Modelfile").write_text(_modelfile("./merged", template, "the base model with the personal "
                                                  "adapter merged in"), encoding="utf-8")

    return _atomic_dir(Path(out_dir), write)
