"""`kodcu-train`: LoRA-fine-tune a code model on instruction data.

    kodcu-train trainer/configs/qwen2.5-coder-1.5b.yaml
    kodcu-train my.yaml training.max_steps=20 lora.r=8     # dotted overrides
    kodcu-train my.yaml --dry-run                          # data summary and first example
    kodcu-train my.yaml --resume                           # continue from the last checkpoint
    torchrun --nproc_per_node 4 -m trainer my.yaml          # several GPUs (DDP)

Errors in the config or the data print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainer.config import TrainConfig

EXAMPLES = """\
examples:
  kodcu-train trainer/configs/qwen2.5-coder-1.5b.yaml
  kodcu-train my.yaml training.max_steps=20 lora.r=8 data.packing=true
  kodcu-train my.yaml --dry-run
  kodcu-train my.yaml --resume

The adapter, kodcu.json, loss.png, checkpoints/ and runs/ (TensorBoard) go to
training.output_dir. Relative paths in the config are relative to the current
directory.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-train",
        description="LoRA-fine-tune a code LLM on Alpaca-style instruction data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML config (see trainer/configs/)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override a config field, e.g. lora.r=8"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in output_dir"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="load, clean and tokenize the data, print the summary and the first example, "
        "and stop before training",
    )
    return parser


def dry_run(config: TrainConfig) -> None:
    """Everything before training, then the first example with its no-loss part marked."""
    from trainer.features import marked_example
    from trainer.train import load_tokenizer, prepare_data

    tokenizer = load_tokenizer(config)
    data = prepare_data(config, tokenizer)
    if data.train_encoded:
        print("\nfirst training example ([[...]] carries no loss):")
        print(marked_example(tokenizer, data.train_encoded[0]))
    print("\ndry run: nothing trained")


def main(argv: list[str] | None = None) -> int:
    # Intermixed: overrides may come after --dry-run or --resume.
    args = build_parser().parse_intermixed_args(argv)
    # Heavy imports only after --help has had its chance.
    from trainer.config import ConfigError, load_config
    from trainer.data import DataError
    from trainer.features import FeatureError
    from trainer.output import OutputDirError
    from trainer.train import TrainError, run

    try:
        config = load_config(args.config, args.overrides)
        if args.dry_run:
            dry_run(config)
            return 0
        output_dir = run(config, resume=args.resume)
    except (ConfigError, DataError, FeatureError, OutputDirError, TrainError) as error:
        # One line, even when a library's message spans several.
        print(f"kodcu-train: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kodcu-train: interrupted", file=sys.stderr)
        return 130
    return 0 if output_dir is not None else 130


if __name__ == "__main__":
    sys.exit(main())
