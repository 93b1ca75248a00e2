"""The trainer's configuration: nested dataclasses, read from YAML, with command-line overrides.

    config = load_config("trainer/configs/qwen2.5-coder-1.5b.yaml", ["training.max_steps=20"])
    config.lora.r, config.training.output_dir, to_dict(config)

The loader is generic over nested dataclasses: every key of the YAML must be a field,
and every value must have the field's type, or `ConfigError` names the file and the
dotted field (`training.learning_rate: expected a number, got 'fast'`). Overrides are
dotted `key=value` pairs whose values are parsed as YAML scalars (`lora.r=8`,
`data.packing=true`, `data.sources.0.limit=100`).

Relative paths (data files, `training.output_dir`) are used as written, so they are
relative to the directory the trainer is started from, not to the YAML file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from trainer.data import SourceConfig
from trainer.hygiene import HygieneConfig


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the field."""


@dataclass
class ModelConfig:
    base: str = ""
    """The base model: a Hugging Face Hub id (`Qwen/Qwen2.5-Coder-1.5B`) or a local model folder."""
    revision: str | None = None
    """A Hub branch, tag or commit hash; None takes the default branch."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights and compute dtype. auto: bfloat16 on a CUDA GPU that supports it, else
    float16 on CUDA, float32 on CPU and MPS."""
    quantization: Literal["none", "4bit"] = "none"
    """4bit loads the base in NF4 through bitsandbytes (QLoRA); needs a CUDA GPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""
    attn_implementation: str | None = None
    """sdpa, eager or flash_attention_2; None takes transformers' default for the model,
    except that packed rows on a CPU get attention one example at a time (the same
    result as sdpa with the packing mask, without the masked work; packed_attention.py)."""


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    """The instruction data: local files or Hub data sets, each with its format and fields."""
    on_bad_row: Literal["error", "skip"] = "error"
    """error stops at the first malformed row; skip leaves such rows out and counts them."""
    validation_fraction: float = 0.05
    """Share of the rows held out to measure the eval loss; 0 trains on everything."""
    validation_unit: Literal["source_row", "example"] = "source_row"
    """What is held out whole. source_row: all examples made from one row of one file (an
    MBPP task's chat, completion and function layouts) go to the same side, so the eval
    loss is on rows not trained on in any layout, and validation_fraction counts source
    rows; example: each example on its own, so another layout of a held-out row may be
    trained on and the eval loss rewards memorising it."""
    max_length: int = 1024
    """Longest row in tokens. Longer rows lose the end of their response."""
    packing: bool = False
    """Put several examples into each row of max_length tokens (attention stays within each)."""
    packing_strategy: Literal["best_fit", "in_order"] = "best_fit"
    """best_fit: longest examples first, each into the fullest row that holds it (rows about
    95% full, fewest rows); in_order: rows filled in data order (more, emptier rows, so more
    optimizer steps per epoch: how Kodcu packed before best_fit)."""
    template: Literal["alpaca", "model"] = "alpaca"
    """alpaca: Kodcu's Alpaca chat template; model: the base tokenizer's own chat template."""


@dataclass
class LoraConfig:
    r: int = 16
    """Rank of the LoRA update matrices."""
    alpha: int = 32
    """LoRA scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str | list[str] = "all-linear"
    """Layers that get adapters: all-linear (every linear layer except the output head)
    or a list of module names such as [q_proj, v_proj]."""


@dataclass
class TrainingConfig:
    output_dir: str = "adapter"
    """Where the adapter, checkpoints/, runs/ (TensorBoard) and loss.png go."""
    epochs: float = 1.0
    """Passes over the training rows (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps; None trains for `epochs`."""
    batch_size: int = 4
    """Rows per device per forward pass."""
    gradient_accumulation_steps: int = 4
    """Forward passes per optimizer step: the effective batch is batch_size x this x devices."""
    learning_rate: float = 2e-4
    """Peak learning rate, reached after the warm-up."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming the learning rate up from 0."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after the warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    eval_steps: int = 100
    """Compute the validation loss every this many steps."""
    save_steps: int = 100
    """Save a checkpoint (for --resume) every this many steps."""
    logging_steps: int = 10
    """Log the training loss and learning rate every this many steps."""
    save_total_limit: int | None = 3
    """Keep only the newest this many checkpoints; None keeps all."""
    seed: int = 42
    """Seed for the validation split, LoRA initialisation, dropout and data order."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """auto: CUDA if present, else MPS, else CPU. Ignored under torchrun/accelerate."""
    labelled_loss: bool = True
    """Run the output layer and the loss only at positions that carry loss, a chunk at a
    time (trainer/loss.py): the same loss up to float rounding, with far less arithmetic
    and no full logits in memory. false: the model's own loss over every position."""


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model and how to load it."""
    data: DataConfig = field(default_factory=DataConfig)
    """Instruction data, its formatting and tokenization."""
    hygiene: HygieneConfig = field(default_factory=HygieneConfig)
    """Quality filters, deduplication and decontamination before training."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """The LoRA adapter's shape."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation, evaluation, checkpoints and output."""


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config, apply dotted `key=value` overrides, and check every field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections, got {_kind(raw)}")
    overridden: dict[str, str] = {}
    for item in overrides:
        key, value = apply_override(raw, item)
        overridden[key] = item
    try:
        config = from_dict(TrainConfig, raw)
        validate(config)
    except _FieldError as error:
        # Name where the bad value came from: the command line or the file.
        origin = next(
            (f"override {item!r}" for key, item in overridden.items() if _within(error.key, key)),
            str(path),
        )
        raise ConfigError(f"{origin}: {error.key}: {error.message}") from None
    return config


def apply_override(raw: dict, item: str) -> tuple[str, Any]:
    """Set `a.b.c=value` in a nested dict (list items by index: `data.sources.0.limit=5`)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, like training.max_steps=20")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_index(part, node, item, where)]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {item!r}: {where} is not a section")
    if isinstance(node, list):
        node[_index(parts[-1], node, item, key)] = value
    else:
        node[parts[-1]] = value
    return key, value


def to_dict(config: Any) -> dict:
    """The config as plain data (for kodcu.json and logs)."""
    return dataclasses.asdict(config)


def validate(config: TrainConfig) -> None:
    """Checks across fields that types alone cannot express."""
    checks = [
        ("model.base", bool(config.model.base.strip()), "is required: a Hub id or a model folder"),
        ("data.sources", bool(config.data.sources), "is required: at least one data source"),
        ("data.max_length", config.data.max_length >= 16, "must be at least 16 tokens"),
        (
            "data.validation_fraction",
            0.0 <= config.data.validation_fraction < 1.0,
            "must be at least 0 and below 1",
        ),
        ("lora.r", config.lora.r > 0, "must be positive"),
        ("lora.alpha", config.lora.alpha > 0, "must be positive"),
        ("lora.dropout", 0.0 <= config.lora.dropout < 1.0, "must be at least 0 and below 1"),
        ("training.batch_size", config.training.batch_size > 0, "must be positive"),
        (
            "training.gradient_accumulation_steps",
            config.training.gradient_accumulation_steps > 0,
            "must be positive",
        ),
        ("training.learning_rate", config.training.learning_rate > 0, "must be positive"),
        ("training.warmup_ratio", 0.0 <= config.training.warmup_ratio < 1.0, "must be in [0, 1)"),
        ("training.epochs", config.training.epochs > 0, "must be positive"),
        (
            "training.max_steps",
            config.training.max_steps is None or config.training.max_steps > 0,
            "must be positive (or null to train for training.epochs)",
        ),
        ("training.eval_steps", config.training.eval_steps > 0, "must be positive"),
        ("training.save_steps", config.training.save_steps > 0, "must be positive"),
        ("training.logging_steps", config.training.logging_steps > 0, "must be positive"),
        ("training.output_dir", bool(config.training.output_dir.strip()), "is required"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise _FieldError(key, message)


class _FieldError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from nested plain data, checking each value against its field type."""
    if not isinstance(data, dict):
        raise _FieldError(
            prefix.rstrip(".") or "(top level)", f"expected a mapping, got {_kind(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(fields)
            raise _FieldError(dotted, f"unknown key (known keys here: {known})")
        values[key] = _convert(value, hints[key], dotted)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in values:
            raise _FieldError(f"{prefix}{name}", "is required")
    return cls(**values)


def _convert(value: Any, hint: Any, dotted: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, {} if value is None else value, f"{dotted}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(value, options[0], dotted)
        for arg in options:
            try:
                return _convert(value, arg, dotted)
            except _FieldError:
                continue
        wanted = " or ".join(_describe(a) for a in options)
        raise _FieldError(dotted, f"expected {wanted}, got {_show(value)}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        raise _FieldError(dotted, f"expected one of {choices}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise _FieldError(dotted, f"expected a list, got {_show(value)}")
        return [_convert(item, args[0], f"{dotted}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _FieldError(dotted, f"expected a mapping, got {_show(value)}")
        return {
            _convert(k, args[0], dotted): _convert(v, args[1], f"{dotted}.{k}")
            for k, v in value.items()
        }
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _FieldError(dotted, f"expected a list, got {_show(value)}")
        return tuple(_convert(item, args[0], f"{dotted}.{i}") for i, item in enumerate(value))
    return _scalar(value, hint, dotted)


def _scalar(value: Any, hint: Any, dotted: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _FieldError(dotted, f"expected true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _FieldError(dotted, f"expected an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads `2e-4` (no dot) as a string; accept any text that is a number.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _FieldError(dotted, f"expected a number, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise _FieldError(dotted, f"expected a string, got {_show(value)}")
    if hint is Path:
        if isinstance(value, str):
            return Path(value)
        raise _FieldError(dotted, f"expected a path, got {_show(value)}")
    return value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(origin, {list: "a list", dict: "a mapping"}.get(origin, str(hint)))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float, bool, type(None))) else _kind(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _within(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _index(part: str, items: list, item: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"override {item!r}: {where}: no list item {part} ({len(items)} items)")
    return int(part)
