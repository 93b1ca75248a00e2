"""Training speed: Kodcu's trainer against plain transformers + PEFT, in the same run.

    python benchmarks/train.py --model DIR --data code_alpaca_2k.json [--steps 8]
    python benchmarks/train.py --random gemma3-1b --tokenizer DIR --data ...   (GPU sizes)

Both sides train the same LoRA (all linear layers, r 16) on the same base model,
rows, batch size and sequence length, for the same number of optimizer steps,
each in a fresh process so that peak memory is its own. The baseline is how most
tutorials fine-tune: the Alpaca prompt and response as one string, padded to the
sequence length, with DataCollatorForLanguageModeling (loss on every token).
Kodcu's trainer masks the prompt and, with packing, fills each row with examples;
it runs the output layer only where the loss is (`kodcu-packed-full-loss` does not).

Reported per side: useful (non-padding) tokens trained per second, useful tokens
per row (of at most --seq), time per step, and peak memory (CUDA:
torch.cuda.max_memory_allocated; CPU: the process's peak resident size, model load
included). Timing covers the training
loop only, from the first step to the last.

`--random NAME` trains a randomly initialised model with a real model's shape (a
GPU machine has no network to fetch weights; speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.random_models import RANDOM_SHAPES, random_model  # noqa: E402

SIDES = ("baseline", "kodcu", "kodcu-packed", "kodcu-packed-full-loss")
"""kodcu-packed-full-loss: packed, with the model's own loss over every position's logits
(training.labelled_loss false), to show what the labelled-position loss saves."""


# -- one side, in its own process ---------------------------------------------------


class StepClock:
    """A TrainerCallback timing the loop from the first step's start to the last's end."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if clock.start is None:
                    clock.sync()
                    clock.start = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock.sync()
                clock.end = time.perf_counter()
                clock.steps = state.global_step

        self.start: float | None = None
        self.end = 0.0
        self.steps = 0
        self.callback = Callback()

    @staticmethod
    def sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def seconds(self) -> float:
        assert self.start is not None, "no training step ran"
        return self.end - self.start


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_kodcu(
    args: argparse.Namespace, packing: bool, work: Path, labelled_loss: bool = True
) -> dict[str, Any]:
    from trainer.config import load_config
    from trainer.train import run

    config = {
        "model": {"base": args.model, "gradient_checkpointing": False},
        "data": {
            "sources": [{"path": args.data, "limit": args.rows}],
            "on_bad_row": "skip",
            "validation_fraction": 0.0,
            "max_length": args.seq,
            "packing": packing,
        },
        # Hygiene runs before training and outside the timed loop; off to keep the rows equal.
        "hygiene": {
            "quality_filter": False,
            "exact_dedup": False,
            "near_dedup": False,
            "decontaminate": False,
        },
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {
            "output_dir": str(work / "adapter"),
            "max_steps": args.steps,
            "batch_size": args.batch,
            "gradient_accumulation_steps": 1,
            "learning_rate": 2e-4,
            "logging_steps": 1,
            "save_steps": 10_000,
            "seed": 0,
            "labelled_loss": labelled_loss,
        },
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    clock = StepClock()
    run(load_config(path), callbacks=[clock.callback])
    record = json.loads((work / "adapter" / "kodcu.json").read_text())
    data = record["data"]
    rows = data["packing"].get("train_rows") if packing else data["train_rows"]
    return {
        "seconds": clock.seconds(),
        "steps": clock.steps,
        "useful_tokens_per_row": data["tokens"] / rows,
        "final_loss": record["metrics"]["train_loss"],
    }


def run_baseline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from trainer.data import SourceConfig, load_examples

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, _ = load_examples([SourceConfig(args.data, limit=args.rows)], on_bad_row="skip")
    preamble = "Below is an instruction that describes a task. Write a response that "
    texts = [
        f"{preamble}appropriately completes the request.\n\n### Instruction:\n{e.instruction}"
        + (f"\n\n### Input:\n{e.input}" if e.input else "")
        + f"\n\n### Response:\n{e.output}{tokenizer.eos_token}"
        for e in examples
    ]
    encoded = tokenizer(texts, truncation=True, max_length=args.seq, padding="max_length")
    pairs = zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    rows = [{"input_ids": ids, "attention_mask": mask} for ids, mask in pairs]
    useful = sum(sum(row["attention_mask"]) for row in rows) / len(rows)

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
    model = get_peft_model(model, lora)
    training = TrainingArguments(
        output_dir=str(work / "baseline"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=2e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=dtype == torch.bfloat16,
        use_cpu=not cuda,
        seed=0,
    )
    clock = StepClock()
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=rows,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[clock.callback],
    )
    result = trainer.train()
    return {
        "seconds": clock.seconds(),
        "steps": clock.steps,
        "useful_tokens_per_row": useful,
        "final_loss": result.training_loss,
    }


def run_side(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kodcu-bench-") as tmp:
        work = Path(tmp)
        if args.side == "baseline":
            result = run_baseline(args, work)
        else:
            packing = args.side.startswith("kodcu-packed")
            labelled_loss = not args.side.endswith("full-loss")
            result = run_kodcu(args, packing, work, labelled_loss)
    result["peak_memory_mb"] = peak_memory_mb()
    print("RESULT " + json.dumps(result), flush=True)


# -- the comparison ----------------------------------------------------------------


def compare(args: argparse.Namespace) -> None:
    import torch

    with tempfile.TemporaryDirectory(prefix="kodcu-bench-model-") as tmp:
        if args.random:
            args.model = random_model(args.random, args.tokenizer, Path(tmp))
        results = {}
        for side in args.sides:
            command = [sys.executable, __file__, "--side", side, "--model", args.model]
            command += ["--data", args.data, "--steps", str(args.steps), "--rows", str(args.rows)]
            command += ["--batch", str(args.batch), "--seq", str(args.seq)]
            print(f"running {side} …", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
            results[side] = json.loads(line.removeprefix("RESULT "))

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    threads = torch.get_num_threads()
    model = args.random + " (random weights)" if args.random else Path(args.model).name
    print(f"\nmodel {model} · {device} · {threads} CPU threads · batch {args.batch} x "
          f"{args.seq} tokens · {args.steps} steps · LoRA r 16, all linear layers\n")  # fmt: skip
    print(
        "| trainer | useful tokens/s | vs baseline | useful tokens/row | s/step | peak MB | loss |"
    )  # noqa: E501
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base_speed = None
    for side, r in results.items():
        useful = r["useful_tokens_per_row"] * args.batch * r["steps"]
        speed = useful / r["seconds"]
        base_speed = base_speed or (speed if side == "baseline" else None)
        ratio = f"{speed / base_speed:.2f}x" if base_speed else "—"
        print(
            f"| {side} | {speed:,.0f} | {ratio} | {r['useful_tokens_per_row']:.0f} "
            f"| {r['seconds'] / r['steps']:.2f} "
            f"| {r['peak_memory_mb']:,.0f} | {r['final_loss']:.3f} |"
        )
    print("\nloss: the last logged training loss; the baseline's counts prompt tokens too.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a Hugging Face model folder (the base model)")
    parser.add_argument("--random", choices=sorted(RANDOM_SHAPES), help="random weights, shaped so")
    parser.add_argument("--tokenizer", help="tokenizer folder for --random")
    parser.add_argument("--data", required=True, help="Alpaca-format json/jsonl rows")
    parser.add_argument("--rows", type=int, default=512, help="rows to read (default 512)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps (default 8)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step (default 4)")
    parser.add_argument("--seq", type=int, default=256, help="sequence length (default 256)")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, internal
    args = parser.parse_args()
    if not (args.model or (args.random and args.tokenizer)):
        parser.error("give --model DIR, or --random NAME with --tokenizer DIR")
    if args.side:
        run_side(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
