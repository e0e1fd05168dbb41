"""The backend dispatcher: per call, picks `native`, `triton` or `reference` for an op.

Each op registers one implementation per backend with two checks:
  available() -> None or a reason the backend cannot run at all (not built, not installed);
  supports(*args, **kwargs) -> None or a reason it cannot run these tensors (device, dtype, shape,
  grad mode, deterministic mode, ...).
Nothing is decided at import: `import elp_fast` imports no Triton and loads no extension; the
checks run lazily at the first call and `available()` results are cached.

Choice order for one call: the `backend=` argument, else `use_backend(...)`, else the
ELP_FAST_BACKEND environment variable, else automatic. An explicit backend that cannot run raises
BackendUnavailableError naming why; the automatic choice falls back to the next candidate and logs
the reason once.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

log = logging.getLogger("elp_fast.backends")

BACKENDS = ("reference", "triton", "native")
AUTO = "auto"
ENV_VAR = "ELP_FAST_BACKEND"

# Automatic preference by device type; the reference always comes last. On CUDA the order of
# native and triton is to follow measurement: benchmarks/bench_ops.py times both on the GPU and
# its summary ends with "native vs triton" per op. No GPU run has measured them yet (results go to
# benchmarks/results/), so the order stays as it was before the extension existed (Triton first)
# until one does; `set_cuda_preference` reorders at run time.
_PREFERENCE = {
    "cpu": ["native", "reference"],
    "cuda": ["triton", "native", "reference"],
}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this call; the message says why."""


Check = Callable[..., Optional[str]]


def _always() -> Optional[str]:
    return None


def _any_call(*args: Any, **kwargs: Any) -> Optional[str]:
    return None


@dataclass
class Impl:
    fn: Callable
    available: Callable[[], Optional[str]] = _always
    supports: Check = _any_call


@dataclass
class _Op:
    name: str
    impls: dict = field(default_factory=dict)


_OPS: dict[str, _Op] = {}
_AVAILABLE_CACHE: dict[tuple[str, str], Optional[str]] = {}
_LOGGED: set = set()
_forced: Optional[str] = None  # set by use_backend()


def register(op: str, backend: str, fn: Callable, *, available: Callable = _always,
             supports: Check = _any_call) -> None:
    """Register `fn` as the `backend` implementation of `op` (same signature as the reference)."""
    if backend not in BACKENDS:
        raise ValueError(f"register: backend {backend!r} is not one of {BACKENDS}")
    _OPS.setdefault(op, _Op(op)).impls[backend] = Impl(fn, available, supports)
    _AVAILABLE_CACHE.pop((op, backend), None)


def _validate_name(name: Optional[str], source: str) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str) or (name not in BACKENDS and name != AUTO):
        raise ValueError(f"{source}: got {name!r}; expected one of {BACKENDS + (AUTO,)}")
    return name


def requested_backend(backend: Optional[str] = None) -> str:
    """The backend asked for, by precedence: argument, use_backend(), environment, 'auto'."""
    for value, source in ((backend, "backend="), (_forced, "use_backend()"),
                          (os.environ.get(ENV_VAR) or None, f"environment variable {ENV_VAR}")):
        if _validate_name(value, source) is not None:
            return value
    return AUTO


class use_backend(contextlib.AbstractContextManager):
    """Force a backend for every op: `elp_fast.use_backend("reference")` sets it for the process;
    `with elp_fast.use_backend("triton"): ...` sets it for the block and restores the previous
    choice afterwards. `use_backend("auto")` or `use_backend(None)` returns to automatic choice."""

    def __init__(self, name: Optional[str]) -> None:
        global _forced
        _validate_name(name, "use_backend")
        self._previous = _forced
        _forced = None if name == AUTO else name

    def __exit__(self, *exc: Any) -> None:
        global _forced
        _forced = self._previous


def _constant_under_compile(fn: Callable) -> Callable:
    """What torch.compiler.assume_constant_result(fn) does (torch 2.x sets just this flag),
    without the Dynamo import (a second, and Triton) that calling it costs at `import elp_fast`."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_under_compile
def _probe(op: str, backend: str) -> Optional[str]:
    """Run a backend's availability check. Under torch.compile this runs eagerly and its
    answer becomes a constant, as checks import modules (which Dynamo cannot trace)."""
    impl = _OPS[op].impls.get(backend)
    if impl is None:
        return f"no {backend} implementation of {op} is registered"
    try:
        return impl.available()
    except Exception as exc:  # an import error in an optional backend is a reason, not a crash
        return f"{type(exc).__name__}: {exc}"


def _availability(op: str, backend: str) -> Optional[str]:
    key = (op, backend)
    if key not in _AVAILABLE_CACHE:
        _AVAILABLE_CACHE[key] = _probe(op, backend)
    return _AVAILABLE_CACHE[key]


def _why_not(op: str, backend: str, args: tuple, kwargs: dict) -> Optional[str]:
    reason = _availability(op, backend)
    if reason is None:
        reason = _OPS[op].impls[backend].supports(*args, **kwargs)
    return reason


def _device_type(args: tuple) -> str:
    for a in args:
        if hasattr(a, "device"):
            return a.device.type
        if isinstance(a, (list, tuple)) and a and hasattr(a[0], "device"):
            return a[0].device.type
    return "cpu"


def set_cuda_preference(order: list[str]) -> None:
    """Reorder the automatic CUDA preference (fastest first, by measurement)."""
    if sorted(order) != sorted(_PREFERENCE["cuda"]):
        raise ValueError(f"set_cuda_preference: got {order}; expected a permutation of {_PREFERENCE['cuda']}")
    _PREFERENCE["cuda"] = list(order)


def select(op: str, args: tuple, kwargs: dict, backend: Optional[str] = None) -> str:
    """Name of the backend that will run `op` on these arguments."""
    if op not in _OPS:
        raise KeyError(f"unknown op {op!r}; registered: {sorted(_OPS)}")
    wanted = requested_backend(backend)
    if wanted != AUTO:
        reason = _why_not(op, wanted, args, kwargs)
        if reason is not None:
            raise BackendUnavailableError(f"{op}: backend {wanted!r} was requested but cannot run: {reason}")
        return wanted
    for candidate in _PREFERENCE.get(_device_type(args), ["reference"]):
        if candidate not in _OPS[op].impls and candidate != "reference":
            continue
        reason = _why_not(op, candidate, args, kwargs)
        if reason is None:
            return candidate
        if (op, candidate, reason) not in _LOGGED:
            _LOGGED.add((op, candidate, reason))
            log.info("%s: not using %s backend: %s", op, candidate, reason)
    raise BackendUnavailableError(f"{op}: no backend can run this call (even the reference declined)")


def dispatch(op: str, args: tuple, kwargs: dict, backend: Optional[str] = None) -> Any:
    name = select(op, args, kwargs, backend)
    return _OPS[op].impls[name].fn(*args, **kwargs)


def backend_table() -> list[dict]:
    """One row per (op, backend): whether it is available in this process and, if not, why."""
    rows = []
    for op in sorted(_OPS):
        for backend in BACKENDS:
            if backend in _OPS[op].impls:
                reason = _availability(op, backend)
            else:
                reason = "not implemented yet"
            rows.append({"op": op, "backend": backend, "available": reason is None, "reason": reason or ""})
    return rows
