"""Cheap checks on a GGUF file before llama.cpp tries to load it.

    check_gguf_file(Path("model.gguf"))                        # raises ModelFileError
    check_adapter_file(Path("lora.gguf"), Path("model.gguf"))  # an adapter for that model

The desktop runs these in the app's own process and kodcu-eval before it loads a
model, so they only look at the first bytes: anything deeper (tensor layout,
architecture) is left to llama.cpp, in the desktop's engine child process, where
a crash cannot take the app down.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
# magic (4) + version (u32) + tensor count (u64) + metadata key/value count (u64)
GGUF_HEADER_SIZE = 24


class ModelFileError(ValueError):
    """A model file that cannot be used, with a message meant for the user."""

    def __init__(self, path: Path, problem: str, hint: str) -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        super().__init__(f"{path}: {problem}. {hint}")


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable / len(text) > 0.95


def check_gguf_file(path: Path) -> None:
    """Raise ModelFileError when `path` is clearly not a loadable GGUF model."""
    choose = "Choose a .gguf model file (for example one downloaded from the Hugging Face Hub)."
    if not path.exists():
        raise ModelFileError(path, "the file does not exist", choose)
    if path.is_dir():
        raise ModelFileError(path, "this is a folder, not a model file", choose)
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ModelFileError(path, f"the file cannot be read ({exc.strerror})", choose) from exc
    if len(head) == 0:
        raise ModelFileError(path, "the file is empty", "Download or copy the model again.")
    if not head.startswith(GGUF_MAGIC):
        if _looks_like_text(head):
            problem = "this is a text file, not a GGUF model"
        else:
            problem = "this is not a GGUF model (it does not start with the GGUF signature)"
        raise ModelFileError(path, problem, choose)
    if len(head) < GGUF_HEADER_SIZE:
        raise ModelFileError(
            path,
            "the file is truncated (shorter than a GGUF header)",
            "Download or copy the model again.",
        )
    (version,) = struct.unpack_from("<I", head, 4)
    if version not in GGUF_VERSIONS:
        raise ModelFileError(
            path,
            f"GGUF version {version} is not supported (supported: "
            f"{', '.join(map(str, GGUF_VERSIONS))})",
            "Convert the model again with a current llama.cpp.",
        )


def check_adapter_file(adapter: Path, model: Path) -> None:
    """Raise ModelFileError unless `adapter` is a GGUF LoRA adapter for `model`'s architecture.

    llama.cpp refuses a mismatched adapter, but llama-cpp-python carries on with it
    and the engine crashes on the first answer; so the check happens here first.
    """
    from kodcu.gguf_header import GGUFHeaderError, read_gguf_header

    choose = "Choose a LoRA adapter in GGUF form (llama.cpp's LoRA format)."
    check_gguf_file(adapter)
    try:
        metadata = read_gguf_header(adapter).metadata
        model_architecture = read_gguf_header(model).metadata.get("general.architecture")
    except (GGUFHeaderError, OSError) as exc:
        raise ModelFileError(adapter, str(exc), choose) from exc
    if metadata.get("general.type") != "adapter" or metadata.get("adapter.type") != "lora":
        kind = metadata.get("general.type") or "model"
        raise ModelFileError(adapter, f"this is a {kind} file, not a LoRA adapter", choose)
    architecture = metadata.get("general.architecture")
    if architecture != model_architecture:
        raise ModelFileError(
            adapter,
            f"this adapter was made for {architecture} models, and {model.name} is a "
            f"{model_architecture} model",
            "Choose an adapter trained on this model, or the model it was trained on.",
        )


def explain_load_failure(llama_log: list[str], message: str) -> tuple[str, str]:
    """llama.cpp's own reason for a failed load, and what the user can do about it.

    `llama_log` holds llama.cpp's warnings and errors from the load; `message`
    is the Python exception, used when the log gives no reason.
    """
    reasons = []
    for line in llama_log:
        # "llama_model_load: error loading model: unknown model architecture: 'x'"
        reason = re.sub(r"^(?:\w+: |error loading model: )+", "", line.strip())
        lowered = line.lower()
        failed = "error" in lowered or "failed" in lowered
        if failed and reason and not reason.startswith("failed to load model"):
            reasons.append(reason)
    detail = "; ".join(dict.fromkeys(reasons[-3:])) or message or "no reason given"
    if "unknown model architecture" in detail:
        hint = "This version of llama.cpp does not support that architecture."
    elif any(word in detail for word in ("file bounds", "incomplete", "failed to read")):
        hint = "The file looks truncated or damaged: download or copy it again."
    else:
        hint = "Check that the file is complete and is a model llama.cpp supports."
    return detail, hint
