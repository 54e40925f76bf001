"""Each model is built from a config dataclass whose defaults are stated once (issue 23)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from depdet.errors import ConfigError
from depdet.models.registry import (
    create_model,
    get_entry,
    list_models,
    model_defaults,
    model_options,
    register_model,
)

DVLOG = {"visual": 136, "audio": 25}


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_its_options_from_one_frozen_config_dataclass(name):
    entry = get_entry(name)
    cfg_cls = entry.config
    assert dataclasses.is_dataclass(cfg_cls) and cfg_cls.__dataclass_params__.frozen
    fields = {f.name: f.default for f in dataclasses.fields(cfg_cls)}
    assert all(d is not dataclasses.MISSING for d in fields.values())  # every option has its default there
    assert model_defaults(name) == {k: d for k, d in fields.items() if k not in entry.fixed}
    assert {k: d for k, (d, _) in model_options(name).items()} == model_defaults(name)
    # the entry point and the model class restate no default: they take **cfg / a config object
    params = inspect.signature(entry.fn).parameters
    assert [p.kind for p in params.values()] == [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_KEYWORD]
    with torch.device("meta"):
        model = create_model(name, DVLOG)
    assert list(inspect.signature(type(model).__init__).parameters) == ["self", "input_dims", "cfg"]


def test_fixed_and_unknown_options_are_refused_with_the_valid_list():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['modality'\]") as e:
        create_model("bilstm_audio", DVLOG, modality="visual")
    assert e.value.hint == "valid: hidden, num_layers, dropout, pool"
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['width'\] for model 'depmamba'"):
        create_model("depmamba", DVLOG, width=3)
    assert create_model("depmamba", DVLOG, d_model=16, d_state=None).proj["visual"].out_channels == 16  # None = default


def test_model_built_without_config_equals_model_built_from_default_config():
    from depdet.models.depmamba import DepMamba, DepMambaConfig

    torch.manual_seed(0)
    a = DepMamba(DVLOG)
    torch.manual_seed(0)
    b = DepMamba(DVLOG, DepMambaConfig())
    torch.manual_seed(0)
    c = create_model("depmamba", DVLOG)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, c.state_dict()[k])


def test_resolve_preset_fills_model_defaults_from_the_config_dataclass():
    from depdet.pipeline.training.config import resolve_preset

    r = resolve_preset("depmamba-lmvd")
    assert r["model_config"] == {**model_defaults("depmamba"), "d_state": 16, "padding": "original"}
    r = resolve_preset("jamfn-dvlog")
    assert r["model_config"]["kernels"] == list(model_defaults("jamfn")["kernels"])  # tuples as lists (JSON)


def test_register_model_needs_a_dataclass_and_fixed_fields_that_exist():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        a: int = 1

    with pytest.raises(TypeError, match="must be a dataclass"):
        register_model("_bad1", paper="-", config=dict)
    with pytest.raises(TypeError, match="not fields of Cfg"):
        register_model("_bad2", paper="-", config=Cfg, fixed=("b",))
