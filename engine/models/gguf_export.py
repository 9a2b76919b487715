"""A standard transformers folder of a Llama-architecture decoder as one GGUF file, for llama.cpp.

Written with gguf-py (llama.cpp's own Python library) the way llama.cpp's `convert_hf_to_gguf.py`
writes a `LlamaForCausalLM` (its LlamaModel, text model only):
- tensors renamed by gguf's tensor map; q_proj / k_proj rows permuted for llama.cpp's rotary layout;
  1-D tensors, norms and biases in F32, the matrices in the chosen type (a q8_0 row whose length is not a
  multiple of 32 falls back to F16, as there); tied embeddings write no `output.weight` (llama.cpp reuses
  `token_embd`);
- the hparams: context / embedding / feed-forward length, block count, head counts, rope dimension count
  and freq base, RMS epsilon, vocab size (`key_length` only when the head size is not hidden / heads);
- the tokenizer as a `gpt2` byte-level BPE: tokens with llama.cpp's token types, merges, special ids,
  add_bos as the tokenizer really does, and the chat template (gguf.SpecialVocab); the pre-tokenizer
  name from llama.cpp's own check (the hash of the tokens of its test text), else read from
  tokenizer.json when it is plain GPT-2 splitting.

Not handled (a one-line ConfigError says to use --format hf and llama.cpp's converter): other
architectures, rope scaling (llama3 / linear / yarn), an activation other than silu, weights not in
safetensors, tokenizers that are not byte-level BPE (sentencepiece, WordPiece) and pre-tokenizers
llama.cpp's check does not know.
"""

from __future__ import annotations

import json
import re
from hashlib import sha256
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

ARCHITECTURE = "LlamaForCausalLM"
GGUF_TYPES = ("f16", "f32", "q8_0")
USE_HF = "use --format hf (and llama.cpp's convert_hf_to_gguf.py on that folder)"
# llama.cpp's get_vocab_base_pre: the text it tokenizes, and the pre-tokenizers of the hashes we know.
CHKTXT = ("\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
          "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
          "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
          "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL")
KNOWN_PRE = {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm"}  # SmolLM / SmolLM2


def check_convertible(config: dict[str, Any]) -> None:
    """ConfigError unless this converter writes the model `config` (a config.json) describes."""
    arch = (config.get("architectures") or ["?"])[0]
    if arch != ARCHITECTURE:
        raise ConfigError(f"--format gguf is for llama-architecture decoders ({ARCHITECTURE}); this one is "
                          f"{arch}: {USE_HF}")
    rope = _rope(config)
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        raise ConfigError(f"--format gguf: rope scaling {rope_type!r} is not converted here; {USE_HF}")
    if config.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"--format gguf: activation {config['hidden_act']!r} is not llama.cpp's llama (silu); {USE_HF}")


def file_name(model_name: str, gguf_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.") or "model"
    return f"{stem}.{gguf_type}.gguf"


def convert(folder: Path, out: Path, name: str, gguf_type: str = "f16") -> None:
    """Write `folder` (config.json, safetensors, tokenizer) as the GGUF file `out`."""
    import gguf

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    check_convertible(config)
    ftype, qtype = {"f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
                    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
                    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0)}[gguf_type]
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _tensors(writer, Path(folder), config, qtype)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_size_label(gguf.size_label(*writer.get_total_parameter_count()))
    _hparams(writer, config, ftype)
    _vocab(writer, Path(folder), config["vocab_size"])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    return {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}


def _hparams(writer: Any, config: dict[str, Any], ftype: Any) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    if (theta := _rope(config).get("rope_theta", config.get("rope_theta"))) is not None:
        writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(ftype)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _permute(weights: Any, n_head: int) -> Any:
    """llama.cpp's LlamaModel.permute: each head's rotary halves interleaved, as ggml's rope wants."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensors(writer: Any, folder: Path, config: dict[str, Any], qtype: Any) -> None:
    import gguf
    import torch
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    tied = config.get("tie_word_embeddings", False)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ConfigError(f"--format gguf reads safetensors weights; {folder} has none (save the model with "
                          "safe_serialization=True and add it again)")
    for path in shards:
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not a dict
                if name.endswith(".rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
                    continue
                tensor = weights.get_tensor(name)
                data = (tensor if tensor.dtype in (torch.float16, torch.float32) else tensor.float()).numpy()
                if name.endswith(("q_proj.weight", "q_proj.bias")):
                    data = _permute(data, heads)
                elif name.endswith(("k_proj.weight", "k_proj.bias")):
                    data = _permute(data, kv_heads)
                new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if new_name is None:
                    raise ConfigError(f"--format gguf: tensor {name!r} has no llama.cpp name; {USE_HF}")
                _add(writer, new_name, data, qtype)


def _add(writer: Any, name: str, data: Any, qtype: Any) -> None:
    import gguf

    F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16  # noqa: N806
    if data.ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        qtype = F32
    try:
        packed = gguf.quants.quantize(data, qtype)
    except gguf.QuantError:  # a row not a whole number of blocks
        qtype, packed = F16, gguf.quants.quantize(data, F16)
    writer.add_tensor(name, packed, raw_dtype=qtype)


def _vocab(writer: Any, folder: Path, vocab_size: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    spec = json.loads(tokenizer.backend_tokenizer.to_str()) if getattr(tokenizer, "is_fast", False) else {}
    byte_level = _byte_level(spec.get("pre_tokenizer"))
    if (spec.get("model") or {}).get("type") != "BPE" or byte_level is None:
        raise ConfigError(f"--format gguf writes byte-level BPE tokenizers only (a gpt2-style tokenizer.json); {USE_HF}")
    tokens, types = _tokens(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre(tokenizer, spec["pre_tokenizer"]))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    probe = tokenizer("a")["input_ids"]
    special.add_special_token["bos"] = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_space_prefix(bool(byte_level.get("add_prefix_space")))


def _byte_level(pre: dict[str, Any] | None) -> dict[str, Any] | None:
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre or {}]
    return next((s for s in steps or [] if s.get("type") == "ByteLevel"), None)


def _tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """llama.cpp's get_vocab_base: every id below vocab_size, added tokens typed CONTROL or USER_DEFINED."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(reverse) >= vocab_size:
        raise ConfigError(f"--format gguf: the tokenizer has ids up to {max(reverse)}, beyond the model's "
                          f"vocab_size {vocab_size}")
    added, decoder = tokenizer.get_added_vocab(), tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = reverse.get(i)
        kind = gguf.TokenType.NORMAL
        if token is None:
            token, kind = f"[PAD{i}]", gguf.TokenType.UNUSED
        elif token in added:
            if not decoder[i].normalized:
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if decoder[i].special or (token.startswith("<|") and token.endswith("|>")):
                kind = gguf.TokenType.CONTROL
            else:
                kind, token = gguf.TokenType.USER_DEFINED, token.replace("\u2581", " ")
        tokens.append(token)
        types.append(int(kind))
    return tokens, types


def _pre(tokenizer: Any, pre: dict[str, Any]) -> str:
    """`tokenizer.ggml.pre`: llama.cpp's hash check first (so SmolLM2 is `smollm`, as llama.cpp writes it);
    a tokenizer it does not know must split text exactly as GPT-2 does (`gpt2`), or as SmolLM does."""
    chkhsh = sha256(str(tokenizer.encode(CHKTXT)).encode()).hexdigest()
    if chkhsh in KNOWN_PRE:
        return KNOWN_PRE[chkhsh]
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = [(s.get("type"), s.get("use_regex", True) if s.get("type") == "ByteLevel"
              else s.get("individual_digits")) for s in steps]
    if kinds == [("ByteLevel", True)]:
        return "gpt2"
    if kinds == [("Digits", True), ("ByteLevel", True)]:
        return "smollm"
    raise ConfigError(f"--format gguf: the tokenizer's pre-tokenizer ({', '.join(str(k[0]) for k in kinds)}) "
                      f"is not one llama.cpp is known to split the same way; {USE_HF}")
