"""The sides of `benchmarks/train.py`: one trainer each, run in a process of its own.

Every side trains the same LoRA on the same token ids: Kodcu's encoding of the same
rows (chat template, the response and its end-of-turn token labelled, the prompt not).
What differs is only how each trainer batches and computes:

- `hf`: plain transformers `Trainer` + PEFT, rows padded to the batch's longest;
- `trl`: TRL's `SFTTrainer` with packing (best-fit decreasing), padding-free batches and
  completion-only loss;
- `trl-liger`: the same with `use_liger_kernel=True` (CUDA only);
- `kodcu`, `kodcu-packed`: Kodcu's trainer, the output layer run only at labelled
  positions; `kodcu-full-loss`, `kodcu-packed-full-loss`: the same with the model's own
  loss over all logits.

A `Meter` callback measures each side the same way: the loop's time from the first
step's start to the last step's end, the non-padding tokens the embedding layer saw in
those steps (counted, not estimated), and the loss on held-out rows before and after.
With `Settings.profile` it also profiles one warm step (benchmarks/step_profile.py) and
leaves that step out of the timing.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.step_profile import StepProfile

SIDES = (
    "hf",
    "trl",
    "trl-liger",
    "kodcu",
    "kodcu-full-loss",
    "kodcu-packed",
    "kodcu-packed-full-loss",
)
CUDA_ONLY = ("trl-liger",)

# The optimizer schedule of every side, as Kodcu's config spells it.
SCHEDULE = {"learning_rate": 2e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "seed": 0}
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


@dataclass
class Settings:
    """What every side shares; built from the command line."""

    model: str
    data: str
    rows: int
    heldout: int
    steps: int
    batch: int
    seq: int
    checkpointing: bool
    profile: str | None = None
    """A folder: profile one step of each side into it (benchmarks/step_profile.py)."""


# -- shared measurements ----------------------------------------------------------------


def heldout_loss(model: Any, rows: list[tuple[list[int], list[int]]]) -> float:
    """Mean cross-entropy per labelled token over held-out rows, one row at a time."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in rows:
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1]  # (T-1, V)
            target = torch.tensor(labels[1:], device=device)  # (T-1,)
            keep = target != -100
            losses = torch.nn.functional.cross_entropy(
                logits[keep].float(), target[keep], reduction="sum"
            )
            total += losses.item()
            count += int(keep.sum())
    model.train(was_training)
    return total / count


PROFILED_STEP = 3
"""The step profiled with --profile (or the last, if fewer): warm, past the first ones."""


class Meter:
    """A TrainerCallback: time of the loop, non-padding tokens trained, held-out losses;
    and, given a StepProfile, one profiled step that the timing leaves out."""

    def __init__(
        self,
        pad_token_id: int,
        heldout: list[tuple[list[int], list[int]]],
        profile: StepProfile | None = None,
    ) -> None:
        from transformers import TrainerCallback

        meter = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                model = kw["model"]
                meter.loss_before = heldout_loss(model, heldout)
                embed = model.get_input_embeddings()
                embed.register_forward_pre_hook(meter.count)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if meter.start is None:
                    sync()
                    meter.start = time.perf_counter()
                if profile and state.global_step + 1 == min(PROFILED_STEP, state.max_steps):
                    sync()
                    meter.left_out = (time.perf_counter(), meter.tokens)
                    profile.start()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                meter.steps = state.global_step
                profiled = profile and profile.profiler is not None and not profile.seconds
                # Wait for the GPU only where a time is read: a wait after every step
                # would keep each side's host from queueing the next step's work early,
                # which no user's training does.
                if profiled or state.global_step >= state.max_steps:
                    meter.stop_clock()
                if profiled:
                    profile.stop()
                    started, tokens = meter.left_out
                    meter.left_out = (meter.end - started, meter.tokens - tokens)

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if meter.end_step != meter.steps:  # ended before max_steps
                    meter.stop_clock()
                meter.training = False
                meter.loss_after = heldout_loss(kw["model"], heldout)

        self.pad_token_id = pad_token_id
        self.start: float | None = None
        self.end = 0.0
        self.end_step = 0  # the step whose end `end` is
        self.steps = 0
        # Counted on the batch's device and read once at the end: reading a GPU count
        # every step would make the host wait for the GPU there.
        self.tokens: Any = 0
        self.training = True
        self.loss_before = self.loss_after = math.nan
        self.profile = profile
        self.left_out: tuple[float, Any] = (0.0, 0)  # the profiled step's seconds and tokens
        self.callback = Callback()

    def count(self, module: Any, inputs: tuple) -> None:
        """Forward pre-hook of the embedding layer: count the training batches' real tokens."""
        import torch

        if self.training and module.training and torch.is_grad_enabled():
            self.tokens = self.tokens + (inputs[0] != self.pad_token_id).sum()

    def stop_clock(self) -> None:
        """The time now, once the GPU has done all the work queued so far."""
        sync()
        self.end = time.perf_counter()
        self.end_step = self.steps

    def result(self) -> dict[str, Any]:
        assert self.start is not None, "no training step ran"
        left_out_s, left_out_tokens = self.left_out
        seconds = self.end - self.start - left_out_s
        tokens = int(self.tokens)
        timed = tokens - int(left_out_tokens)
        result = {
            "seconds": seconds,
            "steps": self.steps - (1 if self.profile else 0),  # the steps timed
            "useful_tokens": tokens,
            "useful_tokens_per_s": timed / seconds,
            "heldout_loss_before": self.loss_before,
            "heldout_loss": self.loss_after,
            "peak_mb": peak_memory_mb(),
        }
        if self.profile:
            result["profile"] = self.profile.summary()
        return result


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mb() -> float:
    """CUDA: the most memory torch allocated; CPU: the process's peak resident size."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# -- the rows, as Kodcu encodes them ------------------------------------------------------


def kodcu_config(settings: Settings, work: Path, packing: bool, labelled_loss: bool) -> dict:
    """Kodcu's config for this run; the baselines read their tokenizer and rows through it."""
    return {
        "model": {"base": settings.model, "gradient_checkpointing": settings.checkpointing},
        "data": {
            "sources": [{"path": settings.data, "limit": settings.rows}],
            "on_bad_row": "skip",
            "validation_fraction": 0.0,
            "max_length": settings.seq,
            "packing": packing,
        },
        # Hygiene runs before training and outside the timed loop; off to keep the rows equal.
        "hygiene": {
            "quality_filter": False,
            "exact_dedup": False,
            "near_dedup": False,
            "decontaminate": False,
        },
        "lora": LORA,
        "training": {
            "output_dir": str(work / "adapter"),
            "max_steps": settings.steps,
            "batch_size": settings.batch,
            "gradient_accumulation_steps": 1,
            "logging_steps": 1,
            "save_steps": 10_000,
            "labelled_loss": labelled_loss,
            **SCHEDULE,
        },
    }


def load_config(settings: Settings, work: Path, packing: bool, labelled_loss: bool) -> Any:
    from trainer.config import load_config as load

    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(kodcu_config(settings, work, packing, labelled_loss)))
    return load(path)


def encoded_rows(settings: Settings, tokenizer: Any, first: int, count: int) -> list:
    """(input_ids, labels) of rows first … first+count of the data, as Kodcu encodes them."""
    from trainer.data import SourceConfig, load_examples
    from trainer.features import encode_example, end_of_turn_ids

    source = SourceConfig(settings.data, limit=first + count)
    examples, _ = load_examples([source], on_bad_row="skip")
    end = end_of_turn_ids(tokenizer)
    rows = []
    for e in examples[first:]:
        encoded = encode_example(tokenizer, e.instruction, e.input, e.output, settings.seq, end)
        if encoded is not None:
            rows.append(encoded[:2])
    return rows


def heldout_rows(settings: Settings, tokenizer: Any) -> list:
    """The rows after the training rows: the same for every side, never trained on."""
    return encoded_rows(settings, tokenizer, settings.rows, settings.heldout)


# -- the sides ------------------------------------------------------------------------------


def _profile(settings: Settings, side: str) -> StepProfile | None:
    return StepProfile(Path(settings.profile), side) if settings.profile else None


def run_kodcu(settings: Settings, work: Path, side: str) -> dict:
    from trainer.train import load_tokenizer, run

    packing, labelled_loss = side.startswith("kodcu-packed"), not side.endswith("full-loss")
    config = load_config(settings, work, packing, labelled_loss)
    tokenizer = load_tokenizer(config)
    meter = Meter(
        tokenizer.pad_token_id, heldout_rows(settings, tokenizer), _profile(settings, side)
    )
    run(config, callbacks=[meter.callback])
    return meter.result()


def _base_model(settings: Settings) -> tuple[Any, Any]:
    """The base model in the dtype every side trains in: bf16 on CUDA, float32 on a CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(settings.model, dtype=dtype)
    return model, dtype


def _baseline_setup(settings: Settings, work: Path, side: str) -> tuple[Any, list, Meter]:
    """A baseline's tokenizer (Kodcu's, with its chat template), training rows and meter."""
    from trainer.train import load_tokenizer

    tokenizer = load_tokenizer(load_config(settings, work, packing=False, labelled_loss=False))
    train = encoded_rows(settings, tokenizer, 0, settings.rows)
    heldout = heldout_rows(settings, tokenizer)
    return tokenizer, train, Meter(tokenizer.pad_token_id, heldout, _profile(settings, side))


def _lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _common_arguments(settings: Settings, work: Path, dtype: Any) -> dict[str, Any]:
    import torch

    return {
        "output_dir": str(work / "checkpoints"),
        "max_steps": settings.steps,
        "per_device_train_batch_size": settings.batch,
        "learning_rate": SCHEDULE["learning_rate"],
        "lr_scheduler_type": SCHEDULE["lr_scheduler"],
        "warmup_steps": SCHEDULE["warmup_ratio"],
        "weight_decay": 0.0,
        "seed": SCHEDULE["seed"],
        "data_seed": SCHEDULE["seed"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": dtype == torch.bfloat16,
        "use_cpu": not torch.cuda.is_available(),
        "gradient_checkpointing": settings.checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "dataloader_num_workers": 0,
    }


def run_hf(settings: Settings, work: Path) -> dict:
    """Plain transformers + PEFT: rows padded to the batch's longest, padding unlabelled."""
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer, train, meter = _baseline_setup(settings, work, "hf")
    dataset = [{"input_ids": ids, "labels": labels} for ids, labels in train]
    model, dtype = _base_model(settings)
    trainer = Trainer(
        model=get_peft_model(model, _lora_config()),
        args=TrainingArguments(**_common_arguments(settings, work, dtype)),
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest"),
        callbacks=[meter.callback],
    )
    trainer.train()
    return meter.result()


def run_trl(settings: Settings, work: Path, side: str) -> dict:
    """TRL's SFTTrainer: packed (BFD), padding-free, completion-only loss."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer, train, meter = _baseline_setup(settings, work, side)
    # Already tokenized: TRL keeps the ids and builds labels from completion_mask.
    completion = [[int(label != -100) for label in labels] for _, labels in train]
    dataset = Dataset.from_dict(
        {"input_ids": [ids for ids, _ in train], "completion_mask": completion}
    )
    model, dtype = _base_model(settings)
    arguments = SFTConfig(
        **_common_arguments(settings, work, dtype),
        max_length=settings.seq,
        packing=True,
        padding_free=True,
        completion_only_loss=True,
        use_liger_kernel=side == "trl-liger",
    )
    trainer = SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(),
        callbacks=[meter.callback],
    )
    trainer.train()
    return meter.result()


def run_side(side: str, settings: Settings, work: Path) -> dict:
    if side == "hf":
        return run_hf(settings, work)
    if side.startswith("trl"):
        return run_trl(settings, work, side)
    return run_kodcu(settings, work, side)
