"""The labelled-position loss (trainer/loss.py) is the model's own loss, with its gradients.

Tolerances, float32 (each the rounding of a different summation order, measured):
- loss: relative 1e-5 on tiny models;
- LoRA gradients: the norm of the difference within 1e-4 of the gradient's norm.
On the default model's Hugging Face copy (262,144-token vocabulary) float32 rounding of
the plain path's own log-softmax is larger (1e-5 on the loss, 1e-4 on the gradients),
so both paths are measured against a float64 reference there, and the labelled one
must be at least as close to it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, GraniteConfig

from tests.test_trainer_train import GEMMA3_HF, make_config, train_losses
from tests.tiny_models import ARCHITECTURES, tiny_config, tiny_model, tiny_tokenizer
from trainer.loss import LabelledLoss, check_labelled_loss, linear_cross_entropy
from trainer.train import run

pytestmark = pytest.mark.usefixtures("offline_hub")


def lora_model(base: AutoModelForCausalLM) -> torch.nn.Module:
    """`base` with LoRA on every linear layer, B not zero (so every gradient is non-zero)."""
    base.config.use_cache = False
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
    )
    torch.manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    return model.train()


def a_batch(vocab: int, rows: int = 2, length: int = 24) -> dict[str, torch.Tensor]:
    """Random tokens; the first half of each row is prompt (no loss), the second row padded."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (rows, length), generator=generator)
    labels = ids.clone()
    labels[:, : length // 2] = -100
    mask = torch.ones_like(ids)
    labels[1, -5:], mask[1, -5:] = -100, 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_and_grads(model: torch.nn.Module, loss_fn) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads


def plain(model, batch):
    return lambda: model(**batch).loss


def labelled(model, batch, chunk_rows: int = 1024):
    def loss():
        total, count = LabelledLoss(model, chunk_rows)(**batch)
        return total / count

    return loss


def relative_error(grads: dict, reference: dict) -> float:
    difference = sum(((grads[n] - reference[n]) ** 2).sum() for n in reference) ** 0.5
    return (difference / sum((g**2).sum() for g in reference.values()) ** 0.5).item()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_same_loss_and_lora_gradients_as_the_models_own(tmp_path: Path, architecture: str):
    folder = tiny_model(tmp_path / "base", architecture)
    model = lora_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))
    batch = a_batch(model.get_base_model().config.vocab_size)
    own_loss, own_grads = loss_and_grads(model, plain(model, batch))
    loss, grads = loss_and_grads(model, labelled(model, batch))
    assert loss == pytest.approx(own_loss, rel=1e-5)
    assert own_grads.keys() == grads.keys() and all("lora_" in name for name in grads)
    assert all(g.abs().sum() > 0 for g in grads.values())
    assert relative_error(grads, own_grads) < 1e-4
    assert check_labelled_loss(model, batch) is None


def test_the_chunk_size_changes_nothing_but_rounding(tmp_path: Path):
    model = lora_model(AutoModelForCausalLM.from_pretrained(tiny_model(tmp_path / "base", "qwen2")))
    batch = a_batch(model.get_base_model().config.vocab_size, rows=3, length=40)
    whole_loss, whole = loss_and_grads(model, labelled(model, batch))
    for chunk_rows in (1, 7, 64):
        loss, grads = loss_and_grads(model, labelled(model, batch, chunk_rows))
        assert loss == pytest.approx(whole_loss, rel=1e-6)
        assert relative_error(grads, whole) < 1e-5


def test_evaluation_does_the_loss_arithmetic_only() -> None:
    # Under torch.no_grad (the Trainer's evaluation) no backward follows: the output layer
    # runs forward, once, and no gradient is prepared for a backward pass.
    from torch.utils.flop_counter import FlopCounterMode

    hidden = torch.randn(48, 16, requires_grad=True)  # (N, d)
    weight = torch.randn(300, 16, requires_grad=True)  # (V, d)
    targets = torch.randint(0, 300, (48,))
    forward_flops = 2 * 48 * 300 * 16
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        evaluated = linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    assert counter.get_total_flops() == forward_flops
    with FlopCounterMode(display=False) as counter:
        trained = linear_cross_entropy(hidden, weight, targets, chunk_rows=16)
    assert counter.get_total_flops() == 3 * forward_flops  # + both gradients' products
    assert evaluated.item() == trained.item()
    trained.backward()
    assert hidden.grad is not None and weight.grad is not None


def test_a_soft_capped_output_layer_gets_the_same_loss(tmp_path: Path):
    config = tiny_config("gemma3", len(tiny_tokenizer()))
    config.final_logit_softcapping = 3.0  # Gemma 2's cap, at a value that bites here
    torch.manual_seed(0)
    model = lora_model(AutoModelForCausalLM.from_config(config))
    batch = a_batch(config.vocab_size)
    own_loss, own_grads = loss_and_grads(model, plain(model, batch))
    loss, grads = loss_and_grads(model, labelled(model, batch))
    assert loss == pytest.approx(own_loss, rel=1e-5)
    assert relative_error(grads, own_grads) < 1e-4
    uncapped = linear_cross_entropy(
        torch.randn(3, 8, dtype=torch.float64) * 10,
        torch.randn(20, 8, dtype=torch.float64),
        torch.tensor([1, 2, 3]),
    )
    assert uncapped.dtype == torch.float32  # the loss is float32 whatever the model's dtype


def test_a_model_whose_logits_it_does_not_know_trains_with_its_own_loss(tmp_path: Path):
    # Granite divides its logits by `logits_scaling`: the check sees the difference, and
    # the trainer falls back to the model's own loss and says so in kodcu.json.
    tokenizer = tiny_tokenizer()
    config = GraniteConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, logits_scaling=8.0,
        bos_token_id=1, eos_token_id=2, initializer_range=0.3,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path / "granite"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = lora_model(AutoModelForCausalLM.from_pretrained(folder))
    problem = check_labelled_loss(model, a_batch(config.vocab_size))
    assert problem is not None and "GraniteForCausalLM" in problem and "loss" in problem

    output_dir = run(make_config(tmp_path, folder, training={"max_steps": 2}))
    record = json.loads((output_dir / "kodcu.json").read_text())
    assert record["config"]["training"]["labelled_loss"] is False


@pytest.mark.parametrize("accumulation", [1, 2])
def test_training_with_it_follows_the_same_losses(tmp_path: Path, accumulation: int):
    # The Trainer normalises the loss by the labelled tokens of the accumulated batch;
    # the labelled path must do the same, or the steps (and the logged losses) differ.
    base = tiny_model(tmp_path / "base", "llama")
    curves = []
    for labelled_loss in (False, True):
        training = {
            "output_dir": str(tmp_path / f"out-{labelled_loss}"),
            "max_steps": 4,
            "batch_size": 2,
            "gradient_accumulation_steps": accumulation,
            "labelled_loss": labelled_loss,
        }
        output_dir = run(make_config(tmp_path, base, training=training))
        record = json.loads((output_dir / "kodcu.json").read_text())
        assert record["config"]["training"]["labelled_loss"] is labelled_loss
        curves.append([loss for _, loss in train_losses(output_dir)])
    assert len(curves[1]) == 4
    assert curves[1] == pytest.approx(curves[0], rel=1e-4)


@pytest.mark.slow
def test_on_the_default_models_hugging_face_copy_it_is_as_close_to_float64(tmp_path: Path):
    if not GEMMA3_HF.is_file():
        pytest.skip(f"{GEMMA3_HF.name}, which makes the default model's HF copy, is absent")
    made = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr[-3000:]
    folder = Path(made.stdout.strip().splitlines()[-1])
    model = lora_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64))
    batch = a_batch(20000, length=48)  # the first 20,000 ids: ordinary text pieces

    def reference() -> torch.Tensor:  # every step in float64, the full logits
        lm = model.get_base_model()
        hidden = lm.get_decoder()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        return F.cross_entropy(lm.lm_head(hidden[:, :-1][keep]), targets[keep])

    exact_loss, exact = loss_and_grads(model, reference)
    own_loss, own = loss_and_grads(model, plain(model, batch))
    loss, grads = loss_and_grads(model, labelled(model, batch))
    # The model's own loss takes the logits to float32, as does the labelled path.
    assert abs(loss - exact_loss) <= max(abs(own_loss - exact_loss), 1e-6)
    assert relative_error(grads, exact) <= max(relative_error(own, exact), 1e-5)
    assert relative_error(grads, own) < 1e-3
