"""Registry and ``depdet models`` CLI: names, options, errors, the table."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from depdet.cli import app
from depdet.errors import ConfigError
from depdet.models import create_model, get_entry, list_models

DVLOG = {"visual": 136, "audio": 25}
ZOO = (
    "bilstm_audio",
    "bilstm_visual",
    "detector",
    "fusion_add",
    "fusion_concat",
    "fusion_mul",
    "jamfn",
    "lr",
    "mimml",
    "rf",
    "svm",
    "tamfn",
    "tfn",
)


def test_zoo_models_are_registered_with_metadata():
    names = list_models()
    assert set(ZOO) <= set(names)
    for n in names:
        e = get_entry(n)
        assert e.kind in ("torch", "sklearn"), n
        assert e.paper and e.inputs, n
    assert {n for n in ZOO if get_entry(n).kind == "sklearn"} == {"lr", "svm", "rf"}


def test_list_models_filter():
    assert list_models("fusion_*") == ["fusion_add", "fusion_concat", "fusion_mul"]
    assert list_models("bilstm*") == ["bilstm_audio", "bilstm_visual"]
    assert list_models("no-such-*") == []


def test_unknown_model_name_is_config_error():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("nope", DVLOG)
    assert "\n" not in str(ConfigError("x", hint="y"))


@pytest.mark.parametrize("name", list_models())
def test_unknown_option_is_config_error(name):
    """Every registered model (zoo and later families) rejects unknown options."""
    with pytest.raises(ConfigError, match="unknown option"):
        create_model(name, DVLOG, not_an_option=3)


@pytest.mark.parametrize(
    "name,cfg",
    [
        ("fusion_concat", {"op": "add"}),  # the op is fixed by the registered name
        ("bilstm_audio", {"modality": "visual"}),
        ("lr", {"estimator": "rf"}),
    ],
)
def test_fixed_options_are_rejected(name, cfg):
    with pytest.raises(ConfigError, match="unknown option"):
        create_model(name, DVLOG, **cfg)


@pytest.mark.parametrize(
    "name,cfg",
    [
        ("jamfn", {"jaf": "global"}),
        ("jamfn", {"kernels": (1, 2)}),
        ("jamfn", {"hidden": 0}),
        ("detector", {"d": 30, "heads": 4}),
        ("detector", {"dropout": 1.5}),
        ("tamfn", {"num_layers": -1}),
        ("mimml", {"temperature": 0.0}),
        ("mimml", {"lambda_mi": -1.0}),
        ("tfn", {"d": "big"}),
        ("svm", {"kernel": "cubic"}),
        ("lr", {"C": 0}),
    ],
)
def test_invalid_option_values_are_config_errors(name, cfg):
    with pytest.raises(ConfigError):
        create_model(name, DVLOG, **cfg)


def test_modality_requirements_are_config_errors():
    with pytest.raises(ConfigError, match="needs the 'audio' modality"):
        create_model("bilstm_audio", {"visual": 136})
    with pytest.raises(ConfigError, match="exactly 2 modalities"):
        create_model("detector", {"visual": 136})
    with pytest.raises(ConfigError, match="exactly 2 modalities"):
        create_model("tamfn", {"visual": 136, "audio": 25, "text": 8})


def test_none_options_fall_back_to_defaults():
    torch.manual_seed(0)
    m = create_model("fusion_add", DVLOG, hidden=None, d=8)
    assert m.encoders["visual"].hidden == 64


# ------------------------------------------------------------------------------ CLI

runner = CliRunner()


def test_models_cli_table():
    res = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for n in ZOO:
        assert n in res.output
    assert "17,261,824" in res.output  # JAMFN (Eq. 12 default) for D-Vlog dims (see test_models_zoo for the derivation)
    assert "n/a" in res.output  # sklearn entries
    assert "visual=136, audio=25" in res.output


def test_models_cli_dims_and_filter():
    res = runner.invoke(app, ["models", "--dims", "visual=136,audio=128", "--filter", "jamfn"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    from depdet.models.jamfn import jamfn_param_count

    assert f"{jamfn_param_count({'visual': 136, 'audio': 128}):,}" in res.output
    assert "tamfn" not in res.output
    res = runner.invoke(app, ["models", "--filter", "*mamba*"], env={"COLUMNS": "200"})
    names = list_models("*mamba*")
    assert res.exit_code == (0 if names else 1)
    for n in names:
        assert n in res.output


def test_models_cli_bad_dims_is_one_line_error(capsys):
    from depdet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["models", "--dims", "visual:136"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "bad --dims entry" in err and len(err.splitlines()) == 1


def test_models_cli_unbuildable_dims_say_na():
    res = runner.invoke(app, ["models", "--dims", "visual=136", "--filter", "bilstm*"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    audio_row = next(line for line in res.output.splitlines() if "bilstm_audio" in line)
    visual_row = next(line for line in res.output.splitlines() if "bilstm_visual" in line)
    assert "n/a" in audio_row and "n/a" not in visual_row
