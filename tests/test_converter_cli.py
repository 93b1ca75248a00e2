"""`kodcu-convert` end to end: outputs, report, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from llama_cpp import Llama

from converter import ConvertError
from converter.cli import main, optional_step
from converter.report import sha256_of
from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.tiny_gguf_models import build_tiny_adapter, build_tiny_model

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    return build_tiny_adapter(build_tiny_model("llama", root / "base"), root / "my-adapter")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "converter", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_help_shows_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "kodcu-convert runs/my-adapter --out dist/ --quant Q8_0,Q4_K_M" in result.stdout


@pytest.mark.slow
def test_adapter_to_f16_quants_and_lora_gguf_with_report(tmp_path: Path, adapter: Path) -> None:
    out = tmp_path / "dist"
    result = run_cli(
        str(adapter), "--out", str(out), "--quant", "Q8_0,Q4_K_M", "--lora-gguf", "--keep-merged"
    )
    assert result.returncode == 0, result.stderr
    names = ["my-adapter-F16.gguf", "my-adapter-Q8_0.gguf", "my-adapter-Q4_K_M.gguf"]
    names.append("my-adapter-lora-F16.gguf")
    assert result.stdout.split() == [str(out / name) for name in names] + [str(out / "report.md")]
    assert "[2/5] convert to GGUF F16" in result.stderr  # progress, one line per step
    # Only finished outputs remain: no partial files, no temporary merge folder.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*names, "my-adapter-merged", "report.json", "report.md"]
    )
    report = json.loads((out / "report.json").read_text())
    assert [entry["file"] for entry in report["files"]] == names
    for entry in report["files"]:
        assert entry["sha256"] == sha256_of(out / entry["file"])
        assert entry["size"] == (out / entry["file"]).stat().st_size
    assert report["source"]["kind"] == "kodcu-adapter"
    assert report["base_model"]["sha256_matches"] is True
    assert all(check["ok"] for check in report["checks"])
    markdown = (out / "report.md").read_text()
    assert "| my-adapter-Q4_K_M.gguf | Q4_K_M |" in markdown
    assert "| single_bos | ok |" in markdown
    assert (out / "my-adapter-merged" / "model.safetensors").is_file()
    llama = Llama(model_path=str(out / "my-adapter-Q4_K_M.gguf"), n_ctx=64, verbose=False)
    assert llama.metadata["tokenizer.chat_template"] == ALPACA_CHAT_TEMPLATE
    assert llama("def add(a, b):", max_tokens=4)["usage"]["completion_tokens"] > 0
    llama.close()


def test_model_source_with_verification(
    tmp_path: Path, adapter: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "dist"
    out.mkdir()
    stale = out / ".base-F16.gguf.partial"  # what a killed run leaves behind
    stale.write_bytes(b"GGUF")
    base = adapter.parent / "base"
    assert main([str(base), "--out", str(out), "--quant", "none", "--verify"]) == 0
    assert not stale.exists()
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["kind"] == "model" and "base_model" not in report
    assert [entry["type"] for entry in report["files"]] == ["F16"]
    [row] = report["verification"]
    assert Path(row["file"]).name == "base-F16.gguf" and row["passed"] is True
    assert "## Verification" in (out / "report.md").read_text()
    assert "removed 1 partial file(s) or folder(s)" in capsys.readouterr().err


def test_adapter_verification_compares_with_the_unmerged_original(
    tmp_path: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "dist"
    assert main([str(adapter), "--out", str(out), "--quant", "none", "--verify"]) == 0
    [row] = json.loads((out / "report.json").read_text())["verification"]
    reference = "base + adapter my-adapter, unmerged (float32)"
    assert row["passed"] is True and row["reference"] == reference, row
    assert f"Reference: {reference}." in (out / "report.md").read_text()
    # The name apps show is the adapter's, not the temporary merge folder's.
    f16 = Llama(model_path=str(out / "my-adapter-F16.gguf"), vocab_only=True, verbose=False)
    assert f16.metadata["general.name"] == "my-adapter"
    assert "merged" not in f16.metadata.get("general.finetune", "")
    f16.close()

    # A merge that loses the adapter writes the base's GGUF. Compared with the converter's
    # own merged folder it would pass; compared with the original it fails, exit status 1.
    def merge_losing_the_adapter(adapter_dir: Path, out_dir: Path, dtype: str) -> Path:
        shutil.copytree(adapter.parent / "base", out_dir, dirs_exist_ok=True)
        return out_dir

    monkeypatch.setattr("converter.merge.merge_adapter", merge_losing_the_adapter)
    broken = tmp_path / "broken"
    assert main([str(adapter), "--out", str(broken), "--quant", "none", "--verify"]) == 1
    [row] = json.loads((broken / "report.json").read_text())["verification"]
    assert row["passed"] is False and row["top1"] < 0.97, row


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--quant", "Q4_K_M,IQ1_S"], "IQ1_S needs an importance matrix"),
        (["--quant", "Q4_K_Z"], "unknown quantization type 'Q4_K_Z'"),
        (["--disk-margin", "1e9"], "not enough disk space"),
        (["--lora-only", "--quant", "Q8_0"], "--lora-only writes no model GGUF; leave out --quant"),
        (["--lora-only", "--verify", "--keep-merged"], "leave out --verify, --keep-merged"),
    ],
)
def test_bad_requests_fail_before_any_work(
    tmp_path: Path, adapter: Path, capsys: pytest.CaptureFixture, extra: list, message: str
) -> None:
    out = tmp_path / "dist"
    assert main([str(adapter), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kodcu-convert: error: ")
    assert message in err[0]
    assert not out.exists() or not list(out.iterdir())


def test_lora_gguf_needs_an_adapter(tmp_path: Path, adapter: Path, capsys) -> None:
    base = adapter.parent / "base"
    assert main([str(base), "--out", str(tmp_path), "--lora-gguf"]) == 2
    assert "--lora-gguf needs an adapter as SOURCE" in capsys.readouterr().err
    assert main([str(base), "--out", str(tmp_path), "--lora-only"]) == 2
    assert "--lora-only needs an adapter as SOURCE" in capsys.readouterr().err


def test_lora_only_writes_the_same_lora_gguf_and_nothing_else(tmp_path: Path, adapter: Path):
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert main([str(adapter), "--out", str(both), "--quant", "none", "--lora-gguf"]) == 0
    assert main([str(adapter), "--out", str(alone), "--lora-only"]) == 0
    # No merge and no model GGUF: the adapter's GGUF and the report, nothing else.
    assert sorted(p.name for p in alone.iterdir()) == [
        "my-adapter-lora-F16.gguf", "report.json", "report.md"
    ]  # fmt: skip
    lora = "my-adapter-lora-F16.gguf"
    assert (alone / lora).read_bytes() == (both / lora).read_bytes()
    steps = json.loads((alone / "report.json").read_text())["steps"]
    assert [entry["step"] for entry in steps] == ["LoRA F16"]


def test_existing_outputs_are_kept_without_overwrite(tmp_path: Path, adapter: Path, capsys):
    (tmp_path / "my-adapter-F16.gguf").write_bytes(b"earlier run")
    assert main([str(adapter), "--out", str(tmp_path)]) == 2
    assert "already holds my-adapter-F16.gguf; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "my-adapter-F16.gguf").read_bytes() == b"earlier run"


def test_unknown_architecture_exits_2_with_one_line(tmp_path: Path, adapter: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = json.loads((adapter.parent / "base" / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "architectures": ["KodcuNet"]}))
    (model / "model.safetensors").write_bytes(
        (adapter.parent / "base" / "model.safetensors").read_bytes()
    )
    result = run_cli(str(model), "--out", str(tmp_path / "dist"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kodcu-convert: error: "), lines
    assert "does not know the architecture 'KodcuNet'" in result.stderr


def test_a_missing_optional_step_is_named_by_its_flag() -> None:
    with pytest.raises(ConvertError, match="--example-step is not available in this install"):
        optional_step("no_such_step", "run", "--example-step")
