"""Tokenization for training: the prompt the desktop sends, loss on the response, EOS, packing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kodcu.prompt import ALPACA_CHAT_TEMPLATE, ALPACA_INPUT_PREAMBLE
from tests.tiny_models import ARCHITECTURES, TRAIN_ROWS, tiny_model, tiny_tokenizer
from trainer.config import TrainConfig, from_dict
from trainer.data import Example
from trainer.features import (
    IGNORE_INDEX,
    Collator,
    Encoded,
    FeatureError,
    Packed,
    RowDataset,
    check_single_bos,
    encode_examples,
    end_of_turn_ids,
    marked_example,
    pack,
    render_prompt,
    verify_packing,
)
from trainer.packed_attention import PACKED_SDPA
from trainer.train import load_model

EXAMPLES = [Example(**row, source="rows.jsonl", row=i) for i, row in enumerate(TRAIN_ROWS)]


def alpaca_tokenizer(pad: str | None = None):
    tokenizer = tiny_tokenizer(pad)
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    return tokenizer


def test_prompt_tokens_carry_no_loss_and_the_response_ends_with_a_labelled_eos() -> None:
    tokenizer = alpaca_tokenizer()
    encoded, stats = encode_examples(EXAMPLES[:1], tokenizer, max_length=512)
    item = encoded[0]
    prompt = render_prompt(tokenizer, EXAMPLES[0].instruction)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # The prompt is exactly what the desktop sends: template + generation prompt.
    assert prompt.endswith(
        "### Instruction:\nWrite a function that adds two numbers.\n\n### Response:\n"
    )
    assert item.input_ids[: len(prompt_ids)] == prompt_ids
    assert item.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    response = item.labels[len(prompt_ids) :]
    assert IGNORE_INDEX not in response
    assert response[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(response[:-1]) == EXAMPLES[0].output
    assert stats.loss_tokens == len(response)
    assert stats.loss_fraction == pytest.approx(len(response) / len(item.input_ids))


def test_the_template_writes_the_only_bos() -> None:
    tokenizer = alpaca_tokenizer()
    prompt = render_prompt(tokenizer, "Sort a list.")
    # The trap: this tokenizer adds BOS itself, on top of the template's.
    assert tokenizer(prompt)["input_ids"][:2] == [tokenizer.bos_token_id] * 2
    encoded, _ = encode_examples(EXAMPLES, tokenizer, max_length=512)
    for item in encoded:
        assert item.input_ids[0] == tokenizer.bos_token_id
        assert item.input_ids.count(tokenizer.bos_token_id) == 1
    check_single_bos(encoded, tokenizer.bos_token_id)
    doubled = Encoded([tokenizer.bos_token_id, *encoded[0].input_ids], [], "x.jsonl", 3)
    with pytest.raises(FeatureError, match="x.jsonl row 3: .*two BOS"):
        check_single_bos([doubled], tokenizer.bos_token_id)


def test_pad_equal_to_eos_still_labels_the_eos() -> None:
    tokenizer = alpaca_tokenizer(pad="</s>")
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    encoded, _ = encode_examples(EXAMPLES[:2], tokenizer, max_length=512)
    short, long = sorted(encoded, key=lambda item: len(item.input_ids))
    batch = Collator(pad_token_id=tokenizer.pad_token_id)(RowDataset([short, long]))
    n = len(short.input_ids)
    assert batch["input_ids"].shape[1] == len(long.input_ids) > n
    # Right padding with EOS ids: the real EOS is labelled, the padding is not.
    assert batch["labels"][0, n - 1] == tokenizer.eos_token_id
    assert (batch["input_ids"][0, n:] == tokenizer.eos_token_id).all()
    assert (batch["labels"][0, n:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(long.input_ids) - n)


def test_rows_with_input_use_the_second_preamble() -> None:
    tokenizer = alpaca_tokenizer()
    row = next(example for example in EXAMPLES if example.input)
    text = render_prompt(tokenizer, row.instruction, row.input)
    assert text.startswith(f"<s>{ALPACA_INPUT_PREAMBLE}\n\n### Instruction:\n{row.instruction}")
    assert text.endswith(f"\n\n### Input:\n{row.input}\n\n### Response:\n")


def test_long_rows_lose_the_end_of_their_response_and_are_counted() -> None:
    tokenizer = alpaca_tokenizer()
    full, _ = encode_examples(EXAMPLES[:1], tokenizer, max_length=512)
    length = len(full[0].input_ids)
    cut, stats = encode_examples(EXAMPLES[:1], tokenizer, max_length=length - 3)
    assert stats.truncated == 1 and stats.dropped_for_length == 0
    assert cut[0].input_ids == full[0].input_ids[: length - 3]
    # A cut response gets no EOS: the model must not learn to stop mid-answer.
    assert cut[0].labels[-1] != tokenizer.eos_token_id


def test_rows_whose_prompt_fills_max_length_are_dropped_counted_and_named() -> None:
    tokenizer = alpaca_tokenizer()
    long_prompt = Example("Explain this. " * 200, "", "ok", "big.jsonl", 7)
    encoded, stats = encode_examples([EXAMPLES[0], long_prompt], tokenizer, max_length=200)
    assert len(encoded) == 1 and stats.rows == 1
    assert stats.dropped_for_length == 1
    assert stats.dropped_rows == ["big.jsonl row 7"]
    with pytest.raises(FeatureError, match="all 1 rows were dropped.*data.max_length"):
        encode_examples([long_prompt], tokenizer, max_length=200)


def test_a_models_own_template_ends_the_answer_with_its_end_of_turn_token() -> None:
    tokenizer = alpaca_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_ids(tokenizer) == [im_end]
    encoded, _ = encode_examples(EXAMPLES[:1], tokenizer, max_length=512)
    assert encoded[0].labels[-1] == im_end
    assert end_of_turn_ids(alpaca_tokenizer()) == [tokenizer.eos_token_id]


def test_a_template_that_refuses_a_row_names_the_row() -> None:
    tokenizer = alpaca_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    row = next(example for example in EXAMPLES if example.input)  # rendered with a system turn
    with pytest.raises(FeatureError, match=f"rows.jsonl row {row.row}: .*System role"):
        encode_examples([row], tokenizer, max_length=512)


def test_packing_keeps_every_example_whole_with_restarting_positions() -> None:
    tokenizer = alpaca_tokenizer()
    encoded, stats = encode_examples(EXAMPLES, tokenizer, max_length=512)
    rows = pack(encoded, max_length=300)
    assert 1 < len(rows) < len(encoded)
    assert sum(row.examples for row in rows) == len(encoded)
    assert sum(len(row.input_ids) for row in rows) == stats.tokens
    assert all(len(row.input_ids) <= 300 for row in rows)
    starts = [i for row in rows for i, p in enumerate(row.position_ids) if p == 0]
    assert len(starts) == len(encoded)
    for row in rows:
        for i, position in enumerate(row.position_ids):
            if position == 0:  # no label asks to predict one example from the one before
                assert row.labels[i] == IGNORE_INDEX


def pieces(row: Packed) -> list[list[int]]:
    """The examples of a packed row, split where the position ids restart."""
    starts = [i for i, position in enumerate(row.position_ids) if position == 0]
    ends = [*starts[1:], len(row.input_ids)]
    return [row.input_ids[start:end] for start, end in zip(starts, ends, strict=True)]


def test_packing_fills_rows_best_fit_decreasing_and_keeps_data_order_within_a_row() -> None:
    # Lengths 6, 5, 4, 3, 2 in rows of 10: in data order they take three rows
    # ([6], [5, 4], [3, 2]); longest first, each into the fullest row it fits, two.
    encoded = [Encoded([n] * n, [IGNORE_INDEX] + [n] * (n - 1)) for n in (6, 5, 4, 3, 2)]
    rows = pack(encoded, max_length=10)
    assert [pieces(row) for row in rows] == [
        [[6] * 6, [4] * 4],
        [[5] * 5, [3] * 3, [2] * 2],
    ]
    assert [len(row.input_ids) for row in rows] == [10, 10]


def test_packing_in_order_fills_each_row_until_the_next_example_does_not_fit() -> None:
    encoded = [Encoded([n] * n, [IGNORE_INDEX] + [n] * (n - 1)) for n in (6, 5, 4, 3, 2)]
    rows = pack(encoded, max_length=10, strategy="in_order")
    assert [pieces(row) for row in rows] == [[[6] * 6], [[5] * 5, [4] * 4], [[3] * 3, [2] * 2]]
    assert [row.position_ids for row in rows][1] == [*range(5), *range(4)]
    with pytest.raises(ValueError, match=r"'wrapped' is not one of \['best_fit', 'in_order'\]"):
        pack(encoded, max_length=10, strategy="wrapped")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("attention", ["sdpa", "eager", PACKED_SDPA])
def test_a_packed_row_gives_each_example_the_loss_it_has_alone(
    tmp_path, architecture: str, attention: str
) -> None:
    folder = tiny_model(tmp_path / "base", architecture)
    config = from_dict(
        TrainConfig,
        {"model": {"base": str(folder), "attn_implementation": attention}, "lora": {"r": 4}},
    )
    model = load_model(config, "cpu", torch.float32).eval()
    tokenizer = alpaca_tokenizer()
    encoded, _ = encode_examples(EXAMPLES[:6], tokenizer, max_length=512)
    lengths = [len(item.input_ids) for item in encoded]
    rows = pack(encoded, max_length=max(sum(lengths[:3]), sum(lengths[3:])))
    assert len(rows) >= 2 and sum(row.examples for row in rows) == 6
    # Which example is where: packing puts them by length, not in data order.
    order = [
        next(i for i, item in enumerate(encoded) if item.input_ids == piece)
        for row in rows
        for piece in pieces(row)
    ]
    assert sorted(order) == list(range(6))
    collate = Collator(pad_token_id=0)

    def token_losses(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        labels = batch.pop("labels")
        with torch.no_grad():
            logits = model(**batch).logits[:, :-1]
        losses = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none")
        return [row[labels[i, 1:] != IGNORE_INDEX] for i, row in enumerate(losses)]

    alone = [token_losses(collate([RowDataset([encoded[i]])[0]]))[0] for i in order]
    alone = torch.cat(alone)
    # The packed rows in one batch: the shorter ones are padded, as in training.
    both = [RowDataset(rows)[index] for index in range(len(rows))]
    packed = torch.cat(token_losses(collate(both)))
    assert packed.shape == alone.shape
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-4)
    # Joined into one row (the layout for flash-attention): the same losses again.
    flat = Collator(pad_token_id=0, flatten=True)(both)
    assert flat["input_ids"].shape == (1, sum(len(row.input_ids) for row in rows))
    torch.testing.assert_close(torch.cat(token_losses(flat)), alone, atol=1e-4, rtol=1e-4)


def test_the_packing_check_catches_a_model_whose_examples_see_each_other(tmp_path) -> None:
    folder = tiny_model(tmp_path / "base", "llama")
    model = load_model(
        from_dict(TrainConfig, {"model": {"base": str(folder)}}), "cpu", torch.float32
    )
    encoded, _ = encode_examples(EXAMPLES[:2], alpaca_tokenizer(), max_length=512)
    first, second = encoded[0].input_ids, encoded[1].input_ids
    verify_packing(model, first, second)  # as trained: packed examples stay apart
    # With the KV cache on, transformers ignores packed position ids: the leak to catch.
    model.get_base_model().config.use_cache = True
    with pytest.raises(FeatureError, match="packed examples attend to each other"):
        verify_packing(model, first, second)


def test_the_dry_run_marks_the_part_without_loss() -> None:
    tokenizer = alpaca_tokenizer()
    encoded, _ = encode_examples(EXAMPLES[:1], tokenizer, max_length=512)
    text = marked_example(tokenizer, encoded[0])
    assert text.startswith("[[<s>Below is an instruction")
    assert text.endswith("### Response:\n]]def add(a, b):\n    return a + b</s>")
