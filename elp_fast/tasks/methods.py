"""The training methods a recipe can run, selected by one option (`--method`): ELP itself and
the baselines it is compared against. Each is a set of ELPConfig overrides on top of the
recipe's adapter settings; the recipe gives each its own learning rates per parameter group.
Trainable parameter counts for WavLM Base+ (head excluded) match the predecessor's table:
el 9.13 M, adapters 9.54 M, l_only 4.74 M, e_only 4.79 M, full 85.1 M."""
from __future__ import annotations

METHODS: dict[str, tuple[str, dict]] = {
    "elp": ("E-, L- and P-adapters (ELP-adapter tuning, the default)", {}),
    "el": ("E- and L-adapters without pseudo frames (the predecessor's proposed method)", {"p_len": 0}),
    "l_only": ("L-adapters only; the backbone runs without autograd",
               {"e_layers": "none", "p_len": 0, "train_layer_norms": False}),
    "e_only": ("E-adapters in every layer, the head on the top layer's output",
               {"e_layers": "all", "l_layers": "none", "p_len": 0}),
    "adapters": ("conventional adapters: a bottleneck after the attention and after the feed-forward "
                 "block of every layer, the head on the top layer's output",
                 {"e_layers": "all", "a_layers": "all", "l_layers": "none", "p_len": 0}),
    "weighted_sum": ("learned weighted sum of the frozen hidden states (SUPERB featurizer)",
                     {"e_layers": "none", "l_mode": "identity", "p_len": 0, "train_layer_norms": False}),
    "full": ("full fine-tuning of the encoder layers (CNN, projection, positional conv frozen)",
             {"e_layers": "none", "l_layers": "none", "p_len": 0, "train_encoder": True}),
    "head_only": ("only the task head trains, on the frozen top layer's output",
                  {"e_layers": "none", "l_layers": "none", "p_len": 0, "train_layer_norms": False}),
}


def method_overrides(name: str) -> dict:
    if name not in METHODS:
        raise ValueError(f"method: got {name!r}; expected one of {sorted(METHODS)}")
    return dict(METHODS[name][1])


def describe_methods() -> str:
    return "\n".join(f"  {name:<13} {text}" for name, (text, _) in METHODS.items())
