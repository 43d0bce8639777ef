"""DPO (direct preference optimization) of a trained LoRA adapter on judge-free preference pairs (`pairs`).

Boundary: this module turns an adapter directory + `Pair`s into a verified adapter directory; it knows nothing
about where the pairs come from or which adapter chat uses. A short loop with peft (no trl): the adapter goes on
training, its log-probabilities of the chosen and rejected answers are compared with the reference model's, and
the loss is DPO's, -log σ(β·((π_c - ref_c) - (π_r - ref_r))), summed over the answer's tokens only (the
tokenizer's chat template owns the format and the mask: `data.encode`).

The reference (`DPOConfig.reference`):
- "sft" (default): the adapter as it was before DPO, the usual DPO reference. Its log-probabilities are
  computed once, before the first step, from the input adapter (also on resume: the input is never changed).
- "base": the adapter disabled (`with model.disable_adapter():`), recomputed every step.

The loop runs in eval mode (no dropout: the policy and the reference see the same network, so the loss starts
at log 2 with the "sft" reference). `nll_weight` > 0 adds the chosen answers' mean token cross-entropy, which
keeps DPO from lowering the likelihood of the answers it prefers. Checkpoints (`run_dir/checkpoint`, see
`checkpoint`) make a run killed during DPO resume to the same weights. torch and peft are imported inside
functions only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TrainingCancelled, TrainingError
from ..progress import OnProgress, Progress
from ..types import TrainingExample
from .checkpoint import clear_checkpoint, load_checkpoint, rng_state, save_checkpoint, swap_in
from .data import IGNORE, encode
from .pairs import Pair
from .threads import CpuThreads

__all__ = ["DPOConfig", "DPOResult", "train", "dpo_loss", "encode_pair", "sequence_logps", "METADATA"]

log = logging.getLogger(__name__)

METADATA = "secondself-dpo.json"       # written into the adapter: the DPO settings and figures


@dataclass(frozen=True)
class DPOConfig:
    """Hyperparameters of one DPO stage. Defaults suit SmolLM2-135M on a CPU."""

    beta: float = field(default=0.1, metadata={"help": "how far the policy may move from the reference"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW)"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps; empty = from --epochs"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the pairs (if steps is empty)"})
    batch_size: int = field(default=4, metadata={"help": "pairs per optimizer step"})
    seq_len: int = field(default=256, metadata={"help": "tokens per sequence; longer prompts are cut on the left"})
    reference: str = field(default="sft", metadata={"help": "'sft' (the adapter before DPO) or 'base' (disabled)"})
    nll_weight: float = field(default=1.0, metadata={"help": "weight of the chosen answers' cross-entropy: "
                                                         "without it DPO lowered the 135M's QA and refusal "
                                                         "(bench/dpo.py)"})
    seed: int = 0
    checkpoint_every: int = field(default=10, metadata={"help": "steps between resumable checkpoints"})
    device: str | None = field(default=None, metadata={"help": "'cpu' or 'cuda'; empty = cuda if available"})
    dtype: str | None = field(default=None, metadata={"help": "'float32' or 'bfloat16'; empty = bf16 on cuda"})
    max_grad_norm: float = 1.0
    warmup_steps: int = 2

    def __post_init__(self) -> None:
        if self.reference not in ("sft", "base"):
            raise TrainingError(f"the DPO reference must be 'sft' or 'base', not {self.reference!r}")
        if self.beta <= 0:
            raise TrainingError("the DPO beta must be above 0")


@dataclass(frozen=True)
class DPOResult:
    """A finished stage. `accuracy` and `margin`: over the last epoch's steps, the share of pairs whose chosen
    answer the policy prefers more than the reference does, and the mean reward margin β·(Δc - Δr)."""

    adapter_dir: Path
    steps: int
    pairs: int
    losses: list[float]
    final_loss: float
    accuracy: float
    margin: float
    seconds: float
    resumed_from_step: int

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("losses", "adapter_dir")}


Seq = tuple[list[int], list[int]]          # (ids, labels with IGNORE where nothing is scored)


def encode_pair(tokenizer: Any, pair: Pair, seq_len: int) -> tuple[Seq, Seq]:
    """(chosen, rejected) as token ids and labels; a sequence longer than `seq_len` loses its prompt's start."""
    def one(answer: str) -> Seq:
        ids, labels = encode(tokenizer, TrainingExample("dpo", pair.prompt, answer, (), "train"))
        if len(ids) > seq_len:
            ids, labels = ids[-seq_len:], [IGNORE] + labels[-seq_len + 1:]
        if all(x == IGNORE for x in labels[1:]):
            raise TrainingError(f"a {pair.source} pair has an answer with no tokens to score within {seq_len} "
                                "tokens: raise seq_len")
        return ids, labels
    return one(pair.chosen), one(pair.rejected)


def sequence_logps(model: Any, seqs: Sequence[Seq], pad_id: int) -> tuple[Any, Any]:
    """(summed log-probability of each sequence's scored tokens, their count), as tensors of len(seqs).

    The vocabulary projection is computed only at scored positions (as `sft._step_loss` does): on a CPU it
    costs as much as the rest of the forward pass. Models that transform their logits take the plain path."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s, _ in seqs], device=device)
    labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in seqs], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in seqs], device=device)
    targets = labels[:, 1:]
    keep = targets != IGNORE
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    plain = not (getattr(inner.config, "final_logit_softcapping", None) or getattr(inner.config, "logit_scale", None))
    if plain and hasattr(inner, "get_decoder") and inner.get_output_embeddings() is not None:
        hidden = inner.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, :-1]
        logits = inner.get_output_embeddings()(hidden[keep]).float()
    else:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][keep].float()
    token_logps = torch.log_softmax(logits, dim=-1).gather(1, targets[keep].unsqueeze(1)).squeeze(1)
    rows = torch.arange(len(seqs), device=device).unsqueeze(1).expand_as(keep)[keep]
    sums = torch.zeros(len(seqs), device=device, dtype=token_logps.dtype).index_add(0, rows, token_logps)
    return sums, keep.sum(dim=1)


def dpo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any,
             beta: float) -> tuple[Any, Any]:
    """(mean DPO loss, per-pair reward margins β·((π_c - ref_c) - (π_r - ref_r)))."""
    import torch

    margins = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -torch.nn.functional.logsigmoid(margins).mean(), margins.detach()


def _fingerprint(config: DPOConfig, base_dir: Path, adapter_dir: Path, pairs: Sequence[Pair]) -> str:
    """Settings + base + input adapter + pairs: a checkpoint of another run is refused on resume."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in asdict(config).items() if k != "checkpoint_every"}, sort_keys=True).encode())
    h.update((base_dir / "config.json").read_bytes() if (base_dir / "config.json").is_file() else b"")
    for p in sorted(base_dir.glob("*.safetensors")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    for p in sorted(adapter_dir.glob("adapter_*")):
        h.update(p.read_bytes())
    for pair in pairs:
        h.update(json.dumps(pair.to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def _order(n: int, seed: int, step: int, per_step: int) -> list[int]:
    """The pairs of optimizer step `step`: a deterministic function of (seed, step), reshuffled every epoch,
    so that a resumed run sees the batches an uninterrupted one would."""
    out = []
    for g in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(g, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(order[i])
    return out


def train(base_dir: Path, adapter_dir: Path, pairs: Sequence[Pair], out_dir: Path, config: DPOConfig, *,
          run_dir: Path, on_progress: OnProgress | None = None,
          should_stop: Callable[[], bool] | None = None) -> DPOResult:
    """Continue the adapter in `adapter_dir` (trained on the base in `base_dir`) with DPO on `pairs`; save the
    result, verified, at `out_dir` (`adapter_dir` is never changed).

    Resumes from `run_dir/checkpoint` if it holds a checkpoint of the same stage (settings, base, input
    adapter and pairs); raises TrainingError if it holds another's. `should_stop()` is checked after every
    step: when true a checkpoint is written and TrainingCancelled raised. On success the checkpoint is removed.
    `on_progress` gets Progress("dpo", step, steps, info: loss, accuracy, margin, lr, elapsed_s, eta_s)."""
    from .models import _load_base, _load_tokenizer, _quiet_peft, _resolve_device
    from .sft import optimizer_and_schedule

    base_dir, adapter_dir, out_dir, run_dir = Path(base_dir), Path(adapter_dir), Path(out_dir), Path(run_dir)
    if not pairs:
        raise TrainingError("no preference pairs: DPO needs at least one (every draft passed its check)")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TrainingError(f"{adapter_dir} is not an adapter directory: DPO continues a trained adapter")
    import torch
    from peft import PeftModel

    device, dtype = _resolve_device(config.device, config.dtype)
    tokenizer = _load_tokenizer(base_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    encoded = [encode_pair(tokenizer, p, config.seq_len) for p in pairs]
    per_step = min(config.batch_size, len(pairs))
    steps = config.steps or max(1, math.ceil(config.epochs * len(pairs) / per_step))
    config = replace(config, steps=steps, device=device, dtype=dtype)
    run_fingerprint = _fingerprint(config, base_dir, adapter_dir, pairs)

    random.seed(config.seed)
    torch.manual_seed(config.seed)
    with _quiet_peft():
        model = PeftModel.from_pretrained(_load_base(base_dir, device, dtype), str(adapter_dir), is_trainable=True)
    model.eval()     # no dropout: see the module docstring
    reference = _reference_logps(model, encoded, pad_id, config) if config.reference == "sft" else None
    optimizer, scheduler = optimizer_and_schedule(model, config.learning_rate, config.warmup_steps, steps)
    params = optimizer.param_groups[0]["params"]
    state: dict[str, Any] = {"step": 0, "losses": [], "correct": [], "margins": [], "seconds": 0.0}
    resumed = load_checkpoint(run_dir, run_fingerprint, model, optimizer, scheduler)
    if resumed is not None:
        state = resumed
        log.info("resuming DPO from step %d of %d", state["step"], steps)
    start_step, start_seconds = state["step"], state["seconds"]
    t0 = time.perf_counter()

    def checkpoint() -> None:
        save_checkpoint(run_dir, run_fingerprint, model, optimizer, scheduler,
                        {**state, "seconds": start_seconds + time.perf_counter() - t0}, rng_state())

    threads = CpuThreads() if device == "cpu" else None
    if threads is not None:
        log.info("DPO on %d CPU thread(s)", threads.start())
    try:
        while state["step"] < steps:
            _step(model, encoded, reference, pad_id, config, state, per_step, params, optimizer,
                              scheduler)
            _report(on_progress, state, start_step, steps, t0, scheduler.get_last_lr()[0])
            if threads is not None:
                threads.step()
            if state["step"] < steps and state["step"] % max(1, config.checkpoint_every) == 0:
                checkpoint()
            if state["step"] < steps and should_stop is not None and should_stop():
                checkpoint()
                raise TrainingCancelled(f"DPO stopped at step {state['step']} of {steps}; the checkpoint is kept: "
                                        "run `secondself train --resume` to continue")
    except KeyboardInterrupt as e:     # mid-step weights may be half-updated: the last checkpoint stands
        raise TrainingCancelled(f"DPO interrupted at step {state['step']} of {steps}; run `secondself train "
                                "--resume` to continue from the last checkpoint") from e
    last = state["correct"][-max(1, math.ceil(len(pairs) / per_step)):]
    margins_last = state["margins"][-len(last):]
    result = DPOResult(out_dir, steps, len(pairs), list(state["losses"]), state["losses"][-1],
                       round(sum(last) / len(last), 4), round(sum(margins_last) / len(margins_last), 4),
                       round(start_seconds + time.perf_counter() - t0, 1), start_step)
    _save_verified(model, base_dir, adapter_dir, out_dir, encoded[0][0][0], config, result)
    clear_checkpoint(run_dir)
    return result


def _step(model: Any, encoded: Sequence[tuple[Seq, Seq]], reference: Any, pad_id: int, config: DPOConfig,
          state: dict[str, Any], per_step: int, params: list[Any], optimizer: Any, scheduler: Any) -> None:
    """One optimizer step on the pairs the schedule gives `state["step"]`; records its figures in `state`."""
    import torch

    picked = _order(len(encoded), config.seed, state["step"], per_step)
    seqs = [s for i in picked for s in encoded[i]]              # chosen, rejected, chosen, rejected, ...
    logps, counts = sequence_logps(model, seqs, pad_id)
    if reference is not None:
        ref = reference[torch.tensor([j for i in picked for j in (2 * i, 2 * i + 1)])].to(logps.device)
    else:
        with torch.no_grad(), model.disable_adapter():
            ref = sequence_logps(model, seqs, pad_id)[0]
    loss, margins = dpo_loss(logps[0::2], logps[1::2], ref[0::2], ref[1::2], config.beta)
    if config.nll_weight > 0:
        loss = loss + config.nll_weight * (-logps[0::2] / counts[0::2]).mean()
    loss.backward()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state["step"] += 1
    state["losses"].append(float(loss.detach()))
    state["correct"].append(float((margins > 0).float().mean()))
    state["margins"].append(float(margins.mean()))


def _reference_logps(model: Any, encoded: Sequence[tuple[Seq, Seq]], pad_id: int, config: DPOConfig) -> Any:
    """The input adapter's log-probabilities of every chosen and rejected answer, [c0, r0, c1, r1, ...]."""
    import torch

    seqs = [s for pair in encoded for s in pair]
    out = []
    with torch.no_grad():
        for i in range(0, len(seqs), 2 * config.batch_size):
            out.append(sequence_logps(model, seqs[i:i + 2 * config.batch_size], pad_id)[0])
    return torch.cat(out).detach()


def _report(on_progress: OnProgress | None, state: dict[str, Any], start_step: int, steps: int, t0: float,
            lr: float) -> None:
    if on_progress is None:
        return
    elapsed = time.perf_counter() - t0
    done = state["step"] - start_step
    on_progress(Progress("dpo", state["step"], steps, {
        "loss": state["losses"][-1], "accuracy": state["correct"][-1], "margin": state["margins"][-1], "lr": lr,
        "elapsed_s": elapsed, "eta_s": elapsed / done * (steps - state["step"])}))


def _save_verified(model: Any, base_dir: Path, adapter_dir: Path, out_dir: Path, probe_ids: list[int],
                   config: DPOConfig, result: DPOResult) -> None:
    """save_pretrained into a temp dir with the input adapter's metadata and ours, reload it on a fresh base,
    compare logits, then swap it in at out_dir."""
    import torch
    from peft import PeftModel

    from .models import _load_base, _quiet_peft

    model.eval()
    probe = torch.tensor([probe_ids[:64]], device=config.device)
    with torch.no_grad():
        expected = model(input_ids=probe).logits.float()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        for p in adapter_dir.glob("secondself-*.json"):       # how the adapter was trained (sft) stays with it
            shutil.copy(p, tmp / p.name)
        with _quiet_peft():
            fresh = PeftModel.from_pretrained(_load_base(base_dir, config.device, config.dtype), str(tmp)).eval()
        with torch.no_grad():
            got = fresh(input_ids=probe).logits.float()
        del fresh
        if not torch.allclose(got, expected, rtol=0, atol=1e-5):
            raise TrainingError(f"the saved DPO adapter does not reproduce the trained model (max logit difference "
                                f"{float((got - expected).abs().max()):.3g}); nothing was written to {out_dir}")
        (tmp / METADATA).write_text(json.dumps({"config": asdict(config), "result": result.to_dict()}, indent=2))
        swap_in(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
