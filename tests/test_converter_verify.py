"""Verification: a GGUF's logits against its Hugging Face model on held-out text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from converter.gguf_export import export_gguf
from converter.quantize import quantize
from converter.verify import THRESHOLDS, VerificationError, compare_logits, verify_gguf
from tests.tiny_gguf_models import build_tiny_model

GEMMA3_HF = Path(__file__).resolve().parents[2] / "shared" / "tools" / "gemma3-hf"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny llama, its F16 GGUF and two quantizations of it."""
    root = tmp_path_factory.mktemp("verify")
    base = build_tiny_model("llama", root / "base")
    f16 = export_gguf(base, root / "tiny-F16.gguf", "f16")
    return {
        "base": base,
        "F16": f16,
        "Q8_0": quantize(f16, root / "tiny-Q8_0.gguf", "Q8_0"),
        "Q4_K_M": quantize(f16, root / "tiny-Q4_K_M.gguf", "Q4_K_M"),
    }


def figures(hf_dir: Path, paths: list[Path], **options) -> list[dict]:
    """Every file's figures, whether or not it passed."""
    try:
        return verify_gguf(hf_dir, paths, **options)
    except VerificationError as error:
        return error.results


def test_f16_of_a_tiny_model_passes(tiny: dict) -> None:
    [result] = verify_gguf(tiny["base"], [tiny["F16"]])
    assert result["file"] == str(tiny["F16"]) and result["type"] == "F16"
    assert result["passed"] and result["nmse"] < 1e-4, result
    assert result["top1"] >= 0.98 and result["kl"] < 1e-3, result
    assert result["tokens"] > 300, "the built-in text gives a few hundred tokens"
    assert result["tokenizer_match"], result.get("note")
    assert result["threshold"] == {"type": "F16", **vars(THRESHOLDS["F16"])}


def test_quantized_figures_get_worse_with_fewer_bits(tiny: dict) -> None:
    f16, q8, q4 = figures(tiny["base"], [tiny["F16"], tiny["Q8_0"], tiny["Q4_K_M"]])
    assert [r["type"] for r in (f16, q8, q4)] == ["F16", "Q8_0", "Q4_K_M"]
    for name in ("nmse", "kl"):
        assert f16[name] < q8[name] < q4[name], (name, f16[name], q8[name], q4[name])
    assert f16["top1"] >= q8["top1"] >= q4["top1"]


def test_a_q4_judged_as_f16_fails_loudly_after_measuring_every_file(tiny: dict) -> None:
    with pytest.raises(VerificationError) as caught:
        verify_gguf(tiny["base"], [tiny["Q4_K_M"], tiny["F16"]], judge_as="F16")
    message = str(caught.value)
    assert str(tiny["Q4_K_M"]) in message and "NMSE" in message
    assert str(tiny["F16"]) not in message, "only the failing file is named"
    q4, f16 = caught.value.results
    assert not q4["passed"] and q4["failures"] and f16["passed"]


def test_the_gguf_of_another_model_fails(tiny: dict, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    # Same architecture, tokenizer and shapes; other random weights.
    other = build_tiny_model("llama", tmp_path / "other")
    model = AutoModelForCausalLM.from_pretrained(other, dtype=torch.float32)
    torch.manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    model.save_pretrained(other)
    wrong = export_gguf(other, tmp_path / "other-F16.gguf", "f16")
    with pytest.raises(VerificationError, match="other-F16.gguf") as caught:
        verify_gguf(tiny["base"], [wrong])
    [result] = caught.value.results
    assert result["nmse"] > 0.1 and result["top1"] < 0.5, result
    assert "NMSE" in str(caught.value) and f"{result['nmse']:.3g}" in str(caught.value)


def test_a_type_without_thresholds_fails_with_the_known_types(tiny: dict) -> None:
    [result] = figures(tiny["base"], [tiny["F16"]], judge_as="IQ1_S")
    assert not result["passed"] and "Q4_K_M" in result["failures"][0]


def test_figures_of_known_logits() -> None:
    logits = np.random.default_rng(0).normal(size=(5, 50))
    same = compare_logits(logits, logits)
    assert same == {"nmse": 0.0, "kl": pytest.approx(0.0, abs=1e-12), "top1": 1.0}
    # A constant shift changes no probability, only the logits themselves.
    shifted = compare_logits(logits, logits + 1.0)
    assert shifted["kl"] == pytest.approx(0.0, abs=1e-12) and shifted["top1"] == 1.0
    assert shifted["nmse"] == pytest.approx(5 * 50 / (logits**2).sum())
    flipped = compare_logits(logits, -logits)
    assert flipped["nmse"] == pytest.approx(4.0) and flipped["top1"] == 0.0 and flipped["kl"] > 1


@pytest.mark.slow
def test_f16_of_real_gemma3_passes(tmp_path: Path) -> None:
    if not GEMMA3_HF.is_file():
        pytest.skip(f"{GEMMA3_HF} is not here: no Hugging Face copy of Gemma 3 270M to test with")
    made = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True)
    folder = Path(made.stdout.strip().splitlines()[-1]) if made.stdout.strip() else None
    if made.returncode != 0 or folder is None or not (folder / "config.json").is_file():
        pytest.skip(f"gemma3-hf could not make the Hugging Face copy: {made.stderr[-300:]}")
    f16 = export_gguf(folder, tmp_path / "gemma-3-270m-F16.gguf", "f16")
    [result] = verify_gguf(folder, [f16])
    print(result)
    assert result["passed"] and result["nmse"] < 1e-4, result
    assert result["tokenizer_match"], result.get("note")


def test_the_tiny_gemma3_model_computes_what_llama_cpp_computes(tmp_path: Path) -> None:
    # The tiny models stand for real ones only if llama.cpp agrees with transformers on them.
    model = build_tiny_model("gemma3", tmp_path / "gemma3")
    gguf = export_gguf(model, tmp_path / "gemma3-F16.gguf", "f16")
    [result] = verify_gguf(model, [gguf])
    assert result["passed"], result
