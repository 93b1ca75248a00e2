"""`benchmarks/train.py` on a tiny model: every side trains, and the figures are counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.train_sides import Settings, encoded_rows, load_config
from tests.tiny_models import tiny_model, write_rows
from trainer.train import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
SIDES = ["hf", "trl", "kodcu", "kodcu-full-loss", "kodcu-packed"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]


def rows() -> list[dict]:
    """24 short rows of one pattern: the first 16 train, the last 8 are held out."""
    return [
        {"instruction": f"Return {i} plus the argument.", "input": "",
         "output": f"def plus_{i}(x):\n    return x + {i}"}
        for i in range(24)
    ]  # fmt: skip


def test_every_side_trains_and_counts_the_tokens_it_timed(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model", "gemma3")
    data = write_rows(tmp_path / "rows.jsonl", rows())
    out = tmp_path / "bench.json"
    # 16 rows, 4 steps of 4: an unpacked side trains every row exactly once.
    command = [sys.executable, str(REPO / "benchmarks" / "train.py"), "--model", str(model)]
    command += ["--data", str(data), "--rows", "16", "--heldout", "8", "--steps", "4"]
    command += ["--batch", "4", "--seq", "256", "--json", str(out), "--sides", *SIDES]
    command += ["--profile", str(tmp_path / "profile")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| side | useful tokens/s | vs hf | vs trl |" in done.stdout
    assert "| side | step s | GPU syncs | aten ops | GPU busy |" in done.stdout

    results = {row["side"]: row for row in json.loads(out.read_text())}
    assert list(results) == SIDES
    for side, row in results.items():
        assert row["useful_tokens_per_s"] > 0 and row["peak_mb"] > 0
        # One step profiled, and left out of the timing: 3 of the 4 steps are timed.
        profile = row["profile"]
        assert row["steps"] == 3 and profile["step_s"] > 0 and profile["ops"] > 0
        assert profile["gpu_busy"] is None and profile["gpu_syncs"] is None  # no GPU here
        assert (tmp_path / "profile" / f"{side}.ops.txt").read_text().count("aten::") > 5
        assert (tmp_path / "profile" / f"{side}.trace.json.gz").stat().st_size > 0
        # Every side learns: the held-out rows' loss falls from the same starting point.
        assert row["heldout_loss"] < row["heldout_loss_before"]
    assert len({round(row["heldout_loss_before"], 4) for row in results.values()}) == 1

    # Counted in the batches, not estimated: one epoch of the rows, without padding.
    settings = Settings(str(model), str(data), 16, 8, 4, 4, 256, False)
    tokenizer = load_tokenizer(load_config(settings, tmp_path, False, True))
    total = sum(len(ids) for ids, _ in encoded_rows(settings, tokenizer, 0, 16))
    assert results["hf"]["useful_tokens"] == total
    assert results["kodcu"]["useful_tokens"] == total
    assert results["kodcu-full-loss"]["useful_tokens"] == total
    # Packed sides fill each row with several examples: more tokens in as many steps.
    assert results["kodcu-packed"]["useful_tokens"] > total
    assert results["trl"]["useful_tokens"] > total


def test_a_cuda_only_side_is_refused_on_a_cpu(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "rows.jsonl", rows())
    command = [sys.executable, str(REPO / "benchmarks" / "train.py"), "--model", str(tmp_path)]
    command += ["--data", str(data), "--sides", "trl-liger"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--sides trl-liger: needs a CUDA GPU" in done.stderr


def test_a_shape_with_a_smaller_vocabulary_gets_a_tokenizer_of_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.random_models import RANDOM_SHAPES, random_model

    # Code Llama's case (32,016 tokens against Gemma's tokenizer) in small: 300 against 500.
    shape = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=2, vocab_size=300)  # fmt: skip
    monkeypatch.setitem(RANDOM_SHAPES, "small-vocabulary", shape)
    given = tiny_model(tmp_path / "given", "llama")
    assert len(AutoTokenizer.from_pretrained(given)) > 300
    folder = random_model("small-vocabulary", given, tmp_path / "random")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 300
    text = "def add(a, b):\n    return a + b  # é"
    ids = tokenizer(text)["input_ids"]
    assert max(ids) < 300 and tokenizer.decode(ids, skip_special_tokens=True) == text
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model(input_ids=torch.tensor([ids])).logits.shape == (1, len(ids), 300)


def test_the_profile_splits_a_packed_step_into_its_parts(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model", "gemma3")
    data = write_rows(tmp_path / "rows.jsonl", rows())
    command = [sys.executable, str(REPO / "benchmarks" / "train_profile.py"), "--model"]
    command += [str(model), "--data", str(data), "--rows", "16", "--seq", "256"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")][2:]
    parts = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in table}
    assert list(parts) == ["output layer + loss", "body matmuls", "attention", "other"]
    shares = [int(cells[2].removesuffix("%")) for cells in parts.values()]
    assert 98 <= sum(shares) <= 102  # every op of the step falls in one part
    assert all(float(cells[1]) > 0 for cells in parts.values())
    assert "the step's matrix products at the reference rates alone" in done.stdout
