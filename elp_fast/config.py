"""ELPConfig: everything that defines the adapters, validated on construction.

Defaults follow DESIGN.md 2.1-2.5: E-adapters (r = 256) in every layer but the top one,
L-adapters (m = 512) on every layer output, 8 static pseudo frames, GELU, trainable encoder
layer norms, adapter weights drawn from N(0, 1e-3^2).

Three fields exist for the baselines a user compares against (elp_fast.tasks.methods):
`a_layers` puts the same bottleneck after the attention block too (conventional adapters),
`l_mode="identity"` turns the L-adapters into the plain weighted sum of hidden states, and
`train_encoder` trains the whole encoder (full fine-tuning; the CNN feature encoder stays frozen).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Union

LayerSpec = Union[str, list]

# Every supported self-supervised encoder is trained on 16 kHz audio.
SAMPLING_RATE = 16_000
LAYER_KEYWORDS = ("all", "all_but_last", "none")
ACTIVATIONS = ("gelu", "relu")
P_MODES = ("static", "conditioned")
L_MODES = ("adapter", "identity")


class ELPConfigError(ValueError):
    """An ELPConfig field holds an invalid value (a ValueError)."""


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ELPConfigError(f"ELPConfig.{field_name}: got {value!r}; expected {allowed}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_float(name: str, value: Any, *, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0) or value < 0:
        _fail(name, value, "a finite number " + ("> 0" if positive else ">= 0"))


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "True or False")


def _check_choice(name: str, value: Any, choices: tuple, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        _fail(name, value, allowed + (" (or None)" if optional else ""))


def _check_layers(name: str, value: Any) -> None:
    if isinstance(value, str):
        _check_choice(name, value, LAYER_KEYWORDS)
        return
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    ):
        _fail(name, value, f"one of {LAYER_KEYWORDS} or a list of 0-based layer indices (ints >= 0)")
    if len(set(value)) != len(value):
        _fail(name, value, "a list of distinct layer indices")


def resolve_layers(name: str, spec: LayerSpec, num_layers: int) -> list[int]:
    """Turn a layer spec into sorted 0-based indices for a backbone with `num_layers` layers."""
    if spec == "all":
        return list(range(num_layers))
    if spec == "all_but_last":
        return list(range(num_layers - 1))
    if spec == "none":
        return []
    bad = [i for i in spec if i >= num_layers]
    if bad:
        raise ELPConfigError(
            f"ELPConfig.{name}: got layer indices {bad}; this backbone has {num_layers} encoder "
            f"layers, so indices must be in 0..{num_layers - 1}"
        )
    return sorted(spec)


@dataclass(frozen=True)
class ELPConfig:
    e_bottleneck: int = 256
    e_layers: LayerSpec = "all_but_last"
    a_layers: LayerSpec = "none"     # bottlenecks after the attention block (conventional adapters)
    l_dim: int = 512
    l_layers: LayerSpec = "all"
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
    init_std: float = 1e-3
    p_init_std: float = 1.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_int("e_bottleneck", self.e_bottleneck, 1)
        _check_layers("e_layers", self.e_layers)
        _check_layers("a_layers", self.a_layers)
        _check_int("l_dim", self.l_dim, 1)
        _check_layers("l_layers", self.l_layers)
        _check_choice("l_mode", self.l_mode, L_MODES)
        _check_int("p_len", self.p_len, 0)
        _check_choice("p_mode", self.p_mode, P_MODES)
        _check_int("p_bottleneck", self.p_bottleneck, 1)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("e_activation", self.e_activation, ACTIVATIONS, optional=True)
        _check_choice("l_activation", self.l_activation, ACTIVATIONS, optional=True)
        _check_bool("train_layer_norms", self.train_layer_norms)
        _check_bool("train_head", self.train_head)
        _check_bool("train_encoder", self.train_encoder)
        _check_float("init_std", self.init_std, positive=False)
        _check_float("p_init_std", self.p_init_std, positive=False)
        _check_float("eps", self.eps, positive=True)
        # Lists are normalised to sorted lists so equal configs compare equal and JSON round-trips.
        for name in ("e_layers", "a_layers", "l_layers"):
            value = getattr(self, name)
            if not isinstance(value, str):
                object.__setattr__(self, name, sorted(value))

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
