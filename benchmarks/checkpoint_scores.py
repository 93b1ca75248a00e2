"""Score every checkpoint of a `kodcu-train` run: pass@1 against tokens trained.

    python benchmarks/checkpoint_scores.py runs/kodcu-coder-270m/adapter \
        --model ~/.cache/kodcu/models/gemma-3-270m-q4_k_m.gguf --out runs/curve
    python benchmarks/checkpoint_scores.py RUN --model M.gguf --out runs/val --every 20 \
        --prompt instruct --plot val.png -- --problems mbpp.jsonl --task-ids 511-600

Each checkpoint in RUN/checkpoints/ (keep them all: `training.save_total_limit=null`)
becomes a LoRA GGUF with `kodcu-convert --lora-only` and is scored over
--model with `kodcu-eval`, exactly as users run an adapter (greedy, the tool's
defaults, and any of its options given after `--`: by default HumanEval); step 0 is
--model alone. It is the curve a model builder looks at to choose
a checkpoint and to see whether more training would help. Scores already under --out
are reused, so an interrupted run goes on where it stopped.

Tokens trained at a checkpoint are its epoch (trainer_state.json) times the training
tokens of one epoch (RUN/kodcu.json, written when the run ends): exact at epoch ends,
and close in between for packed rows, whose steps hold nearly the same tokens.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path


def checkpoints(run: Path, every: int) -> list[tuple[int, Path]]:
    """(step, folder) of each checkpoint whose step is a multiple of `every`, by step;
    the last one is always kept."""
    found = []
    for folder in (run / "checkpoints").glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", folder.name)
        if match and (folder / "adapter_config.json").is_file():
            found.append((int(match.group(1)), folder))
    found.sort()
    if not found:
        sys.exit(f"{run / 'checkpoints'}: no checkpoint-N folders with an adapter in them")
    return [(step, folder) for step, folder in found if step % every == 0 or folder == found[-1][1]]


def tokens_per_epoch(run: Path) -> int | None:
    """Training tokens in one epoch, from the run's kodcu.json; None if it is not there."""
    record = run / "kodcu.json"
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("data", {}).get("tokens")


def run_tool(command: list[str], log: Path) -> None:
    """Run one Kodcu command, its output to `log`; stop with the log's tail if it fails."""
    with log.open("w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        tail = log.read_text(errors="replace")[-2000:]
        sys.exit(f"{' '.join(command)} failed (exit {code}); the end of {log}:\n{tail}")


def score(
    out: Path, name: str, adapter: Path | None, args: argparse.Namespace, prompt: str
) -> dict:
    """pass@1 and the problems solved (any sample passed), from kodcu-eval's results.json
    (run first if it is not there)."""
    folder = out / f"{name}-{prompt}"
    results = folder / "results.json"
    if not results.is_file():
        command = [str(Path(sys.executable).parent / "kodcu-eval"), *args.eval_args]
        command += ["--model", str(args.model), "--prompt", prompt, "--out", str(folder)]
        if adapter is not None:
            command += ["--adapter", str(adapter)]
        run_tool(command, out / f"{folder.name}.log")
    scores = json.loads(results.read_text())["scores"]
    solved = sum(problem["passed"] > 0 for problem in scores["problems"].values())
    return {"pass@1": scores["pass@k"]["pass@1"], "solved": solved, "of": len(scores["problems"])}


def lora_gguf(out: Path, step: int, folder: Path) -> Path:
    """The checkpoint's adapter as a LoRA GGUF (F16), converted once."""
    target = out / f"step-{step}"
    gguf = target / "checkpoint-lora-F16.gguf"
    if not gguf.is_file():
        command = [str(Path(sys.executable).parent / "kodcu-convert"), str(folder)]
        command += ["--out", str(target), "--lora-only"]
        command += ["--name", "checkpoint", "--overwrite"]
        target.mkdir(parents=True, exist_ok=True)
        run_tool(command, out / f"step-{step}-convert.log")
    return gguf


def plot(rows: list[dict], prompts: list[str], label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    use_tokens = all(row["tokens"] is not None for row in rows)
    xs = [row["tokens"] if use_tokens else row["step"] for row in rows]
    for prompt in prompts:
        axes.plot(xs, [100 * row[prompt]["pass@1"] for row in rows], marker="o", label=prompt)
    axes.set_xlabel("tokens trained" if use_tokens else "optimizer step")
    axes.set_ylabel(f"{label} pass@1 (%)")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(title="prompt")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot written to {path}")


def describe(eval_args: list[str]) -> str:
    """What is scored, in a few words: "humaneval", "mbpp.jsonl 511-600"."""
    words = []
    for flag, value in zip(eval_args, eval_args[1:], strict=False):
        if flag == "--benchmark" or flag == "--task-ids":
            words.append(value)
        elif flag == "--problems":
            words.append(Path(value).name)
    return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s RUN --model GGUF --out DIR [options] [-- KODCU-EVAL OPTIONS]",
        epilog="Options after -- go to kodcu-eval (default: --benchmark humaneval).",
    )
    parser.add_argument("run", type=Path, help="kodcu-train's output folder (training.output_dir)")
    parser.add_argument(
        "--model", type=Path, required=True, help="the base GGUF the adapter runs over"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for GGUFs, scores and logs")
    parser.add_argument(
        "--prompt", action="append", choices=["base", "instruct"], help="repeatable (default: both)"
    )
    parser.add_argument(
        "--every", type=int, default=1, help="only steps that are multiples of this"
    )
    parser.add_argument("--plot", type=Path, help="also draw the curve into this PNG")
    argv = sys.argv[1:]
    # Everything after `--` is kodcu-eval's.
    own, eval_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    args = parser.parse_args(own)
    args.eval_args = eval_args
    if not any(a in ("--benchmark", "--problems") for a in args.eval_args):
        args.eval_args = ["--benchmark", "humaneval", *args.eval_args]
    label = describe(args.eval_args)
    prompts = args.prompt or ["base", "instruct"]
    if args.every < 1:
        sys.exit("--every: give a whole number of steps, 1 or more")
    if not args.model.is_file():
        sys.exit(f"--model {args.model}: no such GGUF file")
    args.out.mkdir(parents=True, exist_ok=True)
    # Scores under --out are reused: they must have been made over the same model, with
    # the same kodcu-eval options.
    recorded = args.out / "eval_args.json"
    settings = {"model": str(args.model.resolve()), "eval_args": args.eval_args}
    if recorded.is_file() and json.loads(recorded.read_text()) != settings:
        sys.exit(
            f"--out {args.out}: scored with {recorded.read_text().strip()}; "
            "give another --out for another model or other kodcu-eval options"
        )
    recorded.write_text(json.dumps(settings) + "\n")

    per_epoch = tokens_per_epoch(args.run)
    rows = [
        {"step": 0, "tokens": 0, **{p: score(args.out, "step-0", None, args, p) for p in prompts}}
    ]
    for step, folder in checkpoints(args.run, args.every):
        print(f"step {step}: converting and scoring {folder}", flush=True)
        gguf = lora_gguf(args.out, step, folder)
        epoch = json.loads((folder / "trainer_state.json").read_text())["epoch"]
        tokens = None if per_epoch is None else round(epoch * per_epoch)
        row = {"step": step, "tokens": tokens, "epoch": epoch}
        row.update({p: score(args.out, f"step-{step}", gguf, args, p) for p in prompts})
        rows.append(row)

    print(f"\n{label}: pass@1 over {args.model.name}; kodcu-eval {' '.join(args.eval_args)}\n")
    print("| step | tokens trained | " + " | ".join(f"{p} prompt" for p in prompts) + " |")
    print("| ---: | ---: |" + " ---: |" * len(prompts))
    for row in rows:
        tokens = "-" if row["tokens"] is None else f"{row['tokens']:,}"
        cells = [
            f"{100 * row[p]['pass@1']:.1f} % ({row[p]['solved']}/{row[p]['of']})" for p in prompts
        ]
        print(f"| {row['step']} | {tokens} | " + " | ".join(cells) + " |")
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\nrows written to {args.out / 'curve.json'}")
    if args.plot:
        plot(rows, prompts, label, args.plot)


if __name__ == "__main__":
    main()
