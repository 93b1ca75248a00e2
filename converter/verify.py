"""Check GGUF files against the original model they came from, on held-out text.

    from converter.verify import verify_gguf
    results = verify_gguf(Path("base-hf"), [Path("out/m-F16.gguf")], adapter_dir=Path("runs/a"))
    # [{"file": ..., "type": "F16", "nmse": 3e-07, "kl": 1e-06, "top1": 1.0, ...}, ...]

The original is the Hugging Face model, or for an adapter its base with the PEFT adapter
applied unmerged, in float32: never the converter's own merged copy, so an error of the
merge shows up as well as one of the conversion. It runs in float32 and each GGUF through
llama.cpp (llama-cpp-python) on the same token ids; their logits at every position are
compared:

- NMSE: sum((hf - gguf)^2) / sum(hf^2) over all logits,
- KL: the mean over positions of KL(p_hf || p_gguf),
- top-1: the share of positions where both pick the same next token.

Each file is judged against the THRESHOLDS row of its type. All files are measured first
(the conversion report needs every figure); then VerificationError is raised if any failed.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Threshold:
    """What a GGUF of one type must reach against the float32 HF model."""

    nmse: float
    """Largest normalised mean squared error of the logits."""
    kl: float
    """Largest mean KL divergence KL(p_hf || p_gguf) per token, in nats."""
    top1: float
    """Smallest share of positions whose most likely next token agrees."""


# Why these numbers. The limits are there to catch a broken file (a wrong tensor layout, rope
# or tokenizer gives NMSE ~1 and top-1 near chance), not to grade a good one; each sits about
# 2-5x above what a correct file measures against its original.
# - Measured against the original (`kodcu-convert ADAPTER --verify`: Gemma 3 270M's
#   Hugging Face copy with the Kodcu Coder adapter applied unmerged, float32; 430 tokens
#   of DEFAULT_TEXT), NMSE / KL / top-1:
#     F16    1.1e-6 / 4.9e-6 / 1.000     Q5_0    0.021 / 0.089 / 0.856
#     Q8_0   0.0012 / 0.0042 / 0.965     Q4_K_M  0.023 / 0.088 / 0.858
#     Q6_K   0.0035 / 0.011  / 0.949     Q4_K_S  0.038 / 0.121 / 0.807
#     Q5_K_M 0.016  / 0.053  / 0.895     Q3_K_M  0.083 / 0.43  / 0.700
#     Q5_K_S 0.018  / 0.058  / 0.893     Q4_0    0.139 / 0.69  / 0.591
#   That base copy is itself dequantized from the Q4_K_M GGUF Kodcu embeds (the original
#   float weights cannot be had offline), so quantizing it again is kinder than quantizing
#   Google's weights: the adapter moves the adapted projections off the Q4_K_M grid, not
#   the embedding. Against the base alone Q4_K_M came out closer still, and Q4_0, on
#   another grid, measured KL 0.46 and top-1 0.679.
# - llama.cpp's perplexity README (Llama 3 8B against its F16) gives mean KLD Q8_0 0.0014,
#   Q6_K 0.0055, Q5_K_M 0.011, Q5_K_S 0.017, Q5_0 0.022, Q4_K_M 0.031: a 270M model loses
#   more to the same type, which is why these limits are looser than those figures.
# - F32 / F16 / BF16 only round the weights. F16 must reach NMSE < 1e-4 (the converter's
#   spec); it measured 5e-6 / 6e-6 on the tiny test llama. F32 is no closer (1e-6 on the
#   tiny llama), since llama.cpp keeps its KV cache in F16. BF16 on Gemma 3 270M: 3e-5 /
#   2e-4 / 0.991. The tiny test models (rows of 64, too short for K-quant blocks) measured
#   Q8_0 NMSE 0.002, KL 0.003, top-1 0.92: near-uniform logits make top-1 weak there.
THRESHOLDS: dict[str, Threshold] = {
    "F32": Threshold(nmse=5e-5, kl=5e-4, top1=0.97),
    "F16": Threshold(nmse=1e-4, kl=1e-3, top1=0.97),
    "BF16": Threshold(nmse=1e-3, kl=3e-3, top1=0.95),
    "Q8_0": Threshold(nmse=5e-3, kl=2e-2, top1=0.90),
    "Q6_K": Threshold(nmse=1e-2, kl=4e-2, top1=0.88),
    "Q5_K_M": Threshold(nmse=4e-2, kl=0.15, top1=0.80),
    "Q5_K_S": Threshold(nmse=4e-2, kl=0.15, top1=0.80),
    "Q5_0": Threshold(nmse=6e-2, kl=0.3, top1=0.75),
    "Q4_K_M": Threshold(nmse=0.1, kl=0.3, top1=0.70),
    "Q4_K_S": Threshold(nmse=0.1, kl=0.4, top1=0.70),
    "Q4_0": Threshold(nmse=0.4, kl=2.0, top1=0.40),
    "Q3_K_M": Threshold(nmse=0.3, kl=1.5, top1=0.45),
}

# Held-out text for the comparison: written for this check, so no model here was trained on
# it. Code and prose, as Kodcu's models read both; a few hundred tokens for a real tokenizer.
DEFAULT_TEXT = '''\
A tide table for a small harbour lists, for each day, the times of high and low water and
the height above chart datum. Pilots read it before bringing a boat over the sand bar, where
half a metre decides whether the keel touches. The helper below interpolates between two
table entries with the "rule of twelfths": the water rises by 1, 2, 3, 3, 2 and 1 twelfths of
the range in the six hours between low and high tide.

from dataclasses import dataclass

TWELFTHS = (1, 2, 3, 3, 2, 1)


@dataclass
class Tide:
    hour: float      # hours after midnight
    height: float    # metres above chart datum


def height_at(low: Tide, high: Tide, hour: float) -> float:
    """Water height at `hour`, between a low tide and the next high tide."""
    if not low.hour <= hour <= high.hour:
        raise ValueError(f"{hour} is outside {low.hour}..{high.hour}")
    step = (high.hour - low.hour) / len(TWELFTHS)
    rise, elapsed = 0.0, hour - low.hour
    for part in TWELFTHS:
        share = min(max(elapsed / step, 0.0), 1.0)
        rise += part / 12 * share
        elapsed -= step
    return round(low.height + rise * (high.height - low.height), 2)


print(height_at(Tide(3.5, 0.4), Tide(9.75, 4.1), 6.0))

Note that the rule is only an estimate: wind from the sea can hold the water up for hours,
and a falling barometer adds a few centimetres more. A careful skipper keeps a margin.
'''


class VerificationError(RuntimeError):
    """A GGUF's logits are further from the HF model's than its type allows."""

    def __init__(self, message: str, results: list[dict]) -> None:
        super().__init__(message)
        self.results = results


def gguf_type(metadata: dict[str, str], path: Path) -> str:
    """The file's weight type ("F16", "Q4_K_M", ...) from general.file_type."""
    from gguf import LlamaFileType

    value = metadata.get("general.file_type")
    if value is None:
        raise VerificationError(f"{path}: general.file_type is missing from its metadata", [])
    name = LlamaFileType(int(value)).name
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def compare_logits(hf: np.ndarray, gguf: np.ndarray) -> dict[str, float]:
    """NMSE, mean KL(p_hf || p_gguf) and top-1 agreement of two (positions, vocab) arrays."""
    a, b = hf.astype(np.float64), gguf.astype(np.float64)
    nmse = float(((a - b) ** 2).sum() / (a**2).sum())
    log_p = a - a.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    log_q = b - b.max(axis=1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(axis=1, keepdims=True))
    kl = float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())
    top1 = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
    return {"nmse": nmse, "kl": kl, "top1": top1}


def judge(figures: dict[str, float], threshold: Threshold) -> list[str]:
    """The figures that miss the threshold, each as a sentence; empty when all pass."""
    failures = []
    if not figures["nmse"] < threshold.nmse:
        failures.append(f"NMSE {figures['nmse']:.3g} is not below {threshold.nmse:g}")
    if not figures["kl"] < threshold.kl:
        failures.append(f"KL {figures['kl']:.3g} is not below {threshold.kl:g}")
    if not figures["top1"] >= threshold.top1:
        failures.append(f"top-1 agreement {figures['top1']:.3f} is below {threshold.top1:g}")
    return failures


def reference_name(model_dir: Path, adapter_dir: Path | None) -> str:
    """What the GGUFs are compared with, in words (report.md, results)."""
    if adapter_dir is None:
        return f"{Path(model_dir).name} (float32)"
    return f"{Path(model_dir).name} + adapter {Path(adapter_dir).name}, unmerged (float32)"


class HFLogits:
    """The float32 original and its tokenizer, with logits cached per token sequence."""

    def __init__(self, model_dir: Path, adapter_dir: Path | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if adapter_dir is not None:
            from converter.merge import load_adapter

            model = load_adapter(model, adapter_dir, str(model_dir))  # LoRA on its own path
        self.model = model.eval()
        # The adapter folder holds the tokenizer it was trained with, when it has one.
        own = adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").is_file()
        tokenizer_dir = adapter_dir if own else model_dir
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        except (OSError, ValueError) as exc:  # a weights-only folder: the ids still compare
            log.warning("%s: no tokenizer to cross-check ids (%s)", tokenizer_dir, exc)
            self.tokenizer = None
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def ids(self, text: str) -> list[int] | None:
        return None if self.tokenizer is None else list(self.tokenizer(text)["input_ids"])

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        key = tuple(ids)
        if key not in self.cache:
            with torch.inference_mode():
                out = self.model(torch.tensor([ids])).logits[0]
            self.cache[key] = out.float().numpy()
        return self.cache[key]


def tokenizer_note(gguf_ids: list[int], hf_ids: list[int] | None) -> str:
    """ "" when the HF tokenizer gives the GGUF's ids, else where they part."""
    if hf_ids is None:
        return "the HF model has no tokenizer; ids were not cross-checked"
    hf_ids = hf_ids[: len(gguf_ids)]
    if hf_ids == gguf_ids:
        return ""
    at = next(
        (i for i, (g, h) in enumerate(zip(gguf_ids, hf_ids, strict=False)) if g != h), len(hf_ids)
    )
    return (
        f"the HF tokenizer gives different ids from position {at} "
        f"(GGUF {gguf_ids[at : at + 3]}, HF {hf_ids[at : at + 3]}); both models were run "
        "on the GGUF's ids"
    )


def measure(path: Path, text: str, hf: HFLogits, max_tokens: int, threads: int) -> dict:
    """One GGUF's figures against the HF model (not yet judged)."""
    from llama_cpp import Llama

    probe = Llama(model_path=str(path), vocab_only=True, verbose=False)
    ids = probe.tokenize(text.encode(), add_bos=True, special=False)[:max_tokens]
    metadata = dict(probe.metadata)
    probe.close()
    note = tokenizer_note(ids, hf.ids(text))
    llm = Llama(
        model_path=str(path),
        n_ctx=len(ids),
        n_batch=len(ids),
        n_ubatch=len(ids),
        n_threads=threads,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(ids)
        ours = np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()
        del llm
        gc.collect()
    theirs = hf.logits(ids)
    if ours.shape[1] != theirs.shape[1]:
        # Converters drop padding rows past the real vocabulary; compare what both have.
        vocab = min(ours.shape[1], theirs.shape[1])
        note += f"; vocab sizes differ (HF {theirs.shape[1]}, GGUF {ours.shape[1]}), first {vocab}"
        ours, theirs = ours[:, :vocab], theirs[:, :vocab]
    result = {"file": str(path), "type": gguf_type(metadata, path), "tokens": len(ids)}
    result |= compare_logits(theirs, ours)
    result["tokenizer_match"] = not note.startswith("the HF")
    if note:
        result["note"] = note.lstrip("; ")
    return result


def verify_gguf(
    hf_model_dir: Path,
    gguf_paths: list[Path],
    text: str | None = None,
    *,
    max_tokens: int = 512,
    judge_as: str | None = None,
    threads: int | None = None,
    adapter_dir: Path | None = None,
) -> list[dict]:
    """Figures and verdict for each GGUF in `gguf_paths` against the HF model in `hf_model_dir`,
    with the PEFT adapter in `adapter_dir` applied over it (unmerged) when given.

    `text` defaults to DEFAULT_TEXT; at most `max_tokens` of it are used. `judge_as` judges
    every file by one type's thresholds instead of its own (e.g. "F16" for a strict check).
    Raises VerificationError, after measuring every file, if any of them fails.
    """
    text = text or DEFAULT_TEXT
    threads = threads or os.cpu_count() or 1
    gguf_paths = [Path(path) for path in gguf_paths]
    missing = [str(path) for path in gguf_paths if not path.is_file()]
    if missing:
        raise VerificationError(f"GGUF file(s) not found: {', '.join(missing)}", [])
    hf = HFLogits(Path(hf_model_dir), adapter_dir)
    reference = reference_name(hf_model_dir, adapter_dir)
    results = []
    try:
        for path in gguf_paths:
            result = measure(path, text, hf, max_tokens, threads)
            kind = judge_as or result["type"]
            threshold = THRESHOLDS.get(kind)
            if threshold is None:
                failures = [f"no threshold for type {kind}; known: {', '.join(THRESHOLDS)}"]
                result["threshold"] = {}
            else:
                failures = judge(result, threshold)
                result["threshold"] = {"type": kind, **vars(threshold)}
            result["reference"] = reference
            result["passed"] = not failures
            result["failures"] = failures
            log.info(
                "%s (%s): NMSE %.3g, KL %.3g, top-1 %.3f over %d tokens: %s",
                path.name,
                result["type"],
                result["nmse"],
                result["kl"],
                result["top1"],
                result["tokens"],
                "pass" if not failures else "FAIL",
            )
            results.append(result)
    finally:
        del hf
        gc.collect()
    failed = [r for r in results if not r["passed"]]
    if failed:
        lines = [f"{r['file']} ({r['type']}): {'; '.join(r['failures'])}" for r in failed]
        raise VerificationError(
            f"GGUF verification failed against {reference}:\n  " + "\n  ".join(lines),
            results,
        )
    return results
