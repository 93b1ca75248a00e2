"""What SOURCE is: a Kodcu adapter, a plain PEFT adapter or a Hugging Face model folder.

source = identify_source(Path("runs/my-adapter"))
source.kind     # "kodcu-adapter" | "peft-adapter" | "model"
source.name     # "my-adapter": the stem of the output file names
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from converter import ConvertError

KODCU_ADAPTER = "kodcu-adapter"
PEFT_ADAPTER = "peft-adapter"
MODEL = "model"

ADAPTER_CONFIG = "adapter_config.json"
KODCU_JSON = "kodcu.json"
CONFIG = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


@dataclass
class Source:
    """The input of a conversion."""

    kind: str
    """KODCU_ADAPTER, PEFT_ADAPTER or MODEL."""
    path: Path
    """The folder."""
    name: str
    """Stem of the output names (`<name>-F16.gguf`): the folder's name."""

    @property
    def is_adapter(self) -> bool:
        return self.kind in (KODCU_ADAPTER, PEFT_ADAPTER)


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or ConvertError naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConvertError(f"{path}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise ConvertError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (safetensors first, then PyTorch files)."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(path for path in folder.glob(pattern) if path.is_file())
        if found:
            return found
    return []


def identify_source(path: Path) -> Source:
    """Say what `path` holds, or raise ConvertError saying what a SOURCE must hold."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConvertError(f"{path}: no such folder")
    if not path.is_dir():
        raise ConvertError(
            f"{path}: SOURCE must be a folder (an adapter from kodcu-train, a PEFT adapter or "
            "a Hugging Face model), not a file"
        )
    name = path.resolve().name
    if (path / ADAPTER_CONFIG).is_file():
        read_json(path / ADAPTER_CONFIG)  # a broken file is reported here, by name
        kind = KODCU_ADAPTER if (path / KODCU_JSON).is_file() else PEFT_ADAPTER
        return Source(kind, path, name)
    if (path / CONFIG).is_file():
        if not weight_files(path):
            raise ConvertError(
                f"{path}: has config.json but no weights (*.safetensors or *.bin); copy the "
                "whole model folder"
            )
        return Source(MODEL, path, name)
    raise ConvertError(
        f"{path}: neither an adapter (adapter_config.json) nor a Hugging Face model "
        "(config.json and weights); SOURCE must be one of those folders"
    )
