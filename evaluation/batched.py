"""Many completions at once in one llama.cpp context: the GGUF side of a fast evaluation.

    decoder = BatchedDecoder(llama, slots=16, max_tokens=384, longest_prompt=512)
    for request, text in decoder.run(requests, temperature=0.0):
        ...   # each request as soon as its completion has ended

One token for one sequence is a matrix-vector product: the CPU reads every weight to
do very little work with it. One step for 16 sequences reads the weights once and
does 16 times the work, so on this kind of machine the tokens per second grow
several-fold (`python benchmarks/evaluate.py` measures it). Each request gets a
sequence id (a slot) with its own part of the KV cache; when it ends, its cache is
dropped and the next request takes the slot, so long and short completions mix freely.

With one slot and no drafts the text is exactly llama-cpp-python's. With several
sequences in a step, llama.cpp's matrix kernels sum in another order for a batch of
rows than for one row, and a small model's greedy choice can flip on such a near tie:
per-problem results may differ from one-at-a-time decoding, as they do between
llama.cpp builds and CPUs.

Decoding matches `Llama.create_completion`: greedy is argmax, a completion ends at an
end-of-generation token, at a stop sequence (cut before it) or at `max_tokens`.
Sampling (temperature > 0) uses nucleus sampling with top-p 0.95, the setting of the
Codex paper's pass@k, from a generator seeded per request.

Drafts (greedy only; `drafts="loops"`, the default). A small model often falls into a
loop it keeps until the token limit: on HumanEval, most of the default model's tokens
are spent there (evaluation/loops.py). Where a completion ends in a loop, the loop's
continuation is a draft: its tokens go into the same decode step as the other
sequences' tokens, and the model's logits after each drafted token say what it would
have chosen. The tokens are kept up to the first one the model would not have chosen,
which then takes its place, and the rest of the draft leaves the cache. Every token
of every text is chosen or checked by the model: the text is greedy decoding's, save
where a near tie goes the other way for the other batch shape. A draft that held goes
on, twice as long, in the next step; checking a token in a batch costs less than
decoding it in a step of its own. `drafts="none"` decodes every token one step at a
time.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

import numpy as np

from evaluation.loops import DRAFT_MODES, FIRST_COUNT_DRAFT, counting, loop_period

TOP_P = 0.95


def _digit_tokens(llama: Any) -> list[int] | None:
    """The tokens of "0" to "9"; None unless each is one token, which counting on needs."""
    digits = [llama.tokenize(str(d).encode(), add_bos=False) for d in range(10)]
    return [t[0] for t in digits] if all(len(t) == 1 for t in digits) else None


@dataclass
class Request:
    """One completion to make: the prompt's tokens and where its text must end."""

    key: Any
    """The caller's name for it (a task id and sample number, say)."""
    tokens: list[int]
    """The prompt, tokenized (with its BOS, if the model wants one)."""
    stops: list[str] = field(default_factory=list)
    """Stop sequences: the text ends before the first one."""
    seed: int = 0
    """For sampling; greedy decoding ignores it."""


@dataclass
class _Slot:
    request: Request
    position: int
    """Where the next token goes in this sequence."""
    rng: np.random.Generator
    token: int = -1
    """The token chosen last, decoded at the next step."""
    generated: list[int] = field(default_factory=list)
    """The tokens of the completion so far."""
    data: bytes = b""
    draft: Iterator[int] | None = None
    """Tokens that continue the loop the completion ends in, for the model to check."""
    draft_length: int = 0
    """How many of them go into the next step (doubled each time a draft holds)."""


class BatchedDecoder:
    """Decodes up to `slots` requests together in a context of its own over `llama`'s model."""

    def __init__(
        self,
        llama: Any,
        slots: int,
        max_tokens: int,
        longest_prompt: int,
        drafts: str = "loops",
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if drafts not in DRAFT_MODES:
            raise ValueError(f"drafts={drafts!r}: choose one of {', '.join(DRAFT_MODES)}")
        self.lib = llama_cpp
        self.llama = llama
        self.slots = slots
        self.max_tokens = max_tokens
        self.vocab = llama._model.vocab
        self.n_vocab = llama.n_vocab()
        params = llama_cpp.llama_context_default_params()
        # Each slot its own part of the cache, room for the longest prompt and completion.
        # (A unified cache would let each token attend over every slot's cells, masked:
        # with 16 slots that halved the tokens per second.)
        params.n_ctx = slots * (longest_prompt + max_tokens + 1)
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = slots
        params.kv_unified = False
        # As the Llama's own context: flash attention sums in another order.
        params.flash_attn_type = llama.context_params.flash_attn_type
        params.n_threads = params.n_threads_batch = llama.context_params.n_threads
        self.context = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        if llama._lora_adapter is not None:  # the adapter the Llama was opened with
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(llama._lora_adapter)
            scales = (ctypes.c_float * 1)(llama.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.context.ctx, adapters, 1, scales):
                raise RuntimeError("llama.cpp could not apply the LoRA adapter to the batch")
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self.n_batch = params.n_batch
        self.memory = llama_cpp.llama_get_memory(self.context.ctx)
        self.temperature = 0.0
        self.drafts = drafts
        self.chosen_tokens = 0
        """Tokens the model chose from its logits: every token of every text, drafted or not."""
        self.drafted_tokens = 0
        """Drafted tokens the model checked and kept (each one its own greedy choice)."""
        self.rejected_tokens = 0
        """Drafted tokens the model checked and would not have chosen (work spent in vain)."""
        self.tokens: dict[Any, list[int]] = {}
        """Each finished request's tokens by its key, the end-of-generation token included."""
        self.pieces: dict[int, str] = {}
        self.digits = _digit_tokens(llama) if drafts == "loops" else None
        """The digit tokens when counting loops are drafted; None otherwise."""

    def close(self) -> None:
        self.lib.llama_batch_free(self.batch)
        self.context.close()

    def run(self, requests: Iterable[Request], temperature: float) -> Iterator[tuple[Request, str]]:
        """Yield each request with its completion, in the order they end."""
        self.temperature = temperature
        waiting = iter(requests)
        active: dict[int, _Slot] = {}  # each holds a chosen token not yet decoded
        free = list(range(self.slots))
        more = True  # requests may be waiting
        while True:
            # New requests take the free slots; one may end at its first token.
            while free and more:
                request = next(waiting, None)
                if request is None:
                    more = False
                    break
                slot_id = free.pop(0)  # the lowest free id: see _step
                slot = self._start(slot_id, request)
                text = self._take(slot, self._choose(slot, -1))
                if text is None:
                    active[slot_id] = slot
                else:
                    self._finish(slot_id, slot, free)
                    yield request, text
            if not active:
                return
            order = sorted(active)  # by sequence id: see _step
            drafts = self._drafts(active, order)
            self._step(active, order, drafts)
            index = 0  # where each sequence's logits start in the batch
            for slot_id in order:
                slot, draft = active[slot_id], drafts[slot_id]
                text = self._check(slot_id, slot, index, draft)
                index += 1 + len(draft)
                if text is not None:
                    del active[slot_id]
                    self._finish(slot_id, slot, free)
                    yield slot.request, text

    def _start(self, slot_id: int, request: Request) -> _Slot:
        """Read the prompt into the slot's sequence; its last token's logits come out."""
        tokens = request.tokens
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            last = start + len(chunk) == len(tokens)
            entries = [(slot_id, token, start + i) for i, token in enumerate(chunk)]
            self._fill(entries, logits_for_all=False, logits_for_last=last)
            self._decode()
        return _Slot(request, len(tokens), np.random.default_rng(request.seed))

    def _drafts(self, active: dict[int, _Slot], order: list[int]) -> dict[int, list[int]]:
        """The drafted tokens each sequence puts into the next step, within the batch."""
        room = self.n_batch - len(order)  # every sequence's chosen token goes in first
        drafts: dict[int, list[int]] = {}
        for slot_id in order:
            slot = active[slot_id]
            length = 0
            if slot.draft is not None:
                # Never past the token limit: the chosen token is the last one before it.
                length = min(slot.draft_length, self.max_tokens - len(slot.generated), room)
            drafts[slot_id] = list(islice(slot.draft, length)) if length > 0 else []
            room -= len(drafts[slot_id])
        return drafts

    def _step(
        self, active: dict[int, _Slot], order: list[int], drafts: dict[int, list[int]]
    ) -> None:
        """Decode every active sequence's chosen token, and its draft after it, in one batch.

        The batch lists the sequences in the order of their ids: llama.cpp splits a
        batch whose ids are out of order into several passes over the weights
        (2.3 times slower per step with 16 sequences here).
        """
        entries = []
        for i in order:
            slot = active[i]
            tokens = [slot.token, *drafts[i]]
            entries += [(i, token, slot.position + k) for k, token in enumerate(tokens)]
        self._fill(entries, logits_for_all=True)
        self._decode()

    def _check(self, slot_id: int, slot: _Slot, index: int, draft: list[int]) -> str | None:
        """Take the model's choices from the step's logits at `index` on; the finished text
        when the completion ends.

        The logits after the chosen token give the model's next choice; after each drafted
        token, the one after it. Drafted tokens are kept while the model would have chosen
        them; the first it would not have is replaced by its own choice, and the rest of
        the draft leaves the cache.
        """
        for offset, drafted in enumerate([*draft, None]):
            chosen = self._choose(slot, index + offset)
            slot.position += 1  # the token at index + offset is in the cache now
            text = self._add(slot, chosen)
            if text is not None:
                return text
            if chosen != drafted:
                break
            self.drafted_tokens += 1
        rejected = len(draft) - offset
        if rejected:
            self.rejected_tokens += rejected
            self.lib.llama_memory_seq_rm(self.memory, slot_id, slot.position, -1)
        # A draft that held goes on, further, from the token the model chose after it.
        if draft and not rejected and slot.draft is not None and next(slot.draft) == chosen:
            slot.draft_length *= 2
        else:
            slot.draft = None
            self._find_draft(slot)
        return None

    def _finish(self, slot_id: int, slot: _Slot, free: list[int]) -> None:
        """Keep the request's tokens, drop its cache and free its slot."""
        ended = [slot.token] if self.lib.llama_vocab_is_eog(self.vocab, slot.token) else []
        self.tokens[slot.request.key] = slot.generated + ended
        self.lib.llama_memory_seq_rm(self.memory, slot_id, -1, -1)
        free.append(slot_id)
        free.sort()

    def _fill(
        self,
        entries: list[tuple[int, int, int]],
        logits_for_all: bool,
        logits_for_last: bool = True,
    ) -> None:
        """Put (sequence, token, position) entries in the batch, asking for the logits wanted."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (seq, token, position) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits_for_all or (logits_for_last and i == len(entries) - 1)

    def _decode(self) -> None:
        status = self.lib.llama_decode(self.context.ctx, self.batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}): the batch did not fit the cache")

    def _choose(self, slot: _Slot, batch_index: int) -> int:
        """The next token from the logits at `batch_index` of the last batch (-1: its last)."""
        self.chosen_tokens += 1
        pointer = self.lib.llama_get_logits_ith(self.context.ctx, batch_index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))  # (n_vocab,)
        temperature = self.temperature
        if temperature <= 0:
            return int(logits.argmax())
        scaled = logits.astype(np.float64) / temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, TOP_P)) + 1]  # the nucleus
        return int(slot.rng.choice(keep, p=probs[keep] / probs[keep].sum()))

    def _take(self, slot: _Slot, token: int) -> str | None:
        """Add the token to the slot's text; the finished text when the completion ends."""
        text = self._add(slot, token)
        if text is None:
            self._find_draft(slot)
        return text

    def _find_draft(self, slot: _Slot) -> None:
        """Draft the loop the greedy completion ends in, if it ends in one."""
        if self.temperature > 0 or self.drafts == "none":
            return
        period = loop_period(slot.generated, self._piece)
        if period is not None:
            slot.draft = cycle(slot.generated[-period:])
            slot.draft_length = period
        elif self.digits is not None:
            slot.draft = counting(slot.generated, self._piece, self.digits)
            slot.draft_length = FIRST_COUNT_DRAFT

    def _add(self, slot: _Slot, token: int) -> str | None:
        slot.token = token
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            return self._text(slot.data)
        slot.data += self.llama.detokenize([token], special=False)
        slot.generated.append(token)
        text = self._text(slot.data)
        ends = [text.index(stop) for stop in slot.request.stops if stop in text]
        if ends:
            return text[: min(ends)]
        if len(slot.generated) >= self.max_tokens:
            return text
        return None

    def _piece(self, token: int) -> str:
        if token not in self.pieces:
            self.pieces[token] = self._text(self.llama.detokenize([token], special=False))
        return self.pieces[token]

    @staticmethod
    def _text(data: bytes) -> str:
        return data.decode("utf-8", errors="ignore")  # a character split across tokens waits
