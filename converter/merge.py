"""Merge a LoRA adapter into its base model, in 16 (or 32) bit, as a Hugging Face folder.

    merged = merge_adapter(Path("runs/my-adapter"), Path("merged/"), dtype="float16")

The base and the LoRA settings come from the adapter's own files: `kodcu.json`'s
`base_model` (a folder, or a Hub id and revision) when present, else
`adapter_config.json`'s `base_model_name_or_path`. The base is always loaded from its
original weights, so a QLoRA adapter (trained over a 4-bit base) merges into the 16-bit
model; a base checkpoint that is itself stored quantized is refused, because merging
into rounded 4-bit weights and saving them as 16-bit gives a different model than the
one the adapter was trained against.

The tokenizer files and chat template are copied from the adapter folder (the trainer
saves the template it trained with there), with the base's `tokenizer.model` added when
the adapter lacks it: llama.cpp's converter reads SentencePiece vocabularies from it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

from converter import ConvertError
from converter.safety import say
from converter.source import ADAPTER_CONFIG, CONFIG, KODCU_JSON, read_json
from kodcu.provenance import folder_fingerprint

DTYPES = ("float16", "bfloat16", "float32")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
CHAT_TEMPLATE_JINJA = "chat_template.jinja"


def base_reference(adapter_dir: Path) -> tuple[str, str | None]:
    """The base model (folder or Hub id) and revision the adapter names, as written."""
    adapter_dir = Path(adapter_dir)
    kodcu_json = adapter_dir / KODCU_JSON
    if kodcu_json.is_file():
        base = read_json(kodcu_json).get("base_model")
        if isinstance(base, dict) and (base.get("path") or base.get("id")):
            return str(base.get("path") or base.get("id")), base.get("revision")
        if isinstance(base, str) and base:
            return base, None
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise ConvertError(f"{adapter_dir}: no {ADAPTER_CONFIG}; this is not a PEFT adapter")
    config = read_json(config_path)
    base = config.get("base_model_name_or_path")
    if not base:
        raise ConvertError(
            f"{config_path}: base_model_name_or_path is empty, so the base model is unknown; "
            "set it to the base model's folder or Hub id"
        )
    return str(base), config.get("revision")


def _is_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) <= 2
        and all(parts)
        and not name.startswith((".", "~", os.sep))
        and all(part.replace("-", "").replace("_", "").replace(".", "").isalnum() for part in parts)
    )


def resolve_base(adapter_dir: Path) -> str:
    """The base model path or Hub id the adapter names; ConvertError if it cannot be had.

    A folder must exist. A Hub id must be in the local Hugging Face cache when offline
    (HF_HUB_OFFLINE=1); online it is downloaded when the merge loads it.
    """
    base, revision = base_reference(adapter_dir)
    where = KODCU_JSON if (Path(adapter_dir) / KODCU_JSON).is_file() else ADAPTER_CONFIG
    folder = Path(base).expanduser()
    if folder.is_dir():
        if not (folder / CONFIG).is_file():
            raise ConvertError(
                f"{adapter_dir}: its base model folder {folder} (from {where}) has no "
                "config.json; point it at the Hugging Face folder of the base model"
            )
        return str(folder.resolve())
    if not _looks_like_hub_id(base):
        raise ConvertError(
            f"{adapter_dir}: its base model folder {base} (from {where}) does not exist; "
            f"copy the base model there or edit the base in {Path(adapter_dir) / where}"
        )
    if _is_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(base, CONFIG, revision=revision)
        if not isinstance(cached, str):
            raise ConvertError(
                f"{adapter_dir}: its base model {base}"
                f"{f' (revision {revision})' if revision else ''} (from {where}) is neither a "
                "folder here nor in the local Hugging Face cache, and the Hub is offline "
                "(HF_HUB_OFFLINE); download it once online, or point the adapter at a local copy"
            )
    return base


def base_model_dir(adapter_dir: Path) -> Path:
    """A local folder with the base model's files: the folder itself, or its Hub snapshot."""
    base = resolve_base(adapter_dir)
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    _, revision = base_reference(adapter_dir)
    try:
        return Path(snapshot_download(base, revision=revision, local_files_only=_is_offline()))
    except Exception as error:  # the Hub client raises many kinds; all mean "not available"
        raise ConvertError(f"{adapter_dir}: cannot get its base model {base}: {error}") from None


def base_fingerprint(adapter_dir: Path, base_dir: Path) -> bool | None:
    """Whether the base folder still has the sha256 kodcu.json recorded (None: nothing recorded)."""
    kodcu_json = Path(adapter_dir) / KODCU_JSON
    if not kodcu_json.is_file():
        return None
    recorded = read_json(kodcu_json).get("base_model")
    if not isinstance(recorded, dict) or not recorded.get("sha256"):
        return None
    return folder_fingerprint(base_dir)["sha256"] == recorded["sha256"]


def check_not_quantized(base_dir: Path, adapter_dir: Path) -> None:
    """Refuse a base checkpoint stored quantized (config.json has quantization_config)."""
    config = read_json(base_dir / CONFIG)
    quantization = config.get("quantization_config")
    if quantization:
        method = quantization.get("quant_method", "?") if isinstance(quantization, dict) else "?"
        bits = (
            " 4-bit" if isinstance(quantization, dict) and quantization.get("load_in_4bit") else ""
        )
        raise ConvertError(
            f"{base_dir / CONFIG}: the base model of {adapter_dir} is stored quantized "
            f"({method}{bits}); merging needs its original 16/32-bit weights: point the "
            "adapter's base_model at the unquantized model (a QLoRA adapter merges into it "
            "as it is)"
        )


def _copy_tokenizer(adapter_dir: Path, base_dir: Path, out_dir: Path) -> None:
    has_own = any((adapter_dir / name).is_file() for name in TOKENIZER_FILES[:3])
    source = adapter_dir if has_own else base_dir
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out_dir / name)
    # The trainer's tokenizer files come from transformers, which does not save the
    # SentencePiece model; llama.cpp's converter needs it for Llama/Mistral/Gemma vocabularies.
    if not (out_dir / "tokenizer.model").is_file() and (base_dir / "tokenizer.model").is_file():
        shutil.copy2(base_dir / "tokenizer.model", out_dir / "tokenizer.model")


def _has_chat_template(folder: Path) -> bool:
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file() and read_json(config_path).get("chat_template"):
        return True
    return (folder / CHAT_TEMPLATE_JINJA).is_file() or (folder / "chat_template.json").is_file()


def _add_template_from_record(adapter_dir: Path, out_dir: Path) -> None:
    # kodcu.json keeps the template the adapter was trained with; it must not be lost.
    kodcu_json = adapter_dir / KODCU_JSON
    if _has_chat_template(out_dir) or not kodcu_json.is_file():
        return
    template = read_json(kodcu_json).get("prompt_template")
    if isinstance(template, str) and template:
        (out_dir / CHAT_TEMPLATE_JINJA).write_text(template, encoding="utf-8")


def _first_reason(error: Exception) -> str:
    # PyTorch lists every mismatched tensor under a generic first line; keep one example.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    mismatches = [line for line in lines if line.startswith("size mismatch")]
    if mismatches:
        return f"{len(mismatches)} tensor shape(s) differ, e.g. {mismatches[0]}"
    reason = lines[0] if lines else type(error).__name__
    if reason.startswith("Target modules") and "not found" in reason:
        names = sorted(re.findall(r"'([^']+)'", reason.split("not found")[0]))
        example = f" (e.g. {names[0]})" if names else ""
        return f"its {len(names)} target module(s){example} are not found in the base"
    return reason if len(reason) <= 300 else reason[:300] + "..."


def load_adapter(base_model: Any, adapter_dir: Path, base: str) -> Any:
    """The base with the adapter applied, unmerged; a clear error when the two do not fit."""
    from peft import PeftConfig, PeftModel

    config = PeftConfig.from_pretrained(adapter_dir)
    config.inference_mode = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = PeftModel(base_model, config)
            result = model.load_adapter(adapter_dir, adapter_name="default")
    except (RuntimeError, ValueError, KeyError) as error:
        raise ConvertError(
            f"adapter {adapter_dir} does not fit base model {base}: {_first_reason(error)}; the "
            "adapter was trained on another model: point it at the right base"
        ) from None
    unused = [key for key in result.unexpected_keys if "lora_" in key or "modules_to_save" in key]
    missing = list(result.missing_keys)
    if unused or missing:
        names = (unused or missing)[:3]
        raise ConvertError(
            f"adapter {adapter_dir} does not fit base model {base}: "
            f"{len(unused)} adapter tensor(s) match no module of the base and {len(missing)} "
            f"adapted module(s) got no weights (e.g. {', '.join(names)}); the adapter was "
            "trained on another model: point it at the right base"
        )
    return model


def merge_adapter(adapter_dir: Path, out_dir: Path, dtype: str = "float16") -> Path:
    """Merge the adapter into its base in `dtype` and save model + tokenizer in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ConvertError(f"merge dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base = resolve_base(adapter_dir)
    base_dir = base_model_dir(adapter_dir)
    check_not_quantized(base_dir, adapter_dir)
    if base_fingerprint(adapter_dir, base_dir) is False:
        say(
            f"warning: {base_dir} is not the base the adapter was trained on byte for byte "
            "(its sha256 differs from kodcu.json's); merging anyway"
        )
    try:
        base_model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError) as error:
        raise ConvertError(f"base model {base}: cannot load it ({error})") from None
    merged = load_adapter(base_model, adapter_dir, base).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    _copy_tokenizer(adapter_dir, base_dir, out_dir)
    _add_template_from_record(adapter_dir, out_dir)
    check_vocab_fits(out_dir)
    return out_dir


def check_vocab_fits(model_dir: Path) -> None:
    """The tokenizer must not have more tokens than the model has embedding rows."""
    from transformers import AutoTokenizer

    vocab_size = json.loads((model_dir / CONFIG).read_text()).get("vocab_size")
    if vocab_size is None:
        text_config = json.loads((model_dir / CONFIG).read_text()).get("text_config") or {}
        vocab_size = text_config.get("vocab_size")
    tokens = len(AutoTokenizer.from_pretrained(model_dir))
    if vocab_size is not None and tokens > vocab_size:
        raise ConvertError(
            f"{model_dir}: the tokenizer has {tokens} tokens but the model has {vocab_size} "
            "embedding rows; tokens were added in training without resizing the embeddings "
            "(resize them and save embed_tokens/lm_head with the adapter)"
        )
