"""Real LoRA training of tiny models: loss, weights, the adapter directory, resume, CLI, DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.tiny_models import ARCHITECTURES, tiny_model, write_rows
from trainer.cli import main
from trainer.config import TrainConfig, from_dict
from trainer.features import pack
from trainer.output import KODCU_JSON_KEYS, OutputDirError
from trainer.train import TrainError, load_tokenizer, prepare_data, run

REPO = Path(__file__).resolve().parents[1]
GEMMA3_HF = Path(__file__).resolve().parents[2] / "shared" / "tools" / "gemma3-hf"


pytestmark = pytest.mark.usefixtures("offline_hub")


def make_config(tmp_path: Path, base: Path, **sections: dict) -> TrainConfig:
    """A config for a few fast steps on the crafted rows; `sections` override its fields."""
    raw = {
        "model": {"base": str(base)},
        "data": {
            "sources": [{"path": str(write_rows(tmp_path / "rows.jsonl")), "limit": 4}],
            "validation_fraction": 0.0,
            "max_length": 256,
        },
        "hygiene": {"decontaminate": False},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {
            "output_dir": str(tmp_path / "adapter"),
            "max_steps": 6,
            "batch_size": 4,
            "gradient_accumulation_steps": 1,
            "learning_rate": 5e-2,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            "logging_steps": 1,
            "save_steps": 100,
            "eval_steps": 2,
        },
    }
    for section, values in sections.items():
        if section == "sources":
            raw["data"]["sources"][0].update(values)
        else:
            raw[section].update(values)
    return from_dict(TrainConfig, raw)


def train_losses(output_dir: Path) -> list[list[float]]:
    return json.loads((output_dir / "kodcu.json").read_text())["metrics"]["loss_curve"]["train"]


class KeepModel(TrainerCallback):
    """Keeps the trained model at the end of training, to look at its weights."""

    model = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_loss_falls_and_only_the_lora_weights_change(tmp_path: Path, architecture: str) -> None:
    base = tiny_model(tmp_path / "base", architecture)
    keep = KeepModel()
    output_dir = run(make_config(tmp_path, base), callbacks=[keep])
    losses = [loss for _, loss in train_losses(output_dir)]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses

    trained = keep.model
    lora_b = [p for name, p in trained.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero
    assert all("lora_" in name for name, p in trained.named_parameters() if p.requires_grad)
    after = trained.unload().state_dict()
    dtype = next(iter(after.values())).dtype  # bfloat16 on a GPU
    original = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).state_dict()
    assert after.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(after[name].cpu(), tensor), f"{name} changed"


def test_the_adapter_directory_is_complete(tmp_path: Path) -> None:
    from peft import PeftModel

    base = tiny_model(tmp_path / "base", "llama")
    config = make_config(
        tmp_path,
        base,
        sources={"limit": None},
        data={"validation_fraction": 0.25, "packing": True, "max_length": 300},
        training={"max_steps": 4},
    )
    output_dir = run(config)
    assert output_dir == tmp_path / "adapter"
    names = {path.name for path in output_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "kodcu.json", "loss.png"} <= names
    assert {"tokenizer.json", "tokenizer_config.json", "checkpoints", "runs"} <= names
    assert ".staging" not in names
    assert (output_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((output_dir / "runs").glob("events.out.tfevents.*"))

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert tokenizer.chat_template == ALPACA_CHAT_TEMPLATE
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), output_dir)
    ids = tokenizer("def add(a, b):", return_tensors="pt").input_ids
    with torch.no_grad():
        tuned = model(ids).logits
        with model.disable_adapter():
            plain = model(ids).logits
    assert not torch.allclose(tuned, plain)

    record = json.loads((output_dir / "kodcu.json").read_text())
    assert tuple(record) == KODCU_JSON_KEYS
    assert record["base_model"]["path"] == str(base.resolve())
    assert len(record["base_model"]["sha256"]) == 64
    assert record["prompt_template"] == ALPACA_CHAT_TEMPLATE
    assert record["config"]["data"]["packing"] is True
    data = record["data"]
    assert (data["train_rows"], data["validation_rows"]) == (9, 3)
    assert data["sources"][0]["kept"] == 12
    assert [step["step"] for step in data["hygiene"]] == [
        "quality_filter",
        "exact_dedup",
        "near_dedup",
    ]
    assert data["packing"]["train_rows"] < 9
    assert 0 < data["loss_token_fraction"] < 1
    metrics = record["metrics"]
    assert metrics["steps"] == 4
    assert metrics["eval_loss"] > 0 and metrics["train_loss"] > 0 and metrics["tokens_per_s"] > 0
    assert [step for step, _ in metrics["loss_curve"]["eval"]] == [2, 4]
    assert {"torch", "transformers", "peft", "datasets", "python", "kodcu"} <= set(
        record["versions"]
    )


def test_resume_continues_from_the_same_step_with_the_same_losses(tmp_path: Path) -> None:
    base = tiny_model(tmp_path / "base", "qwen2")
    # Shuffled batches and dropout: resuming must restore the data order and the RNG.
    config = make_config(
        tmp_path,
        base,
        sources={"limit": None},
        lora={"dropout": 0.1},
        training={"batch_size": 2, "save_steps": 3, "learning_rate": 1e-2},
    )
    output_dir = run(config)
    straight = train_losses(output_dir)
    assert [step for step, _ in straight] == [1, 2, 3, 4, 5, 6]

    shutil.rmtree(output_dir / "checkpoints" / "checkpoint-6")
    (output_dir / "kodcu.json").unlink()
    with pytest.raises(OutputDirError, match="pass --resume"):
        run(config)
    run(config, resume=True)
    resumed = train_losses(output_dir)
    assert [step for step, _ in resumed] == [1, 2, 3, 4, 5, 6]
    assert resumed[:3] == straight[:3]  # restored from the checkpoint's log
    for (_, after), (_, before) in zip(resumed[3:], straight[3:], strict=True):
        assert after == pytest.approx(before, abs=1e-5)


class CtrlC(TrainerCallback):
    """Presses Ctrl+C (SIGINT) at the end of one step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run(tmp_path: Path) -> None:
    base = tiny_model(tmp_path / "base", "llama")
    config = make_config(tmp_path, base)
    before = signal.getsignal(signal.SIGINT)  # ignored where the suite runs in the background
    assert run(config, callbacks=[CtrlC(step=2)]) is None
    output_dir = tmp_path / "adapter"
    checkpoints = [path.name for path in (output_dir / "checkpoints").iterdir()]
    assert checkpoints in (["checkpoint-2"], ["checkpoint-3"])  # this step or the next
    assert not (output_dir / "kodcu.json").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the run put the handler back
    run(config, resume=True)
    assert [step for step, _ in train_losses(output_dir)] == [1, 2, 3, 4, 5, 6]


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, tmp_path / "unused")
    with pytest.raises(OutputDirError, match="--resume: no checkpoint under .*without --resume"):
        run(config, resume=True)


def test_qlora_needs_a_cuda_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the error is for machines without one")
    config = make_config(tmp_path, tmp_path / "unused", model={"quantization": "4bit"})
    with pytest.raises(TrainError, match="4bit \\(QLoRA\\) needs a CUDA GPU"):
        run(config)


def test_the_tokenizer_gets_the_template_right_padding_and_a_pad_token(tmp_path: Path) -> None:
    base = tiny_model(tmp_path / "base", "llama")
    tokenizer = load_tokenizer(make_config(tmp_path, base))
    assert tokenizer.chat_template == ALPACA_CHAT_TEMPLATE
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token == "<unk>"  # an existing token; none is added
    assert len(tokenizer) == AutoModelForCausalLM.from_pretrained(base).config.vocab_size
    with pytest.raises(TrainError, match="data.template is 'model', but .* has no chat template"):
        load_tokenizer(make_config(tmp_path, base, data={"template": "model"}))


@pytest.mark.parametrize("strategy", ["best_fit", "in_order"])
def test_data_packing_strategy_chooses_how_rows_are_packed(tmp_path: Path, strategy: str) -> None:
    base = tiny_model(tmp_path / "base", "llama")
    data = {"packing": True, "packing_strategy": strategy, "max_length": 200}
    config = make_config(tmp_path, base, data=data, sources={"limit": None})
    prepared = prepare_data(config, load_tokenizer(config))
    assert prepared.report["packing"]["strategy"] == strategy
    encoded = prepared.train_encoded
    assert prepared.train == pack(encoded, 200, strategy)
    # The two strategies place these rows differently, so the check above tells them apart.
    assert pack(encoded, 200, "best_fit") != pack(encoded, 200, "in_order")


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "trainer", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)


def write_yaml(tmp_path: Path, base: Path) -> Path:
    write_rows(tmp_path / "rows.jsonl")
    path = tmp_path / "run.yaml"
    # Relative paths are relative to the directory kodcu-train runs in.
    path.write_text(
        f"model:\n  base: {base}\n"
        "data:\n  sources:\n    - path: rows.jsonl\n  validation_fraction: 0.2\n"
        "hygiene:\n  decontaminate: false\n"
        "training:\n  output_dir: out\n  max_steps: 2\n  batch_size: 2\n"
        "  gradient_accumulation_steps: 1\n  learning_rate: 1.0e-2\n"
    )
    return path


def test_the_cli_dry_run_shows_the_data_and_trains_nothing(tmp_path: Path) -> None:
    config = write_yaml(tmp_path, tiny_model(tmp_path / "base", "llama"))
    result = cli(tmp_path, str(config), "--dry-run", "data.max_length=512")
    assert result.returncode == 0, result.stderr
    assert "train 10 rows, validation 2 rows" in result.stdout
    assert "% of tokens (response only)" in result.stdout
    assert "[[<s>Below is an instruction" in result.stdout
    assert "### Response:\n]]" in result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cli_trains_and_writes_the_adapter(tmp_path: Path) -> None:
    config = write_yaml(tmp_path, tiny_model(tmp_path / "base", "gemma3"))
    result = cli(tmp_path, str(config), "lora.r=4")
    assert result.returncode == 0, result.stderr
    assert "adapter written to out" in result.stdout
    # PEFT's call of a deprecated transformers property is not the user's to fix.
    assert "is_gradient_checkpointing" not in result.stderr
    record = json.loads((tmp_path / "out" / "kodcu.json").read_text())
    assert record["config"]["lora"]["r"] == 4
    assert record["metrics"]["steps"] == 2


def test_the_cli_reports_a_data_error_in_one_line_with_status_2(tmp_path: Path, capsys) -> None:
    config = write_yaml(tmp_path, tiny_model(tmp_path / "base", "llama"))
    missing = tmp_path / "missing.jsonl"
    capsys.readouterr()
    assert main([str(config), f"data.sources.0.path={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kodcu-train: error: ") and err.count("\n") == 1
    assert str(missing) in err


# The same command under each launcher, two CPU processes (gloo); FSDP shards the
# model across them and gathers the adapter back for saving.
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"]
ACCELERATE += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
LAUNCHERS = {
    "torchrun-ddp": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"],
    "accelerate-ddp": [*ACCELERATE, "--cpu"],
    "accelerate-fsdp": [*ACCELERATE, "--use_fsdp", "--fsdp_version", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_processes_write_the_adapter_once(tmp_path: Path, launcher: str) -> None:
    config = write_yaml(tmp_path, tiny_model(tmp_path / "base", "llama"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [*LAUNCHERS[launcher], "-m", "trainer", str(config), "training.max_steps=3"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("adapter written to out") == 1
    record = json.loads((tmp_path / "out" / "kodcu.json").read_text())
    assert record["metrics"]["steps"] == 3
    assert not (tmp_path / "out" / ".staging").exists()
    adapter = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert len(adapter) == 28, "every LoRA matrix of the 2-layer model, gathered whole"


@pytest.mark.slow
def test_a_few_steps_on_the_default_models_hugging_face_copy(tmp_path: Path) -> None:
    if not GEMMA3_HF.is_file():
        pytest.skip(
            f"{GEMMA3_HF.name}, the script that makes the default model's HF copy, is absent"
        )
    made = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr[-3000:]
    base = Path(made.stdout.strip().splitlines()[-1])
    config = make_config(tmp_path, base, training={"max_steps": 4, "learning_rate": 1e-3})
    output_dir = run(config)
    losses = [loss for _, loss in train_losses(output_dir)]
    assert losses[-1] < 0.5 * losses[0], losses
    record = json.loads((output_dir / "kodcu.json").read_text())
    assert tuple(record) == KODCU_JSON_KEYS
    assert (output_dir / "adapter_model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(output_dir).chat_template == ALPACA_CHAT_TEMPLATE
