"""A tiny chat model built in code — the training fake, shipped in the package for tests and demos.

`make_tiny_model(folder)` writes a 2-layer Llama (hidden size 32) with a byte-level BPE tokenizer trained
on a few sentences and a ChatML template like SmolLM2's: a real Hugging Face checkpoint that trains,
saves, reloads and generates in well under a second per step on a CPU, with no download. Its answers
are nonsense; what it proves is the plumbing (masks, packing, checkpoints, adapters, evaluation, API).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["make_tiny_model", "CHAT_TEMPLATE"]

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_SENTENCES = ["Maya lives in Lisbon and plays the cello on Sundays.", "Her sister Rita works at the harbor.",
              "What do you do on weekends? I walk by the river and bake bread.",
              "The coffee was cold but the rain was warm.", "Where do you live? In Lisbon, by the river.",
              "I don't know — my memories don't say."]


def make_tiny_model(folder: str | Path, texts: Sequence[str] = (), *, seed: int = 0, vocab_size: int = 320) -> Path:
    """Write a tiny Llama checkpoint + tokenizer to `folder` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(_SENTENCES + list(texts)) * 5, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                         initializer_range=0.2)  # large enough that frozen embeddings allow a low loss
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
