"""Losses of a causal LM on token rows: the training step's, the held-out loss that early stopping watches,
and bits per byte of plain text (compression). torch is imported inside functions only.

Boundary: rows in (see `data`), numbers out; no optimizer, no checkpoint, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .data import IGNORE, Row, _pad

__all__ = ["bits_per_byte"]


def bits_per_byte(model: Any, tokenizer: Any, texts: Sequence[str], seq_len: int = 512,
                  bf16_products: bool | None = None) -> float:
    """Mean negative log-likelihood of `texts` in bits per UTF-8 byte (lower = better remembered); see
    `text_nats`."""
    nats = text_nats(model, tokenizer, texts, seq_len, bf16_products)
    return sum(nats) / math.log(2) / max(sum(len(t.encode("utf-8")) for t in texts), 1)


def text_nats(model: Any, tokenizer: Any, texts: Sequence[str], seq_len: int = 512,
              bf16_products: bool | None = None) -> list[float]:
    """The negative log-likelihood of each text, in nats.

    Each text is read in windows of `seq_len` tokens; every token is predicted, the first from a bos/eos
    token and each window's first from the last token of the previous window. `bf16_products`: bf16 matrix
    products under fp32 weights (None: where the CPU has bf16 instructions, as in training): 1.6x faster on
    the 135M, the figure equal to 3 decimals (1.8026 vs 1.8033 bits per byte on maya's held-out notes)."""
    import torch

    from .models import _products, _resolve_autocast

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    weight = next(model.parameters())
    device = weight.device
    on = _resolve_autocast(bf16_products, device.type, str(weight.dtype).removeprefix("torch."))
    was_training = model.training
    model.eval()  # no dropout
    with torch.no_grad(), _products(on):
        for text in texts:
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            nats, context = 0.0, start
            for i in range(0, len(ids), seq_len):
                chunk = ids[i:i + seq_len]
                x = torch.tensor([[context] + chunk], device=device)
                logits = model(input_ids=x).logits[0, :-1].float()
                nats += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
                context = chunk[-1]
            out.append(nats)
    model.train(was_training)
    return out


def _collate(rows: Sequence[Row], packed: bool, device: str) -> dict[str, Any]:
    import torch

    batch = {"input_ids": torch.tensor([r.input_ids for r in rows], device=device),
             "labels": torch.tensor([r.labels for r in rows], device=device)}
    if packed:  # no 2D mask: transformers derives a block-diagonal causal mask from the position ids
        batch["position_ids"] = torch.tensor([r.position_ids for r in rows], device=device)
    else:
        batch["attention_mask"] = torch.tensor([r.attention_mask for r in rows], device=device)
    return batch


def _step_loss(model: Any, batch: dict[str, Any], n_targets: int) -> Any:
    """Summed cross-entropy of the batch's targets / n_targets.

    The vocabulary projection (49k x 576 for SmolLM2) is computed only at positions that have a target:
    on a CPU it costs as much as the rest of the forward pass. Models that transform their logits (soft
    capping, scaling) take the plain path."""
    import torch

    labels = batch.pop("labels")
    targets = labels[:, 1:]
    keep = targets != IGNORE
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    plain = not (getattr(inner.config, "final_logit_softcapping", None) or getattr(inner.config, "logit_scale", None))
    if plain and hasattr(inner, "get_decoder") and inner.get_output_embeddings() is not None:
        hidden = inner.get_decoder()(**batch, use_cache=False).last_hidden_state[:, :-1]
        logits = inner.get_output_embeddings()(hidden[keep]).float()
        return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum") / n_targets
    logits = model(**batch, use_cache=False).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum") / n_targets


def _heldout_loss(model: Any, rows: Sequence[Row], batch_size: int, device: str) -> float:
    """Mean cross-entropy per supervised token of `rows` (padded, unpacked), dropout off."""
    import torch

    was = model.training
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = _collate(_pad(rows[i:i + batch_size], 0), False, device)
            k = int(sum(sum(x != IGNORE for x in r.labels[1:]) for r in rows[i:i + batch_size]))
            total += float(_step_loss(model, batch, 1))
            n += k
    model.train(was)
    return total / max(n, 1)
