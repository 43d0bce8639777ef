"""Export the personal model for other runtimes: a merged checkpoint, and an Ollama Modelfile.

Both write into a temp dir beside the target and rename it into place, so a target exists only complete.

Ollama: its `ollama create` imports a safetensors directory of a Llama-architecture model directly
(`FROM /path/to/dir`, ollama docs/import.md). `ADAPTER` would need the exact base model under an Ollama
name (`FROM <name>`); our base is a local checkpoint, not an Ollama library tag, so we export the merged
model instead (`FROM ./merged`), which needs nothing else. Ollama guesses the chat template from the
tokenizer config; for ChatML tokenizers (SmolLM2, Qwen) we write the TEMPLATE explicitly, with the stop
token, so the answer does not depend on that guess.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import TrainingError
from .checkpoint import swap_in

__all__ = ["export_merged", "export_ollama"]

_CHATML_TEMPLATE = '''{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{- end }}<|im_start|>assistant
'''


def _atomic_dir(out_dir: Path, write: Callable[[Path], None]) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        write(tmp)
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_merged(base_dir: Path, adapter_dir: Path, target: Path) -> None:
    from peft import PeftModel

    from .sft import _load_base, _load_tokenizer, _quiet_peft

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


def export_ollama(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """`out_dir/merged/` (the merged checkpoint) and `out_dir/Modelfile`; then
    `cd out_dir && ollama create <name> -f Modelfile`."""

    def write(tmp: Path) -> None:
        _write_merged(Path(base_dir), Path(adapter_dir), tmp / "merged")
        from .sft import _load_tokenizer

        template = getattr(_load_tokenizer(Path(base_dir)), "chat_template", None) or ""
        lines = ["# Made by `secondself`: the base model with the personal adapter merged in.",
                 "# Import with: ollama create <name> -f Modelfile", "FROM ./merged"]
        if "<|im_start|>" in template:
            lines += [f'TEMPLATE """{_CHATML_TEMPLATE}"""', 'PARAMETER stop "<|im_end|>"']
        (tmp / "Modelfile").write_text("\n".join(lines) + "\n", encoding="utf-8")

    return _atomic_dir(Path(out_dir), write)
