"""The patched llama.cpp kernel (packaging/llama-patches/sgemm-q0-avx512.patch).

On a CPU with AVX-512 VNNI the build carries a 512-bit kernel for Q8_0/Q5_0 weights that
must give exactly the numbers of llama.cpp's own 256-bit kernel: the default model's
logits, for a prompt and for a small batch, are compared byte for byte with the kernel on
and off (GGML_SGEMM_Q0_AVX512=0). Elsewhere the build has only the original kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SWITCH = "GGML_SGEMM_Q0_AVX512"

# Logits of every position, over batches of 91, 12, 13 and 16 tokens (16: a kodcu-eval
# decode step), so that the kernel runs with tiles of 8, 4, 3 and 1 columns.
LOGITS = """
import hashlib, sys
import llama_cpp
llama = llama_cpp.Llama(sys.argv[1], n_ctx=512, n_threads=2, logits_all=True, verbose=False)
text = open(sys.argv[2], encoding="utf-8").read()
tokens = llama.tokenize(text.encode())[:132]
for start, end in ((0, 91), (91, 103), (103, 116), (116, 132)):
    llama.eval(tokens[start:end])
scores = llama.scores[: len(tokens)]
print(hashlib.sha256(scores.tobytes()).hexdigest(), scores.argmax(axis=1).tolist())
"""


def cpu_library() -> Path:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    found = sorted(lib.glob("*ggml-cpu*"))
    assert found, f"no ggml-cpu library in {lib}"
    return found[0]


def has_avx512_kernel() -> bool:
    """Whether this llama.cpp was compiled for AVX-512 VNNI (so with the patch's kernel)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    return "AVX512 = 1" in info and "AVX512_VNNI = 1" in info


def logits(default_model: Path, switch: str) -> tuple[str, str]:
    env = {**os.environ, SWITCH: switch}
    source = Path(__file__).resolve().parent.parent / "evaluation" / "batched.py"
    done = subprocess.run(
        [sys.executable, "-c", LOGITS, str(default_model), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    digest, argmax = done.stdout.split(" ", 1)
    return digest, argmax


@pytest.mark.skipif(not has_avx512_kernel(), reason="llama.cpp built without AVX-512 VNNI")
def test_avx512_kernel_is_built_and_gives_the_original_kernels_logits(default_model: Path):
    # The switch's name is in the library only where the patch's kernel was compiled.
    built = SWITCH.encode() in cpu_library().read_bytes()
    assert built, "llama.cpp was built for AVX-512 VNNI without packaging/llama-patches"
    original = logits(default_model, "0")
    patched = logits(default_model, "1")
    assert patched[1] == original[1], "the kernels choose different tokens"
    assert patched[0] == original[0], "the kernels' logits differ"
