"""Attention one packed example at a time (trainer/packed_attention.py) is sdpa's attention
with the packing mask: the same losses and LoRA gradients, without the masked work.

Tolerance, float32: 1e-5 relative on losses and gradient norms (the two kernels add in
different orders). tests/test_trainer_features.py also runs every architecture's packed
rows through it against each example alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers.integrations.sdpa_attention as hf_sdpa
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tests.test_trainer_features import EXAMPLES, alpaca_tokenizer
from tests.test_trainer_loss import loss_and_grads as loss_and_grads_of
from tests.test_trainer_loss import relative_error
from tests.tiny_models import tiny_model
from trainer.config import TrainConfig, from_dict
from trainer.features import Collator, RowDataset, encode_examples, pack
from trainer.packed_attention import PACKED_SDPA, example_bounds, register
from trainer.train import load_model


def test_examples_are_cut_where_the_positions_restart():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    assert example_bounds(positions) == [[(0, 3), (3, 5), (5, 9)], [(0, 6), (6, 9)]]
    assert example_bounds(torch.arange(9).expand(2, 9)) is None  # nothing packed


def packed_batch(examples: int = 6) -> dict[str, torch.Tensor]:
    """Packed rows of the crafted examples, padded and collated as in training."""
    encoded, _ = encode_examples(EXAMPLES[:examples], alpaca_tokenizer(), max_length=512)
    lengths = sorted(len(item.input_ids) for item in encoded)
    rows = pack(encoded, max_length=sum(lengths[-3:]))
    assert len(rows) >= 2 and any(row.examples > 1 for row in rows)
    return Collator(pad_token_id=0)([RowDataset(rows)[i] for i in range(len(rows))])


def loss_and_grads(
    folder: Path, attention: str, batch: dict, window: int | None
) -> tuple[float, dict[str, torch.Tensor]]:
    register()
    options = {"sliding_window": window} if window else {}
    base = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention, **options)
    base.config.use_cache = False
    torch.manual_seed(1)  # the same LoRA A and B on both sides
    model = get_peft_model(base, LoraConfig(r=4, lora_dropout=0.0, target_modules="all-linear"))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    return loss_and_grads_of(model, lambda: model(**batch).loss)


@pytest.mark.parametrize(
    ("architecture", "window"),
    [
        ("llama", None),  # 2 query heads per key/value head, no sliding window
        ("gemma3", None),  # 4 per head; a window of 16, shorter than the examples
        ("gemma3", 4096),  # a window longer than every example: causal within each
    ],
)
def test_same_loss_and_lora_gradients_as_sdpa_with_the_packing_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, architecture: str, window: int | None
):
    folder = tiny_model(tmp_path / architecture, architecture)
    batch = packed_batch()
    loss, grads = loss_and_grads(folder, "sdpa", dict(batch), window)

    def no_fallback(*args, **kwargs):
        raise AssertionError("packed rows went to sdpa over the masked row")

    monkeypatch.setattr(hf_sdpa, "sdpa_attention_forward", no_fallback)
    packed_loss, packed_grads = loss_and_grads(folder, PACKED_SDPA, dict(batch), window)
    assert packed_loss == pytest.approx(loss, rel=1e-5)
    assert relative_error(packed_grads, grads) < 1e-5


def test_rows_that_are_not_packed_get_sdpa_itself(tmp_path: Path):
    folder = tiny_model(tmp_path / "base", "llama")
    ids = torch.randint(4, 400, (2, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, -6:] = 0  # padding: only sdpa's mask knows about it
    logits = {}
    for attention in ("sdpa", PACKED_SDPA):
        register()
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention)
        with torch.no_grad():
            logits[attention] = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(logits["sdpa"], logits[PACKED_SDPA])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"data": {"packing": True}}, PACKED_SDPA),
        ({"data": {"packing": False}}, "sdpa"),
        ({"data": {"packing": True}, "model": {"attn_implementation": "eager"}}, "eager"),
    ],
)
def test_the_trainer_uses_it_for_packed_rows_on_a_cpu(tmp_path: Path, settings, expected):
    folder = tiny_model(tmp_path / "base", "llama")
    settings = {**settings, "model": {"base": str(folder), **settings.get("model", {})}}
    model = load_model(from_dict(TrainConfig, settings), "cpu", torch.float32)
    assert model.get_base_model().config._attn_implementation == expected
