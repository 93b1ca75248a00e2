"""An interrupted kodcu-eval run goes on from its samples; another run's samples are kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from evaluation.models import GGUFModel
from evaluation.problems import load_problems
from evaluation.run import RunConfig, RunError, evaluate
from tests.test_eval_run import humaneval_command

CONFIG = RunConfig(max_tokens=24)


def samples(folder: Path) -> dict[tuple[str, int], str]:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    return {(s["task_id"], s["sample"]): s["completion"] for s in map(json.loads, lines)}


def verdicts(results: dict) -> dict[str, list[tuple[str, str]]]:
    return {
        task: [(o["status"], o["reason"]) for o in outcomes]
        for task, outcomes in results["problems"].items()
    }


@pytest.fixture(scope="module")
def model(default_model: Path):
    # A GGUF's texts do not depend on how the prompts are grouped, so a resumed run can be
    # compared with an uninterrupted one.
    model = GGUFModel(default_model, adapter=None, threads=None, slots=1)
    yield model
    model.close()


def test_an_interrupted_run_goes_on_from_its_samples(tmp_path: Path, model: GGUFModel) -> None:
    problems = load_problems("humaneval")[:4]
    whole = evaluate(problems, model, CONFIG, tmp_path / "whole", lambda _: None)

    def stop_after_two(message: str) -> None:
        if message.startswith("[2/4]"):
            raise KeyboardInterrupt

    folder = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        evaluate(problems, model, CONFIG, folder, stop_after_two)
    assert len(samples(folder)) == 2 and not (folder / "results.json").exists()
    with (folder / "samples.jsonl").open("a") as f:
        f.write('{"task_id": "HumanEval/3", "sam')  # cut off as the run was stopped

    said: list[str] = []
    resumed = evaluate(problems, model, CONFIG, folder, said.append)
    assert said[0].endswith("line 3: not a whole sample; it will be made again")
    assert said[1].startswith("2 of 4 samples are already in")
    # Only the two missing samples were generated.
    assert [m.split()[0] for m in said[2:]] == ["[3/4]", "[4/4]"]
    assert samples(folder) == samples(tmp_path / "whole")
    assert verdicts(resumed) == verdicts(whole)


def test_a_finished_run_is_tested_again_without_generating(
    tmp_path: Path, model: GGUFModel
) -> None:
    problems = load_problems("humaneval")[:2]
    first = evaluate(problems, model, CONFIG, tmp_path, lambda _: None)
    said: list[str] = []
    again = evaluate(problems, model, CONFIG, tmp_path, said.append)
    assert said == [f"2 of 2 samples are already in {tmp_path / 'samples.jsonl'}"]
    assert again["scores"] == first["scores"]


def test_samples_of_other_settings_are_refused_and_kept(tmp_path: Path, model: GGUFModel) -> None:
    problems = load_problems("humaneval")[:1]
    evaluate(problems, model, CONFIG, tmp_path, lambda _: None)
    before = (tmp_path / "samples.jsonl").read_text()
    with pytest.raises(RunError, match="made with another max_tokens: give another --out"):
        evaluate(problems, model, RunConfig(max_tokens=8), tmp_path, lambda _: None)
    (tmp_path / "run.json").unlink()  # a folder whose settings are not recorded
    with pytest.raises(RunError, match="settings that run.json does not record"):
        evaluate(problems, model, CONFIG, tmp_path, lambda _: None)
    assert (tmp_path / "samples.jsonl").read_text() == before


@pytest.mark.slow
def test_ctrl_c_keeps_the_samples_and_the_same_command_goes_on(
    tmp_path: Path, default_model: Path
) -> None:
    out = tmp_path / "run"
    # One slot makes the completions one after another, so when the first is written four
    # prompts are still to be read and completed: seconds of work, however soon their
    # loops are found, against the milliseconds the signal takes to land.
    options = ["--limit", "5", "--max-tokens", "24", "--slots", "1"]
    command = humaneval_command(default_model, out, *options)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each progress line as it is made
    with (tmp_path / "stderr").open("w+") as stderr:
        child = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment,
            # As from a terminal: a suite started in the background has Ctrl-C ignored,
            # and a child would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("[1/5]"):  # the first sample is in samples.jsonl
                child.send_signal(signal.SIGINT)
                break
        returncode = child.wait(timeout=120)
        stderr.seek(0)
        said = stderr.read()
    kept = samples(out)
    assert returncode == 130, said[-2000:]
    assert 1 <= len(kept) < 5
    assert "interrupted; the samples made so far are in" in said
    assert "Traceback" not in said

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(kept)} of 5 samples are already in" in done.stdout
    after = samples(out)
    assert len(after) == 5 and all(after[key] == text for key, text in kept.items())
    assert len(json.loads((out / "results.json").read_text())["problems"]) == 5
