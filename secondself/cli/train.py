"""Layer-2 commands: train (synthesize → fine-tune → [DPO] → evaluate), model (list, use, rollback, export), eval.

Training runs in the foreground with one progress bar per stage (rate, ETA; loss and tokens/s while training).
`train --cancel` (from another terminal) or Ctrl-C stops at the next step with a checkpoint; `train --resume`
continues.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..progress import Progress
from . import Context, _emit_json, cli, out
from .progress import Bars

_STAGES = {"retention": ("base model answering generic prompts", "prompt"), "train": ("train", "step"),
           "pairs": ("base model drafting rejected answers (DPO)", "prompt"), "dpo": ("DPO", "step"),
           "evaluate": ("evaluate", "answer")}


class _TrainProgress(Bars):
    """The training stages as bars (kept: a bar stays, or one line per stage in a log); the synthesized
    samples as one line."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(_STAGES, quiet=quiet, keep=True)

    def __call__(self, p: Progress) -> None:
        if p.stage == "synthesize" and not self.quiet:
            counts = ", ".join(f"{k} {v.get('train', 0)}+{v.get('heldout', 0) + v.get('valid', 0)}"
                               + (f"+{v['unseen']}" if v.get("unseen") else "") for k, v in p.info["counts"].items())
            out(f"samples (train+held-out[+unseen facts]): {counts}", err=True)
            if p.info.get("dropped"):
                out(f"dropped: {p.info['dropped']}", err=True)
            return
        if p.stage == "continue" and not self.quiet:
            out(f"continuing {p.info['parent']} on what changed: {p.info['new_items']} new items + "
                f"{p.info['replayed']} replayed (`--full` retrains from scratch)", err=True)
            return
        super().__call__(p)


@cli.command()
@click.option("--base", "base_spec", help="Base model: 'embedded' (default) or a local model directory.")
@click.option("--epochs", type=float, help="Passes over the training data (default 6).")
@click.option("--steps", type=int, help="Optimizer steps (overrides --epochs).")
@click.option("--rank", help="LoRA rank, or 'auto' (default: sized from the amount of personal knowledge).")
@click.option("--resume", is_flag=True, help="Continue the latest unfinished run from its last checkpoint, with the "
              "base model and settings it was started with.")
@click.option("--cancel", is_flag=True, help="Ask the running training to stop at its next step.")
@click.option("--dpo", is_flag=True, help="After fine-tuning, a DPO stage on preference pairs built from the "
              "project's own checks (grounded vs invented answers, refusals, disclosure, critique); no judge.")
@click.option("--full", is_flag=True, help="Train from scratch; by default a new run continues the current adapter "
              "(same base) on what changed since it was trained, with a replay of old items.")
@click.option("--json", "as_json", is_flag=True, help="The adapter's metadata (with eval scores) as JSON.")
@click.pass_obj
def train(obj: Context, base_spec: str | None, epochs: float | None, steps: int | None, rank: str | None,
          resume: bool, cancel: bool, dpo: bool, full: bool, as_json: bool) -> None:
    """Train your personal model: synthesize data from layers 0-1, fine-tune a LoRA adapter, evaluate it."""
    from ..errors import ConfigError
    from ..train.evaluate import EvalReport, table
    from ..train.pipeline import request_cancel

    if cancel:
        run = request_cancel(obj.settings.person_dir)
        out(f"asked run {run.name} to stop at its next step" if run else "no training run is in progress")
        return
    if rank not in (None, "auto") and not (rank.isdigit() and int(rank) > 0):
        raise ConfigError(f"--rank must be a positive whole number or 'auto', not {rank!r}")
    bars = _TrainProgress(as_json)
    try:
        info = obj.train_model(base_spec, steps=steps, epochs=epochs,
                               rank=int(rank) if rank and rank.isdigit() else None, resume=resume, dpo=dpo,
                               full=full, on_progress=bars)
    finally:
        bars.close()
    if as_json:
        _emit_json({"version": info.version, "path": str(info.path), **info.metadata})
        return
    t = info.metadata.get("train", {})
    out(f"adapter {info.version} saved and selected ({info.path})")
    out(t.get("rank_reason") or f"rank {t.get('rank')}")
    out(f"{t.get('steps')} steps, final loss {t.get('final_loss', 0):.3f}, {t.get('seconds')} s"
        + (f", weights of step {t['best_step']} (lowest held-out loss)" if t.get("best_step") else ""))
    if t.get("threads"):
        out(f"on {'/'.join(map(str, t['threads']))} CPU thread(s) (as the free cores changed)"
            + (", bf16 matrix products" if t.get("bf16_products") else ""))
    if info.metadata.get("mode") == "continue":
        out(f"continued from {info.metadata.get('parent')}: {info.metadata.get('new_items')} new items, "
            f"{info.metadata.get('replayed')} replayed")
    if d := info.metadata.get("dpo"):
        made = ", ".join(f"{k} {v.get('draft', 0) + v.get('constructed', 0)}" for k, v in d.get("sources", {}).items())
        out(f"DPO: {d['skipped']} ({made})" if d.get("skipped") else
            f"DPO: {d['steps']} steps on {d['pairs']} pairs ({made}), final loss {d['final_loss']:.3f} (0.693 at "
            f"the start), preference accuracy {d['accuracy']:.2f}, {d['seconds']} s")
    ev = info.metadata.get("eval", {})
    if ev.get("scores"):
        for row in table(EvalReport(scores=ev["scores"], summary=ev.get("summary", {}))):
            out(row)


@cli.group()
def model() -> None:
    """Your personal model's adapter versions."""


@model.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def model_list(obj: Context, as_json: bool) -> None:
    from ..train import adapters as registry

    cur = registry.current(obj.store, obj.settings.person_dir)
    rows = registry.list_adapters(obj.settings.person_dir)
    if as_json:
        _emit_json([{"version": a.version, "current": cur is not None and a.version == cur.version,
                     "path": str(a.path), **a.metadata} for a in rows])
        return
    if not rows:
        out("no adapters yet: run `secondself train`")
    for a in rows:
        mark = "*" if cur is not None and a.version == cur.version else " "
        summary = a.scores.get("summary", {})
        figures = ", ".join(f"{k} {v}" for k, v in summary.items() if k in ("qa_f1_gain", "compression_gain",
                                                                              "retention_loss"))
        out(f"{mark} {a.version}  {a.metadata.get('created_at', '')[:16]}  {a.base}  "
            f"rank {a.metadata.get('train', {}).get('rank')}  {figures}")


@model.command("use")
@click.argument("version")
@click.pass_obj
def model_use(obj: Context, version: str) -> None:
    """Chat with this adapter version from now on."""
    from ..train import adapters as registry

    info = registry.use(obj.store, obj.settings.person_dir, version)
    out(f"using {info.version}")


@model.command("rollback")
@click.pass_obj
def model_rollback(obj: Context) -> None:
    """Go back to the adapter selected before the current one."""
    from ..train import adapters as registry

    info = registry.rollback(obj.store, obj.settings.person_dir)
    out(f"using {info.version}")


@model.command("export")
@click.option("--format", "fmt", type=click.Choice(["merged", "ollama", "gguf"]), default="merged",
              show_default=True, help="merged: HF safetensors; ollama: those + a Modelfile; gguf: the base's GGUF "
              "with the adapter merged in, quantized, + a Modelfile (FROM ./model.gguf).")
@click.option("--quant", type=click.Choice(["q8_0", "q4_0", "f16"], case_sensitive=False), default="q8_0",
              show_default=True, help="Weight type of --format gguf (f16: unrounded, to quantize further).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--version", help="Adapter version (default: the current one).")
@click.pass_obj
def model_export(obj: Context, fmt: str, quant: str, out_dir: str, version: str | None) -> None:
    """Write the personal model for use elsewhere: merged safetensors, an Ollama Modelfile + weights, or a
    merged quantized GGUF + Modelfile."""
    from ..errors import TrainingError
    from ..train import adapters as registry
    from ..train.export import export_gguf, export_merged, export_ollama

    info = registry.get(obj.settings.person_dir, version) if version else registry.current(obj.store,
                                                                                            obj.settings.person_dir)
    if info is None:
        raise TrainingError("no adapter is selected: run `secondself train` first")
    if fmt == "gguf":
        base = registry.base_gguf(info, obj.settings.models_dir)
        if base is None:
            raise TrainingError(f"the base model of {info.version} ({info.base}) has no GGUF file here: export it "
                                "with --format merged or --format ollama")
        target = export_gguf(base, info.path, Path(out_dir), quant.upper())
        out(f"wrote {info.version} merged into {base.name} as {quant.upper()}: {target / 'model.gguf'}")
        out(f"import it into Ollama with: cd {target} && ollama create <name> -f Modelfile")
        return
    base_dir = Path(info.metadata["base_dir"])
    target = (export_merged if fmt == "merged" else export_ollama)(base_dir, info.path, Path(out_dir))
    out(f"wrote {fmt} export of {info.version} to {target}")


@cli.command("eval")
@click.option("--json", "as_json", is_flag=True)
@click.option("--version", help="Adapter version (default: the current one).")
@click.pass_obj
def eval_cmd(obj: Context, as_json: bool, version: str | None) -> None:
    """The personal model vs its base on held-out data (scores stored with the adapter at training)."""
    from ..errors import TrainingError
    from ..train import adapters as registry
    from ..train.evaluate import EvalReport, table

    info = registry.get(obj.settings.person_dir, version) if version else registry.current(obj.store,
                                                                                            obj.settings.person_dir)
    if info is None:
        raise TrainingError("no adapter is selected: run `secondself train` first")
    ev = info.metadata.get("eval", {})
    if as_json:
        _emit_json({"version": info.version, **ev})
        return
    out(f"adapter {info.version} (base {info.base})")
    for row in table(EvalReport(scores=ev.get("scores", {}), summary=ev.get("summary", {}))):
        out(row)
