"""Many completions at once on the default model: the same text as one at a time, kept apart,
and drafts that keep the model's own greedy text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from evaluation import batched
from evaluation.batched import BatchedDecoder, Request
from evaluation.loops import FIRST_COUNT_DRAFT, counting, loop_period
from evaluation.models import GGUFModel, Prompt
from evaluation.problems import load_problems
from kodcu.llama import use_chat_template


@pytest.fixture(scope="module")
def model(default_model: Path) -> Iterator[GGUFModel]:
    opened = GGUFModel(default_model, adapter=None, threads=None, slots=4)
    yield opened
    opened.close()


def _decode(
    model: GGUFModel,
    requests: list[Request],
    slots: int,
    max_tokens: int = 40,
    drafts: str = "none",
) -> dict[str, str]:
    longest = max(len(r.tokens) for r in requests)
    decoder = BatchedDecoder(model.llama, slots, max_tokens, longest, drafts)
    try:
        return {request.key: text for request, text in decoder.run(requests, 0.0)}
    finally:
        decoder.close()


def test_the_text_does_not_depend_on_slots_or_drafts(model: GGUFModel) -> None:
    # One slot, four, and four with drafts: filler streams, moved sequences and drafts
    # change no text. (At this size the texts agree even with llama.cpp's short-batch
    # kernels; that every batch shape computes a token alike is checked bit for bit in
    # tests/test_eval_exact.py, which fails without the decoder's measures.)
    problems = load_problems("humaneval")[:6]
    requests = [Request(p.task_id, model.llama.tokenize(p.base_prompt.encode())) for p in problems]
    one = _decode(model, requests, slots=1, max_tokens=60)
    assert _decode(model, requests, slots=4, max_tokens=60) == one
    assert _decode(model, requests, slots=4, max_tokens=60, drafts="loops") == one


def test_a_reused_slot_starts_from_an_empty_cache(model: GGUFModel) -> None:
    problems = load_problems("humaneval")
    first, second = (
        Request(i, model.llama.tokenize(problems[i].base_prompt.encode())) for i in (3, 10)
    )
    alone = _decode(model, [second], slots=1)
    after = _decode(model, [first, second], slots=1)  # the one slot, used twice
    assert after[10] == alone[10] and after[3] != after[10]


def test_a_new_sequence_does_not_see_those_already_running(model: GGUFModel) -> None:
    # A prompt's logits must be the same whatever else is in the cache: here the fourth
    # prompt is read while three others have been decoding for a few steps.
    problems = load_problems("humaneval")[20:24]
    requests = [Request(p.task_id, model.llama.tokenize(p.base_prompt.encode())) for p in problems]
    longest = max(len(r.tokens) for r in requests)

    alone = BatchedDecoder(model.llama, 4, 16, longest)
    alone._start(3, requests[3])
    expected = _last_logits(alone)
    alone.close()

    busy = BatchedDecoder(model.llama, 4, 16, longest)
    running = {i: busy._start(i, requests[i]) for i in range(3)}
    filler = model.llama.tokenize(b" x", add_bos=False)[0]
    for _ in range(4):  # three sequences decode a few steps (which token does not matter)
        for slot in running.values():
            slot.token = filler
        busy._step(running, sorted(running), {i: [] for i in running})
        for slot in running.values():
            slot.position += 1
    busy._start(3, requests[3])
    got = _last_logits(busy)
    busy.close()
    assert np.array_equal(got, expected)


def _last_logits(decoder: BatchedDecoder) -> np.ndarray:
    pointer = decoder.lib.llama_get_logits_ith(decoder.context.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(decoder.n_vocab,)).copy()


def test_stop_sequences_cut_the_text_before_them(model: GGUFModel) -> None:
    base_prompt = load_problems("humaneval")[15].base_prompt
    [(_, text)] = list(model.generate([Prompt(0, text=base_prompt, stops=["\n"])], 64, 0.0))
    [(_, full)] = list(model.generate([Prompt(0, text=base_prompt)], 64, 0.0))
    assert text.strip() and "\n" not in text
    assert full.startswith(text + "\n")


class _Recorded(Exception):
    pass


def test_a_chat_is_laid_out_as_the_desktop_does(model: GGUFModel, monkeypatch) -> None:
    messages = [{"role": "user", "content": "Write a Python function that reverses a string."}]
    # The desktop's chat handler, through llama-cpp-python's chat completion: what it
    # would decode, and where it would stop.
    use_chat_template(model.llama)
    seen: dict[str, list] = {}

    def record(prompt: list[int], stop: list[str] | None = None, **_: object) -> None:
        seen["prompt"], seen["stop"] = list(prompt), list(stop or [])
        raise _Recorded

    monkeypatch.setattr(model.llama, "create_completion", record)
    with pytest.raises(_Recorded):
        model.llama.create_chat_completion(messages, max_tokens=40, temperature=0.0)
    monkeypatch.undo()
    request = model._request(Prompt(0, messages=messages))
    assert request.tokens == seen["prompt"]
    assert sorted(request.stops) == sorted(stop for stop in seen["stop"] if stop)
    [(_, text)] = list(model.generate([Prompt(0, messages=messages)], 40, 0.0))
    assert text.strip()


def test_sampling_follows_its_seed(model: GGUFModel) -> None:
    prompt = load_problems("humaneval")[2].base_prompt
    seeds = [1, 1, 2, 3, 4]
    prompts = [Prompt(i, text=prompt, seed=seed) for i, seed in enumerate(seeds)]
    texts = {p.key: t for p, t in model.generate(prompts, 32, temperature=1.0)}
    again = {p.key: t for p, t in model.generate(prompts, 32, temperature=1.0)}
    assert texts == again  # a run is repeatable
    assert texts[0] == texts[1]  # the same seed gives the same sample
    assert len(set(texts.values())) > 2  # and other seeds, other samples


def test_loops_are_found_only_once_they_repeat_enough() -> None:
    words = ["x = f(1)", "\n", "    ", "y = 2", "\n", "  \n", ", g(3)", " + 1", "]"]
    x, nl, indent, y, _, blank, call, plus, close = range(len(words))
    piece = words.__getitem__
    two_lines = [indent, x, nl, indent, y, nl]
    assert loop_period([close] + two_lines * 3, piece) == 6
    assert loop_period([close] + two_lines * 2, piece) is None  # twice may be chance
    assert loop_period((two_lines * 4)[:-1], piece) is None  # in mid-line: wait for its end
    assert loop_period([x, nl] + [blank] * 7, piece) is None  # a few blank lines are code
    assert loop_period([x, nl] + [blank] * 8, piece) == 1
    within_line = [call, plus, call, plus, call, plus, call, plus]  # 8 tokens, one line
    assert loop_period([x] + within_line * 3, piece) == 8
    assert loop_period([x] + [call, plus] * 8, piece) is None  # 16 tokens: not yet a loop
    assert loop_period([x] + [call, plus] * 12, piece) == 8  # 24 tokens: one now


def test_counting_loops_are_drafted_only_when_they_count_steadily() -> None:
    words = [*"0123456789", "    if n == ", ": return ", "\n"]
    piece, digits = words.__getitem__, list(range(10))
    when, then, nl = 10, 11, 12

    def line(k: int) -> list[int]:  # "    if n == k: return 2k\n", one token per digit
        return [when, *map(int, str(k)), then, *map(int, str(2 * k)), nl]

    five = [t for k in range(3, 8) for t in line(k)]
    draft = counting(five, piece, digits)
    assert draft is not None and [next(draft) for _ in range(len(line(8)) * 2)] == line(8) + line(9)
    assert loop_period(five, piece) is None  # not the same block again
    assert counting(five[len(line(3)) :], piece, digits) is None  # four: no draft yet
    down = [t for k in range(7, 2, -1) for t in line(k)]
    assert counting(down, piece, digits) is None  # counts on up only
    assert counting(five[:-1], piece, digits) is None  # in mid-line: wait for its end
    assert loop_period(line(3) * 3, piece) == len(line(3))


def test_a_checked_draft_is_the_text_full_decoding_gives(model: GGUFModel) -> None:
    # HumanEval/63 and /150 count `if n == 5: return 5`, ... from their first 80 tokens.
    problems = load_problems("humaneval")
    requests = [
        Request(i, model.llama.tokenize(problems[i].base_prompt.encode())) for i in (63, 150)
    ]
    decoder = BatchedDecoder(model.llama, 2, 300, max(len(r.tokens) for r in requests))
    drafted = {request.key: text for request, text in decoder.run(requests, 0.0)}
    assert decoder.drafted_tokens > 300
    _assert_every_token_chosen(decoder)
    decoder.close()
    decoded = _decode(model, requests, slots=2, max_tokens=300)
    assert drafted == decoded
    # The model breaks its count where the draft would have gone on: its text is kept.
    assert "if n == 20:\n        return 19\n" in drafted[63]


def test_a_wrong_draft_is_cut_where_the_model_disagrees(model: GGUFModel, monkeypatch) -> None:
    # A draft right for 10 tokens, then wrong: the check keeps the 10, puts the model's own
    # token in place of the 11th and drops the rest from the cache, so what follows is
    # what the model decodes.
    request = Request(0, model.llama.tokenize(load_problems("humaneval")[2].base_prompt.encode()))
    seen: list[list[int]] = []

    def drafting(draft: list[int]):  # records the tokens; drafts once, after 12 of them
        def counting(tokens: list[int], *_: object) -> Iterator[int] | None:
            seen.append(list(tokens))
            return iter(draft) if draft and len(tokens) == 12 else None

        return counting

    monkeypatch.setattr(batched, "counting", drafting([]))
    decoded = _decode(model, [request], slots=1, max_tokens=60, drafts="loops")
    model_tokens = seen[-1]
    assert len(model_tokens) > 40 and decoded
    wrong = [*model_tokens[12:22], model_tokens[22] + 1, *model_tokens[23:]]
    monkeypatch.setattr(batched, "counting", drafting(wrong))
    decoder = BatchedDecoder(model.llama, 1, 60, len(request.tokens))
    list(decoder.run([request], 0.0))
    # The first step checks FIRST_COUNT_DRAFT tokens of the draft: 10 kept, the rest dropped.
    assert decoder.drafted_tokens == 10 and decoder.rejected_tokens == FIRST_COUNT_DRAFT - 10
    decoder.close()
    assert seen[-1] == model_tokens


def _assert_every_token_chosen(decoder: BatchedDecoder) -> None:
    """Nothing was added without the model: each token of each text is one of its choices."""
    assert sum(len(tokens) for tokens in decoder.tokens.values()) == decoder.chosen_tokens


def test_a_drafted_loop_is_the_text_full_decoding_gives(model: GGUFModel) -> None:
    # HumanEval/26 and /105 fall into loops of lines within their first 25 tokens.
    problems = load_problems("humaneval")
    requests = [
        Request(i, model.llama.tokenize(problems[i].base_prompt.encode())) for i in (26, 105)
    ]
    decoder = BatchedDecoder(model.llama, 1, 120, max(len(r.tokens) for r in requests))
    drafted = {request.key: text for request, text in decoder.run(requests, 0.0)}
    assert decoder.drafted_tokens > 150  # most of the 2 x 120 tokens
    _assert_every_token_chosen(decoder)
    decoder.close()
    decoded = _decode(model, requests, slots=1, max_tokens=120)
    assert drafted == decoded


def test_a_loop_the_model_leaves_is_not_kept(model: GGUFModel, monkeypatch) -> None:
    # Take 4 tokens after the 12th for a loop that is not there: the model's check of the
    # drafted block disagrees, and what follows is what the model decodes.
    request = Request(0, model.llama.tokenize(load_problems("humaneval")[2].base_prompt.encode()))
    decoded = _decode(model, [request], slots=1, max_tokens=60)
    monkeypatch.setattr(batched, "loop_period", lambda tokens, _: 4 if len(tokens) == 12 else None)
    decoder = BatchedDecoder(model.llama, 1, 60, len(request.tokens))
    texts = [text for _, text in decoder.run([request], 0.0)]
    assert decoder.drafted_tokens < 4 and decoder.rejected_tokens > 0
    decoder.close()
    assert texts == list(decoded.values())
