"""Supervised fine-tuning of the personal model: a LoRA adapter (peft) on a small local chat model.

Boundary: this module turns `TrainingExample`s into a verified adapter directory. It knows nothing about
where examples come from (synthesis) or which adapter version chat uses (adapters).

Data path: `encode` (the tokenizer's chat template owns the format *and* the mask) -> `pack` (best-fit
rows of exactly `seq_len`, one block-diagonal causal mask per row) or `pad_batches` (the unpacked
baseline) -> `train`; the first three live in `data` and are re-exported here. Resumable checkpoints
(`run_dir/checkpoint`, see `checkpoint`) hold the LoRA weights, optimizer, scheduler, RNG states and a
fingerprint of config + base + data, so a resumed run reaches the same weights as an uninterrupted one.
torch, transformers and peft are imported inside functions only.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import TrainingCancelled, TrainingError
from ..progress import OnProgress, Progress
from ..types import TrainingExample
from .anchor import anchor_loss, anchor_rows
from .checkpoint import clear_checkpoint, fingerprint, load_checkpoint, rng_state, save_checkpoint, swap_in
from .data import IGNORE, TARGET_MODULES, Row, _pad, _pieces, choose_rank, encode, pack, pad_batches
from .losses import _collate, _heldout_loss, _step_loss, bits_per_byte
from .models import (
    _load_base,
    _load_tokenizer,
    _products,
    _quiet_peft,
    _resolve_autocast,
    _resolve_device,
    load_model,
)
from .threads import CpuThreads

__all__ = ["TrainConfig", "TrainResult", "Row", "IGNORE", "encode", "pack", "pad_batches", "choose_rank", "train",
           "bits_per_byte", "load_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one LoRA run. Defaults suit SmolLM2-135M on a CPU."""

    rank: int | None = field(default=None, metadata={"help": "LoRA rank; empty = chosen from the data size"})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; empty = 2 x rank"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout; 0: on a CPU its random masks on every "
                                                         "projection's input took a quarter of the step time "
                                                         "(py-spy), and the anchor and early stopping regularise"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps; empty = from --epochs"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the training rows (if steps is empty)"})
    batch_size: int = field(default=4, metadata={"help": "rows per micro-batch"})
    seq_len: int = field(default=256, metadata={"help": "tokens per row; longer examples are split"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    packing: bool = field(default=True, metadata={"help": "pack several examples per row (faster)"})
    seed: int = field(default=0, metadata={"help": "seed for init, dropout and data order"})
    target_modules: tuple[str, ...] = field(default=TARGET_MODULES,
                                            metadata={"help": "linear layers that get LoRA matrices"})
    checkpoint_every: int = field(default=10, metadata={"help": "steps between resumable checkpoints"})
    device: str | None = field(default=None, metadata={"help": "'cpu' or 'cuda'; empty = cuda if available"})
    dtype: str | None = field(default=None, metadata={"help": "'float32' or 'bfloat16'; empty = bf16 on cuda"})
    autocast: bool | None = field(default=None, metadata={"help": "fp32 weights, bf16 matrix products on a CPU "
                                                                  "that has bf16 instructions; empty = when it has"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    warmup_steps: int = field(default=5, metadata={"help": "linear warmup, then cosine decay to 10%"})
    eval_every: int = field(default=10, metadata={"help": "steps between held-out loss measurements"})
    patience: int = field(default=2, metadata={"help": "stop after this many held-out losses without a new "
                                                       "best (0 = never stop early); the best weights are kept"})
    once_kinds: tuple[str, ...] = field(default=(), metadata={"help": "example kinds seen once over the run, "
                                                                     "spread over the epochs, instead of every epoch"})
    anchor_weight: float = field(default=0.0, metadata={"help": "weight of the KL to the base model on generic "
                                                               "prose added to every step (0 = off; see anchor)"})


@dataclass(frozen=True)
class TrainResult:
    """A finished run. `adapter_dir` holds a saved adapter verified to reload with identical logits.
    `tokens_trained` counts supervised target tokens (this call and any resumed part)."""

    adapter_dir: Path
    steps: int
    final_loss: float
    losses: list[float]
    tokens_trained: int
    seconds: float
    rank: int
    rank_reason: str
    resumed_from_step: int
    heldout_losses: list[tuple[int, float]] = field(default_factory=list)   # (step, loss) per measurement
    best_step: int | None = None        # the step whose weights were saved (early stopping), None: the last
    anchor_kl: list[float] = field(default_factory=list)   # KL to the base on the anchor row, per step
    threads: list[int] = field(default_factory=list)       # CPU threads used, each change in order (CPU only)
    bf16_products: bool = False                            # bf16 matrix products under fp32 weights (CPU)


# -- training --------------------------------------------------------------------------------------------

class _Schedule:
    """Which rows each optimizer step trains on: a deterministic function of (seed, step), so that a
    resumed run sees exactly the batches the uninterrupted run would have seen. `epochs`: the rows of each
    epoch (one list: the same rows every epoch), cycled; each epoch's rows are shuffled by (seed, epoch)."""

    def __init__(self, epochs: list[list[Row]], config: TrainConfig, pad_id: int) -> None:
        self.epochs, self.config, self.pad_id = epochs, config, pad_id
        self.per_step = config.batch_size * config.grad_accum
        self._orders: dict[int, list[int]] = {}

    def _locate(self, g: int) -> tuple[int, int]:
        epoch = 0
        while g >= len(self.epochs[epoch % len(self.epochs)]):
            g -= len(self.epochs[epoch % len(self.epochs)])
            epoch += 1
        return epoch, g

    def micro_batches(self, step: int) -> list[list[Row]]:
        picked = []
        for g in range(step * self.per_step, (step + 1) * self.per_step):
            epoch, i = self._locate(g)
            rows = self.epochs[epoch % len(self.epochs)]
            if epoch not in self._orders:
                order = list(range(len(rows)))
                random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
                self._orders = {epoch: order}
            picked.append(rows[self._orders[epoch][i]])
        b = self.config.batch_size
        batches = [picked[i:i + b] for i in range(0, len(picked), b)]
        return batches if self.config.packing else [_pad(mb, self.pad_id) for mb in batches]


def optimizer_and_schedule(model: Any, learning_rate: float, warmup_steps: int, steps: int) -> tuple[Any, Any]:
    """AdamW over the trainable (adapter) parameters, with a linear warmup and then a cosine from 1 down to 0.1:
    the one schedule SFT and DPO share."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    warmup = min(warmup_steps, steps)

    def lr_factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def _lora_weights(model: Any) -> dict[str, Any]:
    return {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if p.requires_grad}


def train(base_dir: Path, examples: list[TrainingExample], out_dir: Path, config: TrainConfig, *,
          run_dir: Path, on_progress: OnProgress | None = None,
          should_stop: Callable[[], bool] | None = None, heldout: Sequence[TrainingExample] = (),
          init_adapter: Path | None = None, anchor: Sequence[str] = (),
          spread: Sequence[TrainingExample] = ()) -> TrainResult:
    """Train a LoRA adapter on the `split == "train"` examples and save it, verified, at `out_dir`.

    `heldout`: examples never trained on whose loss is measured every `config.eval_every` steps; after
    `config.patience` measurements without a new lowest loss training stops, and the weights of the lowest
    one are saved (early stopping). `init_adapter`: continue from this adapter's weights (same base; its
    rank and alpha are kept) instead of a fresh LoRA — continuous learning. `anchor`: generic texts on which every
    step adds `config.anchor_weight` x the KL from the base model's next-token distributions (read once,
    adapter off) to the tuned model's: retention by distillation (see `anchor`; off when the weight is 0).
    `spread`: more training examples, each trained once over the run, a slice of them in every epoch (as
    `config.once_kinds`): a continued run's replay of old items, so that the replay covers many old items.

    Resumes from `run_dir/checkpoint` if it holds a checkpoint of the same run (same fingerprint);
    raises TrainingError if it holds one of a different run. `should_stop()` is checked after every step:
    when true, a checkpoint is written and TrainingCancelled raised (Ctrl-C likewise). On success the
    checkpoint is removed: `out_dir` is the result. `on_progress` gets Progress("train", step, steps, info)
    after every step; info: loss, tokens, tokens_all, positions, lr, elapsed_s, eta_s, tokens_per_s.
    """
    base_dir, out_dir, run_dir = Path(base_dir), Path(out_dir), Path(run_dir)
    train_examples = [e for e in examples if e.split == "train"] + list(spread)
    if not train_examples:
        raise TrainingError(f"no training samples ({len(examples)} examples, none in the 'train' split): "
                            "run `secondself build` to synthesize samples, then `secondself train`")
    import torch

    device, dtype = _resolve_device(config.device, config.dtype)
    tokenizer = _load_tokenizer(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    order = list(range(len(train_examples)))
    random.Random(config.seed).shuffle(order)
    spread_from = len(train_examples) - len(spread)

    def is_once(i: int) -> bool:
        return i >= spread_from or train_examples[i].kind in config.once_kinds
    once, every = [i for i in order if is_once(i)], [i for i in order if not is_once(i)]
    n_epochs = max(1, math.ceil(config.epochs)) if once and not config.steps else 1
    encoded = {i: encode(tokenizer, train_examples[i]) for i in order}
    epochs = [_rows([encoded[i] for i in every + once[e::n_epochs]], config, pad_id) for e in range(n_epochs)]
    rows = epochs[0]
    if not rows:
        raise TrainingError("the training samples contain nothing to learn (no supervised tokens): check "
                            "that their completions are not empty")
    if init_adapter is not None:
        lora = json.loads((Path(init_adapter) / "adapter_config.json").read_text())
        rank, rank_reason = int(lora["r"]), f"rank {lora['r']}: continued from {Path(init_adapter).name}"
        config = replace(config, alpha=float(lora["lora_alpha"]))
    elif config.rank:
        rank, rank_reason = config.rank, f"rank {config.rank}: set by the configuration"
    else:
        from transformers import AutoConfig

        rank, rank_reason = choose_rank(train_examples, tokenizer, AutoConfig.from_pretrained(base_dir),
                                        config.target_modules)
    steps = config.steps or max(1, math.ceil(config.epochs / n_epochs * sum(map(len, epochs))
                                             / (config.batch_size * config.grad_accum)))
    config = replace(config, rank=rank, alpha=config.alpha or 2.0 * rank, steps=steps, device=device, dtype=dtype,
                     autocast=_resolve_autocast(config.autocast, device, dtype))
    anchor = list(anchor) if config.anchor_weight > 0 else []
    run_fingerprint = fingerprint(config, base_dir, train_examples, anchor) + (
        f"~{fingerprint(config, base_dir, spread)}" if spread else "") + (
        f"+{fingerprint(config, Path(init_adapter), [])}" if init_adapter is not None else "")
    held_rows = [Row(ids, labels, list(range(len(ids))), [1] * len(ids))
                 for ids, labels in _pieces([encode(tokenizer, e) for e in heldout], config.seq_len)]

    from peft import LoraConfig, get_peft_model

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    with _quiet_peft():
        if init_adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(_load_base(base_dir, device, dtype), str(init_adapter),
                                              is_trainable=True)
        else:
            model = get_peft_model(_load_base(base_dir, device, dtype), LoraConfig(
                r=rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                target_modules=list(config.target_modules), task_type="CAUSAL_LM", bias="none"))
    anchors = anchor_rows(model, tokenizer, anchor, config.seq_len) if anchor else []
    optimizer, scheduler = optimizer_and_schedule(model, config.learning_rate, config.warmup_steps, steps)
    params = optimizer.param_groups[0]["params"]
    state: dict[str, Any] = {"step": 0, "losses": [], "anchor_kl": [], "tokens": 0, "tokens_all": 0,
                             "positions": 0, "seconds": 0.0, "heldout": [], "best_step": None, "since_best": 0}
    best: dict[str, Any] | None = None
    resumed = load_checkpoint(run_dir, run_fingerprint, model, optimizer, scheduler)
    if resumed is not None:
        best = resumed.pop("best_weights", None)
        state = {**state, **resumed}
        log.info("resuming from step %d of %d", state["step"], steps)
    start = dict(state)
    schedule = _Schedule(epochs, config, pad_id)
    t0 = time.perf_counter()
    rng = rng_state()
    in_update = False

    def checkpoint() -> None:
        save_checkpoint(run_dir, run_fingerprint, model, optimizer, scheduler,
                        {**state, "seconds": start["seconds"] + time.perf_counter() - t0}, rng, best)

    def measure() -> bool:
        """Record the held-out loss; True when training should stop (no new best for `patience` times)."""
        nonlocal best
        with _products(config.autocast):
            loss = _heldout_loss(model, held_rows, config.batch_size, device)
        state["heldout"].append([state["step"], round(loss, 5)])
        if all(loss < old for _, old in state["heldout"][:-1]):
            state["best_step"], state["since_best"] = state["step"], 0
            best = _lora_weights(model)
        else:
            state["since_best"] += 1
        log.info("step %d: held-out loss %.4f (best at step %s)", state["step"], loss, state["best_step"])
        return 0 < config.patience <= state["since_best"]

    model.train()
    threads = CpuThreads() if device == "cpu" else None
    if threads is not None:
        log.info("training on %d CPU thread(s)", threads.start())
    try:
        while state["step"] < steps:
            rng = rng_state()  # the state at this step's start: what a checkpoint taken mid-step restores
            batches = schedule.micro_batches(state["step"])
            n_targets = max(1, sum(sum(x != IGNORE for x in r.labels[1:]) for mb in batches for r in mb))
            total = 0.0
            for mb in batches:
                with _products(config.autocast):
                    loss = _step_loss(model, _collate(mb, config.packing, device), n_targets)
                loss.backward()
                total += float(loss.detach())
            if anchors:  # one anchor row per step, in a fixed cycle (a resumed run sees the same ones)
                with _products(config.autocast):
                    kl = anchor_loss(model, anchors[state["step"] % len(anchors)])
                (config.anchor_weight * kl).backward()
                state["anchor_kl"].append(round(float(kl.detach()), 5))
            in_update = True  # from here until the step is recorded, a checkpoint would be inconsistent
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["losses"].append(total)
            state["tokens"] += n_targets
            state["tokens_all"] += sum(sum(r.attention_mask) for mb in batches for r in mb)
            state["positions"] += sum(len(r.input_ids) for mb in batches for r in mb)
            rng = rng_state()
            in_update = False
            _report(on_progress, state, start, steps, t0, scheduler.get_last_lr()[0])
            if threads is not None:
                threads.step()
            if held_rows and (state["step"] % max(1, config.eval_every) == 0 or state["step"] == steps) \
                    and measure():
                log.info("early stop at step %d of %d: held-out loss rose %d times since step %s",
                         state["step"], steps, state["since_best"], state["best_step"])
                break
            if state["step"] < steps and state["step"] % max(1, config.checkpoint_every) == 0:
                checkpoint()
            if state["step"] < steps and should_stop is not None and should_stop():
                checkpoint()
                raise TrainingCancelled(f"training stopped at step {state['step']} of {steps}; the checkpoint is "
                                        "kept: run `secondself train --resume` to continue")
    except KeyboardInterrupt as e:
        if not in_update:  # mid-update weights are half-stepped: then keep the last periodic checkpoint
            optimizer.zero_grad(set_to_none=True)
            checkpoint()
        raise TrainingCancelled(f"training interrupted at step {state['step']} of {steps}; run "
                                "`secondself train --resume` to continue from the last checkpoint") from e
    except RuntimeError as e:
        if _is_oom(e):
            raise TrainingError(f"out of memory at step {state['step'] + 1} (batch {config.batch_size} x "
                                f"{config.seq_len} tokens on {device}): retry with a smaller --batch-size or "
                                "--seq-len (and a larger --grad-accum to keep the effective batch); the last "
                                "checkpoint is kept") from e
        raise
    if best is not None and state["best_step"] != state["step"]:
        import torch

        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in best.items():
                params[name].copy_(tensor.to(params[name].device))
    _save_verified(model, base_dir, out_dir, rows[0], config)
    clear_checkpoint(run_dir)
    return TrainResult(out_dir, state["step"], state["losses"][-1], list(state["losses"]), state["tokens"],
                       start["seconds"] + time.perf_counter() - t0, rank, rank_reason, start["step"],
                       [(int(a), float(b)) for a, b in state["heldout"]],
                       state["best_step"] if held_rows else None, list(state["anchor_kl"]),
                       list(threads.history) if threads is not None else [], bool(config.autocast))


def _rows(encoded: list[tuple[list[int], list[int]]], config: TrainConfig, pad_id: int) -> list[Row]:
    if config.packing:
        return pack(encoded, config.seq_len, pad_id)
    return [Row(ids, labels, list(range(len(ids))), [1] * len(ids)) for ids, labels in _pieces(encoded, config.seq_len)]


def _report(on_progress: OnProgress | None, state: dict[str, Any], start: dict[str, Any],
            steps: int, t0: float, lr: float) -> None:
    if on_progress is None:
        return
    elapsed = time.perf_counter() - t0
    done = state["step"] - start["step"]
    on_progress(Progress("train", state["step"], steps, {
        "loss": state["losses"][-1], "tokens": state["tokens"], "tokens_all": state["tokens_all"],
        "positions": state["positions"], "lr": lr, "elapsed_s": elapsed,
        "eta_s": elapsed / done * (steps - state["step"]),
        "tokens_per_s": (state["tokens"] - start["tokens"]) / elapsed if elapsed > 0 else 0.0}))


def _save_verified(model: Any, base_dir: Path, out_dir: Path, probe_row: Row, config: TrainConfig) -> None:
    """save_pretrained into a temp dir, reload on a fresh base, compare logits, then rename to out_dir."""
    import torch
    from peft import PeftModel

    model.eval()
    n = min(64, len(probe_row.input_ids))
    probe = torch.tensor([probe_row.input_ids[:n]], device=config.device)
    with torch.no_grad():
        expected = model(input_ids=probe).logits.float()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        with _quiet_peft():
            fresh = PeftModel.from_pretrained(_load_base(base_dir, config.device, config.dtype), str(tmp)).eval()
        with torch.no_grad():
            got = fresh(input_ids=probe).logits.float()
        del fresh
        if not torch.allclose(got, expected, rtol=0, atol=1e-6):
            raise TrainingError(f"the saved adapter does not reproduce the trained model (max logit difference "
                                f"{float((got - expected).abs().max()):.3g}); nothing was written to {out_dir}")
        (tmp / "secondself-train.json").write_text(json.dumps(
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in
             ((f.name, getattr(config, f.name)) for f in fields(config))}, indent=2))
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

