"""recognize_me.config (typed config) and recognize_me.cli (flags -> config, the validate command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celeba_fixtures import make_rows, write_tiny_celeba
from pydantic import ValidationError

from recognize_me.cli import build_parser, config_from_args, main
from recognize_me.config import PipelineConfig
from recognize_me.data.attributes import CELEBA_ATTRIBUTES, PRESETS, UNRELIABLE_ATTRIBUTES


def _config(**kwargs: object) -> PipelineConfig:
    return PipelineConfig(**{"celeba_dir": "data", **kwargs})


def _error_fields(err: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {str(e["loc"][0]) for e in err.value.errors()}


# --- PipelineConfig -----------------------------------------------------------------------------

def test_defaults() -> None:
    config = _config()
    assert config.celeba_dir == Path("data")
    assert config.image_size == (64, 64) and config.models == ["baseline_cnn"]
    assert config.attribute_names == CELEBA_ATTRIBUTES
    assert config.split_fractions == (0.8, 0.1, 0.1)


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", "five"), ("epochs", 0), ("image_size", [64]), ("image_size", [64, "big"]), ("batch_size", 1.5),
    ("crop", "circle"), ("models", ["baseline_cnn", "transformer"]), ("models", []),
    ("models", ["resnet", "resnet"]), ("learning_rate", 0), ("limit_images", 0), ("max_absent_fraction", 1.5),
    ("run_name", "../escape"), ("augment_flip", "maybe"),
])
def test_mistyped_value_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        _config(**{field: value})
    assert _error_fields(err) == {field}
    assert field in str(err.value)


def test_unknown_field_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError) as err:
        _config(epoch=3)
    assert _error_fields(err) == {"epoch"}
    assert "extra" in str(err.value).lower()


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.2), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1), (0.9, 0.1, 0.0001)])
def test_split_fractions_must_sum_to_one(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValidationError) as err:
        _config(split_fractions=fractions)
    assert _error_fields(err) == {"split_fractions"}


def test_valid_split_fractions() -> None:
    assert _config(split_fractions=[0.7, 0.2, 0.1]).split_fractions == (0.7, 0.2, 0.1)
    assert _config(split_fractions=(1.0, 0.0, 0.0)).split_fractions == (1.0, 0.0, 0.0)


@pytest.mark.parametrize("attributes", [["Male", "Sunglasses"], "all41", ["Male", "Male"], []])
def test_bad_attribute_selection(attributes: object) -> None:
    with pytest.raises(ValidationError) as err:
        _config(attributes=attributes)
    assert _error_fields(err) == {"attributes"}


def test_unknown_attribute_is_named() -> None:
    with pytest.raises(ValidationError, match="Sunglasses"):
        _config(attributes=["Male", "Sunglasses"])


def test_presets() -> None:
    assert _config(attributes="all40").attribute_names == CELEBA_ATTRIBUTES
    reliable = _config(attributes="reliable32").attribute_names
    assert len(reliable) == 32 and len(set(reliable)) == 32
    assert not set(reliable) & set(UNRELIABLE_ATTRIBUTES)
    assert set(reliable) | set(UNRELIABLE_ATTRIBUTES) == set(CELEBA_ATTRIBUTES)
    assert list(reliable) == [a for a in CELEBA_ATTRIBUTES if a in reliable]  # catalogue order
    assert PRESETS["reliable32"] == reliable
    assert _config(attributes=["Smiling", "Male"]).attribute_names == ("Smiling", "Male")


def test_needs_an_attribute_source() -> None:
    with pytest.raises(ValidationError, match="celeba_dir or attr_file"):
        PipelineConfig()
    assert PipelineConfig(attr_file="labels.csv").attr_file == Path("labels.csv")


def test_config_is_frozen_and_round_trips_through_json() -> None:
    config = _config(image_size=(32, 48), models=["resnet", "baseline_cnn"], attributes="reliable32", seed=7)
    with pytest.raises(ValidationError):
        config.seed = 8  # type: ignore[misc]
    again = PipelineConfig.model_validate(json.loads(config.to_json()))
    assert again == config


def test_data_json_holds_only_what_decides_the_data() -> None:
    base = _config()
    assert _config(run_name="x", refresh=True, n_workers=2, epochs=9, seed=1).data_json() == base.data_json()
    assert _config(attributes="reliable32").data_json() != base.data_json()
    assert _config(max_absent_fraction=0.5).data_json() != base.data_json()
    assert _config(me_dir="me", others_dir="others").data_json() == base.data_json()  # photos key their own step


# --- CLI flags -> config ------------------------------------------------------------------------

def _from_cli(*argv: str) -> PipelineConfig:
    return config_from_args(build_parser().parse_args(["validate", "--celeba", "data", *argv]))


def test_cli_flags_map_onto_the_config() -> None:
    config = _from_cli("--image-size", "32", "32", "--models", "baseline_cnn", "resnet", "--no-augment-flip",
                       "--epochs", "3", "--learning-rate", "0.01", "--crop", "face", "--limit-images", "100",
                       "--split-fractions", "0.6", "0.2", "0.2", "--no-use-official-partition", "--seed", "9")
    assert config.image_size == (32, 32)
    assert config.models == ["baseline_cnn", "resnet"]
    assert config.augment_flip is False
    assert config.use_official_partition is False
    assert (config.epochs, config.learning_rate, config.crop, config.limit_images, config.seed) == (
        3, 0.01, "face", 100, 9)
    assert config.split_fractions == (0.6, 0.2, 0.2)
    assert config.celeba_dir == Path("data")


def test_cli_unset_flags_keep_defaults() -> None:
    config = _from_cli()
    assert config == _config()
    assert _from_cli("--augment-flip").augment_flip is True


def test_cli_celeba_dir_alias() -> None:
    args = build_parser().parse_args(["validate", "--celeba-dir", "elsewhere"])
    assert config_from_args(args).celeba_dir == Path("elsewhere")


@pytest.mark.parametrize(("argv", "names"), [
    (["--attributes", "reliable32"], PRESETS["reliable32"]),
    (["--attributes", "all40"], CELEBA_ATTRIBUTES),
    (["--attributes", "Male", "Smiling"], ("Male", "Smiling")),
    (["--attributes", "Smiling"], ("Smiling",)),
])
def test_cli_attributes(argv: list[str], names: tuple[str, ...]) -> None:
    assert _from_cli(*argv).attribute_names == names


def test_cli_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValidationError, match="reliable31"):
        _from_cli("--attributes", "reliable31")


def test_cli_mistyped_flag_raises_validation_error() -> None:
    with pytest.raises(ValidationError) as err:
        _from_cli("--epochs", "five")
    assert _error_fields(err) == {"epochs"}
    with pytest.raises(ValidationError) as err:
        _from_cli("--image-size", "64")
    assert _error_fields(err) == {"image_size"}


def test_config_file_with_flag_override(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    saved = _config(celeba_dir=str(tmp_path), epochs=9, image_size=(48, 40), models=["resnet"], crop="none")
    path.write_text(saved.to_json())
    args = build_parser().parse_args(["train", "--config", str(path), "--epochs", "2", "--models", "baseline_cnn"])
    config = config_from_args(args)
    assert config.epochs == 2 and config.models == ["baseline_cnn"]  # flags win
    assert config.image_size == (48, 40) and config.crop == "none"  # the file fills the rest
    assert config.celeba_dir == tmp_path


def test_config_file_with_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"celeba_dir": "data", "colour": "blue"}))
    with pytest.raises(ValidationError) as err:
        config_from_args(build_parser().parse_args(["validate", "--config", str(path)]))
    assert _error_fields(err) == {"colour"}


def test_main_reports_invalid_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--celeba", "data", "--epochs", "five"]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err and "epochs" in err


# --- the validate command -----------------------------------------------------------------------

def test_validate_good_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_celeba(tmp_path, n=6)
    assert main(["validate", "--celeba", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "6 listed images: 6 available, 0 absent" in out
    assert "expectations passed" in out


def test_validate_reports_value_2_with_image_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_rows(6)
    values = list(rows[3][1])
    values[CELEBA_ATTRIBUTES.index("Male")] = 2
    rows[3] = (rows[3][0], values)
    write_tiny_celeba(tmp_path, rows=rows)
    assert main(["validate", "--celeba", str(tmp_path), "--attributes", "Male", "Smiling"]) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if "expect_column_values_to_be_in_set" in line]
    assert len(failing) == 1
    assert "| Male |" in failing[0] and "critical" in failing[0]
    assert "000004.jpg: 2" in failing[0]


def test_validate_unreadable_file_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "list_attr_celeba.txt").write_text("")
    assert main(["validate", "--celeba", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "empty" in err
