"""`benchmarks/checkpoint_scores.py` on a real tiny run: each checkpoint converted and scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converter.gguf_export import export_gguf
from tests.tiny_gguf_models import build_tiny_model
from tests.tiny_models import write_rows

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = REPO / "examples" / "problems.jsonl"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]


def train_with_checkpoints(tmp_path: Path, base: Path) -> Path:
    """kodcu-train for 2 steps, a checkpoint after each; returns the output folder."""
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model:\n  base: {base}\n"
        f"data:\n  sources:\n    - path: {write_rows(tmp_path / 'rows.jsonl')}\n"
        "  validation_fraction: 0.0\n"
        "hygiene:\n  decontaminate: false\n"
        f"training:\n  output_dir: {tmp_path / 'run'}\n  max_steps: 2\n  batch_size: 2\n"
        "  learning_rate: 5.0e-2\n  save_steps: 1\n  save_total_limit: null\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "trainer", str(config)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "run"


def curve(run: Path, model: Path, out: Path, *eval_args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "benchmarks" / "checkpoint_scores.py"), str(run)]
    command += ["--model", str(model), "--out", str(out), "--prompt", "base", "--"]
    command += ["--problems", str(PROBLEMS), *eval_args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_each_checkpoint_is_scored_over_the_base_and_scores_are_reused(tmp_path: Path) -> None:
    base = build_tiny_model("llama", tmp_path / "base")
    run = train_with_checkpoints(tmp_path, base)
    model = export_gguf(base, tmp_path / "base-F32.gguf", "f32")
    out = tmp_path / "curve"

    done = curve(run, model, out, "--max-tokens", "8")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((out / "curve.json").read_text())
    assert [row["step"] for row in rows] == [0, 1, 2]
    # Tokens trained grow with the step and end at the run's own count.
    epoch_tokens = json.loads((run / "kodcu.json").read_text())["data"]["tokens"]
    final_epoch = json.loads((run / "kodcu.json").read_text())["metrics"]["epochs"]
    assert rows[0]["tokens"] == 0 < rows[1]["tokens"] < rows[2]["tokens"]
    assert rows[2]["tokens"] == round(final_epoch * epoch_tokens)
    problems = sum(1 for line in PROBLEMS.read_text().splitlines() if line.strip())
    assert all(row["base"]["of"] == problems for row in rows)
    # Step 0 is the base alone; every later step runs its own checkpoint's LoRA GGUF.
    models = [
        json.loads((out / f"step-{row['step']}-base" / "results.json").read_text())["model"]
        for row in rows
    ]
    assert models[0] == model.name
    assert models[1:] == [f"{model.name} + checkpoint-lora-F16.gguf"] * 2
    assert "| 2 |" in done.stdout

    # A second call finds every score in place: nothing is converted or scored again.
    rewritten = {"curve.json", "eval_args.json"}
    made = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.name not in rewritten}
    again = curve(run, model, out, "--max-tokens", "8")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "curve.json").read_text()) == rows
    assert {path: path.stat().st_mtime_ns for path in made} == made
    # Scores made with other kodcu-eval options, or over another model, are not mixed in.
    other = curve(run, model, out, "--max-tokens", "16")
    assert other.returncode != 0 and "give another --out" in other.stderr
    moved = model.rename(tmp_path / "other-base.gguf")
    other = curve(run, moved, out, "--max-tokens", "8")
    assert other.returncode != 0 and "give another --out" in other.stderr
