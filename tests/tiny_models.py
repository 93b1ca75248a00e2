"""Tiny random base models and a tiny tokenizer, built offline, saved like real ones.

    folder = tiny_model(tmp_path, "llama")        # config.json, model.safetensors, tokenizer
    AutoModelForCausalLM.from_pretrained(folder)  # what the trainer does with a real base

The tokenizer is a byte-level BPE (500 tokens) trained in-process on generated code
and Alpaca text, so any text encodes without unknown tokens and the Alpaca layout takes
few tokens. The models have 2 layers and a hidden size of 32 to 64: a training step
takes milliseconds on a CPU.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    FalconConfig,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from kodcu.prompt import ALPACA_INPUT_PREAMBLE, ALPACA_PREAMBLE

ARCHITECTURES = ["llama", "mistral", "falcon", "gemma3", "qwen2"]
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]

# Crafted rows: short, varied and regular enough that a tiny model's loss falls in a few steps.
_ROWS = [
    ("Write a function that adds two numbers.", "", "def add(a, b):\n    return a + b"),
    ("Reverse a list in Python.", "", "def reverse(xs):\n    return xs[::-1]"),
    ("Square a number.", "", "def square(x):\n    return x * x"),
    ("Return the length of a string.", "", "def length(s):\n    return len(s)"),
    ("Sum a list.", "", "def total(xs):\n    return sum(xs)"),
    ("Return the largest item.", "", "def largest(xs):\n    return max(xs)"),
    ("Fix the bug.", "def inc(x): return x - 1", "def inc(x):\n    return x + 1"),
    ("Upper-case a string.", "", "def upper(s):\n    return s.upper()"),
    ("Check if a number is even.", "", "def is_even(n):\n    return n % 2 == 0"),
    ("Join words with spaces.", "['a', 'b']", "def join(words):\n    return ' '.join(words)"),
    ("Return the first item.", "", "def first(xs):\n    return xs[0]"),
    ("Count the vowels.", "", "def vowels(s):\n    return sum(c in 'aeiou' for c in s)"),
]
TRAIN_ROWS = [{"instruction": i, "input": x, "output": o} for i, x, o in _ROWS]


def write_rows(path: Path, rows: list[dict] | None = None) -> Path:
    """The crafted rows as an Alpaca JSONL file."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows or TRAIN_ROWS))
    return path


def _corpus() -> list[str]:
    # The Alpaca layout, the crafted rows and generated code: the same text on every machine.
    lines = [ALPACA_PREAMBLE, ALPACA_INPUT_PREAMBLE, "### Instruction:", "### Input:"]
    lines += ["### Response:"] + [row["instruction"] + "\n" + row["output"] for row in TRAIN_ROWS]
    for name, op in itertools.product(["add", "sub", "mul", "div", "mod", "pow"], "+-*/%"):
        lines.append(f"def {name}(a, b):\n    return a {op} b\n")
        lines.append(f"for i in range(10):\n    if i {op} 2 == 0:\n        print({name}(i, 2))")
    for word in ["list", "string", "number", "dict", "item", "value", "sort", "reverse"]:
        lines.append(f"Write a function that returns the {word}.\nclass {word.title()}:\n    pass")
    return lines * 3


@functools.cache
def _tokenizer_json() -> str:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    # Like Llama's tokenizer, it adds BOS to every text unless told not to.
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tokenizer.to_str()


def tiny_tokenizer(pad: str | None = None) -> PreTrainedTokenizerFast:
    """The tiny tokenizer with bos <s>, eos </s>, unk <unk> and the given pad token (or none)."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token=pad,
    )
    return tokenizer


def tiny_config(architecture: str, vocab_size: int) -> PretrainedConfig:
    """A 2-layer config of the given architecture, small enough to train in milliseconds."""
    ids = {"vocab_size": vocab_size, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
    # A wide initialisation: with the usual 0.02 the frozen output head gives near-uniform
    # logits that a LoRA update can barely move, so the loss would hardly fall.
    common = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, **ids}
    common["initializer_range"] = 0.3
    if architecture == "llama":
        return LlamaConfig(intermediate_size=64, num_key_value_heads=2, **common)
    if architecture == "mistral":
        return MistralConfig(
            intermediate_size=64, num_key_value_heads=2, sliding_window=64, **common
        )
    if architecture == "falcon":
        # Falcon-7B's layout: multi-query attention, parallel attention and MLP, rotary.
        return FalconConfig(multi_query=True, parallel_attn=True, alibi=False, bias=False, **common)
    if architecture == "gemma3":
        return Gemma3TextConfig(
            intermediate_size=64,
            num_key_value_heads=1,
            head_dim=8,
            sliding_window=16,
            layer_types=["sliding_attention", "full_attention"],
            **common,
        )
    if architecture == "qwen2":
        return Qwen2Config(intermediate_size=64, num_key_value_heads=2, **common)
    raise ValueError(f"unknown architecture {architecture!r}; known: {ARCHITECTURES}")


def tiny_model(folder: Path, architecture: str = "llama", pad: str | None = None) -> Path:
    """Save a random tiny model and the tiny tokenizer into `folder`, as a base model folder."""
    tokenizer = tiny_tokenizer(pad)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(architecture, len(tokenizer)))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
