"""The whole path on the real default model: an adapter on Gemma 3 270M → Q4_K_M GGUF."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from converter.cli import main
from desktop.client import ChatStream
from desktop.engine import Engine, EngineConfig
from kodcu.prompt import ALPACA_CHAT_TEMPLATE, alpaca_messages
from tests.tiny_gguf_models import build_tiny_adapter

GEMMA3_HF = Path(__file__).resolve().parents[2] / "shared" / "tools" / "gemma3-hf"


pytestmark = pytest.mark.usefixtures("offline_hub")


def gemma3_base() -> Path:
    if not GEMMA3_HF.is_file():
        pytest.skip(
            f"{GEMMA3_HF.name}, the script that makes the default model's HF copy, is absent"
        )
    made = subprocess.run([str(GEMMA3_HF)], capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr[-3000:]
    return Path(made.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_gemma3_adapter_to_q4_k_m_that_chats(tmp_path: Path, default_model: Path) -> None:
    # kodcu-train's layout (PEFT files, tokenizer with the Alpaca template, kodcu.json) with
    # random LoRA weights: training itself is tested with the trainer.
    adapter = build_tiny_adapter(gemma3_base(), tmp_path / "gemma-adapter")
    out = tmp_path / "dist"
    assert main([str(adapter), "--out", str(out), "--quant", "Q8_0,Q4_K_M", "--lora-gguf"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [entry["type"] for entry in report["files"]] == ["F16", "Q8_0", "Q4_K_M", "LoRA F16"]
    failed = [c for c in report["checks"] if not c["ok"] and c["error"]]
    assert not failed and report["base_model"]["sha256_matches"] is True
    llama = Llama(model_path=str(out / "gemma-adapter-Q4_K_M.gguf"), n_ctx=256, verbose=False)
    meta = llama.metadata
    assert meta["general.architecture"] == "gemma3"
    assert meta["tokenizer.chat_template"] == ALPACA_CHAT_TEMPLATE
    assert meta["tokenizer.ggml.eos_token_id"] == "1"
    prompt = Jinja2ChatFormatter(ALPACA_CHAT_TEMPLATE, eos_token="<eos>", bos_token="<bos>")(
        messages=alpaca_messages("Write a Python function that adds two numbers.")
    ).prompt
    ids = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    assert ids[0] == llama.token_bos() and ids.count(llama.token_bos()) == 1
    answer = llama(ids, max_tokens=16, temperature=0.0)
    assert answer["usage"]["completion_tokens"] > 0
    llama.close()

    # Every output as the desktop app opens it: its engine child, its chat template.
    lora = out / "gemma-adapter-lora-F16.gguf"
    ask = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
    for model, adapter_file in [
        *[(out / f"gemma-adapter-{kind}.gguf", None) for kind in ("F16", "Q8_0", "Q4_K_M")],
        (default_model, lora),  # the LoRA over the embedded default model
    ]:
        with Engine(EngineConfig(model=model, lora_path=adapter_file, n_ctx=512)) as engine:
            stream = ChatStream(engine.base_url, engine.api_key, ask, max_tokens=12)
            answer = "".join(stream)
        assert stream.stats.tokens > 0 and answer.strip(), (model.name, adapter_file)
