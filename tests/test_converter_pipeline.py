"""Adapter → merged model → GGUF → quantized GGUFs that llama.cpp loads and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from safetensors.torch import load_file

from converter.gguf_export import check_gguf, export_gguf
from converter.merge import merge_adapter
from converter.quantize import quant_types, quantize
from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.tiny_gguf_models import (
    GGUF_ARCHITECTURES,
    LORA_ALPHA,
    LORA_R,
    build_tiny_adapter,
    build_tiny_model,
)

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def llama_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny llama base, its Kodcu adapter, the merged model and its F16/Q8_0/Q4_K_M GGUFs."""
    root = tmp_path_factory.mktemp("pipeline")
    base = build_tiny_model("llama", root / "base")
    adapter = build_tiny_adapter(base, root / "adapter")
    merged = merge_adapter(adapter, root / "merged")
    f16 = export_gguf(merged, root / "out" / "m-F16.gguf")
    files = {"base": base, "adapter": adapter, "merged": merged, "F16": f16}
    for qtype in ("Q8_0", "Q4_K_M"):
        files[qtype] = quantize(f16, root / "out" / f"m-{qtype}.gguf", qtype)
    return files


def generate(path: Path, prompt: str = "def add(a, b):", tokens: int = 6) -> tuple[Llama, dict]:
    llama = Llama(model_path=str(path), n_ctx=64, verbose=False)
    return llama, llama(prompt, max_tokens=tokens, temperature=0.0)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_K_M"])
def test_each_gguf_loads_in_llama_cpp_and_generates(llama_files: dict, qtype: str) -> None:
    llama, out = generate(llama_files[qtype])
    assert out["usage"]["completion_tokens"] > 0
    assert llama.metadata["general.file_type"] == str(quant_types()[qtype])
    llama.close()


def test_quantized_files_are_smaller_than_f16(llama_files: dict) -> None:
    sizes = {name: llama_files[name].stat().st_size for name in ("F16", "Q8_0", "Q4_K_M")}
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_K_M"]


def test_merged_weights_are_base_plus_scaled_lora_product(tmp_path: Path, llama_files: dict):
    merged = merge_adapter(llama_files["adapter"], tmp_path / "merged32", dtype="float32")
    base = load_file(llama_files["base"] / "model.safetensors")
    lora = load_file(llama_files["adapter"] / "adapter_model.safetensors")
    weights = load_file(merged / "model.safetensors")
    prefix = "base_model.model."
    pairs = [key for key in lora if key.endswith("lora_A.weight")]
    assert len(pairs) == 14  # q, k, v, o, gate, up, down in each of 2 layers
    for key in pairs:
        module = key[len(prefix) : -len(".lora_A.weight")]
        delta = lora[key.replace("lora_A", "lora_B")] @ lora[key] * (LORA_ALPHA / LORA_R)
        assert delta.abs().max() > 1e-2  # the adapter really changes this weight
        expected = base[f"{module}.weight"] + delta
        torch.testing.assert_close(weights[f"{module}.weight"], expected, rtol=1e-5, atol=1e-6)
    # The weights the adapter does not touch are the base's, bit for bit.
    torch.testing.assert_close(weights["model.norm.weight"], base["model.norm.weight"])


def test_f16_merge_rounds_to_the_same_weights(llama_files: dict) -> None:
    weights = load_file(llama_files["merged"] / "model.safetensors")
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == torch.float16


def last_logits(path: Path, prompt: str) -> list[float]:
    llama = Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False)
    llama.eval(llama.tokenize(prompt.encode()))
    logits = llama.scores[llama.n_tokens - 1].copy()
    llama.close()
    return logits


def test_merged_model_computes_other_logits_than_the_base(tmp_path: Path, llama_files: dict):
    base_gguf = export_gguf(llama_files["base"], tmp_path / "base-F16.gguf")
    prompt = "def add(a, b):\n    return"
    difference = abs(last_logits(base_gguf, prompt) - last_logits(llama_files["F16"], prompt))
    assert difference.max() > 0.1


def test_gguf_carries_the_chat_template_eos_and_exactly_one_bos(llama_files: dict) -> None:
    llama = Llama(model_path=str(llama_files["F16"]), vocab_only=True, verbose=False)
    meta = llama.metadata
    assert meta["tokenizer.chat_template"] == ALPACA_CHAT_TEMPLATE
    assert meta["tokenizer.ggml.eos_token_id"] == "2"
    assert meta["tokenizer.ggml.bos_token_id"] == "1"
    # Render a chat as the desktop does and tokenize it as llama-cpp-python's chat path does.
    formatter = Jinja2ChatFormatter(ALPACA_CHAT_TEMPLATE, eos_token="</s>", bos_token="<s>")
    prompt = formatter(messages=[{"role": "user", "content": "Add two numbers."}]).prompt
    ids = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    assert ids[0] == llama.token_bos()
    assert ids.count(llama.token_bos()) == 1
    llama.close()


def test_every_check_of_the_converted_file_passes(llama_files: dict) -> None:
    checks = {c["check"]: c for c in check_gguf(llama_files["F16"], llama_files["merged"])}
    expected = {"chat_template", "eos", "bos", "add_bos", "single_bos", "vocab_size"}
    assert expected | {"rope_theta", "tokens_match"} <= set(checks)
    assert all(check["ok"] for check in checks.values()), checks


def test_plain_peft_adapter_merges_with_the_base_tokenizer(tmp_path: Path, llama_files: dict):
    plain = build_tiny_adapter(llama_files["base"], tmp_path / "peft", kodcu=False)
    assert not (plain / "kodcu.json").exists() and not (plain / "tokenizer.json").exists()
    merged = merge_adapter(plain, tmp_path / "merged")
    assert (merged / "tokenizer.model").read_bytes() == (
        llama_files["base"] / "tokenizer.model"
    ).read_bytes()
    gguf = export_gguf(merged, tmp_path / "plain-F16.gguf")
    llama = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    assert "tokenizer.chat_template" not in llama.metadata  # the base has none to carry
    llama.close()


def test_template_kept_in_kodcu_json_is_restored_when_tokenizer_lost_it(
    tmp_path: Path, llama_files: dict
) -> None:
    adapter = build_tiny_adapter(llama_files["base"], tmp_path / "adapter")
    (adapter / "chat_template.jinja").unlink()
    merged = merge_adapter(adapter, tmp_path / "merged")
    assert (merged / "chat_template.jinja").read_text() == ALPACA_CHAT_TEMPLATE


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in GGUF_ARCHITECTURES if a != "llama"])
def test_other_architectures_convert_quantize_and_generate(tmp_path: Path, arch: str) -> None:
    base = build_tiny_model(arch, tmp_path / "base")
    merged = merge_adapter(build_tiny_adapter(base, tmp_path / "adapter"), tmp_path / "merged")
    f16 = export_gguf(merged, tmp_path / f"{arch}-F16.gguf")
    q4 = quantize(f16, tmp_path / f"{arch}-Q4_K_M.gguf", "Q4_K_M")
    llama, out = generate(q4)
    # llama.cpp's converter writes Mistral models as the llama architecture.
    assert llama.metadata["general.architecture"] == {"mistral": "llama"}.get(arch, arch)
    assert llama.metadata["tokenizer.chat_template"] == ALPACA_CHAT_TEMPLATE
    assert out["usage"]["completion_tokens"] > 0
    llama.close()
