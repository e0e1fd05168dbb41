"""layer_aggregate: all L-adapters and their softmax-weighted sum as one op.

    H = sum_l softmax(layer_logits)_l * LN(act(h_l @ proj_w[l].T + proj_b[l]); ln_w[l], ln_b[l])

hidden_states: a sequence of L tensors (N, d) or one (L, N, d); proj_w (L, m, d); proj_b, ln_w,
ln_b (L, m); layer_logits (L,). Accumulates in fp32, returns the hidden states' dtype.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .. import backends
from ._common import activate, check_activation, check_rows, check_tensor, compute_dtype, layer_norm_fp32

OP = "layer_aggregate"
Hidden = Union[torch.Tensor, Sequence[torch.Tensor]]


def layer_aggregate_ref(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *, activation,
                        eps=1e-5):
    dtype = hidden_states[0].dtype
    acc = compute_dtype(dtype)
    weights = torch.softmax(layer_logits.to(acc), dim=0)
    out = None
    for l, h in enumerate(hidden_states):
        z = torch.addmm(proj_b[l].to(acc), h.to(acc), proj_w[l].to(acc).t())
        term = weights[l] * layer_norm_fp32(activate(z, activation), ln_w[l], ln_b[l], eps)
        out = term if out is None else out + term
    return out.to(dtype)


def as_layer_rows(op: str, hidden_states: Hidden) -> tuple[list, torch.Size]:
    """Validate L same-shaped (..., d) tensors (or one (L, ..., d)) and view each as (N, d)."""
    if isinstance(hidden_states, torch.Tensor):
        if hidden_states.dim() < 2:
            raise ValueError(f"{op}: hidden_states has shape {tuple(hidden_states.shape)}; "
                             "expected (L, N, d) or a sequence of L tensors (N, d)")
        hidden_states = list(hidden_states.unbind(0))
    if not isinstance(hidden_states, (list, tuple)) or len(hidden_states) == 0:
        raise ValueError(f"{op}: hidden_states must be a non-empty sequence of tensors or one "
                         f"(L, N, d) tensor, got {type(hidden_states).__name__}")
    shape = hidden_states[0].shape if isinstance(hidden_states[0], torch.Tensor) else None
    for l, h in enumerate(hidden_states):
        check_rows(op, f"hidden_states[{l}]", h)
        if h.shape != shape or h.dtype != hidden_states[0].dtype or h.device != hidden_states[0].device:
            raise ValueError(f"{op}: hidden_states[{l}] is {tuple(h.shape)} {h.dtype} on {h.device}; "
                             f"expected {tuple(shape)} {hidden_states[0].dtype} on {hidden_states[0].device} "
                             "like hidden_states[0]")
    d = shape[-1]
    return [h.reshape(-1, d) for h in hidden_states], shape


def layer_aggregate(hidden_states: Hidden, proj_w: torch.Tensor, proj_b: torch.Tensor,
                    ln_w: torch.Tensor, ln_b: torch.Tensor, layer_logits: torch.Tensor, *,
                    activation: str, eps: float = 1e-5, backend: Optional[str] = None) -> torch.Tensor:
    """Dispatching entry point; each hidden state may have leading dims (..., d)."""
    rows, shape = as_layer_rows(OP, hidden_states)
    L, d = len(rows), shape[-1]
    check_tensor(OP, "proj_w", proj_w, (L, None, d), rows[0])
    m = proj_w.shape[1]
    for name, t in (("proj_b", proj_b), ("ln_w", ln_w), ("ln_b", ln_b)):
        check_tensor(OP, name, t, (L, m), rows[0])
    check_tensor(OP, "layer_logits", layer_logits, (L,), rows[0])
    check_activation(OP, activation)
    out = backends.dispatch(OP, (rows, proj_w, proj_b, ln_w, ln_b, layer_logits),
                            dict(activation=activation, eps=eps), backend)
    return out.reshape(*shape[:-1], m)


backends.register(OP, "reference", layer_aggregate_ref)
