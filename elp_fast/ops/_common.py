"""Helpers shared by the op files: activations and argument checks (cheap, shape-only)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..config import ACTIVATIONS

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "gelu":
        return F.gelu(x)  # exact (erf) GELU, as HF "gelu"
    if activation == "relu":
        return F.relu(x)
    raise ValueError(f"activation: got {activation!r}; expected one of {ACTIVATIONS}")


def check_activation(op: str, activation: object) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: activation got {activation!r}; expected one of {ACTIVATIONS}")


def check_tensor(op: str, name: str, t: object, shape: tuple, like: torch.Tensor | None = None) -> None:
    """`shape` entries are ints or None (any size)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}; expected a floating dtype {FLOAT_DTYPES}")
    if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}; expected {want}")
    if like is not None and t.device != like.device:
        raise ValueError(f"{op}: {name} is on {t.device} but the input is on {like.device}")


def check_rows(op: str, name: str, t: object) -> int:
    """Check a (..., d) activation tensor with d > 0; return d."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 1 or t.shape[-1] == 0:
        raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}; expected (..., d) with d > 0")
    check_tensor(op, name, t, (None,) * t.dim())
    return t.shape[-1]


def layer_norm_fp32(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w.to(x.dtype), b.to(x.dtype), eps)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp32 for half types and fp32, fp64 stays fp64 (for gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --- helpers for the fused backends' custom ops ---------------------------------------------

def grad_like(g: Optional[torch.Tensor], like: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A gradient in its input's dtype (kernels reduce weight gradients in fp32)."""
    if g is None or like is None:
        return None
    return g if g.dtype == like.dtype else g.to(like.dtype)


def list_grads(need: object, dh: torch.Tensor, hidden: list[torch.Tensor]) -> list:
    """Per-tensor gradients of a Tensor[] input from a stacked (L, ...) gradient; `need` is
    ctx.needs_input_grad's entry for it (one bool per tensor). Always a list of L entries:
    register_autograd checks that backward returns the inputs' structure."""
    flags = list(need) if isinstance(need, (list, tuple)) else [bool(need)] * len(hidden)
    if not any(flags):
        return [None] * len(hidden)
    return [g.to(h.dtype) if f else None for g, h, f in zip(dh.unbind(0), hidden, flags)]


def layer_grads(need: object, dh: list) -> list:
    """Per-tensor gradients of a Tensor[] input from one gradient per tensor (the native ops
    return them so; see list_grads for the flags)."""
    flags = list(need) if isinstance(need, (list, tuple)) else [bool(need)] * len(dh)
    return [g if f else None for g, f in zip(dh, flags)]


def dtype_reason(tensors: dict, allowed: tuple, backend: str) -> Optional[str]:
    """Why a fused backend cannot take these tensors' dtypes (naming the first bad one), or None."""
    for name, t in tensors.items():
        if t is not None and t.dtype not in allowed:
            return f"{name} has dtype {t.dtype} (the {backend} take float16, bfloat16, float32)"
    return None


def any_needed(need: object) -> bool:
    return any(need) if isinstance(need, (list, tuple)) else bool(need)


def contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.contiguous()
