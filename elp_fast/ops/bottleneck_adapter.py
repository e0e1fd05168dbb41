"""bottleneck_adapter: the E-adapter bottleneck + residual (+ post-LN) as one op.

    u = LN(act(x @ down_w.T + down_b) @ up_w.T + up_b; ln_w, ln_b)
    y = x + u (+ residual);  y = LN(y; post_ln_w, post_ln_b) when given

x is (N, d) (leading dims are flattened by the public function). Accumulates in fp32 and returns
x's dtype. `bottleneck_adapter_ref` is the spec every fused backend is held to.

The Triton backend is a torch.library custom op pair (forward, backward) joined by
register_autograd, so it runs under torch.compile as one opaque node and passes opcheck. Its
forward saves z and the LayerNorm statistics instead of the activations eager keeps.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from . import _native, _triton
from ._common import (activate, check_activation, check_rows, check_tensor, compute_dtype,
                      contiguous, grad_like, layer_norm_fp32)

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


def _input_grads(need, post, res, dy, residual) -> list:
    """A backward op's [dx, dres, d_down_w, ..., d_post_ln_b] as gradients in the op's input
    order (x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b), None where
    not needed. Without a post-LN the residual's gradient is dy itself."""
    dx, dres, *params = res
    if need[7] and not post:
        dres = grad_like(dy, residual)
    grads = [dx if need[0] else None]
    grads += [g if need[i + 1] else None for i, g in enumerate(params[:6])]
    grads += [dres if need[7] else None]
    grads += [g if need[8 + i] else None for i, g in enumerate(params[6:])]
    return grads


# --- Triton backend ------------------------------------------------------------------------

@torch.library.custom_op("elp_fast::bottleneck_adapter_triton", mutates_args=())
def _triton_forward(x: torch.Tensor, down_w: torch.Tensor, down_b: torch.Tensor,
                    up_w: torch.Tensor, up_b: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor,
                    residual: Optional[torch.Tensor], post_ln_w: Optional[torch.Tensor],
                    post_ln_b: Optional[torch.Tensor], activation: str, eps: float,
                    save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns y and, when `save`, what backward needs: z (N, r) and fp32 LN stats (N, 2|4)."""
    c = contiguous
    return _triton.kernels(OP).forward(
        c(x), c(down_w), c(down_b), c(up_w), c(up_b), c(ln_w), c(ln_b), c(residual), c(post_ln_w),
        c(post_ln_b), activation=activation, eps=eps, save=save)


@_triton_forward.register_fake
def _(x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, activation, eps, save):
    n, r = x.shape[0], down_w.shape[0]
    nstat = 4 if post_ln_w is not None else 2
    return (torch.empty_like(x), x.new_empty((n, r) if save else (0,)),
            x.new_empty((n, nstat) if save else (0,), dtype=torch.float32))


@torch.library.custom_op("elp_fast::bottleneck_adapter_triton_backward", mutates_args=())
def _triton_backward(dy: torch.Tensor, x: torch.Tensor, z: torch.Tensor, stats: torch.Tensor,
                     down_w: torch.Tensor, down_b: torch.Tensor, up_w: torch.Tensor,
                     up_b: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor,
                     residual: Optional[torch.Tensor], post_ln_w: Optional[torch.Tensor],
                     post_ln_b: Optional[torch.Tensor], activation: str, need_dx: bool,
                     need_dres: bool, need_params: bool) -> list[torch.Tensor]:
    """[dx, dres, d_down_w, d_down_b, d_up_w, d_up_b, d_ln_w, d_ln_b, d_post_ln_w, d_post_ln_b]
    in the inputs' dtypes; empty where not requested (custom ops cannot return None)."""
    c = contiguous
    dx, dres, grads = _triton.kernels(OP).backward(
        dy.contiguous(), c(x), z, stats, c(down_w), c(up_w), c(up_b), c(ln_w), c(ln_b), c(residual),
        c(post_ln_w), activation=activation, need_dx=need_dx, need_dres=need_dres,
        need_params=need_params)
    likes = (down_w, down_b, up_w, up_b, ln_w, ln_b, post_ln_w, post_ln_b)
    out = [dx if dx is not None else x.new_empty(0),
           dres.to(residual.dtype) if dres is not None else x.new_empty(0)]
    return out + [grad_like(g, p) if g is not None else x.new_empty(0) for g, p in zip(grads, likes)]


@_triton_backward.register_fake
def _(dy, x, z, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b,
      activation, need_dx, need_dres, need_params):
    none = x.new_empty(0)
    post = post_ln_w is not None
    params = [torch.empty_like(p) if need_params and (post or i < 6) else none
              for i, p in enumerate((down_w, down_b, up_w, up_b, ln_w, ln_b, post_ln_w, post_ln_b))]
    return [torch.empty_like(x) if need_dx else none,
            torch.empty_like(residual) if need_dres else none] + params


def _setup_context(ctx, inputs, output):
    x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, activation, eps, save = inputs
    _, z, stats = output
    ctx.activation, ctx.eps = activation, eps
    ctx.post = post_ln_w is not None
    # x, the residual and the weights are inputs the caller keeps anyway; the op's own saved
    # state is z and the LayerNorm statistics (2r + 8 bytes per token in half precision).
    ctx.save_for_backward(x, z, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b)


def _backward(ctx, dy, _dz, _dstats):
    x, z, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b = ctx.saved_tensors
    need = ctx.needs_input_grad
    if z.numel() == 0 and x.numel() > 0:  # forward ran with save=False: recompute what it skipped
        _, z, stats = torch.ops.elp_fast.bottleneck_adapter_triton(
            x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b,
            ctx.activation, ctx.eps, True)
    need_dres = need[7] and ctx.post  # without a post-LN the residual's gradient is dy itself
    need_params = any(need[1:7]) or (ctx.post and any(need[8:10]))
    res = torch.ops.elp_fast.bottleneck_adapter_triton_backward(
        dy, x, z, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b,
        ctx.activation, need[0], need_dres, need_params)
    return (*_input_grads(need, ctx.post, res, dy, residual), None, None, None)


_triton_forward.register_autograd(_backward, setup_context=_setup_context)


def bottleneck_adapter_triton(x, down_w, down_b, up_w, up_b, ln_w, ln_b, *, activation,
                              residual=None, post_ln_w=None, post_ln_b=None, eps=1e-5):
    """The Triton backend, same signature as the reference (x already (N, d))."""
    tensors = (x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    y, _, _ = _triton_forward(x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w,
                              post_ln_b, activation, float(eps), save)
    return y


def _triton_supports(x, down_w, down_b, up_w, up_b, ln_w, ln_b, *, activation, residual=None,
                     post_ln_w=None, post_ln_b=None, eps=1e-5):
    reason = _triton.supports(OP, dict(x=x, down_w=down_w, down_b=down_b, up_w=up_w, up_b=up_b,
                                       ln_w=ln_w, ln_b=ln_b, residual=residual,
                                       post_ln_w=post_ln_w, post_ln_b=post_ln_b))
    if reason is None and x.shape[0] == 0:
        reason = "no rows (N = 0)"
    if reason is None and down_w.shape[0] > _triton.kernels(OP).MAX_R:
        reason = f"bottleneck r={down_w.shape[0]} is above the kernels' limit {_triton.kernels(OP).MAX_R}"
    return reason


backends.register(OP, "triton", bottleneck_adapter_triton, available=_triton.available,
                  supports=_triton_supports)


# --- native backend (elp_fast._C: csrc/bottleneck_adapter) -----------------------------------

def _native_register() -> None:
    """Fake kernels and autograd for torch.ops.elp_fast_C.bottleneck_adapter_{fwd,bwd}."""
    @torch.library.register_fake("elp_fast_C::bottleneck_adapter_fwd")
    def _(x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, activation, eps):
        (n, d), r, g = x.shape, down_w.shape[0], _native.gemm_dtype(x)
        return (x.new_empty((n, d)), x.new_empty((n, r), dtype=g), x.new_empty((n, d), dtype=g),
                x.new_empty((n, 4 if post_ln_w is not None else 2), dtype=torch.float32))

    @torch.library.register_fake("elp_fast_C::bottleneck_adapter_bwd")
    def _(dy, x, z, v, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b,
          activation, need_dx, need_dres, need_params):
        post = post_ln_w is not None
        params = [p.new_empty(p.shape) if need_params and (post or i < 6) else x.new_empty(0)
                  for i, p in enumerate((down_w, down_b, up_w, up_b, ln_w, ln_b, post_ln_w, post_ln_b))]
        return [x.new_empty(x.shape if need_dx else 0), x.new_empty(x.shape if need_dres else 0)] + params

    def setup_context(ctx, inputs, output):
        x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, activation, eps = inputs
        _, z, v, stats = output
        ctx.activation, ctx.post = activation, post_ln_w is not None
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the saved-state outputs
        ctx.save_for_backward(x, z, v, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w,
                              post_ln_b)

    def backward(ctx, dy, _dz, _dv, _dstats):
        if dy is None:
            return (None,) * 12
        x, z, v, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_dres = need[7] and ctx.post  # without a post-LN the residual's gradient is dy itself
        need_params = any(need[1:7]) or (ctx.post and any(need[8:10]))
        res = torch.ops.elp_fast_C.bottleneck_adapter_bwd(
            dy, x, z, v, stats, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b,
            ctx.activation, need[0], need_dres, need_params)
        return (*_input_grads(need, ctx.post, res, dy, residual), None, None)

    torch.library.register_autograd("elp_fast_C::bottleneck_adapter_fwd", backward, setup_context=setup_context)


_native.on_load(_native_register)


def bottleneck_adapter_native(x, down_w, down_b, up_w, up_b, ln_w, ln_b, *, activation,
                              residual=None, post_ln_w=None, post_ln_b=None, eps=1e-5):
    """The native backend, same signature as the reference (x already (N, d))."""
    y, _, _, _ = torch.ops.elp_fast_C.bottleneck_adapter_fwd(
        x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, activation, float(eps))
    return y


def _native_supports(x, down_w, down_b, up_w, up_b, ln_w, ln_b, *, activation, residual=None,
                     post_ln_w=None, post_ln_b=None, eps=1e-5):
    return _native.supports(dict(x=x, down_w=down_w, down_b=down_b, up_w=up_w, up_b=up_b, ln_w=ln_w,
                                 ln_b=ln_b, residual=residual, post_ln_w=post_ln_w, post_ln_b=post_ln_b),
                            row_width=x.shape[-1])


backends.register(OP, "native", bottleneck_adapter_native, available=_native.available,
                  supports=_native_supports)
