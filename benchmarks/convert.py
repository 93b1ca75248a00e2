"""Conversion cost: time and peak memory of merge, HF → GGUF and each quantization.

    python benchmarks/convert.py                                  # Gemma 3 270M, Q8_0 + Q4_K_M
    python benchmarks/convert.py --model DIR --quant Q8_0,Q6_K,Q4_K_M --threads 8
    python benchmarks/convert.py --random gemma3-270m,gemma3-1b,gemma3-4b   # cost against size

The model is a Hugging Face folder; by default the HF copy of the embedded default model
that `../shared/tools/gemma3-hf` makes (it prints the folder). The benchmark builds a LoRA
adapter over it with PEFT (r 16 on every linear layer, random weights: the values do not
change the cost), then runs each step of `kodcu-convert` in a fresh process, so that the
peak resident size measured is that step's own (model load included; for HF → GGUF the
larger of the step and llama.cpp's converter, which runs as its child). It prints a
markdown table with each step's time, peak memory and output size, each also as a
multiple of the model's size on disk.

`--random NAMES` measures models of real models' shapes with random weights
(benchmarks/random_models.py) and the default model's tokenizer, one after the
other, so that the table shows how each step's cost grows with the model's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.random_models import RANDOM_SHAPES, random_model  # noqa: E402

GEMMA3_HF = REPO.parent / "shared" / "tools" / "gemma3-hf"


def build_adapter(base: Path, adapter: Path) -> None:
    """A Kodcu-style adapter folder over `base` with random LoRA weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kodcu.prompt import ALPACA_CHAT_TEMPLATE

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(adapter)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    tokenizer.save_pretrained(adapter)
    record = {"base_model": {"path": str(base.resolve())}, "prompt_template": ALPACA_CHAT_TEMPLATE}
    (adapter / "kodcu.json").write_text(json.dumps(record, indent=2))


def run_step(step: str, args: list[str]) -> Path:
    """One step in this process (the child); returns what it wrote."""
    if step == "random":
        return Path(random_model(args[0], args[1], Path(args[2])))
    if step == "adapter":
        build_adapter(Path(args[0]), Path(args[1]))
        return Path(args[1])
    if step == "merge":
        from converter.merge import merge_adapter

        return merge_adapter(Path(args[0]), Path(args[1]), dtype="float16")
    if step == "export":
        from converter.gguf_export import export_gguf

        return export_gguf(Path(args[0]), Path(args[1]), outtype="f16")
    from converter.quantize import quantize

    threads = int(args[3]) if len(args) > 3 and args[3] else None
    return quantize(Path(args[0]), Path(args[1]), args[2], threads)


def child(step: str, args: list[str]) -> None:
    start = time.perf_counter()
    output = run_step(step, args)
    seconds = time.perf_counter() - start
    # ru_maxrss is in KB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    size = (
        output.stat().st_size
        if output.is_file()
        else sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    )
    print(json.dumps({"seconds": seconds, "peak_rss": max(own, children), "size": size}))


def measure(step: str, *args: str) -> dict:
    command = [sys.executable, __file__, "--child", step, *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def default_model() -> Path:
    if not GEMMA3_HF.is_file():
        sys.exit(f"no --model given and {GEMMA3_HF} is absent; pass --model DIR")
    made = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit(f"{GEMMA3_HF} failed:\n{made.stderr[-3000:]}")
    return Path(made.stdout.strip().splitlines()[-1])


def measure_model(model: Path, quants: list[str], threads: str, work: Path) -> list[tuple]:
    """Every step on `model`: (label, measurement) rows."""
    rows = []
    measure("adapter", str(model), str(work / "adapter"))
    rows.append(("merge (float16)", measure("merge", str(work / "adapter"), str(work / "m"))))
    f16 = work / "model-F16.gguf"
    rows.append(("HF → GGUF F16", measure("export", str(work / "m"), str(f16))))
    for qtype in quants:
        out = work / f"model-{qtype}.gguf"
        rows.append((f"quantize {qtype}", measure("quantize", str(f16), str(out), qtype, threads)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Hugging Face model folder")
    parser.add_argument(
        "--random", help=f"comma-separated shapes with random weights: {', '.join(RANDOM_SHAPES)}"
    )
    parser.add_argument("--quant", default="Q8_0,Q4_K_M", help="comma-separated types")
    parser.add_argument("--threads", type=int, help="quantization threads (default: all)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    names = args.random.split(",") if args.random else []
    unknown = [name for name in names if name not in RANDOM_SHAPES]
    if unknown:
        parser.error(f"--random {','.join(unknown)}: choose from {', '.join(RANDOM_SHAPES)}")
    threads = str(args.threads or "")
    quants = args.quant.split(",")
    print(f"{os.cpu_count()} CPUs; size: the model's Hugging Face weights on disk\n")
    print("| model | size | step | seconds | peak RSS | × model | output | × model |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    with tempfile.TemporaryDirectory(prefix="kodcu-convert-bench-") as tmp:
        if not names:
            model = args.model or default_model()
            print_rows(model.name, model, measure_model(model, quants, threads, Path(tmp)))
        tokenizer = args.model or (default_model() if names else None)
        for name in names:  # each size's rows as soon as they are measured
            work = Path(tmp) / name
            print(f"{name}: random weights …", file=sys.stderr, flush=True)
            model = work / "base"
            measure("random", name, str(tokenizer), str(model))
            print_rows(f"{name} (random)", model, measure_model(model, quants, threads, work))
            shutil.rmtree(work)  # the next size needs the disk


def print_rows(label: str, model: Path, rows: list[tuple]) -> None:
    from converter.source import weight_files

    mb = 1024**2
    model_size = sum(path.stat().st_size for path in weight_files(model))
    for step, row in rows:
        print(
            f"| {label} | {model_size / mb:,.0f} MB | {step} | {row['seconds']:.1f} "
            f"| {row['peak_rss'] / mb:,.0f} MB | {row['peak_rss'] / model_size:.2f} "
            f"| {row['size'] / mb:,.0f} MB | {row['size'] / model_size:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
