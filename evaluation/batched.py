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

Every token is computed alike, bit for bit, whatever else is in its step: so the
texts do not depend on the number of slots or on drafts. llama.cpp's CPU kernels sum in
another order for other batch shapes, and over a few hundred tokens the K/V cache
carries that to a few tenths of a logit, enough to flip a small model's greedy choice;
the decoder rules those shapes out. Each sequence has a stream of its own in the cache
(its cells stay in the order of its positions), attention is flash attention (each
token's row on its own, masked cells skipped, below 64 rows per sequence), the weights
are not repacked, and no llama.cpp batch has fewer than MIN_STEP_ROWS rows
(tests/test_eval_exact.py). A prompt is read in batches of its own, alike whatever
runs. A lone sequence decoded by llama-cpp-python itself uses the kernels for one row,
so its text can part from these at a near tie.

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
of every text is chosen or checked by the model, and the texts are those of decoding
every token (`drafts="none"`), token for token. A draft that held goes on, twice as
long, in the next step; checking a token in a batch costs less than decoding it in a
step of its own.
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
MIN_STEP_ROWS = 8
"""The fewest rows (tokens) in one llama.cpp batch. From 8 rows on, a token's logits are
the same bit for bit whatever else is in the batch; with 1 to 7 rows llama.cpp's CPU
kernels sum in another order (measured on the default model; tests/test_eval_exact.py)."""
LONGEST_DRAFT = 56
"""The most drafted tokens a sequence puts into one step: a multiple of MIN_STEP_ROWS,
and below 64, where llama.cpp's flash attention switches to a tiled kernel that sums in
another order."""


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
        # The model again, without repacked weights (the file is mapped, so the pages are
        # shared with the Llama's): a repacked kernel computes a batch's last rows apart.
        model_params = type(llama.model_params).from_buffer_copy(llama.model_params)
        model_params.use_extra_bufts = False
        model_params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
        self.model = _internals.LlamaModel(
            path_model=llama.model_path, params=model_params, verbose=False
        )
        self.vocab = self.model.vocab
        self.n_vocab = llama.n_vocab()
        # Each sequence its own part of the cache (a stream), with room for the longest
        # prompt and completion: its cells stay in the order of its positions, so attention
        # sums them in the same order whatever else ran. (A unified cache reuses freed
        # cells out of order.) At least MIN_STEP_ROWS streams: a short step is filled up
        # with one token in each of the free ones.
        self.streams = max(slots, MIN_STEP_ROWS)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.streams * (longest_prompt + max_tokens + 1)
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = self.streams
        params.kv_unified = False
        # Flash attention computes each token's row on its own, skipping masked cells.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_threads = params.n_threads_batch = llama.context_params.n_threads
        self.context = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.adapter = None
        if llama.lora_path:  # the adapter the Llama was opened with, over this model
            self.adapter = llama_cpp.llama_adapter_lora_init(
                self.model.model, llama.lora_path.encode()
            )
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapter)
            scales = (ctypes.c_float * 1)(llama.lora_scale)
            if self.adapter is None or llama_cpp.llama_set_adapters_lora(
                self.context.ctx, adapters, 1, scales
            ):
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
        if self.adapter is not None:
            self.lib.llama_adapter_lora_free(self.adapter)
        self.model.close()

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
            if not more:
                self._compact(active, free)
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

    def _compact(self, active: dict[int, _Slot], free: list[int]) -> None:
        """Move the sequences with the highest ids into the free lower ones, so that the
        active ids run from 0 without a gap (see _step)."""
        while free and free[0] < max(active):
            low, high = free.pop(0), max(active)
            self.lib.llama_memory_seq_cp(self.memory, high, low, -1, -1)  # the stream's cells
            self.lib.llama_memory_seq_rm(self.memory, high, -1, -1)
            active[low] = active.pop(high)
            free.append(high)
            free.sort()

    def _start(self, slot_id: int, request: Request) -> _Slot:
        """Read the prompt into the slot's sequence; its last token's logits come out."""
        tokens = request.tokens
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            last = start + len(chunk) == len(tokens)
            entries = [(slot_id, token, start + i) for i, token in enumerate(chunk)]
            self._fill(entries, with_logits=range(len(chunk) - 1, len(chunk) if last else 0))
            self._decode()
        return _Slot(request, len(tokens), np.random.default_rng(request.seed))

    def _drafts(self, active: dict[int, _Slot], order: list[int]) -> dict[int, list[int]]:
        """The drafted tokens each sequence puts into the next step, within the batch.

        Every draft is a whole number of MIN_STEP_ROWS tokens: llama.cpp reads the drafts
        in batches of their own, and each of those must have at least that many rows.
        """
        room = self.n_batch - max(len(order), MIN_STEP_ROWS)  # the chosen tokens go first
        drafts: dict[int, list[int]] = {}
        for slot_id in order:
            slot = active[slot_id]
            length = 0
            if slot.draft is not None:
                # Never past the token limit: the chosen token is the last one before it.
                length = min(slot.draft_length, self.max_tokens - len(slot.generated), room)
                length -= length % MIN_STEP_ROWS
            drafted = list(islice(slot.draft, length)) if length > 0 else []
            if len(drafted) < length:  # the draft has run out
                slot.draft = None
                drafted = drafted[: len(drafted) - len(drafted) % MIN_STEP_ROWS]
            drafts[slot_id] = drafted
            room -= len(drafted)
        return drafts

    def _step(
        self, active: dict[int, _Slot], order: list[int], drafts: dict[int, list[int]]
    ) -> None:
        """Decode every active sequence's chosen token, and its draft after it, in one batch.

        llama.cpp cuts a batch over several streams into batches of consecutive sequence
        ids with as many tokens each: here one of every sequence's chosen token, then one
        for each run of drafting sequences. The active ids run from 0 without a gap (see
        _compact), and fewer than MIN_STEP_ROWS of them are filled up with a token in each
        next stream, dropped after the step.
        """
        assert order == list(range(len(order))), "the active sequence ids must run from 0"
        entries = []
        for i in order:
            slot = active[i]
            tokens = [slot.token, *drafts[i]]
            entries += [(i, token, slot.position + k) for k, token in enumerate(tokens)]
        wanted = range(len(entries))
        filler = [(i, entries[0][1], 0) for i in range(len(order), MIN_STEP_ROWS)]
        self._fill(entries + filler, with_logits=wanted)
        self._decode()
        for i, _, _ in filler:
            self.lib.llama_memory_seq_rm(self.memory, i, -1, -1)

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
            slot.draft_length = min(2 * slot.draft_length, LONGEST_DRAFT)
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

    def _fill(self, entries: list[tuple[int, int, int]], with_logits: range) -> None:
        """Put (sequence, token, position) entries in the batch, with logits for those at the
        indices in `with_logits`."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (seq, token, position) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = i in with_logits

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
            # The block's tokens and on, in whole batches of MIN_STEP_ROWS.
            slot.draft_length = min(-(-period // MIN_STEP_ROWS) * MIN_STEP_ROWS, LONGEST_DRAFT)
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
