"""Randomly initialised models with real models' shapes, for benchmarks of size.

    path = random_model("gemma3-1b", tokenizer_dir, out_dir)

Cost (time, memory, file size) depends on a model's shape, not on its values, and a
machine without network cannot fetch real weights; so the benchmarks build these.
The shapes are copied from the models' published config.json files (text part).

A shape whose vocabulary is smaller than the given tokenizer's (Code Llama's 32,016
tokens against Gemma's 262,144) gets a byte-level BPE tokenizer of its own size instead,
trained in seconds on Python's standard library: token ids must fit the embedding, and
code tokenizes into a similar number of tokens.
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
    "codellama-7b": dict(
        model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=32, vocab_size=32016,
        max_position_embeddings=16384, rope_theta=1_000_000.0,
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
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tokenizer) > config.vocab_size:
        tokenizer = python_bpe_tokenizer(config.vocab_size)
    tokenizer.save_pretrained(out)
    return str(out)


def python_bpe_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE tokenizer of `vocab_size` tokens, learnt from the standard library."""
    import sysconfig

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in files]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
