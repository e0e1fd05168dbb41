"""What the op files share for the `native` backend (the compiled extension `elp_fast._C`):
loading it after checking its build record, availability and per-call checks.

Nothing is loaded at import. The first availability check looks for the library, compares its
build record with this process (elp_fast/native_build.py) and only then loads it; a missing,
stale or broken build becomes the backend's reason, never an import error. After loading, each op
file's `on_load` hook registers the fake kernels and autograd of its `torch.ops.elp_fast_C` ops.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Callable, Optional

import torch

from .. import native_build
from ..version import __version__
from ._common import dtype_reason

log = logging.getLogger("elp_fast.native")

NATIVE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# The CUDA row kernels keep one row in one block's registers: 16-byte groups per thread when the
# row length allows, else single elements (fewer fit).
CUDA_MAX_ROW, CUDA_MAX_UNALIGNED_ROW = 4096, 1024
_hooks: list[Callable[[], None]] = []
_state: dict = {}  # "reason": Optional[str] once loading was attempted; "record": dict


def on_load(hook: Callable[[], None]) -> None:
    """Run `hook` once the library is loaded (now, if it already is)."""
    _hooks.append(hook)
    if _state.get("loaded"):
        hook()


def _source_dir() -> Optional[Path]:
    """csrc/ of the checkout this package runs from (editable install or PYTHONPATH), if any."""
    csrc = Path(__file__).resolve().parents[2] / "csrc"
    return csrc if csrc.is_dir() else None


def _load() -> Optional[str]:
    spec = importlib.util.find_spec("elp_fast._C")
    if spec is None or spec.origin is None:
        return ("not built: elp_fast._C is not installed (build it with `pip install --no-build-isolation .`; "
                "docs/design.md 4.4)")
    library = Path(spec.origin)
    record_path = library.with_name(native_build.RECORD_NAME)
    if not record_path.is_file():
        return f"{library.name} has no build record {record_path.name} beside it; {native_build.REBUILD}"
    record = json.loads(record_path.read_text())
    problem = native_build.problems(record, torch_version=torch.__version__, torch_cuda=torch.version.cuda,
                                    elp_version=__version__, csrc=_source_dir())
    if problem is not None:
        return problem
    try:
        importlib.import_module("elp_fast._C")
    except Exception as exc:  # noqa: BLE001 (a broken library must not break the package)
        return f"{library.name} failed to load: {type(exc).__name__}: {exc}"
    compiled = json.loads(torch.ops.elp_fast_C.build_info())
    if compiled.get("source_hash") != record.get("source_hash"):
        return f"{library.name} does not match its build record {record_path.name}; {native_build.REBUILD}"
    _state.update(record=record, loaded=True)
    for hook in _hooks:
        hook()
    return None


def available() -> Optional[str]:
    if "reason" not in _state:
        _state["reason"] = reason = _load()
        if reason is not None and not reason.startswith("not built"):
            # a library is there but refused (stale, mismatched, broken): say so once, loudly
            log.warning("elp_fast: not using the native extension: %s", reason)
    return _state["reason"]


def record() -> Optional[dict]:
    """The build record of the loaded extension (None unless it loaded)."""
    available()
    return _state.get("record")


def cpu_isa() -> str:
    """The CPU instruction set the row kernels use (`ELP_FAST_CPU_ISA` overrides)."""
    return torch.ops.elp_fast_C.cpu_isa()


def supports(tensors: dict, row_width: int = 0) -> Optional[str]:
    """Reason the compiled ops cannot take these tensors (device, dtype, row width), or None."""
    first = next(t for t in tensors.values() if t is not None)
    if first.device.type == "cuda":
        if not _state.get("record", {}).get("cuda"):
            return "the extension was built without CUDA (torch without CUDA or no nvcc at build time)"
        if row_width > CUDA_MAX_ROW:
            return f"rows of {row_width} elements (the CUDA row kernels take at most {CUDA_MAX_ROW})"
        vector = 16 // first.element_size()
        if row_width % vector and row_width > CUDA_MAX_UNALIGNED_ROW:
            return (f"rows of {row_width} elements, not a multiple of {vector} (16 bytes): the CUDA row "
                    f"kernels then take at most {CUDA_MAX_UNALIGNED_ROW}")
    elif first.device.type != "cpu":
        return f"tensors on {first.device.type} (the native ops take CPU and CUDA tensors)"
    return dtype_reason(tensors, NATIVE_DTYPES, "native ops")


def gemm_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype of the saved GEMM outputs (csrc/common/op_utils.h gemm_type)."""
    return torch.float32 if t.device.type == "cpu" and t.dtype == torch.float16 else t.dtype


def wants_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
