"""Shared pieces of Kodcu that every tool may import without heavy dependencies.

Nothing in this package imports Qt, torch or llama_cpp: the desktop, trainer,
converter and evaluation tools all stand on it.
"""

__version__ = "0.1.0"
