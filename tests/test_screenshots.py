"""Screenshots of the real window under Xvfb, light and dark, for people to look at.

The PNGs land in test-output/screenshots/. The test needs Xvfb and Qt's X11
libraries; CI installs them (.ci/run). Elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from desktop.display_check import missing_xcb_libraries

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "test-output" / "screenshots"

ANSWER = """Three ways to find duplicates.

```python
from collections import Counter


def duplicates(items: list[str]) -> list[str]:
    \"\"\"Items that appear more than once, in first-seen order.\"\"\"
    counts = Counter(items)
    return [item for item in counts if counts[item] > 1]
```

In the browser:

```javascript
const duplicates = (items) =>
  [...new Set(items.filter((x, i) => items.indexOf(x) !== i))];
```

And in the database:

```sql
SELECT email, COUNT(*) AS n
FROM users
GROUP BY email
HAVING COUNT(*) > 1;
```
"""

DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PySide6.QtWidgets import QApplication
    from desktop.store import ConversationStore
    from desktop.window import MainWindow

    model, database, out = (Path(arg) for arg in sys.argv[1:4])
    answer = sys.argv[4]
    store = ConversationStore(database)
    store.create_conversation("Reverse a linked list")
    conversation = store.create_conversation("Find duplicates in Python, JS and SQL")
    store.add_message(conversation.id, "user", "How do I find duplicates in a list?")
    store.add_message(conversation.id, "assistant", answer)
    app = QApplication([])
    window = MainWindow(model, store=store)
    window.resize(1100, 760)
    window.show()
    for theme in ("light", "dark"):
        window.apply_theme(theme)
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(out / f"main-window-{theme}.png"))
    window.close()
    """
)


def xvfb_ready() -> str | None:
    """Why the screenshot test cannot run here, or None."""
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed"
    missing = missing_xcb_libraries(None)
    return f"Qt's X11 libraries are missing: {missing}" if missing else None


@pytest.fixture()
def display():
    problem = xvfb_ready()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the screenshot test's needs: {problem}")
        pytest.skip(problem)
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 10
    while not socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f":{number}"
    server.terminate()
    server.wait(10)


def brightness(path: Path) -> float:
    image = QImage(str(path))
    step = 8
    values = [
        image.pixelColor(x, y).lightness()
        for x in range(0, image.width(), step)
        for y in range(0, image.height(), step)
    ]
    return sum(values) / len(values)


def test_main_window_screenshots_light_and_dark(display: str, default_model, tmp_path) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "PYTHONPATH": str(REPO),
        "KODCU_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(default_model), str(tmp_path / "c.sqlite3"),
         str(OUTPUT), ANSWER],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    light, dark = OUTPUT / "main-window-light.png", OUTPUT / "main-window-dark.png"
    for shot in (light, dark):
        image = QImage(str(shot))
        assert image.width() == 1100 and image.height() == 760, shot
    assert brightness(dark) < 100 < brightness(light)
