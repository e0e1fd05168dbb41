import json

import pytest

from elp_fast import ELPConfig, ELPConfigError


def test_defaults_follow_design():
    cfg = ELPConfig()
    assert (cfg.e_bottleneck, cfg.e_layers, cfg.l_dim, cfg.l_layers) == (256, "all_but_last", 512, "all")
    assert (cfg.p_len, cfg.p_mode, cfg.activation, cfg.train_layer_norms) == (8, "static", "gelu", True)
    assert cfg.init_std == 1e-3 and cfg.eps == 1e-5
    assert cfg.e_act == "gelu" and ELPConfig(l_activation="relu").l_act == "relu"


def test_json_round_trip():
    cfg = ELPConfig(e_bottleneck=64, e_layers=[3, 1, 2], l_layers="all_but_last", p_len=0,
                    p_mode="conditioned", activation="relu", e_activation="gelu", init_std=0.01)
    again = ELPConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.e_layers == [1, 2, 3]  # normalised, so equal configs compare equal
    assert json.loads(cfg.to_json())["e_layers"] == [1, 2, 3]


def test_replace_validates():
    assert ELPConfig().replace(l_dim=128).l_dim == 128
    with pytest.raises(ELPConfigError, match=r"ELPConfig.l_dim: got 0; expected an integer >= 1"):
        ELPConfig().replace(l_dim=0)


BAD = [
    (dict(e_bottleneck=0), r"e_bottleneck: got 0; expected an integer >= 1"),
    (dict(e_bottleneck=-4), r"e_bottleneck: got -4; expected an integer >= 1"),
    (dict(e_bottleneck=2.5), r"e_bottleneck: got 2.5; expected an integer >= 1"),
    (dict(e_bottleneck=True), r"e_bottleneck: got True; expected an integer >= 1"),
    (dict(l_dim="512"), r"l_dim: got '512'; expected an integer >= 1"),
    (dict(p_len=-1), r"p_len: got -1; expected an integer >= 0"),
    (dict(activation="swish"), r"activation: got 'swish'; expected 'gelu' or 'relu'"),
    (dict(e_activation="tanh"), r"e_activation: got 'tanh'; expected 'gelu' or 'relu' \(or None\)"),
    (dict(p_mode="dynamic"), r"p_mode: got 'dynamic'; expected 'static' or 'conditioned'"),
    (dict(e_layers="every"), r"e_layers: got 'every'; expected 'all' or 'all_but_last' or 'none'"),
    (dict(l_layers=[0, -1]), r"l_layers: got \[0, -1\]; expected 'all' or .* list of 0-based layer indices"),
    (dict(l_layers=[1, 1]), r"l_layers: got \[1, 1\]; expected a list of distinct layer indices"),
    (dict(train_layer_norms=1), r"train_layer_norms: got 1; expected True or False"),
    (dict(eps=0.0), r"eps: got 0.0; expected a finite number > 0"),
    (dict(init_std=float("nan")), r"init_std: got nan; expected a finite number >= 0"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[next(iter(k)) + "=" + repr(next(iter(k.values()))) for k, _ in BAD])
def test_bad_values_name_field_value_and_allowed(kwargs, message):
    with pytest.raises(ELPConfigError, match=message) as info:
        ELPConfig(**kwargs)
    assert isinstance(info.value, ValueError)


def test_unknown_keys_are_rejected():
    with pytest.raises(ELPConfigError, match=r"unknown field\(s\) \['bottleneck'\]; allowed fields are \["):
        ELPConfig.from_dict({"bottleneck": 64})
    with pytest.raises(ELPConfigError, match="not valid JSON"):
        ELPConfig.from_json("{e_bottleneck: 1")
