"""`kodcu-convert`: adapter or model → GGUF (F16/BF16/F32) → quantized GGUFs → report.

    kodcu-convert runs/my-adapter --out dist/my-model
    kodcu-convert runs/my-adapter --out dist/ --quant Q8_0,Q4_K_M --lora-gguf --verify
    kodcu-convert ~/models/Qwen2.5-Coder-1.5B --out dist/ --outtype bf16 --quant Q6_K
    kodcu-convert runs/my-adapter --out dist/ --lora-only

Errors print one line and exit with status 2; a failed verification exits with 1.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from converter import ConvertError
from converter.safety import (
    GB,
    MERGE_TEMP_PREFIX,
    check_free_space,
    partial_output,
    remove_stale_partials,
    say,
    step,
)
from converter.source import CONFIG, Source, identify_source, read_json, weight_files

EXAMPLES = """\
examples:
  kodcu-convert runs/my-adapter --out dist/my-model
  kodcu-convert runs/my-adapter --out dist/ --quant Q8_0,Q4_K_M --lora-gguf --verify
  kodcu-convert ~/models/Qwen2.5-Coder-1.5B --out dist/ --outtype bf16 --quant Q6_K
  kodcu-convert runs/my-adapter --out dist/ --lora-only

SOURCE is an adapter folder from kodcu-train, a PEFT adapter folder
(adapter_config.json names the base model) or a Hugging Face model folder.
An adapter is merged into its base (16-bit) first. The outputs go to --out:
NAME-F16.gguf, NAME-Q4_K_M.gguf, ..., NAME-lora-F16.gguf, report.json, report.md.
With --lora-only, NAME-lora-F16.gguf and the report alone: nothing is merged.
"""
DEFAULT_QUANT = "Q4_K_M"
LORA_ONLY_CONFLICTS = {"--quant": "quant", "--verify": "verify", "--keep-merged": "keep_merged"}
"""Flags that act on the model GGUFs, which --lora-only does not write (flag: argument)."""
MERGE_DTYPES = {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}
BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-convert",
        description="Convert a Kodcu/PEFT adapter or a Hugging Face model to GGUF files.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="adapter folder or Hugging Face model folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--quant",
        help="comma-separated llama.cpp types, e.g. Q8_0,Q6_K,Q5_K_M,Q4_K_M (default Q4_K_M; "
        "'none' for the unquantized file only)",
    )
    parser.add_argument(
        "--outtype", choices=["f16", "bf16", "f32"], default="f16", help="unquantized GGUF type"
    )
    parser.add_argument(
        "--lora-gguf", action="store_true", help="also write the adapter as a LoRA GGUF"
    )
    parser.add_argument(
        "--lora-only",
        action="store_true",
        help="write the LoRA GGUF and nothing else: no merge, no model GGUF (for an adapter "
        "run over a GGUF of its base, as the desktop and kodcu-eval --adapter do)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare each GGUF's logits with the original: the HF model, or an adapter's "
        "base with the adapter unmerged, in float32",
    )
    parser.add_argument(
        "--keep-merged", action="store_true", help="keep the merged HF folder in --out"
    )
    parser.add_argument(
        "--name",
        help="stem of the output names, and the model's name inside the GGUFs (general.name) "
        "(default: SOURCE's folder name)",
    )
    parser.add_argument("--threads", type=int, help="quantization threads (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    parser.add_argument(
        "--disk-margin", type=float, default=0.5, help="GB to keep free beyond the estimate"
    )
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's converter log")
    return parser


def parse_quants(text: str, outtype: str) -> list[str]:
    """The quantization types asked for, checked, without repeats or the unquantized type."""
    from converter.gguf_export import OUTTYPES
    from converter.quantize import check_qtype

    if text.strip().lower() in ("", "none"):
        return []
    names = []
    for item in text.split(","):
        name = check_qtype(item)
        if name != OUTTYPES[outtype] and name not in names:
            names.append(name)
    return names


def optional_step(module: str, function: str, flag: str) -> Callable:
    """A function of an optional converter module, or ConvertError naming the flag."""
    import importlib

    try:
        return getattr(importlib.import_module(f"converter.{module}"), function)
    except (ImportError, AttributeError) as error:
        raise ConvertError(f"{flag} is not available in this install ({error})") from None


def model_bytes(folder: Path) -> tuple[int, int]:
    """(weight bytes on disk, bytes per parameter) of a model folder."""
    config = read_json(folder / CONFIG)
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float16")
    size = sum(path.stat().st_size for path in weight_files(folder))
    return size, BYTES_PER_PARAM.get(dtype, 2)


def disk_needed(
    weights: int, per_param: int, outtype: str, quants: list[str], merge: bool, adapter: int
) -> int:
    """Bytes the outputs will take, from the model size: merged folder, GGUFs, LoRA GGUF."""
    from converter.quantize import bits_per_weight

    params = weights / per_param
    out_bytes = BYTES_PER_PARAM[MERGE_DTYPES[outtype]]
    needed = params * out_bytes
    if merge:
        needed += params * out_bytes
    needed += sum(params * bits_per_weight(name) / 8 for name in quants)
    return int(needed + 2 * adapter)


def output_paths(out: Path, name: str, outtype: str, quants: list[str], lora: bool) -> list[Path]:
    from converter.gguf_export import OUTTYPES

    paths = [out / f"{name}-{OUTTYPES[outtype]}.gguf"] + [out / f"{name}-{q}.gguf" for q in quants]
    return paths + ([out / f"{name}-lora-F16.gguf"] if lora else [])


def run_verification(verify_gguf: Callable, plan: Plan, ggufs: list[Path]) -> list[dict]:
    """The verification rows, also when some file failed (its error carries every row).

    The reference is the original: an adapter's base with the adapter unmerged, in float32,
    so an error of the merge shows up as well as one of the conversion.
    """
    model_dir = plan.base_dir or plan.source.path
    adapter_dir = plan.source.path if plan.base_dir else None
    try:
        return verify_gguf(model_dir, ggufs, adapter_dir=adapter_dir)
    except Exception as error:  # the module's own error type; it is imported lazily
        rows = getattr(error, "results", None)
        if not rows:
            raise ConvertError(f"--verify: {error}") from None
        return rows


@dataclass
class Plan:
    """What a run will do, worked out (and checked) before any heavy step."""

    source: Source
    """The input."""
    name: str
    """Stem of the output names."""
    quants: list[str]
    """Quantization types, checked against llama.cpp's."""
    outputs: list[Path]
    """The unquantized GGUF, one per quantization, then the LoRA GGUF if asked (that alone
    with --lora-only)."""
    base_dir: Path | None
    """The local folder of an adapter's base model; None for a model source."""
    merge: bool = False
    """Merge the adapter into its base (an adapter source, unless --lora-only)."""
    report: dict = field(default_factory=dict)
    """The report being built."""


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the request and the inputs, and the disk; nothing heavy runs before this passes."""
    from converter import merge as merging
    from converter.gguf_export import model_architecture

    source = identify_source(args.source)
    name = args.name or source.name
    lora = args.lora_gguf or args.lora_only
    if args.lora_only:
        asked = [flag for flag, on in LORA_ONLY_CONFLICTS.items() if getattr(args, on)]
        if asked:
            raise ConvertError(f"--lora-only writes no model GGUF; leave out {', '.join(asked)}")
        if not source.is_adapter:
            raise ConvertError(f"--lora-only needs an adapter as SOURCE; {source.path} is a model")
    quants = [] if args.lora_only else parse_quants(args.quant or DEFAULT_QUANT, args.outtype)
    if args.lora_gguf and not source.is_adapter:
        raise ConvertError(f"--lora-gguf needs an adapter as SOURCE; {source.path} is a model")
    args.out.mkdir(parents=True, exist_ok=True)
    if removed := remove_stale_partials(args.out):
        say(f"removed {removed} partial file(s) or folder(s) an interrupted run left in {args.out}")
    outputs = output_paths(args.out, name, args.outtype, quants, lora)
    if args.lora_only:
        outputs = outputs[-1:]
    kept = [args.out / f"{name}-merged"] if args.keep_merged and source.is_adapter else []
    existing = [path.name for path in outputs + kept if path.exists()]
    if existing and not args.overwrite:
        raise ConvertError(f"{args.out} already holds {', '.join(existing)}; pass --overwrite")
    plan = Plan(source, name, quants, outputs, None)
    plan.report["source"] = {"kind": source.kind, "path": str(source.path), "name": name}
    if source.is_adapter:
        plan.base_dir = merging.base_model_dir(source.path)
        merging.check_not_quantized(plan.base_dir, source.path)
        model_architecture(plan.base_dir)  # an unknown architecture fails before the merge
        plan.report["base_model"] = {
            "base": merging.resolve_base(source.path),
            "sha256_matches": merging.base_fingerprint(source.path, plan.base_dir),
        }
    else:
        model_architecture(source.path)
    weights, per_param = model_bytes(plan.base_dir or source.path)
    adapter = sum(p.stat().st_size for p in weight_files(source.path)) if plan.base_dir else 0
    plan.merge = plan.base_dir is not None and not args.lora_only
    needed = (
        2 * adapter
        if args.lora_only
        else disk_needed(weights, per_param, args.outtype, quants, plan.merge, adapter)
    )
    what = f"{len(outputs)} GGUF file(s){' and a merged model' if plan.merge else ''}"
    check_free_space(args.out, needed, what, margin=int(args.disk_margin * GB))
    return plan


def timed(label: str, files: list[dict], kind: str, path: Path, work: Callable[[], object]) -> None:
    """Run one step that writes `path`, with its progress lines and its entry in `files`."""
    from converter.report import file_entry

    with step(label) as done:
        start = time.perf_counter()
        work()
        files.append(file_entry(path, kind, time.perf_counter() - start))
        done(path)


def write_lora_step(write_lora: Callable, plan: Plan, path: Path, flag: str) -> None:
    with partial_output(path) as partial:
        try:
            write_lora(plan.source.path, plan.base_dir, partial, name=plan.name)
        except (ValueError, NotImplementedError) as error:
            raise ConvertError(f"{flag}: {error}") from None


def convert_and_quantize(
    args: argparse.Namespace, plan: Plan, hf_dir: Path, files: list[dict], label: Callable
) -> None:
    """The unquantized GGUF, then each quantization of it; `label()` numbers each step."""
    from converter.gguf_export import OUTTYPES, export_checked
    from converter.quantize import quantize

    main_path, kind = plan.outputs[0], OUTTYPES[args.outtype]
    checks: list[dict] = []
    timed(
        f"{label()} convert to GGUF {kind}", files, kind, main_path,
        lambda: checks.extend(
            export_checked(hf_dir, main_path, args.outtype, args.verbose, plan.name)
        ),
    )  # fmt: skip
    for check in checks:
        if not check["ok"]:
            say(f"warning: {check['check']}: {check['detail']}")
    plan.report["checks"] = checks
    for qtype, path in zip(plan.quants, plan.outputs[1 : 1 + len(plan.quants)], strict=True):
        timed(
            f"{label()} quantize {qtype}", files, qtype, path,
            lambda qtype=qtype, path=path: quantize(main_path, path, qtype, args.threads),
        )  # fmt: skip


def convert(args: argparse.Namespace) -> int:
    """Run every step; returns the exit status (0, or 1 when verification failed)."""
    from converter import merge as merging
    from converter.report import library_versions, write_report

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    flag = "--lora-only" if args.lora_only else "--lora-gguf"
    wanted = args.lora_gguf or args.lora_only
    write_lora = optional_step("lora_gguf", "write_lora_gguf", flag) if wanted else None
    verify_gguf = optional_step("verify", "verify_gguf", "--verify") if args.verify else None
    plan = make_plan(args)
    out, report, files, status = args.out, plan.report, [], 0
    total = (0 if args.lora_only else 1 + len(plan.quants) + plan.merge) + wanted + args.verify
    number = iter(range(1, total + 1))
    seconds: dict[str, float] = {}  # merge and verify, which write no output file
    # The merged model goes in a folder named as the outputs, inside a temporary one:
    # llama.cpp's converter takes the model's name, base name and fine-tune from it.
    merge_root = Path(tempfile.mkdtemp(prefix=MERGE_TEMP_PREFIX, dir=out)) if plan.merge else None
    merged_dir = merge_root / plan.name if merge_root is not None else None
    try:
        hf_dir = plan.source.path
        if merged_dir is not None:
            with step(f"[{next(number)}/{total}] merge adapter into {plan.base_dir.name}"):
                start = time.perf_counter()
                hf_dir = merging.merge_adapter(
                    plan.source.path, merged_dir, MERGE_DTYPES[args.outtype]
                )
                seconds["merge"] = round(time.perf_counter() - start, 2)
        if not args.lora_only:
            convert_and_quantize(args, plan, hf_dir, files, lambda: f"[{next(number)}/{total}]")
        if write_lora is not None:
            path = plan.outputs[-1]
            timed(
                f"[{next(number)}/{total}] adapter to LoRA GGUF", files, "LoRA F16", path,
                lambda: write_lora_step(write_lora, plan, path, flag),
            )  # fmt: skip
        if verify_gguf is not None:
            ggufs = [out / entry["file"] for entry in files if entry["type"] != "LoRA F16"]
            with step(f"[{next(number)}/{total}] verify {len(ggufs)} GGUF(s)"):
                start = time.perf_counter()
                report["verification"] = run_verification(verify_gguf, plan, ggufs)
                seconds["verify"] = round(time.perf_counter() - start, 2)
            rows = report["verification"]
            failed = [Path(str(row.get("file"))).name for row in rows if not row.get("passed")]
            if failed:
                say(f"verification failed for {', '.join(failed)} (see report.md)")
                status = 1
        if merged_dir is not None and args.keep_merged:
            keep_merged(merged_dir, out / f"{plan.name}-merged")
    finally:
        if merge_root is not None:
            shutil.rmtree(merge_root, ignore_errors=True)
    steps = [{"step": "merge", "seconds": seconds["merge"]}] if "merge" in seconds else []
    steps += [{"step": entry["type"], "seconds": entry["seconds"]} for entry in files]
    steps += [{"step": "verify", "seconds": seconds["verify"]}] if "verify" in seconds else []
    report |= {"outtype": args.outtype, "files": files, "steps": steps, "created": started}
    report["versions"] = library_versions()
    _, md_path = write_report(out, report)
    for entry in files:
        print(out / entry["file"])
    print(md_path)
    return status


def keep_merged(merged_dir: Path, kept: Path) -> None:
    """Move the merged model from its temporary folder to `kept`."""
    if kept.exists():
        shutil.rmtree(kept)
    merged_dir.rename(kept)
    kept.chmod(0o755)
    say(f"merged model kept in {kept}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return convert(args)
    except ConvertError as error:
        print(f"kodcu-convert: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or an unreadable file, named by the error
        print(f"kodcu-convert: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kodcu-convert: interrupted; unfinished files were removed", file=sys.stderr)
        return 130
