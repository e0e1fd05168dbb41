"""What the op files share for the Triton backend: availability and per-call checks (the helpers
for the custom ops, shared with the native backend, are in _common.py). Nothing here imports
Triton at module import; the kernels (`elp_fast.kernels`) are imported at the first call that
needs them."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Optional

import torch

from ._common import dtype_reason

MIN_TRITON = (3, 6)
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def kernels(name: str):
    """The Triton kernel module `elp_fast.kernels.<name>` (imports Triton on first use). Once
    imported it is read from sys.modules, which torch.compile can trace (importlib it cannot)."""
    module = sys.modules.get(f"elp_fast.kernels.{name}")
    if module is None:
        _kernels_package()
        module = importlib.import_module(f"elp_fast.kernels.{name}")
    return module


def _kernels_package() -> None:
    """Installed, `kernels/` is the subpackage elp_fast.kernels (setup.py's package-dir mapping).
    Run from a source checkout on PYTHONPATH (as on the GPU test machine), the folder sits beside
    elp_fast/ instead: register it under the same name."""
    if "elp_fast.kernels" in sys.modules or importlib.util.find_spec("elp_fast.kernels") is not None:
        return
    folder = Path(__file__).resolve().parents[2] / "kernels"
    spec = importlib.util.spec_from_file_location("elp_fast.kernels", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or not (folder / "__init__.py").is_file():
        raise ModuleNotFoundError(f"elp_fast.kernels: not installed and no {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["elp_fast.kernels"] = module
    spec.loader.exec_module(module)


def _interpreting() -> bool:
    return kernels("_common").INTERPRET


def available() -> Optional[str]:
    try:
        import triton
    except ImportError:
        return "Triton is not installed (pip install 'elp-fast[triton]')"
    version = tuple(int(p) for p in triton.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_TRITON:
        return f"Triton {triton.__version__} is older than {'.'.join(map(str, MIN_TRITON))}"
    for name in ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"):
        kernels(name)  # import (and so check) them now: per-call checks then only read sys.modules
    if not torch.cuda.is_available() and not _interpreting():
        return ("no CUDA device (set TRITON_INTERPRET=1 before elp_fast.kernels is imported to run "
                "the kernels on CPU through the Triton interpreter: slow, meant for tests)")
    return None


def supports(op: str, tensors: dict) -> Optional[str]:
    """Reason the Triton kernels cannot take these tensors (device, dtype), or None."""
    first = next(t for t in tensors.values() if t is not None)
    if first.device.type == "cpu":
        if not _interpreting():
            return "CPU tensors run through Triton only under TRITON_INTERPRET=1 (the interpreter)"
    elif first.device.type != "cuda":
        return f"tensors on {first.device.type} (the Triton kernels take CUDA tensors)"
    return dtype_reason(tensors, KERNEL_DTYPES, "Triton kernels")
