"""The LoRA GGUF: llama.cpp applies it over the base GGUF and gets the merged model's outputs."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from converter.gguf_export import export_gguf
from converter.lora_gguf import LoraGGUFError, LoraPair, write_lora_gguf
from converter.merge import merge_adapter
from kodcu.model_file import check_adapter_file
from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.tiny_gguf_models import GGUF_ARCHITECTURES, LORA_ALPHA, build_tiny_adapter
from tests.tiny_gguf_models import build_tiny_model as tiny_model

PROMPT = "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, 2))\n"
GEMMA3_HF = Path(__file__).resolve().parents[2] / "shared" / "tools" / "gemma3-hf"


def run_gguf(model: Path, lora: Path | None = None, prompt: str = PROMPT, new: int = 16):
    """Logits at every prompt position and `new` greedy tokens after it."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model),
        lora_path=str(lora) if lora else None,
        n_ctx=256,
        logits_all=True,
        verbose=False,
    )
    try:
        ids = llm.tokenize(prompt.encode(), add_bos=True)
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)])
        llm.reset()
        greedy = []
        for token in llm.generate(ids, temp=0.0):
            greedy.append(token)
            if len(greedy) == new:
                break
        return logits, greedy
    finally:
        llm.close()


def differences(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Max abs difference and NMSE of two logit arrays."""
    nmse = float(((ours - reference) ** 2).sum() / (reference**2).sum())
    return float(np.abs(ours - reference).max()), nmse


@pytest.fixture(scope="module")
def make_tiny(tmp_path_factory):
    """Base, adapter and the three GGUFs (base, merged, LoRA; all F32) of a tiny architecture."""

    @functools.cache
    def make(arch: str) -> dict:
        root = tmp_path_factory.mktemp(arch)
        base = tiny_model(arch, root / "base")
        adapter = build_tiny_adapter(base, root / "adapter")
        merged = merge_adapter(adapter, root / "merged", dtype="float32")
        return {
            "arch": arch,
            "base": base,
            "adapter": adapter,
            "base_gguf": export_gguf(base, root / "base-F32.gguf", "f32"),
            "merged_gguf": export_gguf(merged, root / "merged-F32.gguf", "f32"),
            "lora_gguf": write_lora_gguf(adapter, base, root / "lora-F32.gguf", outtype="f32"),
        }

    return make


@pytest.fixture(params=GGUF_ARCHITECTURES)
def tiny(request, make_tiny) -> dict:
    return make_tiny(request.param)


@pytest.fixture
def llama(make_tiny) -> dict:
    return make_tiny("llama")


def test_base_plus_lora_gguf_gives_the_merged_models_outputs(tiny: dict) -> None:
    merged, merged_tokens = run_gguf(tiny["merged_gguf"])
    applied, applied_tokens = run_gguf(tiny["base_gguf"], tiny["lora_gguf"])
    plain, _ = run_gguf(tiny["base_gguf"])
    max_diff, nmse = differences(applied, merged)
    assert applied_tokens == merged_tokens, f"{tiny['arch']}: greedy tokens differ"
    assert nmse < 1e-5, (
        f"{tiny['arch']}: base+LoRA vs merged: max |diff| {max_diff:.3g}, NMSE {nmse:.3g}"
    )
    # The adapter must matter, or the equality above says nothing.
    _, plain_nmse = differences(plain, merged)
    assert plain_nmse > 1e-2, (
        f"{tiny['arch']}: the LoRA barely changes the base (NMSE {plain_nmse:.3g})"
    )


def test_the_desktop_accepts_the_lora_gguf_for_its_base(tiny: dict) -> None:
    check_adapter_file(tiny["lora_gguf"], tiny["base_gguf"])


def test_kodcu_eval_applies_the_lora_gguf(llama: dict) -> None:
    # kodcu-eval's decoder loads the model again for itself, and the adapter over it.
    from evaluation.models import GGUFModel, Prompt

    def text(model: Path, adapter: Path | None) -> str:
        opened = GGUFModel(model, adapter=adapter, threads=None, slots=2)
        try:
            [(_, decoded)] = list(opened.generate([Prompt("p", text=PROMPT)], 16, 0.0))
        finally:
            opened.close()
        return decoded

    applied = text(llama["base_gguf"], llama["lora_gguf"])
    assert applied and applied == text(llama["merged_gguf"], None)
    assert applied != text(llama["base_gguf"], None)


def gguf_fields(path: Path) -> tuple[dict, dict[str, str]]:
    """The GGUF's metadata (scalars and strings) and its tensors' types by name."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    metadata = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        metadata[name] = field.contents()
    return metadata, {t.name: t.tensor_type.name for t in reader.tensors}


def test_lora_gguf_metadata_says_what_it_is(llama: dict, tmp_path: Path) -> None:
    lora = write_lora_gguf(llama["adapter"], llama["base"], tmp_path / "lora.gguf")  # F16
    metadata, tensors = gguf_fields(lora)
    assert metadata["general.type"] == "adapter"
    assert metadata["adapter.type"] == "lora"
    assert metadata["adapter.lora.alpha"] == pytest.approx(LORA_ALPHA)
    assert metadata["general.architecture"] == "llama"
    assert metadata["tokenizer.chat_template"] == ALPACA_CHAT_TEMPLATE
    # Seven linear layers in each of two blocks, each an A and a B, named as llama.cpp's.
    assert len(tensors) == 2 * 7 * 2
    assert "blk.1.attn_q.weight.lora_a" in tensors and "blk.0.ffn_down.weight.lora_b" in tensors
    assert set(tensors.values()) == {"F16"}
    # The base is a local folder here: the file names no path of this machine for it.
    assert not any(key.startswith("general.base_model") for key in metadata)
    assert not any(str(llama["base"].parent) in str(value) for value in metadata.values())


def test_a_hub_base_is_named_in_the_lora_gguf(llama: dict, tmp_path: Path) -> None:
    adapter = shutil.copytree(llama["adapter"], tmp_path / "adapter")
    (adapter / "kodcu.json").unlink()  # the base is then adapter_config.json's
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "google/gemma-3-270m"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    lora = write_lora_gguf(adapter, llama["base"], tmp_path / "lora.gguf", name="my-coder")
    metadata, _ = gguf_fields(lora)
    assert metadata["general.name"] == "my-coder"
    assert metadata["general.base_model.count"] == 1
    assert metadata["general.base_model.0.organization"] == "google"
    assert metadata["general.base_model.0.repo_url"] == "https://huggingface.co/google/gemma-3-270m"


def test_a_plain_peft_adapter_without_template_still_converts(llama: dict, tmp_path: Path) -> None:
    adapter = build_tiny_adapter(llama["base"], tmp_path / "adapter", kodcu=False)
    metadata, _ = gguf_fields(write_lora_gguf(adapter, llama["base"], tmp_path / "lora.gguf"))
    assert "tokenizer.chat_template" not in metadata
    assert metadata["adapter.type"] == "lora"


def peft_adapter(base: Path, folder: Path, **lora: object) -> Path:
    """A PEFT adapter over `base` with the given LoraConfig fields and random B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    settings = {"r": 4, "lora_alpha": 8, "init_lora_weights": False, "task_type": "CAUSAL_LM"}
    config = LoraConfig(**(settings | lora))
    torch.manual_seed(2)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("lora", "problem"),
    [
        ({"target_modules": ["q_proj", "v_proj"], "use_dora": True}, "use_dora"),
        ({"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"target_modules": ["q_proj", "embed_tokens"]}, "token embeddings"),
    ],
    ids=["dora", "modules-to-save", "embedding-lora"],
)
def test_what_llama_cpp_cannot_apply_is_refused_with_a_reason(
    llama: dict, tmp_path: Path, lora: dict, problem: str
) -> None:
    adapter = peft_adapter(llama["base"], tmp_path / "adapter", **lora)
    out = tmp_path / "lora.gguf"
    with pytest.raises(LoraGGUFError, match=problem) as caught:
        write_lora_gguf(adapter, llama["base"], out)
    assert str(adapter) in str(caught.value), "the message names the adapter's file"
    assert not out.exists()


def test_rslora_and_per_module_rank_and_alpha_are_carried_into_the_gguf(
    llama: dict, tmp_path: Path
) -> None:
    # A GGUF adapter has one alpha and llama.cpp scales every pair by alpha / rank; rsLoRA's
    # alpha / sqrt(rank) and a module's own alpha are folded into its B.
    adapter = peft_adapter(
        llama["base"],
        tmp_path / "adapter",
        target_modules=["q_proj", "down_proj"],
        r=16,
        use_rslora=True,
        rank_pattern={"q_proj": 8},
        alpha_pattern={"down_proj": 32},
    )
    merged = merge_adapter(adapter, tmp_path / "merged", dtype="float32")
    reference, _ = run_gguf(export_gguf(merged, tmp_path / "merged.gguf", "f32"))
    lora = write_lora_gguf(adapter, llama["base"], tmp_path / "lora.gguf", "f32")
    applied, _ = run_gguf(llama["base_gguf"], lora)
    max_diff, nmse = differences(applied, reference)
    assert nmse < 1e-5, f"rsLoRA: max |diff| {max_diff:.3g}, NMSE {nmse:.3g}"


def test_lora_pair_follows_row_rearrangements_of_the_weight() -> None:
    # What llama.cpp's model classes do to weights (Llama's rope permutation of q/k rows,
    # Falcon's regrouping of fused q/k/v rows) gives the same rows on B @ A as on the product.
    torch.manual_seed(0)
    a, b = torch.randn(4, 12), torch.randn(24, 4)
    pair, dense = LoraPair(a, b), b @ a

    def product(p: LoraPair) -> torch.Tensor:
        return p.b @ p.a

    def rope_permute(w):
        return w.reshape(3, 2, 4, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    assert torch.allclose(product(rope_permute(pair)), rope_permute(dense))
    groups = pair.view(2, 3, 4, 12)
    regrouped = torch.cat((groups[:, :-2].reshape(8, 12), groups[:, [-1]].reshape(8, 12)))
    dense_groups = dense.view(2, 3, 4, 12)
    expected = torch.cat(
        (dense_groups[:, :-2].reshape(8, 12), dense_groups[:, [-1]].reshape(8, 12))
    )
    assert torch.allclose(product(regrouped), expected)
    assert torch.allclose(product(pair.transpose(0, 1)), dense.T)
    other = LoraPair(torch.randn(2, 12), torch.randn(5, 2))
    assert torch.allclose(product(torch.cat([pair, other])), torch.cat([dense, other.b @ other.a]))
    with pytest.raises(NotImplementedError):
        torch.stack([pair, pair])


def gemma3_hf_dir() -> Path:
    if not GEMMA3_HF.is_file():
        pytest.skip(f"{GEMMA3_HF} is not here: no Hugging Face copy of Gemma 3 270M to test with")
    result = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True)
    folder = Path(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
    if result.returncode != 0 or folder is None or not (folder / "config.json").is_file():
        pytest.skip(f"gemma3-hf could not make the Hugging Face copy: {result.stderr[-300:]}")
    return folder


def small_random_b_adapter(base: Path, folder: Path) -> Path:
    """PEFT's own initialisation of A and a small random B, like an adapter early in training."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM")
    peft = get_peft_model(model, config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.03)
    peft.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_lora_gguf_over_real_gemma3_gives_the_merged_models_tokens(tmp_path: Path) -> None:
    hf = gemma3_hf_dir()
    adapter = small_random_b_adapter(hf, tmp_path / "adapter")
    merged = merge_adapter(adapter, tmp_path / "merged", dtype="float16")
    merged_gguf = export_gguf(merged, tmp_path / "merged-F16.gguf", "f16")
    base_gguf = export_gguf(hf, tmp_path / "base-F16.gguf", "f16")
    lora = write_lora_gguf(adapter, hf, tmp_path / "lora-F16.gguf")
    check_adapter_file(lora, base_gguf)
    prompt = "Write a Python function that returns the square of a number.\n\ndef"
    reference, merged_tokens = run_gguf(merged_gguf, prompt=prompt, new=24)
    applied, applied_tokens = run_gguf(base_gguf, lora, prompt=prompt, new=24)
    plain, plain_tokens = run_gguf(base_gguf, prompt=prompt, new=24)
    max_diff, nmse = differences(applied, reference)
    # Measured: max |diff| 0.03, NMSE 1.3e-6; the base alone is at NMSE 0.08.
    assert applied_tokens == merged_tokens, f"max |diff| {max_diff:.3g}, NMSE {nmse:.3g}"
    assert nmse < 1e-5, f"base+LoRA vs merged: max |diff| {max_diff:.3g}, NMSE {nmse:.3g}"
    assert plain_tokens != merged_tokens, "the adapter changes the answer"
