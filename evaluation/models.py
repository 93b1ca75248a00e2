"""The model under evaluation: a GGUF, a Hugging Face folder, a Kodcu adapter, or a URL.

    model = open_model("model.gguf", adapter=Path("lora.gguf"), slots=16)
    prompts = [Prompt(key=0, text=prompt, stops=["\\ndef "]), Prompt(key=1, messages=chat)]
    for prompt, text in model.generate(prompts, max_tokens=384, temperature=0.0):
        ...   # in the order the completions end

A GGUF runs in this process through llama-cpp-python, chats laid out by the same
code as in the desktop (kodcu/llama.py: the GGUF's own template, or Kodcu's Alpaca
one), up to `slots` completions decoded together (evaluation/batched.py). A Hugging
Face model folder or a Kodcu/PEFT adapter folder runs through transformers (slow
on a CPU: it is there to compare against the GGUF). A URL is any OpenAI-compatible
server (llama-server, Ollama, vLLM, `kodcu-serve`), sent `slots` requests at once;
its key comes from the KODCU_EVAL_API_KEY environment variable.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from evaluation.extract import cut_at_stops

Message = dict[str, str]

SLOTS = 16
"""Completions at once for a GGUF or a server unless told otherwise."""


@dataclass(eq=False)  # hashed by identity: a prompt is one request, even when texts repeat
class Prompt:
    """One completion to make: a base-model prompt, or a chat."""

    key: Any
    """The caller's name for it."""
    text: str | None = None
    """A base-model prompt, completed as it stands."""
    messages: list[Message] | None = None
    """A chat, laid out in the model's chat template (when `text` is None)."""
    stops: list[str] = field(default_factory=list)
    """Stop sequences for a base-model prompt."""
    seed: int = 0
    """The sampling seed (temperature above 0)."""


class ModelError(ValueError):
    """The model cannot be opened; the message names it and says what to do."""


class Model(Protocol):
    name: str
    slots: int
    """Completions made at once (recorded in results.json)."""
    drafts: str
    """What is drafted for the model to check (`--drafts`, evaluation/loops.py)."""
    drafted_tokens: int
    """Drafted tokens the model checked and kept (recorded in results.json)."""
    rejected_tokens: int
    """Drafted tokens the model checked and would not have chosen."""
    unchecked_tokens: int
    """Tokens of the texts that the model did not choose from its logits (recorded in
    results.json; none, for each kind of model here)."""

    def generate(
        self, prompts: list[Prompt], max_tokens: int, temperature: float
    ) -> Iterator[tuple[Prompt, str]]:
        """Each prompt with its completion, in the order they end."""
        ...

    def close(self) -> None: ...


def one_at_a_time(
    model: EndpointModel, prompts: list[Prompt], max_tokens: int, temperature: float
) -> Iterator[tuple[Prompt, str]]:
    """`generate` for a model that makes one completion at a time."""
    for prompt in prompts:
        yield prompt, answer(model, prompt, max_tokens, temperature)


def answer(model: EndpointModel, prompt: Prompt, max_tokens: int, temperature: float) -> str:
    """One completion: of the base-model prompt, or of the chat."""
    if prompt.text is not None:
        return model.complete(prompt.text, prompt.stops, max_tokens, temperature)
    return model.chat(prompt.messages or [], max_tokens, temperature)


def open_model(
    spec: str,
    adapter: Path | None = None,
    threads: int | None = None,
    slots: int | None = None,
    drafts: str = "loops",
) -> Model:
    """The model `spec` names: a URL, a .gguf file, or a model / adapter folder.

    `slots` completions are made at once (None: SLOTS for a GGUF or a server, whose texts
    do not depend on it, and 1 for a transformers folder, whose padded batches can flip a
    near tie); a GGUF drafts greedy loops for the model to check as `drafts` says
    (evaluation/loops.py).
    """
    if spec.startswith(("http://", "https://")):
        return EndpointModel(spec, os.environ.get("KODCU_EVAL_API_KEY"), slots or SLOTS)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"--model {spec}: no such file or folder")
    if path.is_file():
        return GGUFModel(path, adapter, threads, slots or SLOTS, drafts)
    if adapter is not None:
        raise ModelError("--adapter applies a LoRA GGUF over a GGUF model; give a .gguf --model")
    if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
        return HFModel(path, slots or 1)
    raise ModelError(
        f"--model {spec}: a folder without config.json or adapter_config.json; give a GGUF "
        "file, a Hugging Face model folder, a Kodcu adapter folder or a server URL"
    )


class GGUFModel:
    """llama.cpp in this process; the chat template as the desktop lays it out."""

    def __init__(
        self,
        path: Path,
        adapter: Path | None,
        threads: int | None,
        slots: int,
        drafts: str = "loops",
    ) -> None:
        from kodcu.llama import chat_formatter, default_threads
        from kodcu.model_file import ModelFileError, check_adapter_file, check_gguf_file

        try:
            check_gguf_file(path)
            if adapter is not None:
                check_adapter_file(adapter, path)
        except ModelFileError as error:
            raise ModelError(str(error)) from None
        from llama_cpp import Llama

        self.name = path.name + (f" + {adapter.name}" if adapter else "")
        self.llama = Llama(
            model_path=str(path),
            lora_path=str(adapter) if adapter else None,
            n_ctx=4096,
            n_threads=threads or default_threads(),
            n_threads_batch=threads or default_threads(),
            logits_all=False,
            verbose=False,
        )
        self.format_chat = chat_formatter(self.llama)  # as the desktop lays chats out
        self.slots = slots
        self.drafts = drafts
        self.drafted_tokens = self.rejected_tokens = self.unchecked_tokens = 0

    def generate(
        self, prompts: list[Prompt], max_tokens: int, temperature: float
    ) -> Iterator[tuple[Prompt, str]]:
        from evaluation.batched import BatchedDecoder

        requests = [self._request(prompt) for prompt in prompts]
        if not requests:
            return
        longest = max(len(request.tokens) for request in requests)
        slots = max(1, min(self.slots, len(requests)))
        decoder = BatchedDecoder(self.llama, slots, max_tokens, longest, self.drafts)
        try:
            for request, text in decoder.run(requests, temperature):
                yield request.key, text
        finally:
            self.drafted_tokens += decoder.drafted_tokens
            self.rejected_tokens += decoder.rejected_tokens
            # Every token of every text must be one the model chose: counted, not assumed.
            made = sum(len(tokens) for tokens in decoder.tokens.values())
            self.unchecked_tokens += max(0, made - decoder.chosen_tokens)
            decoder.close()

    def _request(self, prompt: Prompt) -> Any:
        """The prompt as tokens, as create_completion and the chat handler tokenize it."""
        from evaluation.batched import Request

        if prompt.text is not None:
            tokens = self.llama.tokenize(prompt.text.encode(), special=True)
            return Request(prompt, tokens, prompt.stops, prompt.seed)
        chat = self.format_chat(messages=prompt.messages)
        tokens = self.llama.tokenize(
            chat.prompt.encode(), add_bos=not chat.added_special, special=True
        )
        return Request(prompt, tokens, [stop for stop in chat.stop if stop], prompt.seed)

    def close(self) -> None:
        self.llama.close()


class HFModel:
    """transformers on the CPU or a GPU; a PEFT adapter folder is loaded over its base.

    Up to `slots` completions are made at once: the prompts padded on the left, each row
    ending at its own end-of-sequence token or stop string, the batch running until its
    last row ends. With one slot (open_model's default here) the text is exactly
    transformers' own for the prompt alone; with more, the padded batch sums in another
    order and a near tie can flip.
    """

    def __init__(self, path: Path, slots: int = 1) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = path.name
        self.slots = slots
        self.drafts = "none"
        self.drafted_tokens = self.rejected_tokens = self.unchecked_tokens = 0
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        try:
            if (path / "adapter_config.json").is_file():
                from peft import AutoPeftModelForCausalLM

                self.model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype)
            else:
                self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise ModelError(f"--model {path}: cannot load it ({error})") from None
        self.model.to(self.device).eval()

    def _generate(
        self, rows: list[list[int]], max_tokens: int, temperature: float, stops: list[str]
    ) -> list[str]:
        """The new text of each row of token ids, decoded together; not yet cut at stops."""
        import torch

        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        width = max(len(row) for row in rows)
        inputs = torch.tensor([[pad] * (width - len(row)) + row for row in rows])  # (B, T)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling["temperature"] = temperature
        if stops:
            sampling["stopping_criteria"] = [NewTextStops(self.tokenizer, width, stops)]
        with torch.no_grad():
            out = self.model.generate(
                input_ids=inputs.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_tokens,
                pad_token_id=pad,
                **sampling,
            )  # (B, T + new tokens); a row that ended early is padded
        return self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)

    def _ids(self, prompt: Prompt) -> list[int]:
        if prompt.text is not None:
            return list(self.tokenizer(prompt.text)["input_ids"])
        if not self.tokenizer.chat_template:
            raise ModelError(
                f"--prompt instruct: {self.name} has no chat template; use --prompt base"
            )
        ids = self.tokenizer.apply_chat_template(
            prompt.messages or [], add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding (a mapping)
            ids = ids["input_ids"]
        return list(ids)

    def generate(
        self, prompts: list[Prompt], max_tokens: int, temperature: float
    ) -> Iterator[tuple[Prompt, str]]:
        """Each prompt with its completion, `slots` prompts with the same stops at a time."""
        batch: list[Prompt] = []
        for prompt in prompts:
            if batch and (len(batch) == self.slots or prompt.stops != batch[0].stops):
                yield from self._batch(batch, max_tokens, temperature)
                batch = []
            batch.append(prompt)
        if batch:
            yield from self._batch(batch, max_tokens, temperature)

    def _batch(
        self, batch: list[Prompt], max_tokens: int, temperature: float
    ) -> Iterator[tuple[Prompt, str]]:
        rows = [self._ids(prompt) for prompt in batch]
        texts = self._generate(rows, max_tokens, temperature, batch[0].stops)
        for prompt, text in zip(batch, texts, strict=True):
            yield prompt, cut_at_stops(text, prompt.stops)

    def close(self) -> None:
        del self.model


class NewTextStops:
    """A transformers stopping criterion: a row ends once its new text holds a stop string.

    transformers' own `stop_strings` look at the prompt too: an MBPP prompt ends in a
    newline, so a completion starting `def ` ended at once on the stop `\\ndef `. Only the
    tokens after the prompt's `width` count here, as in the GGUF path.
    """

    def __init__(self, tokenizer: Any, width: int, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.width = width
        self.stops = stops

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        ended = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(ended, dtype=torch.bool, device=input_ids.device)  # (B,)


class EndpointModel:
    """An OpenAI-compatible server: /completions for base prompts, /chat/completions else."""

    def __init__(self, url: str, api_key: str | None, slots: int = 1) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.name = self.url
        self.slots = slots
        self.drafts = "none"  # a server decodes every token itself
        self.drafted_tokens = self.rejected_tokens = self.unchecked_tokens = 0

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url + route, data=json.dumps(body).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            raise ModelError(f"{self.url}{route}: HTTP {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            raise ModelError(f"{self.url}: cannot connect ({error.reason})") from None

    def complete(self, prompt: str, stops: list[str], max_tokens: int, temperature: float) -> str:
        body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature}
        reply = self._post("/completions", {**body, "stop": stops[:4]})  # OpenAI allows 4
        return cut_at_stops(reply["choices"][0]["text"], stops)

    def chat(self, messages: list[Message], max_tokens: int, temperature: float) -> str:
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        return self._post("/chat/completions", body)["choices"][0]["message"]["content"] or ""

    def generate(
        self, prompts: list[Prompt], max_tokens: int, temperature: float
    ) -> Iterator[tuple[Prompt, str]]:
        if self.slots <= 1:
            yield from one_at_a_time(self, prompts, max_tokens, temperature)
            return
        # A server with parallel slots (llama-server -np, vLLM) batches these itself.
        with ThreadPoolExecutor(self.slots) as pool:
            futures = {
                pool.submit(answer, self, prompt, max_tokens, temperature): prompt
                for prompt in prompts
            }
            for future in as_completed(futures):
                yield futures[future], future.result()

    def close(self) -> None:
        pass
