"""llama.cpp's 256-bit Q8_0/Q5_0 kernel against the patched 512-bit one, on this CPU.

    python benchmarks/llama_kernel.py                    # 32 HumanEval problems, 3 rounds
    python benchmarks/llama_kernel.py --problems 64 --repeat 5

packaging/llama-patches/sgemm-q0-avx512.patch adds a 512-bit version of the kernel
llama.cpp runs for Q8_0 and Q5_0 weights, most of the default model's matrix work. It
is compiled only for CPUs with AVX-512 VNNI, and GGML_SGEMM_Q0_AVX512=0 turns it off at
run time, so both kernels run from the same build. Each round runs the original kernel
(the baseline) and then the patched one, each in a process of its own:

- prompt: reading a 512-token prompt into a fresh context, in tokens per second;
- batched: greedy completions of the first N HumanEval problems at 16 slots, the way
  `kodcu-eval` makes them, in seconds; and whether the texts equal the baseline's.

Times on a shared machine swing from round to round; compare the rounds' best.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SWITCH = "GGML_SGEMM_Q0_AVX512"


def measure(problem_count: int) -> dict:
    """One process's figures; runs in the child."""
    import hashlib

    import llama_cpp

    from evaluation.models import GGUFModel, Prompt
    from evaluation.problems import load_problems
    from kodcu.default_model import ensure_default_model

    path = ensure_default_model()
    llama = llama_cpp.Llama(str(path), n_ctx=1024, n_batch=512, n_threads=2, verbose=False)
    text = (ROOT / "evaluation" / "batched.py").read_text(encoding="utf-8")
    tokens = llama.tokenize(text.encode())[:512]
    start = time.perf_counter()
    llama.eval(tokens)
    prompt_rate = len(tokens) / (time.perf_counter() - start)
    del llama

    problems = load_problems("humaneval")[:problem_count]
    model = GGUFModel(path, adapter=None, threads=2, slots=16)
    prompts = [Prompt(p.task_id, text=p.base_prompt, stops=p.stops) for p in problems]
    start = time.perf_counter()
    done = model.generate(prompts, max_tokens=384, temperature=0.0)
    texts = sorted((prompt.key, text) for prompt, text in done)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(json.dumps(texts).encode()).hexdigest()
    return {"prompt": prompt_rate, "batched": seconds, "texts": digest}


def run_child(switch: str, problem_count: int) -> dict:
    env = {**os.environ, SWITCH: switch}
    command = [sys.executable, __file__, "--child", "--problems", str(problem_count)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {switch=} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=32, help="first N HumanEval problems")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both kernels")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.problems)))
        return

    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    if "AVX512_VNNI = 1" not in info:
        raise SystemExit("This llama.cpp is built without AVX-512 VNNI: both kernels are one.")
    kernels = {"0": "256-bit (llama.cpp)", "1": "512-bit (patched)"}
    rows: dict[str, list[dict]] = {switch: [] for switch in kernels}
    for round_number in range(1, args.repeat + 1):
        for switch in kernels:
            rows[switch].append(run_child(switch, args.problems))
            figures = rows[switch][-1]
            print(
                f"round {round_number} {kernels[switch]}: {figures['prompt']:.0f} prompt "
                f"tokens/s, {args.problems} problems in {figures['batched']:.1f} s",
                flush=True,
            )

    baseline = rows["0"][0]["texts"]
    print(f"\n{args.problems} HumanEval problems at 16 slots, greedy; best of {args.repeat}")
    print("| kernel | prompt tokens/s | batched seconds | vs baseline | same texts |")
    print("| --- | ---: | ---: | ---: | --- |")
    best_baseline = min(r["batched"] for r in rows["0"])
    for switch, name in kernels.items():
        prompt = max(r["prompt"] for r in rows[switch])
        batched = min(r["batched"] for r in rows[switch])
        same = "yes" if all(r["texts"] == baseline for r in rows[switch]) else "NO"
        ratio = best_baseline / batched
        print(f"| {name} | {prompt:.0f} | {batched:.1f} | {ratio:.2f}x | {same} |")


if __name__ == "__main__":
    main()
