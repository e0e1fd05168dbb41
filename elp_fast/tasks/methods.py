"""The training methods a recipe can run, selected by one option (`--method`): ELP itself and
the baselines it is compared against. Each is a set of ELPConfig overrides on top of the
recipe's adapter settings; the recipe gives each its own learning rates per parameter group.

They follow the published E/L-adapter code (Otake et al., ICASSP 2023): the encoder layers' own
LayerNorms train in every adapter method and in the weighted sum (not in full fine-tuning, where
everything trains, nor head-only); the methods without L-adapters keep the backbone's LayerDrop
in training; the weighted sum has L + 1 weights (X^0 included). Trainable parameters for WavLM
Base+, head excluded (docs/tasks.md): el 9,127,436 (published 9.13 M), adapters 9,535,488
(9.53 M), l_only 4,773,900 (published 4.74 M, which leaves the 36,864 layer-norm parameters
out), e_only 4,786,176 (4.79 M), full 85,064,688 (85.1 M), weighted_sum 36,877."""
from __future__ import annotations

METHODS: dict[str, tuple[str, dict]] = {
    "elp": ("E-, L- and P-adapters (ELP-adapter tuning, the default)", {}),
    "el": ("E- and L-adapters without pseudo frames (the E/L-adapter method of Otake et al.)", {"p_len": 0}),
    "l_only": ("L-adapters and the encoder layer norms (set model.train_layer_norms=false to run the backbone "
               "without autograd)", {"e_layers": "none", "p_len": 0}),
    "e_only": ("E-adapters in every layer, the head on the top layer's output",
               {"e_layers": "all", "l_layers": "none", "p_len": 0, "layerdrop": True}),
    "adapters": ("conventional adapters: a bottleneck after the attention and after the feed-forward "
                 "block of every layer, the head on the top layer's output",
                 {"e_layers": "all", "a_layers": "all", "l_layers": "none", "p_len": 0, "layerdrop": True}),
    "weighted_sum": ("learned weighted sum of the hidden states X^0..X^L (SUPERB featurizer) and the encoder "
                     "layer norms", {"e_layers": "none", "l_mode": "identity", "l_input": True, "p_len": 0}),
    "full": ("full fine-tuning of the encoder layers (CNN, projection, positional conv frozen)",
             {"e_layers": "none", "l_layers": "none", "p_len": 0, "train_encoder": True, "layerdrop": True}),
    "head_only": ("only the task head trains, on the frozen top layer's output",
                  {"e_layers": "none", "l_layers": "none", "p_len": 0, "train_layer_norms": False}),
}


def method_overrides(name: str) -> dict:
    if name not in METHODS:
        raise ValueError(f"method: got {name!r}; expected one of {sorted(METHODS)}")
    return dict(METHODS[name][1])


def describe_methods() -> str:
    return "\n".join(f"  {name:<13} {text}" for name, (text, _) in METHODS.items())
