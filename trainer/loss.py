"""The training loss computed only where it counts: the output layer at labelled positions.

    from trainer.loss import LabelledLoss
    loss = LabelledLoss(model)(input_ids=ids, labels=labels, position_ids=positions)

A causal LM's output layer maps every position's hidden state to one logit per vocabulary
token. On Kodcu's default model that layer is 262,144 x 640, about two thirds of a
training step's arithmetic, and its logits (B x T x 262,144 floats) are the largest
tensor of the step. But only positions whose next token is labelled carry loss: the
prompt half of an instruction row, padding and the ends of packed examples carry none.

So the body runs as usual; then only the labelled positions' hidden states go through
the output layer, a chunk of rows at a time. Each chunk's cross-entropy gradient with
respect to its hidden states is computed at once, in the forward pass, and its logits
are freed (the way Liger's and Apple's fused linear cross-entropy work), so at most one
chunk of logits ever exists. The loss is the same sum over the same positions with the
same float32 log-softmax as transformers' own loss; only float rounding differs
(tests/test_trainer_loss.py compares losses and LoRA gradients with the plain path).

`check_labelled_loss` runs both on one batch before training starts and says so if a
model computes its logits in a way this does not know (a scale, a cap), so the trainer
falls back to the model's own loss rather than train on a different one.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer

from trainer.features import IGNORE_INDEX

CHUNK_ROWS = 1024
"""Labelled positions per chunk: 1024 x 262,144 float32 logits are 1 GiB at most."""


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of -log softmax(hidden @ weight.T)[target] over rows, chunk by chunk."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,  # (N, d) labelled positions' hidden states
        weight: torch.Tensor,  # (V, d) the output layer
        targets: torch.Tensor,  # (N,) the labels
        softcap: float | None,
        chunk_rows: int,
        grad_enabled: bool,
    ) -> torch.Tensor:
        # needs_input_grad says what requires grad, even under torch.no_grad (evaluation),
        # where no backward follows: the gradients are then not computed at all.
        want_hidden = grad_enabled and ctx.needs_input_grad[0]
        want_weight = grad_enabled and ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = hidden[start : start + chunk_rows]  # (n, d)
            target = targets[start : start + chunk_rows]  # (n,)
            # As the model does it: logits in the model's dtype, then float32 for the loss.
            logits = (rows @ weight.T).float()  # (n, V)
            if softcap is not None:
                capped = torch.tanh(logits / softcap)
                logits = capped * softcap
            # log-sum-exp in place: exp(logits - max) overwrites the logits, so no second
            # (n, V) tensor is allocated (a fresh GiB costs page faults as well as a pass).
            # torch.sum's cascade keeps the sum over 262,144 terms accurate in float32.
            picked = logits.gather(1, target[:, None]).squeeze(1)  # (n,)
            top = logits.amax(dim=-1, keepdim=True)  # (n, 1)
            exps = logits.sub_(top).exp_()  # (n, V)
            norm = exps.sum(dim=-1)  # (n,)
            total += (top.squeeze(1) + norm.log() - picked).sum()
            if not (want_hidden or want_weight):
                continue
            # d(loss)/d(logits) = softmax - one_hot(target), in place of the logits.
            grad = exps.div_(norm[:, None])  # (n, V)
            grad[torch.arange(grad.shape[0], device=grad.device), target] -= 1.0
            if softcap is not None:
                grad *= 1.0 - capped * capped  # d(tanh(x / c) * c)/dx
            grad = grad.to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk_rows] = grad @ weight  # (n, d)
            if grad_weight is not None:
                grad_weight += (grad.T @ rows).float()  # (V, d)
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0),
            grad_weight if grad_weight is not None else torch.empty(0),
        )
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_out = weight_out = None
        if ctx.needs_input_grad[0]:
            hidden_out = grad_hidden * grad_total.to(grad_hidden.dtype)
        if ctx.needs_input_grad[1]:
            weight_out = (grad_weight * grad_total).to(ctx.weight_dtype)
        return hidden_out, weight_out, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` (optionally soft-capped) at `targets`;
    hidden (N, d), weight (V, d), targets (N,). The full (N, V) logits never exist."""
    grad_enabled = torch.is_grad_enabled()
    return _LinearCrossEntropy.apply(hidden, weight, targets, softcap, chunk_rows, grad_enabled)


def _causal_lm(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class LabelledLoss:
    """A causal LM's summed loss at labelled positions, computed as the module docstring says."""

    def __init__(self, model: Any, chunk_rows: int = CHUNK_ROWS) -> None:
        self.model = model
        self.chunk_rows = chunk_rows

    def __call__(self, labels: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, labelled positions) for one batch; inputs as the model takes them.
        The count stays a tensor on the batch's device: reading it would make the host
        wait for a GPU, and the Trainer usually divides by its own count instead."""
        lm = _causal_lm(self.model)
        hidden = lm.get_decoder()(**inputs).last_hidden_state  # (B, T, d)
        # Position t predicts token t + 1: shift, then keep the labelled positions only.
        targets = labels[:, 1:]  # (B, T-1)
        keep = targets != IGNORE_INDEX  # (B, T-1)
        rows = hidden[:, :-1][keep]  # (N, d)
        head = lm.get_output_embeddings().weight  # (V, d)
        softcap = getattr(lm.config, "final_logit_softcapping", None)
        total = linear_cross_entropy(rows, head, targets[keep], softcap, self.chunk_rows)
        return total, keep.sum()


def check_labelled_loss(model: Any, batch: dict[str, torch.Tensor]) -> str | None:
    """None if LabelledLoss gives this model's own loss on `batch`; else why not."""
    lm = _causal_lm(model)
    if not hasattr(lm, "get_decoder") or lm.get_output_embeddings() is None:
        return f"{type(lm).__name__} has no separate body and output layer"
    training = model.training
    model.eval()  # no dropout: both sides must see the same network
    try:
        with torch.no_grad():
            own = model(**batch).loss.float()
            total, count = LabelledLoss(model)(**batch)
    except Exception as error:  # an architecture whose body takes other arguments
        return f"{type(lm).__name__}: {type(error).__name__}: {error}"
    finally:
        model.train(training)
    mine = total / count.clamp(min=1)
    if not torch.isclose(mine, own, rtol=1e-3, atol=1e-3):
        return f"{type(lm).__name__}: loss {mine.item():.5f} here, {own.item():.5f} from the model"
    return None


class LabelledLossTrainer(Trainer):
    """transformers' Trainer with the loss computed by LabelledLoss.

    The loss is normalised as the Trainer's own: by the labelled tokens of the whole
    accumulated batch when the Trainer counts them (`num_items_in_batch`), else by this
    batch's. A model wrapped for several processes (DDP and the like) takes the
    Trainer's own path: its forward must go through the wrapper.
    """

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if self.accelerator.unwrap_model(model) is not model:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        total, count = LabelledLoss(model)(inputs.pop("labels"), **inputs)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = total / num_items_in_batch
        else:
            loss = total / count.clamp(min=1)
        return (loss, {"loss": loss}) if return_outputs else loss
