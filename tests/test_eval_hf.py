"""kodcu-eval on a Hugging Face model folder and on a Kodcu adapter folder (transformers).

A tiny random base model is fine-tuned by the trainer on the crafted rows, then both are
evaluated on problems made of those rows: the adapter must pass where the base fails, the
comparison `kodcu-eval` exists to make.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.extract import cut_at_stops
from evaluation.models import HFModel, ModelError, Prompt, open_model
from evaluation.problems import Problem
from evaluation.run import RunConfig, evaluate
from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.test_trainer_train import make_config
from tests.tiny_models import TRAIN_ROWS, tiny_model, write_rows
from trainer.train import run as train

pytestmark = pytest.mark.usefixtures("offline_hub")

TASKS = [
    ("add", "Write a function that adds two numbers.", "assert add(2, 3) == 5"),
    ("square", "Square a number.", "assert square(4) == 16"),
    ("is_even", "Check if a number is even.", "assert is_even(4) and not is_even(3)"),
]
INSTRUCTIONS = {instruction for _, instruction, _ in TASKS}
PROBLEMS = [
    Problem(
        task_id=f"rows/{entry}",
        base_prompt=f"def {entry}(",
        instruction=instruction,
        test=test,
        entry_point=None,
    )
    for entry, instruction, test in TASKS
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("hf")
    base = tiny_model(tmp / "base", "llama", pad="<pad>")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE  # instruct prompts for the base too
    tokenizer.save_pretrained(base)
    # The three rows the problems ask for, learned by heart.
    rows = [row for row in TRAIN_ROWS if row["instruction"] in INSTRUCTIONS]
    sources = {"path": str(write_rows(tmp / "rows.jsonl", rows)), "limit": None}
    training = {"max_steps": 150, "learning_rate": 1e-2}
    config = make_config(tmp, base, sources=sources, training=training)
    return base, train(config)


def test_a_model_folder_completes_as_transformers_does(folders: tuple[Path, Path]) -> None:
    base, _ = folders
    model = open_model(str(base))
    assert isinstance(model, HFModel) and (model.name, model.slots) == ("base", 1)
    prompt = Prompt("add", text="def add(a, b):\n", stops=["\ndef "])
    [(_, text)] = model.generate([prompt], max_tokens=24, temperature=0.0)

    tokenizer = AutoTokenizer.from_pretrained(base)
    plain = AutoModelForCausalLM.from_pretrained(base)
    ids = tokenizer(prompt.text, return_tensors="pt").input_ids
    with torch.no_grad():
        out = plain.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=3)
    expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert text == cut_at_stops(expected, prompt.stops)


def test_a_stop_string_only_counts_in_the_new_text(folders: tuple[Path, Path]) -> None:
    # An MBPP prompt ends in a newline and its completion starts with `def `: the stop
    # `\ndef ` spans the prompt's end, and must not end the completion there.
    base, _ = folders
    model = open_model(str(base))
    prompt = "def add(a, b):\n"
    [(_, free)] = model.generate([Prompt("free", text=prompt)], max_tokens=24, temperature=0.0)
    spanning = prompt[-1] + free[:2]
    assert len(free) > 2 and not free.startswith(spanning)
    stopped = Prompt("stopped", text=prompt, stops=[spanning])
    [(_, text)] = model.generate([stopped], max_tokens=24, temperature=0.0)
    assert text == cut_at_stops(free, [spanning]) and len(text) > 2, (free, text)


def test_slots_decode_together_what_one_slot_decodes_alone(folders: tuple[Path, Path]) -> None:
    _, adapter = folders
    chats = [[{"role": "user", "content": p.instruction}] for p in PROBLEMS]
    prompts = [Prompt(p.task_id, messages=m) for p, m in zip(PROBLEMS, chats, strict=True)]
    # Prompts of other lengths (left padding) and two stop lists (two batches).
    prompts += [Prompt(f"base/{p.task_id}", text=p.base_prompt, stops=["\n"]) for p in PROBLEMS]
    prompts.append(Prompt("short", text="def", stops=["\ndef "]))
    alone = {p.key: text for p, text in HFModel(adapter, slots=1).generate(prompts, 24, 0.0)}
    together = [(p.key, text) for p, text in HFModel(adapter, slots=4).generate(prompts, 24, 0.0)]
    assert together == [(p.key, alone[p.key]) for p in prompts]
    assert alone["rows/add"] == "def add(a, b):\n    return a + b"


def test_instruct_prompts_need_a_chat_template(tmp_path: Path) -> None:
    model = open_model(str(tiny_model(tmp_path / "plain", "llama")))
    chat = Prompt("add", messages=[{"role": "user", "content": "Add two numbers."}])
    with pytest.raises(ModelError, match="plain has no chat template; use --prompt base"):
        list(model.generate([chat], 8, 0.0))


def test_the_fine_tuned_adapter_passes_where_its_base_fails(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    base, adapter = folders
    config = RunConfig(benchmark="rows", kind="instruct", max_tokens=32, timeout_s=5)
    runs = {}
    for name, folder in (("base", base), ("adapter", adapter)):
        model = open_model(str(folder))
        try:
            runs[name] = evaluate(PROBLEMS, model, config, tmp_path / name, lambda _: None)
        finally:
            model.close()
    assert runs["adapter"]["model"] == adapter.name
    assert runs["base"]["scores"]["pass@k"]["pass@1"] == 0.0
    assert runs["adapter"]["scores"]["pass@k"]["pass@1"] == 1.0, runs["adapter"]["problems"]


def test_the_command_decodes_a_folder_one_prompt_at_a_time(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    # Exact by default: padded batches can flip a near tie, so they are opt-in (--slots).
    from evaluation.cli import run

    base, _ = folders
    out = tmp_path / "run"
    options = ["--limit", "2", "--max-tokens", "8", "--out", str(out)]
    assert run(["--benchmark", "humaneval", "--model", str(base), *options]) == 0
    assert json.loads((out / "run.json").read_text())["slots"] == 1
    batched = tmp_path / "batched"
    options = ["--limit", "2", "--max-tokens", "8", "--slots", "2", "--out", str(batched)]
    assert run(["--benchmark", "humaneval", "--model", str(base), *options]) == 0
    assert json.loads((batched / "run.json").read_text())["slots"] == 2
