"""Each way a conversion can go wrong gives a clear error and leaves no half-written file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from converter import ConvertError
from converter.gguf_export import check_gguf, export_gguf, model_architecture
from converter.merge import check_vocab_fits, merge_adapter, resolve_base
from converter.quantize import IMATRIX_TYPES, check_qtype, quant_types, quantize
from converter.safety import check_free_space, partial_output, partial_path
from converter.source import identify_source
from tests.tiny_gguf_models import build_tiny_adapter, build_tiny_model

pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A llama base with its adapter and F16 GGUF, and a gemma3 base (another shape)."""
    root = tmp_path_factory.mktemp("errors")
    base = build_tiny_model("llama", root / "llama")
    adapter = build_tiny_adapter(base, root / "adapter")
    merged = merge_adapter(adapter, root / "merged")
    return {
        "base": base,
        "adapter": adapter,
        "merged": merged,
        "f16": export_gguf(merged, root / "m-F16.gguf"),
        "gemma3": build_tiny_model("gemma3", root / "gemma3"),
    }


def ggufs(folder: Path) -> list[str]:
    """Every file in `folder` that looks like a model or a file being written."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".gguf", ".partial"))


def copy_adapter_with_base(tiny: dict, tmp_path: Path, base: dict | str) -> Path:
    adapter = Path(shutil.copytree(tiny["adapter"], tmp_path / "adapter"))
    record = json.loads((adapter / "kodcu.json").read_text())
    record["base_model"] = base
    (adapter / "kodcu.json").write_text(json.dumps(record))
    return adapter


def test_unknown_architecture_is_named(tmp_path: Path, tiny: dict) -> None:
    model = Path(shutil.copytree(tiny["base"], tmp_path / "model"))
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["KodcuNetForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match="does not know the architecture 'KodcuNetForCausalLM'"):
        export_gguf(model, tmp_path / "out" / "m-F16.gguf")
    assert not (tmp_path / "out").exists() or not ggufs(tmp_path / "out")


def test_missing_base_folder_names_the_folder_and_the_file(tmp_path: Path, tiny: dict) -> None:
    adapter = copy_adapter_with_base(tiny, tmp_path, {"path": str(tmp_path / "gone")})
    with pytest.raises(ConvertError, match=r"gone \(from kodcu.json\) does not exist"):
        resolve_base(adapter)
    with pytest.raises(ConvertError, match="does not exist"):
        merge_adapter(adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_hub_base_that_is_not_cached_fails_offline(tmp_path: Path, tiny: dict) -> None:
    adapter = copy_adapter_with_base(tiny, tmp_path, {"id": "kodcu-test/no-such-model"})
    with pytest.raises(ConvertError, match="neither a folder here nor in the local Hugging Face"):
        resolve_base(adapter)


def test_plain_peft_adapter_with_a_missing_base(tmp_path: Path, tiny: dict) -> None:
    plain = build_tiny_adapter(tiny["base"], tmp_path / "plain", kodcu=False)
    config = json.loads((plain / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "moved-away")
    (plain / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match=r"moved-away \(from adapter_config.json\)"):
        resolve_base(plain)


def test_adapter_for_another_model_names_adapter_and_base(tmp_path: Path, tiny: dict) -> None:
    # Same module names, other shapes: llama's k_proj has 2 heads of 16, gemma3's has 1.
    adapter = copy_adapter_with_base(tiny, tmp_path, {"path": str(tiny["gemma3"])})
    with pytest.raises(ConvertError) as error:
        merge_adapter(adapter, tmp_path / "merged")
    message = str(error.value)
    assert f"adapter {adapter} does not fit base model {tiny['gemma3']}" in message
    assert "shape" in message


def test_adapter_whose_modules_the_base_lacks(tmp_path: Path, tiny: dict) -> None:
    falcon = build_tiny_model("falcon", tmp_path / "falcon")  # query_key_value, not q_proj
    adapter = copy_adapter_with_base(tiny, tmp_path, {"path": str(falcon)})
    with pytest.raises(ConvertError, match="does not fit base model .*not found in the base"):
        merge_adapter(adapter, tmp_path / "merged")


def test_four_bit_base_checkpoint_is_refused(tmp_path: Path, tiny: dict) -> None:
    base = Path(shutil.copytree(tiny["base"], tmp_path / "base-4bit"))
    config = json.loads((base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(config))
    adapter = copy_adapter_with_base(tiny, tmp_path, {"path": str(base)})
    with pytest.raises(ConvertError, match=r"stored quantized \(bitsandbytes 4-bit\)"):
        merge_adapter(adapter, tmp_path / "merged")
    with pytest.raises(ConvertError, match="quantized with bitsandbytes"):
        export_gguf(base, tmp_path / "base-F16.gguf")
    assert not ggufs(tmp_path)


@pytest.mark.parametrize("qtype", sorted(IMATRIX_TYPES))
def test_importance_matrix_types_are_refused_before_work(
    tmp_path: Path, tiny: dict, qtype: str
) -> None:
    assert qtype in quant_types()  # a real llama.cpp type, not a typo in the list
    with pytest.raises(ConvertError, match="needs an importance matrix"):
        quantize(tiny["f16"], tmp_path / f"m-{qtype}.gguf", qtype)
    assert not ggufs(tmp_path)


def test_unknown_quantization_type_lists_the_known_ones() -> None:
    with pytest.raises(ConvertError, match="unknown quantization type 'Q9_X'.*Q4_K_M"):
        check_qtype("Q9_X")
    assert check_qtype("q4_k_m") == "Q4_K_M"


def test_not_enough_disk_space_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match=r"not enough disk space in .*needs about 2\.00 GB"):
        check_free_space(tmp_path / "new", needed=2 * 1024**3, what="2 files", margin=10**18)
    assert check_free_space(tmp_path, needed=1, what="1 file", margin=0) > 0


def test_failed_quantization_leaves_no_file(tmp_path: Path, tiny: dict) -> None:
    truncated = tmp_path / "truncated-F16.gguf"
    truncated.write_bytes(tiny["f16"].read_bytes()[:4096])
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="llama.cpp could not quantize .* to Q8_0"):
        quantize(truncated, out / "m-Q8_0.gguf", "Q8_0")
    assert not ggufs(out)


def test_failed_conversion_leaves_no_file(tmp_path: Path) -> None:
    # Falcon's converter reads only BPE tokenizers it recognises; this one it does not.
    falcon = build_tiny_model("falcon", tmp_path / "falcon")
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match="does not recognise this model's BPE tokenizer"):
        export_gguf(falcon, out / "falcon-F16.gguf")
    assert not ggufs(out)


def test_interrupted_write_removes_the_partial_file(tmp_path: Path) -> None:
    final = tmp_path / "m-Q4_K_M.gguf"
    with pytest.raises(KeyboardInterrupt), partial_output(final) as partial:
        partial.write_bytes(b"GGUF" + b"\0" * 100)
        raise KeyboardInterrupt
    assert not final.exists() and not partial_path(final).exists()


def test_vocabulary_larger_than_the_embedding_is_refused(tmp_path: Path, tiny: dict) -> None:
    model = Path(shutil.copytree(tiny["merged"], tmp_path / "model"))
    config = json.loads((model / "config.json").read_text())
    config["vocab_size"] = 300
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match="400 tokens but the model has 300 embedding rows"):
        check_vocab_fits(model)


def test_checks_catch_a_lost_template_a_double_bos_and_dropped_rope(
    tmp_path: Path, tiny: dict
) -> None:
    # The same GGUF judged against a folder whose template, rope and vocab say otherwise.
    model = Path(shutil.copytree(tiny["merged"], tmp_path / "model"))
    (model / "chat_template.jinja").write_text(
        "{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    config = json.loads((model / "config.json").read_text())
    config["rope_theta"] = 500000.0
    config["rope_scaling"] = {"rope_type": "linear", "factor": 4.0}
    (model / "config.json").write_text(json.dumps(config))
    failed = {c["check"] for c in check_gguf(tiny["f16"], model) if not c["ok"]}
    assert {"chat_template", "single_bos", "rope_theta", "rope_scaling"} <= failed
    assert not {"eos", "bos", "vocab_size"} & failed


def test_source_must_be_an_adapter_or_model_folder(tmp_path: Path, tiny: dict) -> None:
    with pytest.raises(ConvertError, match="no such folder"):
        identify_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="neither an adapter"):
        identify_source(tmp_path / "empty")
    with pytest.raises(ConvertError, match="must be a folder"):
        identify_source(tiny["f16"])
    broken = Path(shutil.copytree(tiny["adapter"], tmp_path / "broken"))
    (broken / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConvertError, match=r"adapter_config.json: not valid JSON \(line 1"):
        identify_source(broken)
    assert identify_source(tiny["adapter"]).kind == "kodcu-adapter"
    assert identify_source(tiny["base"]).kind == "model"
    assert model_architecture(tiny["base"]) == "LlamaForCausalLM"
