"""The folded LoRA forward (trainer/lora_forward.py) is PEFT's LoRA: the same losses, the
same LoRA gradients and the same dropout masks, with fewer sweeps over the output.

Tolerance, float32: 1e-5 relative on the loss and on the gradients' norm (the scaling is
applied before the product instead of after it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AutoModelForCausalLM

from tests.test_trainer_loss import loss_and_grads as loss_grads
from tests.test_trainer_loss import relative_error
from tests.tiny_models import tiny_model
from trainer.config import TrainConfig, from_dict
from trainer.lora_forward import _folded_forward, fold_lora_forward
from trainer.train import load_model


def lora_model(folder: Path, **lora: object) -> torch.nn.Module:
    base = AutoModelForCausalLM.from_pretrained(folder)
    base.config.use_cache = False
    torch.manual_seed(1)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", **lora}
    model = get_peft_model(base, LoraConfig(**settings))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # B is zero at first: make every gradient count
            torch.nn.init.normal_(parameter, std=0.05)
    return model.train()


def a_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(4, 400, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :12] = -100
    return {"input_ids": ids, "labels": labels}


def loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(7)  # the same dropout masks, if the same random numbers are drawn
    return loss_grads(model, lambda: model(**batch).loss)


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_same_loss_gradients_and_dropout_masks_as_peft(tmp_path: Path, architecture: str):
    model = lora_model(tiny_model(tmp_path / architecture, architecture), lora_dropout=0.2)
    batch = a_batch()
    loss, grads = loss_and_grads(model, batch)
    # llama: q, k, v, o, gate, up and down in each of 2 layers.
    assert fold_lora_forward(model) == 14
    folded_loss, folded_grads = loss_and_grads(model, batch)
    assert folded_loss == pytest.approx(loss, rel=1e-5)
    assert relative_error(folded_grads, grads) < 1e-5
    # Other masks give another loss: the comparison above did see the same masks.
    model.zero_grad()
    torch.manual_seed(8)
    assert model(**batch).loss.item() != pytest.approx(loss, rel=1e-5)


def test_layers_it_does_not_fold_run_peft_itself(tmp_path: Path):
    folder = tiny_model(tmp_path / "llama", "llama")
    model = lora_model(folder, lora_dropout=0.0)
    batch = {"input_ids": a_batch()["input_ids"]}
    fold_lora_forward(model)
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(folder)(**batch).logits
        with model.disable_adapter():  # adapters off: the base model, exactly
            disabled = model(**batch).logits
        with_lora = model(**batch).logits
    assert torch.equal(disabled, base)
    assert not torch.allclose(with_lora, base)
    model.merge_adapter()  # merged: the base layer alone holds the LoRA update
    with torch.no_grad():
        merged = model(**batch).logits
    torch.testing.assert_close(merged, with_lora, rtol=1e-4, atol=1e-4)  # merge rounding


def test_dora_is_left_to_peft(tmp_path: Path):
    model = lora_model(tiny_model(tmp_path / "llama", "llama"), use_dora=True)
    batch = a_batch()
    loss, grads = loss_and_grads(model, batch)
    fold_lora_forward(model)
    assert loss_and_grads(model, batch)[0] == loss  # PEFT's own path: bit for bit


def test_the_trainer_folds_on_a_cpu(tmp_path: Path):
    folder = tiny_model(tmp_path / "llama", "llama")
    model = load_model(
        from_dict(TrainConfig, {"model": {"base": str(folder)}}), "cpu", torch.float32
    )
    layers = [m for m in model.modules() if type(m) is LoraLinear]
    assert layers and all(m.forward.__func__ is _folded_forward for m in layers)
