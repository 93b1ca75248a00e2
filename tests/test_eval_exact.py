"""kodcu-eval's default is the model's own greedy output: drafts change no text.

The default (`--drafts loops`) puts drafted tokens into the shared decode step and keeps
each only where it is the model's greedy choice. Its texts must be those of decoding every
token one step at a time (`--drafts none`) with the same slots, token for token, except
where the model's two best tokens are a near tie. llama.cpp sums in another order for
another batch shape; the K/V cache keeps each token's slightly other values, and over a few
hundred tokens that grows to a few tenths of a logit. Decoding with 8 slots instead of 16,
without any draft, moves texts the same way: on MBPP's first 120 test tasks 3 texts
differed, at margins of 0.14, 0.30 and 0.41 (drafts against none: 5, at 0.015 to 0.83).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evaluation.batched import BatchedDecoder, Request
from evaluation.models import GGUFModel, Prompt
from evaluation.problems import load_problems

NEAR_TIE = 1.0
"""The largest gap between the two tokens, read in a fresh context at the first token
where the texts part, that counts as a tie of batch shapes (see above; one position's
logits decoded in a 16-sequence step differ from the same position read in a prompt by up
to 0.97 somewhere in the vocabulary, test_a_drafted_token_is_computed_as_in_a_prompt)."""


def _run(model: GGUFModel, requests: list[Request], drafts: str) -> BatchedDecoder:
    longest = max(len(r.tokens) for r in requests)
    decoder = BatchedDecoder(model.llama, 16, 384, longest, drafts)
    for _ in decoder.run(requests, 0.0):
        pass
    decoder.close()
    return decoder


def _logits(model: GGUFModel, tokens: list[int]) -> np.ndarray:
    """The logits after `tokens`, read as one prompt in a context of their own."""
    decoder = BatchedDecoder(model.llama, 1, 1, len(tokens))
    decoder._start(0, Request(0, tokens))
    logits = _logits_at(decoder, -1)
    decoder.close()
    return logits


def _first_difference(a: list[int], b: list[int]) -> int:
    return next(i for i, (x, y) in enumerate(zip(a + [-1], b + [-1], strict=False)) if x != y)


def test_the_default_keeps_the_text_of_decoding_every_token(default_model: Path) -> None:
    problems = load_problems("humaneval")[:40]
    model = GGUFModel(default_model, adapter=None, threads=None, slots=16)
    try:
        prompts = [Prompt(p.task_id, text=p.base_prompt, stops=p.stops) for p in problems]
        requests = [model._request(prompt) for prompt in prompts]
        drafted = _run(model, requests, "loops")
        decoded = _run(model, requests, "none")
        assert drafted.drafted_tokens > 2000  # the drafts did a large share of the work
        assert decoded.drafted_tokens == 0
        ties: list[tuple[Any, float]] = []
        for request in requests:
            a, b = drafted.tokens[request.key], decoded.tokens[request.key]
            if a == b:
                continue
            at = _first_difference(a, b)
            logits = _logits(model, request.tokens + a[:at])
            margin = abs(float(logits[a[at]] - logits[b[at]]))
            print(f"{request.key.key}: token {at} differs, logit margin {margin:.5f}")
            ties.append((request.key.key, margin))
    finally:
        model.close()
    assert len(ties) <= 3, ties
    assert all(margin < NEAR_TIE for _, margin in ties), ties


def test_a_drafted_token_is_computed_as_in_a_prompt(default_model: Path) -> None:
    # One position's logits three ways: read as a prompt, checked as the last of 48
    # drafted tokens, and decoded as one row of a 16-sequence step.
    model = GGUFModel(default_model, adapter=None, threads=None, slots=16)
    try:
        problems = load_problems("humaneval")[:16]
        requests = [model._request(Prompt(p.task_id, text=p.base_prompt)) for p in problems]
        ours = _run(model, requests[:1], "none").tokens[requests[0].key]
        tokens = requests[0].tokens + ours[:48]
        alone = _logits(model, tokens)

        longest = max(len(tokens), *(len(r.tokens) for r in requests))
        step = BatchedDecoder(model.llama, 16, 1, longest)
        slots = {0: step._start(0, Request(0, tokens[:-1]))}
        slots |= {i: step._start(i, requests[i]) for i in range(1, 16)}
        for slot in slots.values():
            slot.token = tokens[-1]
        step._step(slots, sorted(slots), {i: [] for i in slots})
        in_step = _logits_at(step, 0)
        step.close()

        draft = BatchedDecoder(model.llama, 1, 48, len(tokens))
        slot = draft._start(0, Request(0, tokens[:-48]))
        slot.token = tokens[-48]
        draft._step({0: slot}, [0], {0: tokens[-47:]})
        in_draft = _logits_at(draft, 47)
        draft.close()
    finally:
        model.close()
    # A draft is checked exactly as a prompt is read: the same sums, bit for bit.
    assert np.array_equal(in_draft, alone)
    # A decode step of 16 sequences sums in another order: the same choice, other digits.
    moved = float(np.abs(in_step - alone).max())
    print(f"largest logit moved by a 16-sequence step: {moved:.5f}")
    assert 0 < moved < NEAR_TIE and in_step.argmax() == alone.argmax()


def _logits_at(decoder: BatchedDecoder, index: int) -> np.ndarray:
    pointer = decoder.lib.llama_get_logits_ith(decoder.context.ctx, index)
    return np.ctypeslib.as_array(pointer, shape=(decoder.n_vocab,)).copy()
