"""Kodcu's desktop app: a PySide6 chat window over a local llama.cpp engine.

    python -m desktop            (or `kodcu`)

Only `desktop.window` and `desktop.workers` import Qt; the engine, the
client and the model checks are plain Python, usable from tools and tests.
"""
