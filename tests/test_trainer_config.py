"""The trainer's YAML config: shipped configs load, bad values name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import main
from trainer.config import ConfigError, TrainConfig, from_dict, load_config, to_dict

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "trainer" / "configs").glob("*.yaml"))

MINIMAL = """\
model:
  base: some/model
data:
  sources:
    - path: train.jsonl
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_the_shipped_configs_are_all_there() -> None:
    names = {path.stem for path in CONFIGS}
    assert {"codellama-7b", "mistral-7b", "falcon-7b", "qwen2.5-coder-1.5b", "gemma3-270m"} <= names
    assert "kodcu-coder-270m" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    config = load_config(path)
    assert config.model.base
    if path.stem == "kodcu-coder-270m":  # what Kodcu ships: data whose licence allows it
        assert {source.licence for source in config.data.sources} == {"CC-BY-4.0"}
        assert all(source.task_ids == "601-974" for source in config.data.sources)
    else:
        assert config.data.sources[0].path == "sahil280114/codealpaca"
    assert config.data.template == "alpaca"
    assert config.lora.target_modules == "all-linear"
    assert config.hygiene.decontaminate
    # Every trainer field is written out, so the file documents every setting.
    text = path.read_text()
    for section, values in to_dict(config).items():
        assert f"\n{section}:\n" in text
        if section == "hygiene":  # its fine limits keep their defaults unless a user needs them
            continue
        for key in values:
            assert f"  {key}:" in text, f"{path.name}: {section}.{key} is not written out"


@pytest.mark.parametrize("name", ["codellama-7b", "mistral-7b", "falcon-7b"])
def test_the_7b_configs_use_qlora_as_the_original_system(name: str) -> None:
    config = load_config(next(path for path in CONFIGS if path.stem == name))
    assert config.model.quantization == "4bit"
    assert (config.lora.r, config.lora.alpha, config.training.learning_rate) == (16, 32, 2e-4)
    assert 1024 <= config.data.max_length <= 2048


def test_a_minimal_config_gets_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.model.base == "some/model"
    assert config.data.sources[0].format == "alpaca"
    assert config.training == TrainConfig().training
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_a_wrong_type_names_the_file_and_the_dotted_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "training:\n  learning_rate: fast\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: training.learning_rate: expected a number, got 'fast'"


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "lora:\n  rank: 8\n")
    with pytest.raises(ConfigError, match=r"run.yaml: lora.rank: unknown key .*r, alpha"):
        load_config(path)


def test_errors_inside_a_data_source_name_its_index(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    - path: b.jsonl\n      limit: many\n")
    with pytest.raises(ConfigError, match="data.sources.1.limit: expected an integer, got 'many'"):
        load_config(path)


def test_a_choice_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("some/model", "m\n  quantization: 8bit"))
    with pytest.raises(ConfigError, match="model.quantization: expected one of 'none', '4bit'"):
        load_config(path)


def test_required_fields_and_ranges_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.base: is required"):
        load_config(write(tmp_path, "data:\n  sources: [{path: a.jsonl}]\n"))
    with pytest.raises(ConfigError, match="data.sources: is required"):
        load_config(write(tmp_path, "model:\n  base: m\n"))
    with pytest.raises(ConfigError, match="data.validation_fraction: must be"):
        load_config(write(tmp_path, MINIMAL + "  validation_fraction: 1.5\n"))


def test_yaml_1_1_exponents_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # PyYAML reads `2e-4` as a string; users write it that way all the time.
    config = load_config(write(tmp_path, MINIMAL + "training:\n  learning_rate: 2e-4\n"))
    assert config.training.learning_rate == 2e-4


def test_dotted_overrides_are_parsed_as_yaml_scalars(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(
        path,
        ["training.max_steps=20", "lora.r=8", "data.packing=true", "data.sources.0.limit=5"],
    )
    assert config.training.max_steps == 20
    assert config.lora.r == 8
    assert config.data.packing is True
    assert config.data.sources[0].limit == 5


def test_a_bad_override_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"override 'lora.r=big': lora.r: expected an integer"):
        load_config(path, ["lora.r=big"])
    with pytest.raises(ConfigError, match=r"training.max_stepz: unknown key"):
        load_config(path, ["training.max_stepz=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["training.max_steps"])
    with pytest.raises(ConfigError, match="data.sources.3: no list item 3"):
        load_config(path, ["data.sources.3.limit=1"])


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing.yaml: cannot read the config"):
        load_config(tmp_path / "nothing.yaml")
    with pytest.raises(ConfigError, match="run.yaml: not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_the_cli_reports_a_config_error_in_one_line_with_status_2(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, MINIMAL + "training:\n  learning_rate: fast\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"kodcu-train: error: {path}: training.learning_rate: expected a number, got 'fast'\n"
    )
