"""Settings: validation, the JSON file's round trip, and what loading does with bad files."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from desktop.settings import Settings, load_settings, save_settings, settings_path
from tests.samples import EVERY_FIELD_CHANGED

MAX_THREADS = (os.cpu_count() or 1) * 2

# One value outside each rule, with the field the message must name.
BAD_VALUES: list[tuple[str, object]] = [
    ("temperature", -0.1),
    ("temperature", 2.1),
    ("top_p", 0.0),
    ("top_p", 1.01),
    ("max_tokens", 0),
    ("max_tokens", 32769),
    ("repeat_penalty", 0.4),
    ("repeat_penalty", 2.5),
    ("context_size", 255),
    ("context_size", 131073),
    ("cpu_threads", 0),
    ("cpu_threads", MAX_THREADS + 1),
    ("gpu_layers", -2),
    ("gpu_layers", 1001),
    ("api_port", 0),
    ("api_port", 65536),
    ("remote_url", "ftp://example.com"),
    ("remote_url", "localhost:8080"),
    ("theme", "blue"),
    ("api_host", ""),
    ("api_host", "   "),
    ("temperature", float("nan")),
]


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_defaults_are_valid() -> None:
    settings = Settings()
    assert settings.validate() == []
    assert 1 <= settings.cpu_threads <= MAX_THREADS
    assert settings.api_host == "127.0.0.1"
    assert settings.remote_url == ""


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_each_range_check_names_the_field(name: str, value: object) -> None:
    problems = replace(Settings(), **{name: value}).validate()
    assert len(problems) == 1
    assert name in problems[0]


def test_range_messages_name_the_allowed_range() -> None:
    problems = replace(Settings(), temperature=3.0, api_port=70000, top_p=0.0).validate()
    assert any("temperature" in p and "0 to 2" in p for p in problems)
    assert any("api_port" in p and "1 to 65535" in p for p in problems)
    assert any("top_p" in p and "greater than 0" in p and "at most 1" in p for p in problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 0.0),
        ("temperature", 2.0),
        ("top_p", 1.0),
        ("max_tokens", 1),
        ("max_tokens", 32768),
        ("repeat_penalty", 0.5),
        ("context_size", 256),
        ("context_size", 131072),
        ("cpu_threads", 1),
        ("cpu_threads", MAX_THREADS),
        ("gpu_layers", -1),
        ("api_port", 65535),
        ("remote_url", "http://localhost:8080"),
        ("remote_url", "https://example.com/v1"),
        ("theme", "dark"),
    ],
)
def test_limits_are_inclusive(name: str, value: object) -> None:
    assert replace(Settings(), **{name: value}).validate() == []


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = EVERY_FIELD_CHANGED
    save_settings(settings, path)
    loaded, problems = load_settings(path)
    assert problems == []
    assert loaded == settings


def test_saved_file_is_sorted_indented_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(Settings(), path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["version"] == 1
    assert list(data) == sorted(data)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_default_path_is_in_the_data_dir() -> None:
    save_settings(Settings(theme="light"))
    assert settings_path().name == "settings.json"
    assert settings_path().parent == Path(os.environ["KODCU_DATA_DIR"])
    loaded, problems = load_settings()
    assert (loaded.theme, problems) == ("light", [])


def test_atomic_write_leaves_only_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(Settings(), path)
    save_settings(Settings(temperature=1.0), path)
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]
    assert load_settings(path)[0].temperature == 1.0


def test_invalid_settings_are_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(Settings(), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="temperature") as raised:
        save_settings(Settings(temperature=5.0, theme="blue"), path)
    assert "theme" in str(raised.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_missing_file_gives_defaults_without_problems(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    assert load_settings(path) == (Settings(), [])
    assert not path.exists()


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]"])
def test_broken_file_gives_defaults_and_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    settings, problems = load_settings(path)
    assert settings == Settings()
    assert len(problems) == 1
    assert str(path) in problems[0]
    assert "untouched" in problems[0]
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_bad_values_fall_back_per_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    write_json(
        path,
        {
            "version": 1,
            "temperature": "hot",  # wrong type
            "top_p": 0.5,  # valid: kept
            "max_tokens": 100000,  # out of range
            "context_size": 2048.0,  # a float where a whole number belongs
            "api_enabled": 1,  # not a bool
            "api_port": True,  # a bool is not a number
            "theme": "dark",  # valid: kept
            "system_prompt": ["not", "text"],
            "remote_url": "example.com",  # no scheme
            "repeat_penalty": 1,  # an int is a fine float
        },
    )
    settings, problems = load_settings(path)
    defaults = Settings()
    assert settings == replace(defaults, top_p=0.5, theme="dark", repeat_penalty=1.0)
    assert isinstance(settings.repeat_penalty, float)

    by_field = {name: [p for p in problems if p.startswith(name)] for name in asdict(defaults)}
    expected = {
        "temperature": ("'hot'", "0.2"),
        "max_tokens": ("100000", "512"),
        "context_size": ("2048.0", "4096"),
        "api_enabled": ("1", "False"),
        "api_port": ("True", "8000"),
        "system_prompt": ("['not', 'text']", "''"),
        "remote_url": ("'example.com'", "''"),
    }
    assert len(problems) == len(expected)
    for name, (bad, default) in expected.items():
        [message] = by_field[name]
        assert bad in message
        assert f"using the default {default}" in message


def test_unknown_keys_are_reported_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    write_json(path, {"version": 1, "temperature": 0.5, "font_size": 14, "x": None})
    settings, problems = load_settings(path)
    assert settings == replace(Settings(), temperature=0.5)
    assert sorted(problems) == [
        "unknown setting 'font_size' ignored",
        "unknown setting 'x' ignored",
    ]


def test_api_key_is_made_on_save_when_the_api_is_on(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(api_enabled=True)
    save_settings(settings, path)
    assert len(settings.api_key) >= 32
    assert load_settings(path)[0].api_key == settings.api_key

    # A key that exists is kept, and none is made while the API is off.
    save_settings(settings, path)
    assert load_settings(path)[0].api_key == settings.api_key
    off = Settings()
    save_settings(off, path)
    assert off.api_key == ""

    # Each new key is random, never a fixed default.
    another = Settings(api_enabled=True)
    save_settings(another, path)
    assert another.api_key != settings.api_key


def test_request_options() -> None:
    settings = Settings(temperature=0.7, top_p=0.9, max_tokens=256, repeat_penalty=1.2)
    assert settings.request_options() == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 256,
        "repeat_penalty": 1.2,
    }


def test_messages_prefix() -> None:
    assert Settings().messages_prefix() == []
    assert Settings(system_prompt="  \n").messages_prefix() == []
    assert Settings(system_prompt="Be brief.").messages_prefix() == [
        {"role": "system", "content": "Be brief."}
    ]
