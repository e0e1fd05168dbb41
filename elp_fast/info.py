"""`python -m elp_fast.info [--json]`: versions and the backend table of this process."""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect() -> dict:
    import torch

    from . import __version__, backends, ops  # noqa: F401  (importing ops registers them)

    versions = {"elp_fast": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for dist in ("transformers", "triton", "deepspeed", "safetensors"):
        versions[dist] = _version(dist)
    versions["cuda_available"] = torch.cuda.is_available()
    versions["torch_cuda"] = torch.version.cuda
    return {"versions": versions, "native": _native_status(), "backends": backends.backend_table(),
            "requested": backends.requested_backend()}


def _native_status() -> dict:
    """Build status of the compiled extension: its record and CPU instruction set, or why not."""
    from .ops import _native

    reason = _native.available()
    if reason is not None:
        return {"loaded": False, "reason": reason}
    record = _native.record()
    return {"loaded": True, "cpu_isa": _native.cpu_isa(), "cuda_kernels": bool(record.get("cuda")),
            "cuda_arch_list": record.get("cuda_arch_list"), "built_with_torch": record.get("torch"),
            "source_hash": record.get("source_hash", "")[:12]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elp_fast.info", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    args = parser.parse_args(argv)
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data["versions"].items():
        print(f"{key:<16}{value}")
    native = data["native"]
    if native["loaded"]:
        cuda = f"CUDA {native['cuda_arch_list']}" if native["cuda_kernels"] else "no CUDA kernels"
        print(f"\nnative extension: loaded (CPU {native['cpu_isa']}, {cuda}, built with torch "
              f"{native['built_with_torch']}, sources {native['source_hash']})")
    else:
        print(f"\nnative extension: not loaded: {native['reason']}")
    print(f"\nbackend requested: {data['requested']}\n")
    print(f"{'op':<22}{'backend':<12}{'available':<11}reason")
    for row in data["backends"]:
        print(f"{row['op']:<22}{row['backend']:<12}{'yes' if row['available'] else 'no':<11}{row['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
