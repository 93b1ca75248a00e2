"""`python -m converter SOURCE --out DIR [...]`: the same as `kodcu-convert`."""

from __future__ import annotations

import sys

from converter.cli import main

sys.exit(main())
