"""Examples to token ids and labels, packing, and the batch collator.

    encoded, stats = encode_examples(examples, tokenizer, max_length=1024)
    rows = pack(encoded, max_length=1024) if packing else encoded
    batch = Collator(pad_token_id=tokenizer.pad_token_id)([RowDataset(rows)[i] for i in range(4)])

Each row is laid out exactly as the desktop will send it at inference: the prompt is
the tokenizer's chat template applied to `alpaca_messages(instruction, input)` with
`add_generation_prompt=True`, then the response and the end-of-turn token(s):

    input_ids = tokenize(prompt) + tokenize(output) + end      (no special tokens added)
    labels    = -100 ...       + tokenize(output) + end

The template writes BOS itself, so the tokenizer never adds one. Which tokens carry
loss is decided by position, never by comparing ids with the pad id, so a tokenizer
whose pad token is its EOS still learns to stop.

Packing puts several rows into one sequence with `position_ids` restarting at 0 for
each and no attention mask. transformers (`masking_utils.find_packed_sequence_indices`)
then builds a block-diagonal causal mask from the position ids for the sdpa, eager
and flex attention paths, so no example attends to another and each gets the loss it
would get alone (tested for sdpa and eager). This needs the model's KV cache off in
training (`use_cache=False`; with a cache the position ids are not looked at).
flash-attention reads the boundaries from the position ids only in a batch of one
row, so for it the collator joins a batch's packed rows into one (`flatten`).
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jinja2 import TemplateError

from kodcu.prompt import alpaca_messages

IGNORE_INDEX = -100
"""Label of tokens that carry no loss (PyTorch's cross-entropy ignore_index)."""


@dataclass
class Encoded:
    """One tokenized example: ids, labels (-100 on the prompt) and its source row."""

    input_ids: list[int]
    labels: list[int]
    source: str = ""
    row: int = 0


@dataclass
class TokenStats:
    """What tokenization kept and dropped, for the summary and kodcu.json."""

    rows: int = 0
    """Rows tokenized (after dropping)."""
    tokens: int = 0
    """Tokens in those rows."""
    loss_tokens: int = 0
    """Tokens that carry loss: response and end-of-turn tokens."""
    truncated: int = 0
    """Rows whose response lost its end to max_length."""
    dropped_for_length: int = 0
    """Rows dropped because the prompt alone fills max_length."""
    dropped_rows: list[str] = field(default_factory=list)
    """Source and row of the first few dropped rows, to find them."""

    @property
    def loss_fraction(self) -> float:
        return self.loss_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss_fraction": round(self.loss_fraction, 4)}


class FeatureError(ValueError):
    """The data cannot train anything (no tokens carry loss, or every row was dropped)."""


def render_prompt(tokenizer: Any, instruction: str, input: str = "") -> str:
    """The prompt text the desktop sends for this instruction: chat template + generation prompt."""
    return tokenizer.apply_chat_template(
        alpaca_messages(instruction, input), tokenize=False, add_generation_prompt=True
    )


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The tokens that end an answer: whatever the chat template writes after the response.

    Kodcu's Alpaca template writes the EOS token; a model's own template may end turns
    with another special token (Gemma's <end_of_turn>, Qwen's <|im_end|>), and inference
    stops on that one, so that is what the model must learn to produce.
    """
    marker = "\x00KODCU-RESPONSE\x00"
    messages = alpaca_messages("x", "", marker)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    suffix = text[text.index(marker) + len(marker) :].rstrip()
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    if not ids:
        if tokenizer.eos_token_id is None:
            raise FeatureError(
                "the tokenizer has no EOS token and its template ends turns with none"
            )
        ids = [tokenizer.eos_token_id]
    return ids


def encode_example(
    tokenizer: Any,
    instruction: str,
    input: str,
    output: str,
    max_length: int,
    end: list[int],
    layout: str = "chat",
) -> tuple[list[int], list[int], bool] | None:
    """Token ids and labels of one example, truncated at the end of its response.

    layout "chat": the prompt is the chat template's, and `end` ends the response.
    layout "completion": the prompt is the instruction itself, tokenized as a base-model
    prompt is (with BOS if the tokenizer adds one), and EOS ends the response.
    Returns None when the prompt alone leaves no room for a single response token. A
    truncated response gets no end-of-turn token: teaching the model to stop mid-answer
    would be worse than not teaching it to stop on that row.
    """
    if layout == "completion":
        prompt_ids = tokenizer(instruction, add_special_tokens=True)["input_ids"]
        end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    else:
        prompt = render_prompt(tokenizer, instruction, input)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(output, add_special_tokens=False)["input_ids"] + end
    room = max_length - len(prompt_ids)
    if room < 1:
        return None
    truncated = len(response_ids) > room
    response_ids = response_ids[:room]
    input_ids = prompt_ids + response_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return input_ids, labels, truncated


def encode_examples(
    examples: list[Any], tokenizer: Any, max_length: int
) -> tuple[list[Encoded], TokenStats]:
    """Tokenize Examples (instruction, input, output, source, row); count what was cut."""
    end = end_of_turn_ids(tokenizer)
    stats = TokenStats()
    encoded = []
    for example in examples:
        try:
            result = encode_example(
                tokenizer,
                example.instruction,
                example.input,
                example.output,
                max_length,
                end,
                example.layout,
            )
        except TemplateError as error:
            # Some model templates refuse a system message (rows with an input use one).
            raise FeatureError(
                f"{example.source} row {example.row}: the chat template cannot render this row "
                f"({error}); use data.template: alpaca"
            ) from None
        if result is None:
            stats.dropped_for_length += 1
            if len(stats.dropped_rows) < 5:
                stats.dropped_rows.append(f"{example.source} row {example.row}")
            continue
        input_ids, labels, truncated = result
        stats.truncated += truncated
        stats.rows += 1
        stats.tokens += len(input_ids)
        stats.loss_tokens += sum(label != IGNORE_INDEX for label in labels)
        encoded.append(Encoded(input_ids, labels, example.source, example.row))
    if examples and not encoded:
        raise FeatureError(
            f"all {len(examples)} rows were dropped: each prompt alone is longer than "
            f"data.max_length={max_length} tokens; raise data.max_length"
        )
    if encoded and stats.loss_tokens == 0:
        raise FeatureError("no token carries loss: every response is empty after tokenization")
    return encoded, stats


def check_single_bos(encoded: list[Encoded], bos_token_id: int | None) -> None:
    """Fail when a row starts with two BOS tokens (a template and a tokenizer both adding one)."""
    if bos_token_id is None:
        return
    for item in encoded[:100]:
        if item.input_ids[:2] == [bos_token_id, bos_token_id]:
            raise FeatureError(
                f"{item.source} row {item.row}: the prompt starts with two BOS tokens; the chat "
                "template writes BOS, so the tokenizer must not add another"
            )


@dataclass
class Packed:
    """Several examples in one sequence; position ids restart at 0 for each."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    examples: int


def pack(encoded: list[Encoded], max_length: int, strategy: str = "best_fit") -> list[Packed]:
    """Fill rows of up to max_length tokens with whole examples, placed by `strategy`
    (a key of PACKING_STRATEGIES). Within a row the examples keep their data order.

    An example is never split across rows (every example is at most max_length long after
    truncation). The first token of every example is a prompt token, so no label asks a
    row to predict the next example from the end of the previous one.
    """
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(f"packing strategy {strategy!r} is not one of {list(PACKING_STRATEGIES)}")
    members = PACKING_STRATEGIES[strategy](encoded, max_length)
    return [_packed_row(encoded, sorted(indexes)) for indexes in members]


def _best_fit(encoded: list[Encoded], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: longest examples first, each into the row with the least room
    that still holds it (a new row when none does). Rows come out about 95% full on
    instruction data, where filling them in data order left a fifth of every row as
    padding that the model still computes."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))  # stable
    members: list[list[int]] = []  # the examples of each row
    rooms: list[tuple[int, int]] = []  # (room left, row), sorted: the best fit is a bisect
    for index in order:
        length = len(encoded[index].input_ids)
        at = bisect.bisect_left(rooms, (length, -1))
        if at < len(rooms):
            room, row = rooms.pop(at)
        else:
            room, row = max_length, len(members)
            members.append([])
        members[row].append(index)
        bisect.insort(rooms, (room - length, row))
    return members


def _in_order(encoded: list[Encoded], max_length: int) -> list[list[int]]:
    """Each row filled in data order until the next example does not fit: more, emptier
    rows than best fit, so more optimizer steps per epoch."""
    members: list[list[int]] = []
    length = max_length  # no row yet: the first example starts one
    for index, item in enumerate(encoded):
        if length + len(item.input_ids) > max_length:
            members.append([])
            length = 0
        members[-1].append(index)
        length += len(item.input_ids)
    return members


PACKING_STRATEGIES = {"best_fit": _best_fit, "in_order": _in_order}
"""data.packing_strategy -> the function that puts examples (by index) into rows."""


def _packed_row(encoded: list[Encoded], indexes: list[int]) -> Packed:
    """One row: these examples one after the other, positions restarting at each."""
    row = Packed([], [], [], 0)
    for index in indexes:
        item = encoded[index]
        row.input_ids += item.input_ids
        row.labels += item.labels
        row.position_ids += list(range(len(item.input_ids)))
        row.examples += 1
    return row


class RowDataset(torch.utils.data.Dataset):
    """Encoded or Packed rows as dicts of lists, for transformers' Trainer."""

    def __init__(self, rows: list[Encoded] | list[Packed]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        row = self.rows[index]
        item = {"input_ids": row.input_ids, "labels": row.labels}
        if isinstance(row, Packed):
            item["position_ids"] = row.position_ids
        return item


@dataclass
class Collator:
    """Right-pads a batch; packed rows get position ids and no attention mask.

    Unpacked rows: padding is masked out by `attention_mask` and labelled -100.
    Packed rows: the padding becomes one more short sequence (its position ids restart
    at 0), so the block-diagonal mask keeps it apart from the real examples.
    `flatten` joins packed rows into a single row with no padding at all: flash-attention
    finds sequence boundaries in the position ids only when the batch has one row.
    """

    pad_token_id: int
    flatten: bool = False

    def __call__(self, items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        packed = "position_ids" in items[0]
        if packed and self.flatten:
            keys = ("input_ids", "labels", "position_ids")
            joined = {key: [value for item in items for value in item[key]] for key in keys}
            return {key: torch.tensor([value], dtype=torch.long) for key, value in joined.items()}
        length = max(len(item["input_ids"]) for item in items)
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for item in items:
            pad = length - len(item["input_ids"])
            batch["input_ids"].append(item["input_ids"] + [self.pad_token_id] * pad)
            batch["labels"].append(item["labels"] + [IGNORE_INDEX] * pad)
            if packed:
                batch["position_ids"].append(item["position_ids"] + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * len(item["input_ids"]) + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def verify_packing(model: Any, first: list[int], second: list[int], length: int = 16) -> None:
    """Fail unless this model, under this transformers, keeps packed examples apart.

    Packing relies on the modelling code passing the position ids on to the mask
    builder, and not every architecture did so in every transformers release. Three
    short forward passes tell: example B alone, A and B packed, and A and B run as one
    sequence (B really sees A). Packed must match alone far more closely than joined
    does; the margin is relative, so bf16 and 4-bit noise do not trip it.
    """
    a, b = first[-length:], second[-length:]
    device = next(model.parameters()).device

    def log_probs(ids: list[int], positions: list[int]) -> torch.Tensor:
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor([ids], device=device),
                position_ids=torch.tensor([positions], device=device),
            ).logits
        return logits[0, -len(b) :].float().log_softmax(-1)

    training = model.training
    model.eval()  # no dropout
    try:
        alone = log_probs(b, list(range(len(b))))
        packed = log_probs(a + b, [*range(len(a)), *range(len(b))])
        joined = log_probs(a + b, list(range(len(a) + len(b))))
    finally:
        model.train(training)
    leak = (packed - alone).abs().mean().item()
    effect = (joined - alone).abs().mean().item()
    if leak > max(0.1 * effect, 1e-3):
        raise FeatureError(
            "data.packing: in this model packed examples attend to each other (this "
            "transformers release ignores packed position ids for it); set data.packing: "
            "false or upgrade transformers"
        )


def marked_example(tokenizer: Any, item: Encoded) -> str:
    """The example's text with the part that carries no loss in [[ ]], for --dry-run."""
    split = next(
        (i for i, label in enumerate(item.labels) if label != IGNORE_INDEX), len(item.labels)
    )
    prompt = tokenizer.decode(item.input_ids[:split])
    response = tokenizer.decode(item.input_ids[split:])
    return f"[[{prompt}]]{response}"
