"""The app's settings: one JSON file in the user's data directory.

    from desktop.settings import Settings, load_settings, save_settings

    settings, problems = load_settings()        # data_dir() / "settings.json"
    for problem in problems:                     # bad values fell back to their defaults
        print(problem)
    settings.temperature = 0.7
    save_settings(settings)                      # validates, then writes atomically
    stream_options = settings.request_options()  # temperature, top_p, max_tokens, ...
    messages = settings.messages_prefix() + [{"role": "user", "content": "Hi"}]

Loading never fails and never changes the file: a missing file gives the defaults,
a broken one gives the defaults and a problem message, and a bad value falls back
to that field's default on its own, so one typo does not reset everything else.

Plain Python, no Qt: the command-line tools read the same settings.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import secrets
import tempfile
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from desktop.client import DEFAULT_MAX_TOKENS
from desktop.engine import EngineConfig, RemoteEndpoint
from kodcu.llama import default_threads
from kodcu.paths import data_dir

SETTINGS_FILE = "settings.json"
# Written into the file so that a later format can tell old files apart.
SETTINGS_VERSION = 1
THEMES = ("system", "light", "dark")

# Inclusive ranges of the numeric settings (top_p also excludes 0, see _check).
# cpu_threads is missing: its upper bound depends on the machine, see allowed_range().
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "max_tokens": (1, 32768),
    "repeat_penalty": (0.5, 2),
    "context_size": (256, 131072),
    "gpu_layers": (-1, 1000),
    "api_port": (1, 65535),
}


@dataclass
class Settings:
    """Everything the user can change. The defaults fit a laptop CPU."""

    # -- generation --------------------------------------------------------------------
    system_prompt: str = ""
    """Instructions sent before every conversation; empty sends none."""
    temperature: float = 0.2
    """Randomness of the answer, 0 to 2; low values suit code."""
    top_p: float = 0.95
    """Nucleus sampling: pick from the likeliest tokens that make up this probability."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """Longest answer, in tokens."""
    repeat_penalty: float = 1.1
    """Above 1 discourages repeating the same tokens; 1 turns it off."""

    # -- engine (a change restarts it) ---------------------------------------------------
    context_size: int = 4096
    """Context length in tokens, prompt and answer together."""
    cpu_threads: int = field(default_factory=default_threads)
    """CPU threads for prompt processing and generation."""
    gpu_layers: int = 0
    """Layers to offload to a GPU (-1: all); 0 on a CPU-only build."""

    # -- local API for IDE plugins -------------------------------------------------------
    api_enabled: bool = False
    """Serve the OpenAI-compatible API to other programs on this machine."""
    api_host: str = "127.0.0.1"
    """Address the API binds; keep the loopback address unless others must reach it."""
    api_port: int = 8000
    """TCP port of the API."""
    api_key: str = ""
    """Key that API requests must carry; empty: a random one is made on the first save."""

    # -- remote engine -------------------------------------------------------------------
    remote_url: str = ""
    """Base URL of an OpenAI-compatible server to use instead; empty: the local engine."""
    remote_api_key: str = ""
    """Key sent to the remote server, if it needs one."""

    # -- appearance ----------------------------------------------------------------------
    theme: str = "system"
    """Colour scheme: "system", "light" or "dark"."""

    def api_exposure(self) -> str | None:
        """A warning when the local API listens beyond this machine: others can reach it,
        and the key and every prompt travel as plain HTTP. None on a loopback address."""
        if not self.api_enabled or is_loopback(self.api_host):
            return None
        return (
            f"The local API listens on {self.api_host}: other machines can reach it, and "
            "its key and every prompt and answer travel unencrypted (plain HTTP)."
        )

    def validate(self) -> list[str]:
        """One message per bad field, naming it and what it allows; empty when all is well."""
        problems = []
        for name in _FIELD_TYPES:
            problem = _check(name, getattr(self, name))
            if problem is not None:
                problems.append(problem)
        return problems

    def request_options(self) -> dict[str, float | int]:
        """The sampling fields of a chat-completion request."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
        }

    def messages_prefix(self) -> list[dict[str, str]]:
        """The system message that opens every conversation, if there is one."""
        # A prompt of only spaces or newlines would still cost tokens and say nothing.
        if not self.system_prompt.strip():
            return []
        return [{"role": "system", "content": self.system_prompt}]


# Resolved once: with postponed annotations, Field.type is only a string.
_FIELD_TYPES: dict[str, type] = {
    f.name: typing.get_type_hints(Settings)[f.name] for f in fields(Settings)
}


def settings_path() -> Path:
    """Where the settings live unless a caller names another file."""
    return data_dir() / SETTINGS_FILE


def allowed_range(name: str) -> tuple[float, float]:
    """Lowest and highest value of a numeric setting (top_p must also be above 0)."""
    if name == "cpu_threads":
        # More threads than logical CPUs only slows llama.cpp down; twice is a generous cap.
        return (1, (os.cpu_count() or 1) * 2)
    return _RANGES[name]


def _check(name: str, value: object) -> str | None:
    """What is wrong with one value of one setting, or None when it is allowed."""
    kind = _FIELD_TYPES[name]
    # bool is a subclass of int, so `true` must not pass as a number (nor 1 as a bool).
    if kind is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, not {value!r}"
    if kind is str:
        if not isinstance(value, str):
            return f"{name} must be text, not {value!r}"
        return _check_text(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        whole = "a whole number" if kind is int else "a number"
        return f"{name} must be {whole}, not {value!r}"
    if kind is int and not isinstance(value, int):
        return f"{name} must be a whole number, not {value!r}"
    low, high = allowed_range(name)
    if name == "top_p" and not 0 < value <= 1:
        return f"top_p must be greater than 0 and at most 1, not {value!r}"
    # NaN fails every comparison, so it is reported here too.
    if math.isnan(value) or not low <= value <= high:
        return f"{name} must be from {low} to {high}, not {value!r}"
    return None


def _check_text(name: str, value: str) -> str | None:
    if name == "api_host" and not value.strip():
        return "api_host must not be empty (use 127.0.0.1 for this machine only)"
    if name == "remote_url" and value and not value.lower().startswith(("http://", "https://")):
        return f"remote_url must be empty or start with http:// or https://, not {value!r}"
    if name == "theme" and value not in THEMES:
        allowed = ", ".join(repr(theme) for theme in THEMES)
        return f"theme must be one of {allowed}, not {value!r}"
    return None


def load_settings(path: Path | None = None) -> tuple[Settings, list[str]]:
    """The saved settings and what was wrong with the file; never raises, never writes."""
    path = path if path is not None else settings_path()
    defaults = Settings()
    untouched = "using the defaults; the file was left untouched"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return defaults, []
    except (OSError, UnicodeError) as error:
        return defaults, [f"Could not read the settings file {path} ({error}); {untouched}."]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return defaults, [f"The settings file {path} is not valid JSON ({error}); {untouched}."]
    if not isinstance(data, dict):
        return defaults, [f"The settings file {path} does not hold a JSON object; {untouched}."]

    values: dict[str, object] = {}
    problems = []
    for key, value in data.items():
        if key == "version":
            continue
        if key not in _FIELD_TYPES:
            problems.append(f"unknown setting {key!r} ignored")
            continue
        problem = _check(key, value)
        if problem is not None:
            problems.append(f"{problem}; using the default {getattr(defaults, key)!r}")
            continue
        # JSON has one number type: a float setting written as 1 must still be a float.
        values[key] = float(value) if _FIELD_TYPES[key] is float else value  # type: ignore[arg-type]
    return replace(defaults, **values), problems


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Validate, then write the settings atomically; raise ValueError if any is invalid.

    When the local API is on and has no key, a random one is made and stored in
    `settings.api_key`, so the caller can show it to the user.
    """
    problems = settings.validate()
    if problems:
        raise ValueError("Invalid settings: " + "; ".join(problems))
    if settings.api_enabled and not settings.api_key:
        settings.api_key = secrets.token_urlsafe(24)

    path = path if path is not None else settings_path()
    data = {"version": SETTINGS_VERSION, **asdict(settings)}
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file sits in the same folder so that os.replace is a rename on one
    # file system: a crash leaves either the old file or the new one, never half of one.
    # mkstemp also makes it readable by the owner only, which the API keys deserve.
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def engine_setup(
    settings: Settings,
    model: Path,
    n_threads: int | None = None,
    api_key: str | None = None,
    adapter: Path | None = None,
) -> tuple[EngineConfig, RemoteEndpoint | None]:
    """The engine the settings ask for: the local one's config, and a remote endpoint if set.

    `n_threads` (from the command line) wins over the settings; `api_key` keeps a
    running engine's random key, unless the local API has a key of its own.
    """
    config = EngineConfig(
        model=model,
        n_ctx=settings.context_size,
        n_threads=n_threads or settings.cpu_threads,
        n_gpu_layers=settings.gpu_layers,
        lora_path=adapter,
    )
    if api_key:
        config.api_key = api_key
    if settings.api_enabled:  # the local API for IDE plugins: a fixed address and key
        config.host, config.port = settings.api_host, settings.api_port
        config.api_key = settings.api_key or config.api_key
    remote = None
    if settings.remote_url:
        remote = RemoteEndpoint(settings.remote_url, settings.remote_api_key, settings.context_size)
    return config, remote


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
