"""`python -m trainer CONFIG.yaml [key=value ...]`: the same as `kodcu-train`."""

from __future__ import annotations

import sys

from trainer.cli import main

sys.exit(main())
