"""ELPConfig: everything that defines the adapters, validated on construction.

Defaults follow docs/design.md 2.1-2.5: E-adapters (r = 256) in every layer but the top one,
L-adapters (m = 512) on every layer output, 8 static pseudo frames, GELU, trainable encoder
layer norms, adapter weights drawn from N(0, 1e-3^2).

Some fields exist for the baselines a user compares against (elp_fast.tasks.methods):
`a_layers` puts the same bottleneck after the attention block too (conventional adapters),
`l_mode="identity"` turns the L-adapters into the plain weighted sum of hidden states (with
`l_input`, over X^0..X^L as SUPERB), `train_encoder` trains the whole encoder (full fine-tuning;
the CNN feature encoder stays frozen) and `layerdrop` keeps the backbone's LayerDrop in training
(as the published code's baselines without L-adapters do).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .validation import (BOOLEAN, LayerSpec, int_at_least, number_at_least, one_of,
                         parse_layer_spec, resolve_layer_spec)

# Every supported self-supervised encoder is trained on 16 kHz audio.
SAMPLING_RATE = 16_000
ACTIVATIONS = ("gelu", "relu")
P_MODES = ("static", "conditioned")
L_MODES = ("adapter", "identity")
# Trainable parameter groups, each with its own learning rate (the paper tunes them separately).
# The same names are printed by ELPModel.print_trainable_parameters() and are the keys of
# EngineConfig.group_lr and of the recipes' per-method learning rates. Attention adapters (the
# conventional-adapter baseline) are the same bottleneck as the E-adapters and count as e_adapters.
PARAMETER_GROUPS = ("e_adapters", "l_adapters", "layer_weights", "p_adapter", "layer_norms", "encoder", "head")


class ELPConfigError(ValueError):
    """An ELPConfig field holds an invalid value (a ValueError)."""


def resolve_layers(name: str, spec: LayerSpec, num_layers: int) -> list[int]:
    """Turn a layer spec into sorted 0-based indices for a backbone with `num_layers` layers."""
    return resolve_layer_spec(f"ELPConfig.{name}", spec, num_layers, ELPConfigError)


# field -> the rule its value must meet (layer specs are parsed separately)
_RULES = {
    "e_bottleneck": int_at_least(1), "l_dim": int_at_least(1), "p_len": int_at_least(0),
    "p_bottleneck": int_at_least(1), "l_mode": one_of(*L_MODES), "p_mode": one_of(*P_MODES),
    "activation": one_of(*ACTIVATIONS), "e_activation": one_of(*ACTIVATIONS, optional=True),
    "l_activation": one_of(*ACTIVATIONS, optional=True), "l_input": BOOLEAN, "train_layer_norms": BOOLEAN,
    "train_head": BOOLEAN, "train_encoder": BOOLEAN, "layerdrop": BOOLEAN, "init_std": number_at_least(0),
    "p_init_std": number_at_least(0), "eps": number_at_least(0, strict=True),
}
LAYER_FIELDS = ("e_layers", "a_layers", "l_layers")


@dataclass(frozen=True)
class ELPConfig:
    e_bottleneck: int = 256
    e_layers: LayerSpec = "all_but_last"
    a_layers: LayerSpec = "none"     # bottlenecks after the attention block (conventional adapters)
    l_dim: int = 512
    l_layers: LayerSpec = "all"
    l_input: bool = False            # also tap X^0, the encoder input (SUPERB's L+1 weights)
    l_mode: str = "adapter"          # "identity": weighted sum of the hidden states themselves
    p_len: int = 8
    p_mode: str = "static"
    p_bottleneck: int = 64
    activation: str = "gelu"
    e_activation: str | None = None  # None: use `activation`
    l_activation: str | None = None
    train_layer_norms: bool = True
    train_head: bool = True
    train_encoder: bool = False      # full fine-tuning: every encoder parameter but the CNN trains
    layerdrop: bool = False          # training skips encoder layers with the backbone's config.layerdrop
    init_std: float = 1e-3
    p_init_std: float = 1.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in self.field_names():
            if name in LAYER_FIELDS:
                # Normalised to sorted lists so equal configs compare equal and JSON round-trips.
                object.__setattr__(self, name, parse_layer_spec(f"ELPConfig.{name}", getattr(self, name),
                                                                ELPConfigError))
            else:
                _RULES[name].check(f"ELPConfig.{name}", getattr(self, name), ELPConfigError)

    @property
    def e_act(self) -> str:
        return self.e_activation or self.activation

    @property
    def l_act(self) -> str:
        return self.l_activation or self.activation

    # -- construction helpers -------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict) -> "ELPConfig":
        if not isinstance(data, dict):
            raise ELPConfigError(f"ELPConfig.from_dict: got {type(data).__name__}; expected a dict")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ELPConfigError(
                f"ELPConfig: unknown field(s) {unknown}; allowed fields are {cls.field_names()}"
            )
        return cls(**data)

    def replace(self, **overrides: Any) -> "ELPConfig":
        merged = self.to_dict()
        merged.update(overrides)
        return ELPConfig.from_dict(merged)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.field_names()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ELPConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ELPConfigError(f"ELPConfig.from_json: not valid JSON ({exc})") from None
        return cls.from_dict(data)
