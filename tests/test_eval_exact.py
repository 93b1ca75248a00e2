"""kodcu-eval's default is the model's own greedy output: drafts change no text.

The default (`--drafts loops`) puts drafted tokens into the shared decode step and keeps
each only where it is the model's greedy choice. Its texts must be those of decoding every
token one step at a time (`--drafts none`), token for token. That holds bit for bit because
the decoder computes every token the same way whatever else is in the batch (see
evaluation/batched.py): each sequence has a stream of its own in the cache, attention is
flash attention, weights are not repacked, and no llama.cpp batch has fewer than
MIN_STEP_ROWS rows. Without those, batch shapes moved a logit by up to 0.97 and 2 of these
40 texts parted at near ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.batched import BatchedDecoder, Request
from evaluation.models import GGUFModel, Prompt
from evaluation.problems import load_problems


def _run(model: GGUFModel, requests: list[Request], drafts: str) -> BatchedDecoder:
    longest = max(len(r.tokens) for r in requests)
    decoder = BatchedDecoder(model.llama, 16, 384, longest, drafts)
    for _ in decoder.run(requests, 0.0):
        pass
    decoder.close()
    return decoder


def test_the_default_keeps_the_text_of_decoding_every_token(default_model: Path) -> None:
    problems = load_problems("humaneval")[:40]
    model = GGUFModel(default_model, adapter=None, threads=None, slots=16)
    try:
        prompts = [Prompt(p.task_id, text=p.base_prompt, stops=p.stops) for p in problems]
        requests = [model._request(prompt) for prompt in prompts]
        drafted = _run(model, requests, "loops")
        decoded = _run(model, requests, "none")
    finally:
        model.close()
    assert drafted.drafted_tokens > 2000  # the drafts did a large share of the work
    assert decoded.drafted_tokens == 0
    differ = [r.key.key for r in requests if drafted.tokens[r.key] != decoded.tokens[r.key]]
    assert differ == []


def test_a_token_is_computed_alike_in_every_batch_shape(default_model: Path) -> None:
    # After a prompt and 47 more tokens, the next logits three ways: checked as the last of
    # 48 drafted tokens, decoded as one row of a 16-sequence step, and decoded by the one
    # sequence left (its step filled up to MIN_STEP_ROWS rows). (A prompt is read in one
    # batch of all its tokens; from 64 on, attention is tiled and sums in another order,
    # so the 47 tokens are not read as a prompt: both modes read prompts alike.)
    model = GGUFModel(default_model, adapter=None, threads=None, slots=16)
    try:
        problems = load_problems("humaneval")[:16]
        requests = [model._request(Prompt(p.task_id, text=p.base_prompt)) for p in problems]
        ours = _run(model, requests[:1], "none").tokens[requests[0].key]
        prompt, rest = requests[0].tokens, ours[:48]
        longest = max(len(r.tokens) for r in requests)

        def after_47(others: range) -> BatchedDecoder:
            """A decoder whose sequence 0 has read the prompt and 47 tokens as a draft, and
            whose `others` have read their prompts; sequence 0's next token is rest[-1]."""
            decoder = BatchedDecoder(model.llama, 16, 48, longest)
            slots = {0: decoder._start(0, Request(0, prompt))}
            slots[0].token = rest[0]
            decoder._step(slots, [0], {0: rest[1:-1]})
            slots[0].token, slots[0].position = rest[-1], len(prompt) + 47
            slots |= {i: decoder._start(i, requests[i]) for i in others}
            for i in others:
                slots[i].token = rest[-1]  # any token: only sequence 0's logits are read
            decoder._step(slots, sorted(slots), {i: [] for i in slots})
            return decoder

        step = after_47(range(1, 16))
        in_step = _logits_at(step, 0)
        step.close()
        last = after_47(range(0))
        in_last_step = _logits_at(last, 0)
        last.close()

        draft = BatchedDecoder(model.llama, 16, 48, longest)
        slot = draft._start(0, Request(0, prompt))
        slot.token = rest[0]
        draft._step({0: slot}, [0], {0: rest[1:]})
        in_draft = _logits_at(draft, 47)
        draft.close()
    finally:
        model.close()
    assert np.array_equal(in_step, in_draft)
    assert np.array_equal(in_last_step, in_draft)


def _logits_at(decoder: BatchedDecoder, index: int) -> np.ndarray:
    pointer = decoder.lib.llama_get_logits_ith(decoder.context.ctx, index)
    return np.ctypeslib.as_array(pointer, shape=(decoder.n_vocab,)).copy()
