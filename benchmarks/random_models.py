"""Randomly initialised models with real models' shapes, for benchmarks of size.

    path = random_model("gemma3-1b", tokenizer_dir, out_dir)

Cost (time, memory, file size) depends on a model's shape, not on its values, and a
machine without network cannot fetch real weights; so the benchmarks build these.
The shapes are copied from the models' published config.json files (text part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    "gemma3-270m": dict(
        model_type="gemma3_text", hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
    ),
    "gemma3-1b": dict(
        model_type="gemma3_text", hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
    ),
    "gemma3-4b": dict(
        model_type="gemma3_text", hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=262144,
    ),
}  # fmt: skip


def random_model(name: str, tokenizer_dir: str | Path, out: Path) -> str:
    """Save a model of `name`'s shape with random bf16 weights and a real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    shape = dict(RANDOM_SHAPES[name])
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return str(out)
