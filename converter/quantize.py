"""Quantize a GGUF with llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize).

    quantize(Path("m-F16.gguf"), Path("m-Q4_K_M.gguf"), "Q4_K_M", threads=4)
    quant_types()          # {"Q4_K_M": 15, "Q8_0": 7, ...}: every type llama.cpp names

The types are read from llama.cpp's own LLAMA_FTYPE_MOSTLY_* constants, so a newer
llama-cpp-python brings its new types with it. Types whose tensors llama.cpp quantizes
only with an importance matrix (computed on sample text by llama-imatrix) are refused
up front with the reason, instead of failing halfway through the file.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

from converter import ConvertError
from converter.safety import partial_output

FTYPE_PREFIXES = ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_")
IMATRIX_TYPES = frozenset(
    {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S"}
)
"""llama.cpp's rule (llama-quant.cpp, tensor_requires_imatrix): IQ1_S, IQ1_M, IQ2_XXS,
IQ2_XS, IQ2_S and IQ3_XXS tensors need an importance matrix, and so do the Q2_K tensors
of a Q2_K_S file; these file types make most tensors one of those (IQ2_M's default
tensor type is IQ2_S)."""
# llama.cpp's ggml_log_level in the version llama-cpp-python builds: 4 error, 5 continues.
LOG_ERROR, LOG_CONTINUE = 4, 5


def quant_types() -> dict[str, int]:
    """Every file type llama.cpp names ("Q4_K_M", "F16", ...) and its llama_ftype value."""
    import llama_cpp

    types = {}
    for name in dir(llama_cpp):
        for prefix in FTYPE_PREFIXES:
            if name.startswith(prefix):
                types[name.removeprefix(prefix)] = getattr(llama_cpp, name)
    types.pop("GUESSED", None)  # "whatever the file has": not a type one can ask for
    return types


def bits_per_weight(qtype: str) -> float:
    """A rough upper bound of bits per weight, for the disk estimate: the type's bits + 1."""
    if qtype in ("F32",):
        return 32.0
    if qtype in ("F16", "BF16"):
        return 16.0
    digits = re.search(r"\d+", qtype)
    return float(digits.group()) + 1.0 if digits else 9.0


def check_qtype(qtype: str) -> str:
    """The canonical name of `qtype`, or ConvertError saying which types exist."""
    name = qtype.strip().upper()
    types = quant_types()
    if name not in types:
        raise ConvertError(
            f"unknown quantization type {qtype!r}; llama.cpp knows: {', '.join(sorted(types))}"
        )
    if name in IMATRIX_TYPES:
        raise ConvertError(
            f"quantization type {name} needs an importance matrix (llama.cpp refuses it "
            "without one, and it would be poor anyway); use a K-quant such as Q2_K, Q3_K_M or "
            "Q4_K_M, or IQ3_S/IQ4_XS, which work without one"
        )
    return name


class _LlamaLog:
    """Collects llama.cpp's error lines while quantizing, to put the reason in the message."""

    def __init__(self) -> None:
        import llama_cpp

        self.errors: list[str] = []
        self._level = 0

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if level != LOG_CONTINUE:
                self._level = level
            if self._level == LOG_ERROR:
                self.errors.append(text.decode("utf-8", "replace").strip())

        self.callback = callback  # must stay referenced while llama.cpp may call it

    def __enter__(self) -> _LlamaLog:
        import llama_cpp

        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        import llama_cpp
        from llama_cpp._logger import llama_log_callback

        llama_cpp.llama_log_set(llama_log_callback, ctypes.c_void_p(0))


def quantize(src: Path, dst: Path, qtype: str, threads: int | None = None) -> Path:
    """Quantize the GGUF `src` to `qtype` into `dst`; `dst` exists only if it succeeded.

    `threads` None lets llama.cpp use every core.
    """
    import llama_cpp

    src, dst = Path(src), Path(dst)
    name = check_qtype(qtype)
    if not src.is_file():
        raise ConvertError(f"{src}: no such GGUF file to quantize")
    if src.resolve() == dst.resolve():
        raise ConvertError(f"{dst}: the quantized file must not replace its source")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = quant_types()[name]
    params.nthread = threads or 0
    with partial_output(dst) as partial, _LlamaLog() as log:
        status = llama_cpp.llama_model_quantize(
            str(src).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if status != 0:
            reason = next((line for line in reversed(log.errors) if line), "no reason given")
            raise ConvertError(f"llama.cpp could not quantize {src} to {name}: {reason}")
    return dst
