"""weighted_layer_sum: sum_l softmax(layer_logits)_l * h_l (the SUPERB/s3prl featurizer baseline).

hidden_states: a sequence of L tensors (N, d) or one (L, N, d); layer_logits (L,).
The Triton backend (custom ops `elp_fast::weighted_layer_sum_triton[_backward]`) reads the
hidden states in place, without stacking them.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from . import _native, _triton
from ._common import any_needed, check_tensor, compute_dtype, layer_grads, list_grads
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


# --- Triton backend ------------------------------------------------------------------------

@torch.library.custom_op("elp_fast::weighted_layer_sum_triton", mutates_args=())
def _triton_forward(hidden_states: list[torch.Tensor], layer_logits: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax(layer_logits.float(), dim=0)
    return _triton.kernels(OP).forward([h.contiguous() for h in hidden_states], weights)


@_triton_forward.register_fake
def _(hidden_states, layer_logits):
    return torch.empty_like(hidden_states[0])


@torch.library.custom_op("elp_fast::weighted_layer_sum_triton_backward", mutates_args=())
def _triton_backward(dH: torch.Tensor, hidden_states: list[torch.Tensor], layer_logits: torch.Tensor,
                     need_dh: bool, need_logits: bool) -> list[torch.Tensor]:
    """[dh (L, N, d), d_layer_logits], empty where not requested."""
    weights = torch.softmax(layer_logits.float(), dim=0)
    dh, sums = _triton.kernels(OP).backward(dH.contiguous(), [h.contiguous() for h in hidden_states],
                                            weights, need_dh=need_dh, need_logits=need_logits)
    none = dH.new_empty(0)
    dlogits = (weights * (sums - (weights * sums).sum())).to(layer_logits.dtype) if need_logits else none
    return [dh if need_dh else none, dlogits]


@_triton_backward.register_fake
def _(dH, hidden_states, layer_logits, need_dh, need_logits):
    h = hidden_states[0]
    none = dH.new_empty(0)
    return [h.new_empty((len(hidden_states), *h.shape)) if need_dh else none,
            torch.empty_like(layer_logits) if need_logits else none]


def _setup_context(ctx, inputs, output):
    hidden_states, layer_logits = inputs
    ctx.save_for_backward(*hidden_states, layer_logits)


def _backward(ctx, dH):
    *hidden, layer_logits = ctx.saved_tensors
    need = ctx.needs_input_grad
    dh, dlogits = torch.ops.elp_fast.weighted_layer_sum_triton_backward(
        dH, hidden, layer_logits, any_needed(need[0]), need[1])
    return list_grads(need[0], dh, hidden), (dlogits if need[1] else None)


_triton_forward.register_autograd(_backward, setup_context=_setup_context)


def weighted_layer_sum_triton(hidden_states, layer_logits):
    """The Triton backend, same signature as the reference."""
    return _triton_forward(list(hidden_states), layer_logits)


def _triton_supports(hidden_states, layer_logits):
    reason = _triton.supports(OP, dict(hidden_states=hidden_states[0], layer_logits=layer_logits))
    if reason is None and hidden_states[0].numel() == 0:
        reason = "no elements"
    return reason


backends.register(OP, "triton", weighted_layer_sum_triton, available=_triton.available,
                  supports=_triton_supports)


# --- native backend (elp_fast._C: csrc/weighted_layer_sum) -----------------------------------

def _native_register() -> None:
    """Fake kernels and autograd for torch.ops.elp_fast_C.weighted_layer_sum_{fwd,bwd}."""
    @torch.library.register_fake("elp_fast_C::weighted_layer_sum_fwd")
    def _(hidden_states, layer_logits):
        return hidden_states[0].new_empty(hidden_states[0].shape)

    @torch.library.register_fake("elp_fast_C::weighted_layer_sum_bwd")
    def _(dH, hidden_states, layer_logits, need_dh, need_logits):
        h = hidden_states[0]
        return ([h.new_empty(h.shape if need_dh else 0) for _ in hidden_states]
                + [layer_logits.new_empty(layer_logits.shape if need_logits else 0)])

    def setup_context(ctx, inputs, output):
        hidden_states, layer_logits = inputs
        ctx.save_for_backward(*hidden_states, layer_logits)

    def backward(ctx, dH):
        *hidden, layer_logits = ctx.saved_tensors
        need = ctx.needs_input_grad
        *dh, dlogits = torch.ops.elp_fast_C.weighted_layer_sum_bwd(dH, hidden, layer_logits,
                                                                    any_needed(need[0]), need[1])
        return layer_grads(need[0], dh), (dlogits if need[1] else None)

    torch.library.register_autograd("elp_fast_C::weighted_layer_sum_fwd", backward, setup_context=setup_context)


_native.on_load(_native_register)


def weighted_layer_sum_native(hidden_states, layer_logits):
    """The native backend, same signature as the reference."""
    return torch.ops.elp_fast_C.weighted_layer_sum_fwd(list(hidden_states), layer_logits)


def _native_supports(hidden_states, layer_logits):
    return _native.supports(dict(hidden_states=hidden_states[0], layer_logits=layer_logits))


backends.register(OP, "native", weighted_layer_sum_native, available=_native.available,
                  supports=_native_supports)
