"""Set up, train and save a LoRA adapter: the body of `kodcu-train`.

    from trainer.config import load_config
    from trainer.train import run
    output_dir = run(load_config("trainer/configs/tiny.yaml"), resume=False)

Steps: read and clean the data (trainer.data, trainer.hygiene), tokenize it with the
chat template the desktop will use (trainer.features), load the base model (in 4 bit
for QLoRA), wrap it in PEFT LoRA, and train with transformers' `Trainer`, so that
`accelerate launch` and `torchrun` run the same script on several GPUs or machines.

The pad token: a tokenizer without one pads with its <unk> token if it has one, else
with EOS. No token is added (that would resize the embeddings and make the adapter
carry them). Padding is harmless either way: it is masked out of attention, and
labels are decided by position, so an EOS used as padding still carries loss where
it ends a response.
"""

from __future__ import annotations

import os
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from trainer.config import TrainConfig, to_dict
from trainer.data import DataError, load_examples, split_examples
from trainer.features import (
    Collator,
    Encoded,
    Packed,
    RowDataset,
    TokenStats,
    check_single_bos,
    encode_examples,
    pack,
    verify_packing,
)
from trainer.hygiene import apply_hygiene
from trainer.lora_forward import fold_lora_forward
from trainer.output import CHECKPOINTS, RUNS, check_output_dir, checkpoint_epoch, write_adapter
from trainer.packed_attention import PACKED_SDPA
from trainer.packed_attention import register as register_packed_attention

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message says what to change."""


def is_main_process() -> bool:
    # torchrun and accelerate set RANK; a plain run is the main process.
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def resolve_device(config: TrainConfig) -> str:
    """cuda, mps or cpu: the configured one, or the best one present for auto."""
    wanted = config.training.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainError("training.device is cuda, but torch sees no CUDA GPU; use auto or cpu")
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise TrainError("training.device is mps, but MPS is not available; use auto or cpu")
    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def resolve_dtype(config: TrainConfig, device: str) -> torch.dtype:
    """The dtype to load and compute in.

    auto: bfloat16 on a CUDA GPU that has it, float16 on an older one, float32 elsewhere.
    """
    name = config.model.dtype
    if name == "auto":
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device == "cpu":
        raise TrainError("model.dtype float16 trains only on a GPU; use bfloat16 or float32 on cpu")
    if name == "float32" and config.model.quantization == "4bit":
        raise TrainError("model.quantization 4bit computes in 16 bit; set model.dtype to auto")
    return DTYPES[name]


def load_tokenizer(config: TrainConfig) -> Any:
    """The base tokenizer with the training chat template, a pad token and right padding."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model.base, revision=config.model.revision)
    except OSError as error:
        raise TrainError(
            f"model.base {config.model.base!r}: cannot load its tokenizer ({error})"
        ) from None
    if config.data.template == "alpaca":
        tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    elif not tokenizer.chat_template:
        raise TrainError(
            f"data.template is 'model', but {config.model.base} has no chat template; "
            "use data.template: alpaca"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise TrainError(f"{config.model.base}: the tokenizer has no pad, unk or eos token")
    tokenizer.padding_side = "right"
    return tokenizer


@dataclass
class PreparedData:
    """Tokenized train and validation rows, and the report of how they were made."""

    train: list[Encoded] | list[Packed]
    validation: list[Encoded] | list[Packed]
    train_encoded: list[Encoded]
    report: dict = field(default_factory=dict)


def prepare_data(config: TrainConfig, tokenizer: Any) -> PreparedData:
    """Load, clean, split and tokenize the data; report every row dropped on the way."""
    examples, sources = load_examples(config.data.sources, config.data.on_bad_row)
    read = sum(report.get("rows", 0) for report in sources)
    say(f"data: {len(examples)} rows kept of {read} read from {len(sources)} source(s)")
    left_out = {
        "over_max_response_lines": "responses over max_response_lines",
        "outside_split": "puzzles outside the split",
        "without_solution": "puzzles without a reference solution",
    }
    for report in sources:
        for key, why in left_out.items():
            if report.get(key):
                say(f"  {report['source']}: {report[key]} rows left out, {why}")
    try:
        examples, steps = apply_hygiene(examples, config.hygiene, progress=say)
    except ValueError as error:
        raise DataError(f"hygiene: {error}") from None
    if not examples:
        raise DataError("no rows are left after hygiene; see the counts above")
    train_rows, validation_rows = split_examples(
        examples, config.data.validation_fraction, config.training.seed, config.data.validation_unit
    )
    max_length = config.data.max_length
    train, train_stats = encode_examples(train_rows, tokenizer, max_length)
    validation, validation_stats = encode_examples(validation_rows, tokenizer, max_length)
    check_single_bos(train, tokenizer.bos_token_id)
    report = {
        "sources": sources,
        "hygiene": steps,
        "train_rows": train_stats.rows,
        "validation_rows": validation_stats.rows,
        "tokens": train_stats.tokens,
        "loss_token_fraction": round(train_stats.loss_fraction, 4),
        "truncated": train_stats.truncated + validation_stats.truncated,
        "dropped_for_length": train_stats.dropped_for_length + validation_stats.dropped_for_length,
        "dropped_for_length_rows": train_stats.dropped_rows + validation_stats.dropped_rows,
        "template": config.data.template,
        "max_length": max_length,
        "packing": {"enabled": config.data.packing, "strategy": config.data.packing_strategy},
    }
    train_data: list[Encoded] | list[Packed] = train
    validation_data: list[Encoded] | list[Packed] = validation
    if config.data.packing:
        strategy = config.data.packing_strategy
        train_data = pack(train, max_length, strategy)
        validation_data = pack(validation, max_length, strategy)
        report["packing"].update(train_rows=len(train_data), validation_rows=len(validation_data))
    _summarize(report, train_stats)
    return PreparedData(train_data, validation_data, train, report)


def _summarize(report: dict, stats: TokenStats) -> None:
    say(
        f"train {report['train_rows']} rows, validation {report['validation_rows']} rows; "
        f"{stats.tokens:,} train tokens; loss on {100 * stats.loss_fraction:.1f}% of tokens "
        "(response only)"
    )
    if report["truncated"] or report["dropped_for_length"]:
        say(
            f"max_length {report['max_length']}: {report['truncated']} responses cut short, "
            f"{report['dropped_for_length']} rows dropped (prompt alone too long: "
            f"{', '.join(report['dropped_for_length_rows']) or '-'})"
        )
    packing = report["packing"]
    if packing["enabled"]:
        say(
            f"packing ({packing['strategy']}): {report['train_rows']} examples in "
            f"{packing['train_rows']} rows of up to {report['max_length']} tokens"
        )


def load_model(config: TrainConfig, device: str, dtype: torch.dtype) -> Any:
    """The base model (4-bit for QLoRA) wrapped in a PEFT LoRA adapter, ready to train."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"revision": config.model.revision, "dtype": dtype}
    register_packed_attention()  # so that attn_implementation may also name it
    if config.model.attn_implementation:
        options["attn_implementation"] = config.model.attn_implementation
    elif config.data.packing and device == "cpu":
        # Packed rows: attention one example at a time, not over the whole masked row.
        options["attn_implementation"] = PACKED_SDPA
    quantized = config.model.quantization == "4bit"
    if quantized:
        options["quantization_config"] = _bnb_config(device, dtype)
        options["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(config.model.base, **options)
    except OSError as error:
        raise TrainError(
            f"model.base {config.model.base!r}: cannot load the model ({error})"
        ) from None
    # No KV cache in training; with one, transformers also ignores packed position ids
    # and lets packed examples attend to each other.
    model.config.use_cache = False
    checkpointing = config.model.gradient_checkpointing
    kwargs = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs=kwargs
        )
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if checkpointing:
        # The frozen embeddings' output needs grad, or checkpointed blocks get none.
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # PEFT asks transformers' deprecated is_gradient_checkpointing; the FutureWarning
        # is about their code, not the user's, so it is not shown in every run's output.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = get_peft_model(model, lora)
    if device == "cpu":
        # The LoRA scaling and sum inside one product: fewer sweeps over every output.
        fold_lora_forward(model)
    return model


def _bnb_config(device: str, dtype: torch.dtype) -> Any:
    if device != "cuda":
        raise TrainError(
            f"model.quantization 4bit (QLoRA) needs a CUDA GPU, and this run is on {device}; "
            "set model.quantization: none"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainError(
            "model.quantization 4bit needs bitsandbytes: pip install 'kodcu[qlora]'"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


class StopOnInterrupt(TrainerCallback):
    """Ctrl+C ends training after the current step with a checkpoint; a second Ctrl+C quits.

    Under torchrun every process gets the signal, maybe at different steps, so the
    processes agree on stopping (all-reduce of the flag) before any of them stops.
    """

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say("\nCtrl+C: saving a checkpoint after this step (Ctrl+C again quits without one)")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        stop = self.requested
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([int(stop)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step


def training_arguments(
    config: TrainConfig, device: str, dtype: torch.dtype, has_validation: bool
) -> Any:
    from transformers import TrainingArguments

    t = config.training
    output = Path(t.output_dir)
    return TrainingArguments(
        output_dir=str(output / CHECKPOINTS),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a share of the total steps
        lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        seed=t.seed,
        data_seed=t.seed,
        use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        report_to="none",  # TensorBoard is added as a callback, writing into output_dir/runs
        remove_unused_columns=False,  # keep position_ids of packed rows
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )


def run(
    config: TrainConfig,
    resume: bool = False,
    callbacks: list[TrainerCallback] | None = None,
) -> Path | None:
    """Train and write the adapter directory; returns it, or None when stopped by Ctrl+C."""
    from transformers import set_seed
    from transformers.integrations import TensorBoardCallback

    output_dir = Path(config.training.output_dir)
    checkpoint = check_output_dir(output_dir, resume)
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    if config.model.quantization == "4bit":
        _bnb_config(device, dtype)  # fail before reading any data
    tokenizer = load_tokenizer(config)
    data = prepare_data(config, tokenizer)
    set_seed(config.training.seed)  # LoRA initialisation
    say(f"model: {config.model.base} on {device} in {str(dtype).removeprefix('torch.')}")
    model = load_model(config, device, dtype)
    if is_main_process():
        model.print_trainable_parameters()

    if config.data.packing and len(data.train_encoded) > 1:
        verify_packing(model, data.train_encoded[0].input_ids, data.train_encoded[1].input_ids)
    flash = "flash" in str(model.get_base_model().config._attn_implementation)
    collator = Collator(tokenizer.pad_token_id, flatten=config.data.packing and flash)
    first_rows = [RowDataset(data.train)[index] for index in range(min(2, len(data.train)))]
    trainer_class = choose_trainer(config, model, collator(first_rows), device)
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(output_dir / RUNS)
    interrupt = StopOnInterrupt()
    trainer = trainer_class(
        model=model,
        args=training_arguments(config, device, dtype, bool(data.validation)),
        train_dataset=RowDataset(data.train),
        eval_dataset=RowDataset(data.validation) if data.validation else None,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[tensorboard, interrupt, *(callbacks or [])],
    )
    if checkpoint is not None:
        say(f"resuming from {checkpoint}")
    start_epoch = checkpoint_epoch(checkpoint)
    interrupt.install()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        interrupt.uninstall()
    if interrupt.stopped_at is not None:
        say(
            f"stopped at step {interrupt.stopped_at}; checkpoint saved under "
            f"{output_dir / CHECKPOINTS}. Continue with --resume."
        )
        return None
    if data.validation and not _evaluated_at_end(trainer):
        trainer.evaluate()
    tokens = data.report["tokens"] * (trainer.state.epoch - start_epoch)
    write_adapter(trainer, to_dict(config), data.report, result, tokens)
    say(f"adapter written to {output_dir} (kodcu.json, loss.png)")
    say(f"TensorBoard: tensorboard --logdir {output_dir / RUNS}")
    return output_dir


def choose_trainer(config: TrainConfig, model: Any, batch: dict, device: str) -> type:
    """LabelledLossTrainer when training.labelled_loss is on and gives this model's own loss
    on a first batch; else transformers' Trainer, and the config records that."""
    from transformers import Trainer

    from trainer.loss import LabelledLossTrainer, check_labelled_loss

    if not config.training.labelled_loss:
        return Trainer
    problem = check_labelled_loss(model, {key: value.to(device) for key, value in batch.items()})
    if problem is None:
        return LabelledLossTrainer
    say(f"training.labelled_loss: not for this model ({problem}); using its own loss")
    config.training.labelled_loss = False  # kodcu.json says what the run did
    return Trainer


def _evaluated_at_end(trainer: Any) -> bool:
    step = trainer.state.global_step
    return any("eval_loss" in e and e["step"] == step for e in trainer.state.log_history)
