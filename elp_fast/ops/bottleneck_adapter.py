"""bottleneck_adapter: the E-adapter bottleneck + residual (+ post-LN) as one op.

    u = LN(act(x @ down_w.T + down_b) @ up_w.T + up_b; ln_w, ln_b)
    y = x + u (+ residual);  y = LN(y; post_ln_w, post_ln_b) when given

x is (N, d) (leading dims are flattened by the public function). Accumulates in fp32 and returns
x's dtype. `bottleneck_adapter_ref` is the spec every fused backend is held to.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ._common import activate, check_activation, check_rows, check_tensor, compute_dtype, layer_norm_fp32

OP = "bottleneck_adapter"


def bottleneck_adapter_ref(x, down_w, down_b, up_w, up_b, ln_w, ln_b, *, activation,
                           residual=None, post_ln_w=None, post_ln_b=None, eps=1e-5):
    acc = compute_dtype(x.dtype)
    xf = x.to(acc)
    z = torch.addmm(down_b.to(acc), xf, down_w.to(acc).t())
    v = torch.addmm(up_b.to(acc), activate(z, activation), up_w.to(acc).t())
    y = xf + layer_norm_fp32(v, ln_w, ln_b, eps)
    if residual is not None:
        y = y + residual.to(acc)
    if post_ln_w is not None:
        y = layer_norm_fp32(y, post_ln_w, post_ln_b, eps)
    return y.to(x.dtype)


def _check(x, down_w, down_b, up_w, up_b, ln_w, ln_b, activation, residual, post_ln_w, post_ln_b):
    d = check_rows(OP, "x", x)
    check_tensor(OP, "down_w", down_w, (None, d), x)
    r = down_w.shape[0]
    check_tensor(OP, "down_b", down_b, (r,), x)
    check_tensor(OP, "up_w", up_w, (d, r), x)
    for name, t in (("up_b", up_b), ("ln_w", ln_w), ("ln_b", ln_b)):
        check_tensor(OP, name, t, (d,), x)
    check_activation(OP, activation)
    if residual is not None:
        check_tensor(OP, "residual", residual, tuple(x.shape), x)
    if (post_ln_w is None) != (post_ln_b is None):
        raise ValueError(f"{OP}: post_ln_w and post_ln_b must be given together (got one of them)")
    if post_ln_w is not None:
        check_tensor(OP, "post_ln_w", post_ln_w, (d,), x)
        check_tensor(OP, "post_ln_b", post_ln_b, (d,), x)


def bottleneck_adapter(x: torch.Tensor, down_w: torch.Tensor, down_b: torch.Tensor,
                       up_w: torch.Tensor, up_b: torch.Tensor, ln_w: torch.Tensor,
                       ln_b: torch.Tensor, *, activation: str,
                       residual: Optional[torch.Tensor] = None,
                       post_ln_w: Optional[torch.Tensor] = None,
                       post_ln_b: Optional[torch.Tensor] = None, eps: float = 1e-5,
                       backend: Optional[str] = None) -> torch.Tensor:
    """Dispatching entry point; x may have leading dims (..., d), flattened to N rows."""
    _check(x, down_w, down_b, up_w, up_b, ln_w, ln_b, activation, residual, post_ln_w, post_ln_b)
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    res2 = residual.reshape(-1, shape[-1]) if residual is not None else None
    args = (x2, down_w, down_b, up_w, up_b, ln_w, ln_b)
    kwargs = dict(activation=activation, residual=res2, post_ln_w=post_ln_w, post_ln_b=post_ln_b, eps=eps)
    return backends.dispatch(OP, args, kwargs, backend).reshape(shape)


backends.register(OP, "reference", bottleneck_adapter_ref)
