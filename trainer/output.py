"""The adapter directory: PEFT files, tokenizer, kodcu.json and loss.png.

    output_dir/
      adapter_config.json, adapter_model.safetensors   PEFT adapter (PeftModel.from_pretrained)
      tokenizer files                                  with the chat template used in training
      kodcu.json                                       base model, template, config, data, metrics
      loss.png                                         train and eval loss against the step
      checkpoints/checkpoint-N/                        for --resume
      runs/                                            TensorBoard logs

Files are written into a staging folder and moved into place one by one, kodcu.json
last: a directory with a kodcu.json holds a complete adapter.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from kodcu.provenance import folder_fingerprint, package_versions

KODCU_JSON = "kodcu.json"
LOSS_PNG = "loss.png"
CHECKPOINTS = "checkpoints"
RUNS = "runs"
STAGING = ".staging"

# Top-level keys of kodcu.json.
BASE_MODEL = "base_model"
PROMPT_TEMPLATE = "prompt_template"
CONFIG = "config"
DATA = "data"
METRICS = "metrics"
VERSIONS = "versions"
KODCU_JSON_KEYS = (BASE_MODEL, PROMPT_TEMPLATE, CONFIG, DATA, METRICS, VERSIONS)


class OutputDirError(RuntimeError):
    """training.output_dir holds an earlier run, or no checkpoint to resume from."""


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint-N under output_dir/checkpoints, or None."""
    found = [
        path
        for path in (output_dir / CHECKPOINTS).glob("checkpoint-*")
        if path.is_dir() and path.name.split("-")[-1].isdigit()
    ]
    return max(found, key=lambda path: int(path.name.split("-")[-1]), default=None)


def check_output_dir(output_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; refuse to train over an earlier run's checkpoints."""
    checkpoint = latest_checkpoint(output_dir)
    if resume and checkpoint is None:
        raise OutputDirError(
            f"--resume: no checkpoint under {output_dir / CHECKPOINTS}; run without --resume"
        )
    if not resume and checkpoint is not None:
        raise OutputDirError(
            f"{output_dir / CHECKPOINTS} holds checkpoints of an earlier run: pass --resume to "
            "continue it, or set training.output_dir to another folder"
        )
    return checkpoint


def checkpoint_epoch(checkpoint: Path | None) -> float:
    """The epoch a checkpoint was saved at (0 for a fresh run)."""
    if checkpoint is None:
        return 0.0
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return float(state.get("epoch") or 0.0)


def base_model_record(base: str, revision: str | None, commit_hash: str | None) -> dict:
    """Which base model the adapter belongs to: a Hub id and commit, or a folder and its
    fingerprint (kodcu/provenance.py: the sha256 of its config.json and weight index, or of
    its single weights file)."""
    folder = Path(base).expanduser()
    if not folder.is_dir():
        return {"id": base, "revision": commit_hash or revision}
    return folder_fingerprint(folder)


def library_versions() -> dict[str, str]:
    """Versions that decide how the adapter was trained (for reproducing a run)."""
    libraries = ("kodcu", "torch", "transformers", "peft", "datasets", "accelerate")
    return {"python": platform.python_version()} | package_versions(libraries)


def loss_curve(log_history: list[dict]) -> dict[str, list[list[float]]]:
    """[step, loss] pairs of the training and eval losses from the Trainer's log history."""
    train = [[entry["step"], entry["loss"]] for entry in log_history if "loss" in entry]
    evals = [[entry["step"], entry["eval_loss"]] for entry in log_history if "eval_loss" in entry]
    return {"train": train, "eval": evals}


def plot_loss(curve: dict[str, list[list[float]]], path: Path, title: str) -> None:
    """Train and eval loss against the step, as a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for name, points in (("train", curve["train"]), ("eval", curve["eval"])):
        if points:
            steps, losses = zip(*points, strict=True)
            axes.plot(steps, losses, marker="o" if len(points) < 30 else None, label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_json(path: Path, data: Any) -> None:
    """Write JSON under a temporary name and rename it, so readers never see half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(partial, path)


def finish_adapter_dir(staging: Path, output_dir: Path, record: dict) -> None:
    """Add kodcu.json and loss.png to the staged adapter and move everything into output_dir."""
    base = record[BASE_MODEL]
    title = f"LoRA on {Path(base.get('id') or base.get('path') or '?').name}"
    plot_loss(record[METRICS]["loss_curve"], staging / LOSS_PNG, title)
    # An adapter from an earlier run in the same folder must not pass for this one midway.
    (output_dir / KODCU_JSON).unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        target = output_dir / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)
    write_json(output_dir / KODCU_JSON, record)
    staging.rmdir()


def write_adapter(
    trainer: Any, config: dict, data_report: dict, train_result: Any, tokens: float
) -> Path:
    """Save the trained adapter, tokenizer, kodcu.json and loss.png into training.output_dir.

    Every process calls this (under FSDP saving gathers weights from all of them); only
    the main process writes.
    """
    output_dir = Path(config["training"]["output_dir"])
    staging = output_dir / STAGING
    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)
    trainer.save_model(str(staging))
    if not trainer.is_world_process_zero():
        return output_dir
    (staging / "training_args.bin").unlink(missing_ok=True)  # the config is in kodcu.json
    state = trainer.state
    curve = loss_curve(state.log_history)
    runtime = float(train_result.metrics.get("train_runtime", 0.0))
    base_config = trainer.model.get_base_model().config
    model = config["model"]
    record = {
        BASE_MODEL: base_model_record(
            model["base"], model["revision"], getattr(base_config, "_commit_hash", None)
        ),
        PROMPT_TEMPLATE: trainer.processing_class.chat_template,
        CONFIG: config,
        DATA: data_report,
        METRICS: {
            "train_loss": curve["train"][-1][1] if curve["train"] else train_result.training_loss,
            "mean_train_loss": train_result.training_loss,
            "eval_loss": curve["eval"][-1][1] if curve["eval"] else None,
            "steps": state.global_step,
            "epochs": state.epoch,
            "runtime_s": round(runtime, 2),
            "tokens_per_s": round(tokens / runtime, 1) if runtime else None,
            "loss_curve": curve,
        },
        VERSIONS: library_versions(),
    }
    finish_adapter_dir(staging, output_dir, record)
    return output_dir
