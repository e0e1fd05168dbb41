"""The bank of L-adapters and their learned layer weights (docs/design.md 2.2), and the plain
weighted sum of hidden states (the baseline with identity L-adapters)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .. import ops


class _LayerWeights(nn.Module):
    """The learned layer weights w (softmax-normalised), initialised to 1/L each as the
    published E/L-adapter code does (a uniform softmax)."""

    def _init_layer_logits(self) -> None:
        nn.init.constant_(self.layer_logits, 1.0 / self.layer_logits.numel())

    @property
    def num_layers(self) -> int:
        return self.layer_logits.numel()

    def layer_weights(self) -> torch.Tensor:
        """softmax(w): the share of each tapped layer in H (for inspection and plots)."""
        return torch.softmax(self.layer_logits.detach().float(), dim=0)


class LAdapterBank(_LayerWeights):
    """H = sum_l softmax(w)_l * LN_l(act(X^l W_l + b_l)) over the tapped layers.

    The per-layer projections are stored stacked, (L, m, d), which is the layout the fused
    aggregation kernels read directly."""

    def __init__(self, num_layers: int, dim: int, out_dim: int, *, activation: str, eps: float,
                 init_std: float, device=None, dtype=None) -> None:
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.activation, self.eps, self.init_std = activation, eps, init_std
        self.proj_w = nn.Parameter(torch.empty(num_layers, out_dim, dim, **kw))
        self.proj_b = nn.Parameter(torch.empty(num_layers, out_dim, **kw))
        self.ln_w = nn.Parameter(torch.empty(num_layers, out_dim, **kw))
        self.ln_b = nn.Parameter(torch.empty(num_layers, out_dim, **kw))
        self.layer_logits = nn.Parameter(torch.empty(num_layers, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.proj_w, std=self.init_std)
        nn.init.zeros_(self.proj_b)
        nn.init.ones_(self.ln_w)
        nn.init.zeros_(self.ln_b)
        self._init_layer_logits()

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        return ops.layer_aggregate(hidden_states, self.proj_w, self.proj_b, self.ln_w, self.ln_b,
                                   self.layer_logits, activation=self.activation, eps=self.eps)

    def extra_repr(self) -> str:
        L, m, d = self.proj_w.shape
        return f"layers={L}, dim={d}, out_dim={m}, activation={self.activation}"


class LayerSum(_LayerWeights):
    """The weighted sum of hidden states (s3prl / SUPERB "featurizer"), the baseline in which
    the L-adapters are identities: H = sum_l softmax(w)_l * X^l; only w trains."""

    def __init__(self, num_layers: int, *, device=None, dtype=None) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.empty(num_layers, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_layer_logits()

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        return ops.weighted_layer_sum(hidden_states, self.layer_logits)

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}"
