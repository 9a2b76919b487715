"""A tiny Llama (2 layers, 32 wide) with a byte-level BPE tokenizer and a ChatML template, built from a
config in a second (no download); its tokenizer is trained on the corpus the test needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SUMS_CORPUS = (["Task: calculate sums. Reply with a bare number. No other words. Calculate 12 + 7. 19 system user "
                "assistant"] * 20 + [" ".join(str(i) for i in range(100))] * 5)


def tokenizer(corpus: Sequence[str], chat_template: str | None = CHATML, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = chat_template
    return tok


def build_tiny_decoder(folder: Path, corpus: Sequence[str] = SUMS_CORPUS, *, chat_template: str | None = CHATML,
                       vocab_size: int = 300, max_positions: int = 512, init: float | None = None,
                       poison: bool = False) -> str:
    """The model and tokenizer saved in `folder`; `init`: the weights' std (a larger one lets a small
    adapter move the logits); `poison`: a NaN weight, for failure tests."""
    tok = tokenizer(corpus, chat_template, vocab_size)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         tie_word_embeddings=False, **({"initializer_range": init} if init is not None else {}))
    model = LlamaForCausalLM(config)
    if poison:
        with torch.no_grad():
            model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def tiny_decoder(folder: Path) -> str:
    """The arithmetic-corpus model most tests use."""
    return build_tiny_decoder(folder)
