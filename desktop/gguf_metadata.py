"""What a GGUF model is: architecture, name, size, quantization, context length.

The app never imports llama_cpp (a native crash on a bad file would take the
app down with it), so llama.cpp reads the file in a short-lived child process.
The child loads only the vocabulary, prints one JSON line and exits:

    from desktop.gguf_metadata import MetadataError, read_metadata

    info = read_metadata(Path("gemma-3-270m-q4_k_m.gguf"))
    info.architecture, info.quantization, info.context_length   # "gemma3", "Q4_K_M", 32768
    info.name, info.parameter_label                              # "Gemma 3 270m", "270M"

    python -m desktop.gguf_metadata MODEL.gguf      # the child: one JSON line on stdout

Parameter count: a vocabulary-only load has no tensors, so llama.cpp cannot
count the weights. We take the file's own ``general.size_label`` ("270M",
"8x7B") when it has one; otherwise we estimate from the file size and the bits
per weight of the file type's main tensor type, and mark the result estimated.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

from kodcu.model_file import ModelFileError, check_gguf_file, explain_load_failure


class MetadataError(ModelFileError):
    """The metadata of a model file could not be read; the message names the file and why."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    file_size: int
    """Bytes on disk."""
    architecture: str
    """general.architecture, e.g. "gemma3", "qwen2", "llama"."""
    name: str
    """general.name, or the file name without .gguf when the file has none."""
    parameter_count: int | None
    """From general.size_label when present, else estimated (see parameters_estimated)."""
    parameter_label: str | None
    """For display: the size label as the file spells it ("270M"), or "≈0.45B" for an estimate."""
    parameters_estimated: bool
    quantization: str | None
    """llama.cpp's file type name ("Q4_K_M"), "type N" for one it does not name, None if unset."""
    context_length: int | None
    """{architecture}.context_length: the context the model was trained for."""
    chat_template: bool
    """True when the file carries tokenizer.chat_template."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(**{**data, "path": Path(data["path"])})


# Bits per weight of each file type's main tensor type (ggml block size in bits
# divided by weights per block). Mixed types such as Q4_K_M keep some tensors at
# higher precision, so an estimate from the file size runs somewhat high.
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.5625,
    "Q5_0": 5.5,
    "Q5_1": 6.0,
    "Q5_K_S": 5.5,
    "Q5_K_M": 5.5,
    "Q4_0": 4.5,
    "Q4_1": 5.0,
    "Q4_K_S": 4.5,
    "Q4_K_M": 4.5,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "MXFP4_MOE": 4.25,
    "Q3_K_S": 3.4375,
    "Q3_K_M": 3.4375,
    "Q3_K_L": 3.4375,
    "IQ3_S": 3.4375,
    "IQ3_M": 3.4375,
    "IQ3_XS": 3.4375,
    "IQ3_XXS": 3.0625,
    "Q2_K": 2.625,
    "Q2_K_S": 2.625,
    "IQ2_M": 2.5625,
    "IQ2_S": 2.5625,
    "IQ2_XS": 2.3125,
    "IQ2_XXS": 2.0625,
    "TQ2_0": 2.0625,
    "IQ1_M": 1.75,
    "TQ1_0": 1.6875,
    "IQ1_S": 1.5625,
}

SIZE_UNITS: dict[str, float] = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_size_label(label: str) -> int | None:
    """ "270M" -> 270_000_000, "1.5B" -> 1_500_000_000, "8x7B" -> 56e9 (experts times size)."""
    match = re.fullmatch(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([KMBT])", label.strip(), re.IGNORECASE)
    if not match:
        return None
    experts, number, unit = match.groups()
    return round(int(experts or 1) * float(number) * SIZE_UNITS[unit.upper()])


def format_count(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.1f}B".replace(".0B", "B")
    if count >= 1e6:
        return f"{count / 1e6:.0f}M"
    return f"{count / 1e3:.0f}K"


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def info_from_metadata(
    path: Path, file_size: int, metadata: dict[str, str], quantization: str | None
) -> ModelInfo:
    """Build a ModelInfo from llama.cpp's metadata strings (all values arrive as text)."""
    architecture = metadata.get("general.architecture", "")
    label = metadata.get("general.size_label")
    count = parse_size_label(label) if label else None
    estimated = False
    if count is None:
        label = None
        bits = BITS_PER_WEIGHT.get(quantization or "")
        if bits:
            count = round(file_size * 8 / bits)
            label = "≈" + format_count(count)
            estimated = True
    return ModelInfo(
        path=path,
        file_size=file_size,
        architecture=architecture,
        name=metadata.get("general.name") or path.name.removesuffix(".gguf"),
        parameter_count=count,
        parameter_label=label,
        parameters_estimated=estimated,
        quantization=quantization,
        context_length=_int_or_none(metadata.get(f"{architecture}.context_length")),
        chat_template="tokenizer.chat_template" in metadata,
    )


def _child_command(path: Path) -> list[str]:
    # A frozen app (PyInstaller) has no `python -m`; it re-enters its own main.
    if getattr(sys, "frozen", False):
        return [sys.executable, "--metadata-child", str(path)]
    return [sys.executable, "-m", "desktop.gguf_metadata", str(path)]


def read_metadata(
    path: Path, timeout_s: float = 30, cancel: threading.Event | None = None
) -> ModelInfo:
    """Describe the GGUF model at `path`; raise MetadataError saying why when it cannot.

    Setting `cancel` kills the reader at once (a dialog closing does not wait for it).
    """
    try:
        check_gguf_file(path)  # the cheap checks give the clearest messages
    except ModelFileError as exc:
        raise MetadataError(path, exc.problem, exc.hint) from exc
    file_size = path.stat().st_size
    child = subprocess.Popen(
        _child_command(path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stdout, stderr = child.communicate(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline and not (cancel and cancel.is_set()):
                continue
            child.kill()
            child.communicate()
            if cancel and cancel.is_set():
                raise MetadataError(path, "reading its metadata was cancelled", "") from None
            raise MetadataError(
                path,
                f"reading its metadata took longer than {timeout_s:g} s",
                "The disk may be slow or busy; try again.",
            ) from None
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1])
    except (IndexError, ValueError):
        # No answer at all: the child died, most likely inside native code.
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"code {done.returncode}"
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise MetadataError(
            path,
            f"the metadata reader stopped with {how} ({last[0]})",
            "The file may be damaged or not a model llama.cpp supports.",
        ) from None
    if "error" in reply:
        detail, hint = explain_load_failure(reply.get("log", []), reply["error"])
        problem = f"llama.cpp cannot read it ({detail})"
        raise MetadataError(path, problem, hint)
    return info_from_metadata(path, file_size, reply["metadata"], reply["quantization"])


# -- the child ------------------------------------------------------------------


def _file_type_names() -> dict[int, str]:
    """llama.cpp's llama_ftype values by name, taken from the bindings' own constants."""
    from llama_cpp import llama_cpp as bindings

    names = {}
    for constant, value in vars(bindings).items():
        for prefix in ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_"):
            if constant.startswith(prefix) and isinstance(value, int):
                names[value] = constant.removeprefix(prefix)
    return names


def _answer(protocol: TextIO, reply: dict[str, Any], code: int) -> NoReturn:
    protocol.write(json.dumps(reply) + "\n")
    protocol.flush()
    sys.stderr.flush()
    # Skip interpreter shutdown: it would free the model after the log callback,
    # and a log line from that free would call into freed memory.
    os._exit(code)


def child_main(model: str) -> NoReturn:
    # Reused from the engine's child: the log callback keeps llama.cpp's reasons
    # (hidden when verbose=False) and fd 1 is moved so native prints cannot mix
    # into the JSON line.
    from desktop.engine_child import capture_llama_log, protocol_stream

    protocol = protocol_stream()
    log: list[str] = []
    callback = capture_llama_log(False, log)  # noqa: F841 - must outlive the load
    try:
        import llama_cpp

        llama = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
        metadata = llama.metadata
    except Exception as exc:  # llama-cpp-python raises ValueError; report anything
        _answer(protocol, {"error": str(exc), "log": log}, 1)
    file_type = _int_or_none(metadata.get("general.file_type"))
    quantization = None
    if file_type is not None:
        quantization = _file_type_names().get(file_type, f"type {file_type}")
    _answer(protocol, {"metadata": metadata, "quantization": quantization}, 0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m desktop.gguf_metadata MODEL.gguf")
    child_main(sys.argv[1])
