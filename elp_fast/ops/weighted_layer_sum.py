"""weighted_layer_sum: sum_l softmax(layer_logits)_l * h_l (the SUPERB/s3prl featurizer baseline).

hidden_states: a sequence of L tensors (N, d) or one (L, N, d); layer_logits (L,).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ._common import check_tensor, compute_dtype
from .layer_aggregate import Hidden, as_layer_rows

OP = "weighted_layer_sum"


def weighted_layer_sum_ref(hidden_states, layer_logits):
    dtype = hidden_states[0].dtype
    acc = compute_dtype(dtype)
    weights = torch.softmax(layer_logits.to(acc), dim=0)
    out = None
    for l, h in enumerate(hidden_states):
        term = weights[l] * h.to(acc)
        out = term if out is None else out + term
    return out.to(dtype)


def weighted_layer_sum(hidden_states: Hidden, layer_logits: torch.Tensor, *,
                       backend: Optional[str] = None) -> torch.Tensor:
    rows, shape = as_layer_rows(OP, hidden_states)
    check_tensor(OP, "layer_logits", layer_logits, (len(rows),), rows[0])
    return backends.dispatch(OP, (rows, layer_logits), {}, backend).reshape(shape)


backends.register(OP, "reference", weighted_layer_sum_ref)
