"""How much a streaming answer stalls the UI's event loop.

    QT_QPA_PLATFORM=offscreen python benchmarks/ui_stream.py        # or on a real display
    python benchmarks/ui_stream.py --rate 200 --tokens 3000

A worker thread sends a long answer with several code blocks (Python,
JavaScript, SQL, Rust, shell) as ~4-character tokens at --rate tokens/s, the way
the engine's stream arrives. Meanwhile a 1 ms timer ticks on the UI thread; the
gaps between its ticks are the event loop's stalls: what a user feels as a
frozen window. Three runs in one process:

- idle: no streaming (the timer's own floor);
- naive: the whole answer re-rendered as Markdown in one QTextBrowser on every
  token (what a simple chat view does);
- kodcu: Kodcu's ChatView (throttled, incremental, highlighted code blocks),
  after the lexer warm-up the window runs at start-up.

Targets for kodcu: p99 gap <= 16 ms, largest gap <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtCore import QEventLoop, QThread, QTimer, Signal  # noqa: E402
from PySide6.QtWidgets import QApplication, QTextBrowser  # noqa: E402

from desktop import highlight  # noqa: E402
from desktop.chat_view import ChatView  # noqa: E402

SECTION = '''Here is one way to do it, with tests.

```python
import dataclasses


@dataclasses.dataclass
class Interval:
    """A closed interval of integers."""

    start: int
    end: int

    def overlaps(self, other: "Interval") -> bool:
        return self.start <= other.end and other.start <= self.end


def merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for item in sorted(intervals, key=lambda i: i.start):
        if merged and merged[-1].overlaps(item):
            merged[-1].end = max(merged[-1].end, item.end)
        else:
            merged.append(Interval(item.start, item.end))
    return merged
```

The same idea in **JavaScript**, for the browser:

```javascript
export function merge(intervals) {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  return sorted.reduce((out, item) => {
    const last = out[out.length - 1];
    if (last && last.end >= item.start) last.end = Math.max(last.end, item.end);
    else out.push({ ...item });
    return out;
  }, []);
}
```

Store them in a table and let the database do the sorting:

```sql
CREATE TABLE intervals (id INTEGER PRIMARY KEY, start_at INTEGER, end_at INTEGER);
SELECT start_at, MAX(end_at) FROM intervals GROUP BY start_at ORDER BY start_at;
```

In Rust, with ownership made explicit:

```rust
fn merge(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}
```

Run the tests with `pytest -q`:

```bash
python -m pytest -q tests/test_intervals.py
```

'''


def answer_tokens(count: int) -> list[str]:
    text = SECTION * (count * 4 // len(SECTION) + 1)
    return [text[i : i + 4] for i in range(0, count * 4, 4)]


class TokenSource(QThread):
    """Emits tokens at a fixed rate from another thread, like the engine's stream."""

    token = Signal(str)

    def __init__(self, tokens: list[str], rate: float) -> None:
        super().__init__()
        self.tokens, self.rate = tokens, rate

    def run(self) -> None:
        start = time.perf_counter()
        for i, token in enumerate(self.tokens):
            delay = start + i / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.token.emit(token)


def measure(
    app: QApplication,
    tokens: list[str],
    rate: float,
    on_token: Callable[[str], None] | None,
    duration_s: float,
) -> list[float]:
    """Gaps (ms) between 1 ms timer ticks while `tokens` stream into `on_token`."""
    ticks: list[float] = []
    timer = QTimer(interval=1)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    timer.start()
    if on_token is not None:
        source = TokenSource(tokens, rate)
        source.token.connect(on_token)
        source.finished.connect(loop.quit)
        source.start()
    else:
        QTimer.singleShot(int(duration_s * 1000), loop.quit)
    loop.exec()
    app.processEvents()
    timer.stop()
    if on_token is not None:
        source.wait()
    return [(b - a) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="tokens per second")
    parser.add_argument("--tokens", type=int, default=1500, help="answer length in tokens")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv)
    tokens = answer_tokens(args.tokens)
    highlight.warm_up()  # as the window does at start-up, while the model loads

    naive = QTextBrowser()
    naive.resize(900, 700)
    naive.show()
    received: list[str] = []

    def naive_token(token: str) -> None:
        received.append(token)
        naive.setMarkdown("".join(received))  # all of it, every token
        naive.verticalScrollBar().setValue(naive.verticalScrollBar().maximum())

    chat = ChatView()
    chat.resize(900, 700)
    chat.show()
    chat.add_message("user", "Merge overlapping intervals in several languages.")
    answer = chat.add_message("assistant")

    runs = {
        "idle": measure(app, tokens, args.rate, None, duration_s=2.0),
        "naive": measure(app, tokens, args.rate, naive_token, 0),
        "kodcu": measure(app, tokens, args.rate, answer.append, 0),
    }
    answer.end()
    app.processEvents()

    print(
        f"{len(tokens)} tokens at {args.rate:.0f} tokens/s, platform "
        f"{app.platformName()}; gaps between 1 ms timer ticks on the UI thread\n"
    )
    header = ("view", "ticks", "median ms", "p99 ms", "max ms")
    rows = [
        (
            name,
            str(len(gaps)),
            f"{statistics.median(gaps):.2f}",
            f"{percentile(gaps, 0.99):.2f}",
            f"{max(gaps):.2f}",
        )
        for name, gaps in runs.items()
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    gaps = runs["kodcu"]
    p99, worst = percentile(gaps, 0.99), max(gaps)
    ok = p99 <= 16 and worst <= 50
    print(f"\nkodcu: p99 {p99:.1f} ms (target <= 16), max {worst:.1f} ms (target <= 50): "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip
    blocks = len(answer.block_views())
    print(f"kodcu rendered {blocks} blocks; answer length {len(answer.text())} characters")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
