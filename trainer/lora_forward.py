"""LoRA's forward with its scaling and its sum folded into one matrix product.

    from trainer.lora_forward import fold_lora_forward
    folded = fold_lora_forward(peft_model)     # how many LoRA layers now run folded

PEFT computes a LoRA layer as

    y = base(x) + B(A(dropout(x))) * scaling          # x (N, d_in), A (r, d_in), B (d_out, r)

which sweeps the (N, d_out) output three more times after the products: the scaling, the
sum, and in the backward pass the scaling again. With r = 16 and d_out = 2,048 those
sweeps cost more than the LoRA products themselves on a CPU. Folded:

    y = addmm(base(x), A(dropout(x)) * scaling, B.T)    # scaling on (N, r), sum in the product

the same function (only float rounding differs), the same parameters, and the same
dropout call, so the same random masks: tests/test_trainer_lora_forward.py compares
losses and LoRA gradients with PEFT's own forward, dropout on. A layer that is not plain
LoRA (DoRA or another variant, several active adapters, merged, disabled, a bias on B, a
base layer that is not a plain Linear in the adapter's dtype, a call with adapter names)
runs PEFT's own forward, unchanged.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


def fold_lora_forward(model: torch.nn.Module) -> int:
    """Give every plain PEFT LoRA Linear layer of `model` the folded forward."""
    folded = 0
    for module in model.modules():
        if type(module) is LoraLinear:  # subclasses (bitsandbytes, …) keep their own
            module.forward = types.MethodType(_folded_forward, module)
            folded += 1
    return folded


def _folded_forward(self: LoraLinear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    adapter = _plain_adapter(self)
    if adapter is None or args or kwargs:
        return LoraLinear.forward(self, x, *args, **kwargs)
    lora_A, lora_B = self.lora_A[adapter], self.lora_B[adapter]
    result = self.base_layer(x)  # (..., d_out)
    x = self._cast_input_dtype(x, lora_A.weight.dtype)
    low = lora_A(self.lora_dropout[adapter](x)) * self.scaling[adapter]  # (..., r)
    flat = torch.addmm(
        result.reshape(-1, result.shape[-1]),  # (N, d_out)
        low.reshape(-1, low.shape[-1]),  # (N, r)
        lora_B.weight.T,  # (r, d_out)
    )
    return flat.view(result.shape)


def _plain_adapter(layer: LoraLinear) -> str | None:
    """The one active adapter's name when the layer computes plain LoRA; else None."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    adapter = layer.active_adapters[0]
    if adapter not in layer.lora_A or adapter in layer.lora_variant:
        return None
    base = layer.base_layer
    if not isinstance(base, torch.nn.Linear) or layer.lora_B[adapter].bias is not None:
        return None
    if base.weight.dtype != layer.lora_A[adapter].weight.dtype:
        return None  # mixed precision: PEFT's casts decide the result's dtype
    return adapter
