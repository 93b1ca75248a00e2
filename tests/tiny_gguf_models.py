"""Tiny random models that llama.cpp's converter accepts offline, and LoRA adapters over them.

    base = build_tiny_model("llama", tmp_path / "base")          # config, weights, tokenizer
    adapter = build_tiny_adapter(base, tmp_path / "adapter")      # PEFT files + kodcu.json
    plain = build_tiny_adapter(base, tmp_path / "peft", kodcu=False)

The models have a hidden size of 64 and 2 layers. Their tokenizer is a SentencePiece
model (BPE with byte fallback, 400 pieces) trained here on generated code and the Alpaca
layout, saved as `tokenizer.model` (what the converter reads) next to the Hugging Face
files (what transformers reads), so both see the same vocabulary.

Which architectures convert:
- llama, mistral, gemma3: SentencePiece, as the real models use.
- qwen2: the real Qwen2 uses a byte-level BPE `tokenizer.json`, but the converter's Qwen2
  path reads a `tokenizer.model` first, so the tiny qwen2 model carries a SentencePiece one.
  transformers, though, loads any qwen2 folder's tokenizer as its byte-level Qwen2Tokenizer,
  so for this model transformers and llama.cpp split text differently: compare the two on
  the same token ids, not the same text.
- falcon: the converter reads only a BPE `tokenizer.json` for Falcon and recognises its
  pre-tokenizer by the sha256 of the token ids it gives for a fixed text
  (`get_vocab_base_pre`). Those ids depend on the whole vocabulary and merges, so no
  tokenizer trained here can match a known model's hash; only a copy of a real model's
  tokenizer can. `build_tiny_model("falcon", ...)` therefore builds a model with a tiny
  byte-level BPE tokenizer that the converter refuses: useful for that error, not for GGUF.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import shutil
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    FalconConfig,
    Gemma3TextConfig,
    GemmaTokenizer,
    LlamaConfig,
    LlamaTokenizer,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
)

from kodcu.prompt import ALPACA_CHAT_TEMPLATE, ALPACA_INPUT_PREAMBLE, ALPACA_PREAMBLE

GGUF_ARCHITECTURES = ["llama", "mistral", "gemma3", "qwen2"]
"""Architectures whose tiny model llama.cpp's converter turns into a GGUF."""
ARCHITECTURES = [*GGUF_ARCHITECTURES, "falcon"]
"""Every architecture build_tiny_model knows (falcon: see the module docstring)."""
VOCAB_SIZE = 400
LORA_R = 4
LORA_ALPHA = 8


def code_lines() -> list[str]:
    """A few hundred lines of code and Alpaca text: the same on every machine."""
    lines = [ALPACA_PREAMBLE, ALPACA_INPUT_PREAMBLE, "### Instruction:", "### Input:"]
    lines.append("### Response:")
    names = ["add", "sub", "mul", "div", "mod", "scale", "merge", "total"]
    for name, op in itertools.product(names, ["+", "-", "*", "/", "%"]):
        lines.append(f"def {name}(a, b):\n    return a {op} b")
        lines.append(f"for i in range(10):\n    if i {op} 2 == 0:\n        print({name}(i, 2))")
    for word in ["list", "string", "number", "dict", "item", "value", "sort", "reverse"]:
        lines.append(f"Write a function that returns the {word}.")
        lines.append(f"class {word.title()}:\n    def __init__(self, {word}):\n        pass")
        lines.append(f"# Sort the {word} and return it.\nresult = sorted({word}s, key=len)")
    return lines


@functools.cache
def _sentencepiece_model(gemma: bool) -> bytes:
    import sentencepiece

    # Gemma's ids and names (pad 0, eos 1, bos 2, unk 3; no space prefix), else Llama's.
    if gemma:
        ids = {"pad_id": 0, "eos_id": 1, "bos_id": 2, "unk_id": 3}
        pieces = {"pad_piece": "<pad>", "eos_piece": "<eos>", "bos_piece": "<bos>"}
    else:
        ids = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
        pieces = {}
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(code_lines()),
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=not gemma,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        minloglevel=2,
        **ids,
        **pieces,
    )
    return model.getvalue()


def _save_tokenizer(folder: Path, gemma: bool) -> int:
    """tokenizer.model plus the Hugging Face files built from it; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(_sentencepiece_model(gemma))
    if gemma:
        tokenizer = GemmaTokenizer.from_pretrained(folder, add_bos_token=True)
    else:
        tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def _save_bpe_tokenizer(folder: Path) -> int:
    # A byte-level BPE like Falcon's, which the converter cannot recognise (module docstring).
    from tests.tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def tiny_config(arch: str, vocab_size: int) -> PretrainedConfig:
    """A 2-layer config with hidden size 64 of the given architecture."""
    common = {"vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2}
    common |= {"num_attention_heads": 4, "initializer_range": 0.2}
    llama_ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
    if arch == "llama":
        return LlamaConfig(intermediate_size=128, num_key_value_heads=2, **common, **llama_ids)
    if arch == "mistral":
        return MistralConfig(
            intermediate_size=128, num_key_value_heads=2, sliding_window=64, **common, **llama_ids
        )
    if arch == "qwen2":
        return Qwen2Config(intermediate_size=128, num_key_value_heads=2, **common, **llama_ids)
    if arch == "gemma3":
        return Gemma3TextConfig(
            intermediate_size=128,
            num_key_value_heads=1,
            head_dim=16,
            # What llama.cpp computes for Gemma 3: queries scaled by head_dim (the real
            # models have query_pre_attn_scalar == head_dim), and every sixth layer full
            # attention, so both layers of a 2-layer model slide.
            query_pre_attn_scalar=16,
            sliding_window=16,
            layer_types=["sliding_attention", "sliding_attention"],
            bos_token_id=2,
            eos_token_id=1,
            pad_token_id=0,
            **common,
        )
    if arch == "falcon":
        # Falcon-7B's layout: one key/value head shared by all query heads.
        falcon = {"multi_query": True, "num_kv_heads": 1, "parallel_attn": True}
        return FalconConfig(alibi=False, bias=False, **falcon, **common, **llama_ids)
    raise ValueError(f"unknown architecture {arch!r}; known: {ARCHITECTURES}")


def build_tiny_model(arch: str, folder: Path) -> Path:
    """Save a random tiny model of `arch` with its tokenizer into `folder`; returns `folder`.

    Weights are float32 and seeded, so the same call gives the same model.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if arch == "falcon":
        vocab_size = _save_bpe_tokenizer(folder)
    else:
        vocab_size = _save_tokenizer(folder, gemma=arch == "gemma3")
    # transformers may load the tokenizer as another class than the one that saved it (a
    # qwen2 folder always gets Qwen2Tokenizer, which adds <|endoftext|>): give every token
    # it will see an embedding row.
    tiny_config(arch, vocab_size).save_pretrained(folder)
    vocab_size = max(vocab_size, len(AutoTokenizer.from_pretrained(folder)))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size), dtype=torch.float32)
    model.save_pretrained(folder)
    return folder


def build_tiny_adapter(base_dir: Path, folder: Path, kodcu: bool = True) -> Path:
    """A LoRA adapter (r=4, alpha=8, every linear layer) with random non-zero A and B.

    Both LoRA matrices are random, so merging changes the model's outputs. With
    `kodcu=True` the folder is laid out like `kodcu-train`'s output: the PEFT files, the
    base tokenizer with Kodcu's Alpaca chat template, and `kodcu.json` naming the base by
    path and sha256. With `kodcu=False` it holds the PEFT files only (adapter_config.json names the
    base in `base_model_name_or_path`).
    """
    from peft import LoraConfig, get_peft_model

    from trainer.output import base_model_record, write_json

    base_dir, folder = Path(base_dir), Path(folder)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(1)
    model = get_peft_model(base, config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if kodcu:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
        tokenizer.save_pretrained(folder)
        if (base_dir / "tokenizer.model").is_file():
            shutil.copy2(base_dir / "tokenizer.model", folder / "tokenizer.model")
        record = {
            "base_model": base_model_record(str(base_dir), None, None),
            "prompt_template": ALPACA_CHAT_TEMPLATE,
            "config": {"model": {"base": str(base_dir.resolve())}, "lora": config.to_dict()},
            "data": {},
            "metrics": {},
            "versions": {},
        }
        write_json(folder / "kodcu.json", json.loads(json.dumps(record, default=str)))
    return folder
