"""Where a training step's time goes: Kodcu's packed trainer under torch's profiler.

    python benchmarks/train_profile.py --model DIR --data code_alpaca_2k.json --seq 512

Trains as `benchmarks/train.py`'s `kodcu-packed` side does (same LoRA, rows, schedule),
profiles --steps optimizer steps after --warmup, and prints the step's time by part:

    output layer + loss   every op on a tensor with a vocabulary-sized dimension (but
                          the input embedding's lookup): the labelled positions'
                          logits, their softmax and gradient
    body matmuls          the transformer's and the LoRA matrices' products
    attention             scaled-dot-product attention, forward and backward
    other                 the rest (norms, activations, copies, the optimizer), top ops named

with each part's arithmetic (torch's FLOP count for its matrix products) and the rate it
ran at, beside the rate the same CPU reaches on plain float32 products of the step's own
shapes. The step cannot get faster than its arithmetic at that rate without doing less
arithmetic or doing it in lower precision; the table shows how far it is from that bound.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.train_sides import Settings, load_config  # noqa: E402

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmm_"}
PARTS = ("output layer + loss", "body matmuls", "attention", "other")


class Profiled:
    """A TrainerCallback that profiles steps warmup+1 … warmup+steps."""

    def __init__(self, warmup: int, steps: int) -> None:
        from transformers import TrainerCallback

        outer = self
        self.profiler: Any = None
        self.seconds = 0.0
        self.tokens = 0
        self.started = 0.0
        self.pad_token_id: int | None = None

        class Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == warmup:
                    outer.start(kw["model"])

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == warmup + steps and outer.profiler is not None:
                    outer.stop()
                    control.should_training_stop = True

        self.callback = Callback()

    def start(self, model: Any) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.pad_token_id = model.config.pad_token_id
        embed = model.get_input_embeddings()
        embed.register_forward_pre_hook(self.count)
        self.profiler = profile(
            activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True
        )
        self.profiler.__enter__()
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.started
        self.profiler.__exit__(None, None, None)

    def count(self, module: Any, inputs: tuple) -> None:
        if self.profiler is not None and module.training and self.seconds == 0.0:
            self.tokens += int((inputs[0] != self.pad_token_id).sum())


def part_of(name: str, shapes: list, vocab: int) -> str:
    if name.startswith("aten::embedding"):
        return "other"  # the input embedding: a lookup in the (tied) vocabulary matrix
    if any(vocab in shape for shape in shapes if isinstance(shape, list)):
        return "output layer + loss"
    if name in MATMULS:
        return "body matmuls"
    if "attention" in name or "sdpa" in name:
        return "attention"
    return "other"


def split(profiler: Any, vocab: int) -> tuple[dict, dict, dict]:
    """Self CPU seconds and FLOPs per part, and each part's seconds per op."""
    seconds: dict[str, float] = defaultdict(float)
    flops: dict[str, float] = defaultdict(float)
    ops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for event in profiler.key_averages(group_by_input_shape=True):
        part = part_of(event.key, event.input_shapes, vocab)
        seconds[part] += event.self_cpu_time_total / 1e6
        flops[part] += event.flops or 0
        ops[part][event.key] += event.self_cpu_time_total / 1e6
    return seconds, flops, ops


def matmul_rate(m: int, k: int, n: int, repeats: int = 3) -> float:
    """GFLOP/s of a float32 (m, k) @ (k, n) product on this CPU, best of `repeats`."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model folder")
    parser.add_argument("--data", required=True, help="Alpaca-format json/jsonl rows")
    parser.add_argument("--rows", type=int, default=512, help="training rows to read (512)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step (default 4)")
    parser.add_argument("--seq", type=int, default=512, help="sequence length (default 512)")
    parser.add_argument("--warmup", type=int, default=1, help="steps before profiling (1)")
    parser.add_argument("--steps", type=int, default=2, help="steps profiled (default 2)")
    args = parser.parse_args()
    import torch

    from trainer.train import run

    settings = Settings(args.model, args.data, args.rows, 0, args.warmup + args.steps + 1,
                        args.batch, args.seq, False)  # fmt: skip
    profiled = Profiled(args.warmup, args.steps)
    with tempfile.TemporaryDirectory(prefix="kodcu-profile-") as tmp:
        config = load_config(settings, Path(tmp), packing=True, labelled_loss=True)
        run(config, callbacks=[profiled.callback])
    if profiled.profiler is None or profiled.seconds == 0.0:
        sys.exit("no step was profiled: give --rows enough for --warmup + --steps steps")

    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(args.model)
    text_config = getattr(model_config, "text_config", model_config)
    vocab, width = text_config.vocab_size, text_config.hidden_size
    seconds, flops, ops = split(profiled.profiler, vocab)
    rows = args.batch * args.seq
    rates = {
        "output layer + loss": matmul_rate(1024, width, vocab // 4),
        "body matmuls": matmul_rate(rows, width, text_config.intermediate_size),
    }
    per_step = profiled.seconds / args.steps
    profiled_total = sum(seconds.values())
    print(f"\n{Path(args.model).name} · {torch.get_num_threads()} CPU threads · batch "
          f"{args.batch} x {args.seq}, packed · {args.steps} steps profiled · "
          f"{profiled.tokens / profiled.seconds:,.0f} tokens/s · {per_step:.1f} s/step "
          "(profiler on)\n")  # fmt: skip
    print("| part | s/step | share | GFLOP/step | GFLOP/s | float32 product rate, same CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    bound = 0.0
    for part in PARTS:
        s, f = seconds[part] / args.steps, flops[part] / args.steps / 1e9
        rate = f"{f / s:,.0f}" if f and s else "–"
        ref = rates.get(part)
        bound += f / ref if ref else 0.0
        print(f"| {part} | {s:.3g} | {seconds[part] / profiled_total:.0%} | {f:,.0f} | {rate} "
              f"| {f'{ref:,.0f}' if ref else '–'} |")  # fmt: skip
    print("\nlargest ops of each part (s/step):")
    for part in PARTS:
        top = sorted(ops[part].items(), key=lambda item: -item[1])[:6]
        print(f"- {part}: " + ", ".join(f"{k} {v / args.steps:.2f}" for k, v in top))
    print(
        f"\nthe step's matrix products at the reference rates alone: {bound:.1f} s/step, "
        f"{per_step / bound:.2f}x below the measured step"
    )


if __name__ == "__main__":
    main()
