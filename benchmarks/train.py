"""Training speed: Kodcu's trainer against what model builders run instead, in one run.

    python benchmarks/train.py --model DIR --data code_alpaca_2k.json [--steps 8] [--json out.json]
    python benchmarks/train.py --random codellama-7b --tokenizer DIR --data ... --seq 2048 \
        --checkpointing                                   (GPU shapes, random weights)

The sides (benchmarks/train_sides.py) train the same LoRA (r 16, all linear layers) on
the same base model, token ids, batch size, sequence length, schedule and number of
optimizer steps, each in a fresh process so that its peak memory is its own:

    hf                      transformers Trainer + PEFT, rows padded to the batch's longest
    trl                     TRL SFTTrainer: packing, padding-free, completion-only loss
    trl-liger               the same with Liger's kernels (CUDA only)
    kodcu                   Kodcu's trainer, unpacked
    kodcu-full-loss         unpacked, with the model's own loss over every position's logits
    kodcu-packed            Kodcu's trainer, packed (the recipe's setting)
    kodcu-packed-full-loss  packed, with the model's own loss over every position's logits

Reported per side: useful tokens/s (the non-padding tokens of the batches timed, counted
as they enter the model, over the loop's time from the first step's start to the last
step's end), useful tokens trained, s/step, peak memory (CUDA: torch's peak allocation;
CPU: the process's peak resident size, model load included), and the loss per response
token on the same held-out rows (the rows after --rows) before and after training, so a
faster side that learns less shows up. `--json FILE` writes the same rows.

`--profile DIR` also profiles one warm step of each side, leaves it out of that side's
timing, and prints a second table: the times the host waited for the GPU, ops, the
GPU's busy share of the step and the costliest ops; the op tables and Chrome traces go
into DIR (benchmarks/step_profile.py).

`--random NAME` trains a randomly initialised model of a real model's shape (a GPU
machine has no network to fetch weights; speed does not depend on the values). Unsloth
is not a side: it needs its own CUDA build and patches the model at import.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.random_models import RANDOM_SHAPES, random_model  # noqa: E402
from benchmarks.step_profile import print_profiles  # noqa: E402
from benchmarks.train_sides import CUDA_ONLY, SIDES, Settings, run_side  # noqa: E402

DEFAULT_SIDES = ("hf", "trl", "kodcu", "kodcu-packed", "kodcu-packed-full-loss")
BASELINES = ("hf", "trl", "trl-liger")


def one_side(side: str, settings: Settings) -> None:
    """Runs in the side's own process; prints its result as one RESULT line."""
    with tempfile.TemporaryDirectory(prefix="kodcu-bench-") as tmp:
        result = run_side(side, settings, Path(tmp))
    print("RESULT " + json.dumps(result), flush=True)


def run_sides(sides: list[str], settings: Settings) -> dict[str, dict[str, Any]]:
    results = {}
    for side in sides:
        command = [
            sys.executable,
            __file__,
            "--side",
            side,
            "--settings",
            json.dumps(asdict(settings)),
        ]
        print(f"running {side} …", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
        results[side] = {"side": side, **json.loads(line.removeprefix("RESULT "))}
    return results


def print_table(results: dict[str, dict[str, Any]], settings: Settings, model: str) -> None:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    threads = torch.get_num_threads()
    checkpointing = "on" if settings.checkpointing else "off"
    print(f"\nmodel {model} · {device} · {threads} CPU threads · batch {settings.batch} x "
          f"{settings.seq} tokens · {settings.steps} steps · LoRA r 16, all linear layers · "
          f"gradient checkpointing {checkpointing}\n")  # fmt: skip
    baselines = [side for side in BASELINES if side in results]
    ratio_heads = "".join(f" vs {side} |" for side in baselines)
    print(f"| side | useful tokens/s |{ratio_heads} useful tokens | s/step | peak MB "
          "| held-out loss |")  # fmt: skip
    print("| --- " * (6 + len(baselines)) + "|")
    for side, r in results.items():
        ratios = "".join(
            f" {r['useful_tokens_per_s'] / results[b]['useful_tokens_per_s']:.2f}x |"
            for b in baselines
        )
        print(
            f"| {side} | {r['useful_tokens_per_s']:,.0f} |{ratios} {r['useful_tokens']:,} "
            f"| {r['seconds'] / r['steps']:.2f} | {r['peak_mb']:,.0f} | {r['heldout_loss']:.4f} |"
        )
    first = next(iter(results.values()))
    print(f"\nheld-out loss: mean cross-entropy per response token on {settings.heldout} rows "
          f"not trained on; {first['heldout_loss_before']:.4f} before training.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a Hugging Face model folder (the base model)")
    parser.add_argument("--random", choices=sorted(RANDOM_SHAPES), help="random weights, shaped so")
    parser.add_argument("--tokenizer", help="tokenizer folder for --random")
    parser.add_argument("--data", help="Alpaca-format json/jsonl rows")
    parser.add_argument("--rows", type=int, default=512, help="training rows to read (default 512)")
    parser.add_argument("--heldout", type=int, default=32, help="held-out rows after them (32)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps (default 8)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step (default 4)")
    parser.add_argument("--seq", type=int, default=256, help="sequence length (default 256)")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    default = " ".join(DEFAULT_SIDES) + " (+ trl-liger on CUDA when liger-kernel is installed)"
    parser.add_argument("--sides", nargs="+", choices=SIDES, help=f"default: {default}")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--profile", type=Path, help="profile one step per side into this folder")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # internal: one side
    parser.add_argument("--settings", help=argparse.SUPPRESS)  # internal: its settings
    args = parser.parse_args()
    if args.side:
        one_side(args.side, Settings(**json.loads(args.settings)))
        return
    if not args.data:
        parser.error("--data is required")
    if not (args.model or (args.random and args.tokenizer)):
        parser.error("give --model DIR, or --random NAME with --tokenizer DIR")
    if args.profile and args.steps < 2:
        parser.error("--profile leaves one step out of the timing: give --steps 2 or more")
    sides = args.sides or default_sides()
    cuda_only = [side for side in sides if side in CUDA_ONLY]
    if cuda_only and not cuda_available():
        parser.error(f"--sides {' '.join(cuda_only)}: needs a CUDA GPU")

    with tempfile.TemporaryDirectory(prefix="kodcu-bench-model-") as tmp:
        model = args.model
        if args.random:
            model = random_model(args.random, args.tokenizer, Path(tmp))
        settings = Settings(
            model, args.data, args.rows, args.heldout, args.steps, args.batch, args.seq,
            args.checkpointing, str(args.profile.resolve()) if args.profile else None,
        )  # fmt: skip
        results = run_sides(sides, settings)
    name = f"{args.random} (random weights)" if args.random else Path(args.model).name
    print_table(results, settings, name)
    if args.profile:
        print_profiles(results, args.profile)
    if args.json:
        keys = ("side", "useful_tokens_per_s", "peak_mb", "useful_tokens", "heldout_loss")
        keys += ("heldout_loss_before", "seconds", "steps", "profile")
        rows = [{key: r[key] for key in keys if key in r} for r in results.values()]
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_sides() -> list[str]:
    import importlib.util

    sides = list(DEFAULT_SIDES)
    if cuda_available() and importlib.util.find_spec("liger_kernel") is not None:
        sides.insert(2, "trl-liger")
    return sides


if __name__ == "__main__":
    main()
