"""The frozen app's entry point: PyInstaller runs this file as __main__.

    kodcu [--model FILE.gguf] [--smoke PROMPT]     the app, as `kodcu` from pip
    kodcu --engine-child                           the engine's child process
    kodcu --metadata-child MODEL.gguf              the model reader's child process
    kodcu --sandbox-child supervise|run ...        the Run button's child processes

A frozen app has no `python -m` to start its child processes with, so each child
re-enters this executable with a flag. The sandbox's children are dispatched first,
before the app imports anything: they run the user's code and must start light.
"""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--sandbox-child"]:
        from kodcu import sandbox_child

        sandbox_child.main(argv[1:])
        return 0
    import multiprocessing

    # A library that starts a multiprocessing child would otherwise start the whole app.
    multiprocessing.freeze_support()
    from desktop.cli import main as kodcu

    return kodcu(argv)


if __name__ == "__main__":
    sys.exit(main())
