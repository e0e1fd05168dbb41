"""layer_aggregate: all L-adapters and their softmax-weighted sum as one op.

    H = sum_l softmax(layer_logits)_l * LN(act(h_l @ proj_w[l].T + proj_b[l]); ln_w[l], ln_b[l])

hidden_states: a sequence of L tensors (N, d) or one (L, N, d); proj_w (L, m, d); proj_b, ln_w,
ln_b (L, m); layer_logits (L,). Accumulates in fp32, returns the hidden states' dtype.

The Triton backend (custom ops `elp_fast::layer_aggregate_triton[_backward]`) reads the L hidden
states in place and saves nothing but its inputs: the per-layer LayerNorm statistics are
recomputed in backward.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from .. import backends
from . import _native, _triton
from ._common import (activate, any_needed, check_activation, check_rows, check_tensor,
                      compute_dtype, contiguous, grad_like, layer_grads, layer_norm_fp32, list_grads)

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


# --- Triton backend ------------------------------------------------------------------------

@torch.library.custom_op("elp_fast::layer_aggregate_triton", mutates_args=())
def _triton_forward(hidden_states: list[torch.Tensor], proj_w: torch.Tensor, proj_b: torch.Tensor,
                    ln_w: torch.Tensor, ln_b: torch.Tensor, layer_logits: torch.Tensor,
                    activation: str, eps: float) -> torch.Tensor:
    c = contiguous
    weights = torch.softmax(layer_logits.float(), dim=0)
    return _triton.kernels(OP).forward([c(h) for h in hidden_states], c(proj_w), c(proj_b), c(ln_w),
                                       c(ln_b), weights, activation=activation, eps=eps)


@_triton_forward.register_fake
def _(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps):
    return hidden_states[0].new_empty((hidden_states[0].shape[0], proj_w.shape[1]))


@torch.library.custom_op("elp_fast::layer_aggregate_triton_backward", mutates_args=())
def _triton_backward(dH: torch.Tensor, hidden_states: list[torch.Tensor], proj_w: torch.Tensor,
                     proj_b: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor,
                     layer_logits: torch.Tensor, activation: str, eps: float, need_dh: bool,
                     need_params: bool, need_logits: bool) -> list[torch.Tensor]:
    """[dh (L, N, d), d_proj_w, d_proj_b, d_ln_w, d_ln_b, d_layer_logits], empty where not
    requested, in the inputs' dtypes."""
    c = contiguous
    weights = torch.softmax(layer_logits.float(), dim=0)
    dh, params, sums = _triton.kernels(OP).backward(
        dH.contiguous(), [c(h) for h in hidden_states], c(proj_w), c(proj_b), c(ln_w), c(ln_b), weights,
        activation=activation, eps=eps, need_dh=need_dh, need_params=need_params)
    none = dH.new_empty(0)
    out = [dh if dh is not None else none]
    out += [grad_like(g, p) if g is not None else none
            for g, p in zip(params, (proj_w, proj_b, ln_w, ln_b))]
    # softmax backward: d logit_k = w_k (g_k - sum_l w_l g_l), with g_l = sum dH * LN_l(...)
    dlogits = weights * (sums - (weights * sums).sum())
    return out + [dlogits.to(layer_logits.dtype) if need_logits else none]


@_triton_backward.register_fake
def _(dH, hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps, need_dh,
      need_params, need_logits):
    none = dH.new_empty(0)
    h = hidden_states[0]
    out = [h.new_empty((len(hidden_states), *h.shape)) if need_dh else none]
    out += [torch.empty_like(p) if need_params else none for p in (proj_w, proj_b, ln_w, ln_b)]
    return out + [torch.empty_like(layer_logits) if need_logits else none]


def _setup_context(ctx, inputs, output):
    hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps = inputs
    ctx.activation, ctx.eps, ctx.layers = activation, eps, len(hidden_states)
    ctx.save_for_backward(*hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits)


def _backward(ctx, dH):
    saved = ctx.saved_tensors
    hidden, (proj_w, proj_b, ln_w, ln_b, layer_logits) = list(saved[:ctx.layers]), saved[ctx.layers:]
    need = ctx.needs_input_grad
    res = torch.ops.elp_fast.layer_aggregate_triton_backward(
        dH, hidden, proj_w, proj_b, ln_w, ln_b, layer_logits, ctx.activation, ctx.eps,
        any_needed(need[0]), any(need[1:5]), need[5])
    dh, *params, dlogits = res
    return (list_grads(need[0], dh, hidden), *[g if need[i + 1] else None for i, g in enumerate(params)],
            dlogits if need[5] else None, None, None)


_triton_forward.register_autograd(_backward, setup_context=_setup_context)


def layer_aggregate_triton(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *,
                           activation, eps=1e-5):
    """The Triton backend, same signature as the reference (hidden states already (N, d))."""
    return _triton_forward(list(hidden_states), proj_w, proj_b, ln_w, ln_b, layer_logits,
                           activation, float(eps))


def _triton_supports(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *, activation, eps=1e-5):
    reason = _triton.supports(OP, dict(hidden_states=hidden_states[0], proj_w=proj_w, proj_b=proj_b,
                                       ln_w=ln_w, ln_b=ln_b, layer_logits=layer_logits))
    if reason is None and hidden_states[0].shape[0] == 0:
        reason = "no rows (N = 0)"
    if reason is None and proj_w.shape[1] > _triton.kernels(OP).MAX_M:
        reason = f"adapter width m={proj_w.shape[1]} is above the kernels' limit {_triton.kernels(OP).MAX_M}"
    return reason


backends.register(OP, "triton", layer_aggregate_triton, available=_triton.available,
                  supports=_triton_supports)


# --- native backend (elp_fast._C: csrc/layer_aggregate) --------------------------------------

def _native_register() -> None:
    """Fake kernels and autograd for torch.ops.elp_fast_C.layer_aggregate_{fwd,bwd}."""
    @torch.library.register_fake("elp_fast_C::layer_aggregate_fwd")
    def _(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps, save):
        h, (L, m) = hidden_states[0], proj_w.shape[:2]
        n = h.shape[0]
        if not save:
            return h.new_empty((n, m)), [], h.new_empty(0, dtype=torch.float32)
        return (h.new_empty((n, m)), [h.new_empty((n, m), dtype=_native.gemm_dtype(h)) for _ in range(L)],
                h.new_empty((L, n, 2), dtype=torch.float32))

    @torch.library.register_fake("elp_fast_C::layer_aggregate_bwd")
    def _(dH, hidden_states, z, stats, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps, need_dh,
          need_params, need_logits):
        h = hidden_states[0]
        out = [h.new_empty(h.shape if need_dh else 0) for _ in hidden_states]
        out += [p.new_empty(p.shape) if need_params else h.new_empty(0) for p in (proj_w, proj_b, ln_w, ln_b)]
        return out + [layer_logits.new_empty(layer_logits.shape if need_logits else 0)]

    def setup_context(ctx, inputs, output):
        hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, activation, eps, save = inputs
        _, z, stats = output
        ctx.activation, ctx.eps, ctx.layers = activation, eps, len(hidden_states)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the saved-state outputs
        ctx.saved_z = len(z)
        ctx.save_for_backward(*hidden_states, *z, stats, proj_w, proj_b, ln_w, ln_b, layer_logits)

    def backward(ctx, dH, _dz, _dstats):
        if dH is None:
            return [None] * ctx.layers, None, None, None, None, None, None, None, None
        saved = ctx.saved_tensors
        L, nz = ctx.layers, ctx.saved_z
        hidden, z = list(saved[:L]), list(saved[L:L + nz])
        stats, proj_w, proj_b, ln_w, ln_b, layer_logits = saved[L + nz:]
        need = ctx.needs_input_grad
        res = torch.ops.elp_fast_C.layer_aggregate_bwd(
            dH, hidden, z, stats, proj_w, proj_b, ln_w, ln_b, layer_logits, ctx.activation, ctx.eps,
            any_needed(need[0]), any(need[1:5]), need[5])
        dh, (*params, dlogits) = res[:ctx.layers], res[ctx.layers:]
        return (layer_grads(need[0], dh), *[g if need[i + 1] else None for i, g in enumerate(params)],
                dlogits if need[5] else None, None, None, None)

    torch.library.register_autograd("elp_fast_C::layer_aggregate_fwd", backward, setup_context=setup_context)


_native.on_load(_native_register)


def layer_aggregate_native(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *, activation, eps=1e-5):
    """The native backend, same signature as the reference (hidden states already (N, d))."""
    hidden_states = list(hidden_states)
    save = _native.wants_grad(*hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits)
    out, _, _ = torch.ops.elp_fast_C.layer_aggregate_fwd(hidden_states, proj_w, proj_b, ln_w, ln_b,
                                                         layer_logits, activation, float(eps), save)
    return out


def _native_supports(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *, activation, eps=1e-5):
    return _native.supports(dict(hidden_states=hidden_states[0], proj_w=proj_w, proj_b=proj_b, ln_w=ln_w,
                                 ln_b=ln_b, layer_logits=layer_logits), row_width=proj_w.shape[1])


backends.register(OP, "native", layer_aggregate_native, available=_native.available,
                  supports=_native_supports)
