"""The converter: adapter or model → merged model → GGUF → quantized GGUFs → report.

    kodcu-convert runs/my-adapter --out dist/ --quant Q8_0,Q4_K_M --verify

Steps, each in its own module: `source` (what the input is), `merge` (LoRA into a 16-bit
base), `gguf_export` (llama.cpp's converter, then metadata checks), `quantize`
(llama.cpp's quantizer), `lora_gguf` (adapter as a LoRA GGUF), `verify` (logits of each
GGUF against the Hugging Face model), `report`; `safety` holds the disk check, the
write-then-rename of every output and the progress lines. Importing this package is
cheap: torch, transformers and llama.cpp are imported by the steps that need them.
"""

from __future__ import annotations


class ConvertError(RuntimeError):
    """A conversion that cannot go on: the message names the file and what to do."""
