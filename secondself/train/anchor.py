"""Retention by distillation: the base model's next-token distributions on generic prose, kept while the
adapter learns the person.

Personal fine-tuning at the learning rate that stores facts also moves what the model does with ordinary
text: measured on a held-out person, 6 epochs took closed-book recall from 0.33 (3 epochs) to 0.78 and
made generic prose 10.6% harder to predict (bits per byte). Training on the base model's own answers to
generic prompts (`generic.retention_examples`) anchors its greedy answers only. The anchor here keeps its
whole distribution: before training, the base model (the adapter switched off) reads `ANCHOR_TEXT` once
and its top-k next-token log-probabilities are kept; each training step adds the KL divergence from those
to the tuned model's, on one anchor row, weighted by `TrainConfig.anchor_weight`. The KL is exact over the
partition {each of the top k tokens, all the rest}, so it is 0 exactly when the tuned model matches the base
there, and it never rewards the tuned model for being *better* than its base on the anchor text (which
would hide forgetting elsewhere).

`ANCHOR_TEXT` is generic prose on topics the evaluation's `generic.GENERIC_TEXT` does not cover (that one
is never trained on). torch is imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

__all__ = ["ANCHOR_TEXT", "AnchorRow", "anchor_rows", "anchor_loss"]

TOP_K = 32


class AnchorRow(NamedTuple):
    """One window of anchor text: `input_ids` (the first is a start token) and, for every position but the
    last, the base model's top-k next-token ids and their log-probabilities (over the full vocabulary)."""

    input_ids: Any      # LongTensor [n]
    top_ids: Any        # LongTensor [n - 1, k]
    top_logp: Any       # FloatTensor [n - 1, k]


def anchor_rows(model: Any, tokenizer: Any, texts: Sequence[str], seq_len: int, k: int = TOP_K) -> list[AnchorRow]:
    """The base model's top-k distributions on `texts`, read in windows of `seq_len` tokens.

    `model` may be a peft model: its adapter is switched off while the base reads."""
    import torch

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    windows = []
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        context = start
        for i in range(0, len(ids), seq_len - 1):
            chunk = ids[i:i + seq_len - 1]
            if len(chunk) >= 8:
                windows.append([context, *chunk])
            context = chunk[-1]
    was_training = model.training
    model.eval()
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    out = []
    with torch.no_grad(), off:
        for w in windows:
            x = torch.tensor([w], device=device)
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
            top = logp.topk(k, dim=-1)
            out.append(AnchorRow(x[0], top.indices, top.values))
    model.train(was_training)
    return out


def anchor_loss(model: Any, row: AnchorRow) -> Any:
    """Mean per-position KL(base || tuned) over {top-k tokens, the rest}, differentiable in `model`."""
    import torch

    logits = model(input_ids=row.input_ids[None], use_cache=False).logits[0, :-1].float()
    logq = torch.log_softmax(logits, dim=-1).gather(-1, row.top_ids)
    p = row.top_logp.exp()
    p_rest = (1 - p.sum(-1)).clamp_min(1e-8)
    q_rest = (1 - logq.exp().sum(-1)).clamp_min(1e-8)
    kl = (p * (row.top_logp - logq)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
    return kl.mean()


ANCHOR_TEXT: tuple[str, ...] = (
    "The moon takes about twenty-nine and a half days to pass through its phases. As it travels around the "
    "earth, the half lit by the sun is seen from different angles: first as a thin crescent after the new "
    "moon, then as a half disc at the first quarter, then full, when the moon stands opposite the sun in the "
    "sky. After that the lit part shrinks again. The same face of the moon always points towards the earth, "
    "because the moon turns once on its axis in the time it takes to complete one orbit.",
    "Bread is made from flour, water, salt and a raising agent, usually yeast. When the dough is kneaded, "
    "proteins in the flour form gluten, a stretchy network that traps the gas the yeast gives off as it feeds "
    "on sugars. The dough rises, is shaped and is left to rise a second time before baking. In the oven the "
    "gas expands, the yeast dies, and the outside dries into a crust that browns as sugars and proteins react "
    "with each other.",
    "The first bicycles of the early nineteenth century had no pedals: riders pushed themselves along with "
    "their feet. Pedals attached to the front wheel came later, and to go faster makers built the front wheel "
    "larger and larger, which made the machines hard to mount and dangerous to fall from. The safety bicycle "
    "of the 1880s, with two wheels of equal size and a chain driving the rear one, settled the basic design "
    "that most bicycles still follow today.",
    "Tropical rainforests cover a small part of the land but hold a large share of the species known on "
    "earth. Tall trees form a dense canopy that catches most of the sunlight, so the forest floor is dark and "
    "humid. Many animals never come down to the ground at all. Heavy rain falls through much of the year, and "
    "the soil is often poor, because nutrients are taken up quickly by the plants or washed away.",
    "A vaccine trains the immune system to recognise a germ without causing the disease. It may contain a "
    "weakened or killed form of the germ, a piece of it, or instructions for the body's cells to make a "
    "harmless piece for a short time. The immune system responds by producing antibodies and memory cells. "
    "If the real germ arrives later, the body can respond much faster, often before the person feels ill.",
    "Chess is played by two people on a board of sixty-four squares. Each player starts with sixteen pieces: "
    "a king, a queen, two rooks, two bishops, two knights and eight pawns. The pieces move in different ways, "
    "and a player wins by trapping the opposing king so that it cannot escape capture, which is called "
    "checkmate. A game can also end in a draw, for example when neither side has enough pieces left to win.",
    "Roman engineers built aqueducts to bring fresh water into their cities from springs and rivers many "
    "miles away. Most of an aqueduct ran underground or along the surface in covered channels, sloping "
    "gently downhill so that gravity kept the water moving. Where the route crossed a valley the channel was "
    "carried on rows of stone arches, and some of those bridges still stand. In the city the water filled "
    "public fountains, baths and the homes of the wealthy.",
    "Dear Sam, thank you for the book you sent for my birthday. I started it on the train this morning and "
    "nearly missed my stop. The weather here has finally turned warm, and the garden is full of tulips. We "
    "are planning a small picnic by the river next Sunday if the rain stays away. Let me know whether you "
    "can come, and bring your sister if she is free. With love, Anna.",
    "To make a simple vegetable soup, chop an onion, two carrots and a stick of celery, and soften them in a "
    "little oil for ten minutes. Add a diced potato, a tin of tomatoes and a litre of stock, then simmer until "
    "the vegetables are tender. Season with salt and pepper, stir in a handful of chopped parsley, and serve "
    "with warm bread. The soup keeps well in the fridge for two or three days.",
    "Glaciers are rivers of ice that move slowly downhill under their own weight. They form where more snow "
    "falls each winter than melts each summer, so that the snow piles up and is pressed into ice over many "
    "years. As a glacier moves it scrapes the rock beneath it, carving deep valleys shaped like the letter U "
    "and carrying stones far from where they started. Many glaciers around the world have been shrinking.",
    "Electricity reaches homes through a network of power stations, transmission lines and substations. "
    "Power stations produce electricity at a moderate voltage, transformers raise it very high so that it "
    "can travel long distances with little loss, and other transformers lower it again before it enters "
    "houses. Inside the home, wires carry the current to sockets and lights, and a fuse or circuit breaker "
    "cuts the supply if too much current flows.",
    "Coffee grows on shrubs in warm, wet regions near the equator. The fruit, called a cherry, usually holds "
    "two seeds, which are the coffee beans. After picking, the fruit is removed and the beans are dried, then "
    "shipped to roasters. Roasting turns the green beans brown and creates the flavours people know, and "
    "lighter roasts keep more of the bean's original taste while darker roasts taste more bitter.",
    "The teacher asked the class a question. \"Why do leaves change colour in autumn?\" A girl near the "
    "window raised her hand. \"Because the tree stops making the green stuff,\" she said, \"and then you can "
    "see the yellow and orange that were there all along.\" The teacher smiled and wrote the word "
    "chlorophyll on the board, and explained that the red colours are made fresh in the autumn.",
    "A map shows a large area on a small sheet, so every map leaves things out. The scale tells how much "
    "smaller the map is than the land it shows, and a legend explains the symbols for roads, rivers, forests "
    "and towns. Lines of equal height, called contour lines, show hills and valleys: where they lie close "
    "together the ground is steep. A compass and a map together let a walker find their way.",
)
