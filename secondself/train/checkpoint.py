"""Resumable training checkpoints (`run_dir/checkpoint`) and the fingerprint that ties one to its run.

Boundary: this module saves and restores a run's state (LoRA weights, optimizer, scheduler, RNG states,
progress); it does not decide when to checkpoint (the training loop does). A checkpoint is written to a
temp dir and renamed into place: a kill at any moment leaves the last good one (`checkpoint`, or
`checkpoint.prev` during the swap). The fingerprint covers config + base + data, so a resumed run reaches
the same weights as an uninterrupted one and a checkpoint of a different run is refused. torch and
safetensors are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TrainingError
from ..types import TrainingExample

if TYPE_CHECKING:
    from .sft import TrainConfig

__all__ = ["fingerprint", "rng_state", "save_checkpoint", "load_checkpoint", "clear_checkpoint"]

_CKPT, _PREV = "checkpoint", "checkpoint.prev"


def fingerprint(config: TrainConfig, base_dir: Path, examples: Sequence[TrainingExample],
                texts: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    cfg = {k: v for k, v in asdict(config).items() if k != "checkpoint_every"}
    h.update(json.dumps(cfg, sort_keys=True, default=list).encode())
    h.update((base_dir / "config.json").read_bytes() if (base_dir / "config.json").is_file() else b"")
    for p in sorted(base_dir.glob("*.safetensors")) + sorted(base_dir.glob("tokenizer*.json")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    for e in examples:
        h.update(json.dumps([e.kind, e.prompt, e.completion]).encode())
    for t in texts:
        h.update(t.encode())
    return h.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def save_checkpoint(run_dir: Path, fingerprint: str, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], rng: dict[str, Any], best: dict[str, Any] | None = None) -> None:
    """Write a complete checkpoint in a temp dir, then swap it in with renames: at every moment either
    `checkpoint` or (only between the two renames) `checkpoint.prev` holds a complete one. `best`: the
    adapter weights of the lowest held-out loss so far (early stopping), kept beside the current ones."""
    import torch
    from safetensors.torch import save_file

    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.tmp-", dir=run_dir))
    try:
        save_file({n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(tmp / "adapter.safetensors"))
        if best:
            save_file({n: t.contiguous() for n, t in best.items()}, str(tmp / "best.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": rng["torch"], "cuda_rng": rng.get("cuda")}, tmp / "trainer.pt")
        version, internal, gauss = rng["python"]
        (tmp / "state.json").write_text(json.dumps({**state, "fingerprint": fingerprint,
                                                    "python_rng": [version, list(internal), gauss]}))
        ckpt, prev = run_dir / _CKPT, run_dir / _PREV
        if ckpt.exists():
            shutil.rmtree(prev, ignore_errors=True)
            os.replace(ckpt, prev)
        os.replace(tmp, ckpt)
        shutil.rmtree(prev, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(run_dir: Path, fingerprint: str, model: Any, optimizer: Any,
                    scheduler: Any) -> dict[str, Any] | None:
    """Restore weights, optimizer, scheduler and RNG states; return the saved progress (None: no checkpoint),
    with the best weights so far under "best_weights" when the checkpoint holds them."""
    import torch
    from safetensors.torch import load_file

    found = next((run_dir / n for n in (_CKPT, _PREV) if (run_dir / n / "state.json").is_file()), None)
    if found is None:
        return None
    state = json.loads((found / "state.json").read_text())
    if state.pop("fingerprint") != fingerprint:
        raise TrainingError(f"{found} is a checkpoint of a different run (the samples, base model or settings "
                            "changed): train without --resume to start over, or delete that folder")
    params = dict(model.named_parameters())
    weights = load_file(str(found / "adapter.safetensors"))
    if set(weights) != {n for n, p in params.items() if p.requires_grad}:
        raise TrainingError(f"{found} does not match this model's adapter; delete it to start over")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    trainer = torch.load(found / "trainer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    if trainer.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer["cuda_rng"])
    version, internal, gauss = state.pop("python_rng")
    random.setstate((version, tuple(internal), gauss))
    if (found / "best.safetensors").is_file():
        state["best_weights"] = load_file(str(found / "best.safetensors"))
    return state


def clear_checkpoint(run_dir: Path) -> None:
    for name in (_CKPT, _PREV):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def swap_in(tmp: Path, out_dir: Path) -> None:
    """Put the finished directory `tmp` at `out_dir`, replacing what was there, so that a reader sees the
    old complete directory or the new complete one, never a half-written one."""
    import os
    import shutil

    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
