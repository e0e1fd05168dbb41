"""The build record of the compiled extension `elp_fast._C` (standard library only: setup.py
loads this file by path, before elp_fast or torch can be imported).

setup.py writes `_C_build.json` beside the built library and compiles the same record into it
(`torch.ops.elp_fast_C.build_info()`). At load, `problems()` compares it with the running
process: another torch or CUDA, another elp_fast version, or (in a source checkout) sources
changed since the build each make the extension stale, and the `native` backend is disabled with
that reason instead of loading a library that does not match.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

RECORD_NAME = "_C_build.json"
SOURCE_SUFFIXES = (".h", ".cuh", ".cpp", ".cu", ".inc")
REBUILD = ("rebuild it: `pip install --no-build-isolation -e .` in the source checkout "
           "(docs/design.md 4.4)")


def source_files(csrc: Path) -> list[Path]:
    return sorted(p for p in csrc.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())


def source_hash(csrc: Path) -> str:
    """sha256 over the extension's sources (relative paths and contents)."""
    digest = hashlib.sha256()
    for path in source_files(csrc):
        digest.update(path.relative_to(csrc).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def problems(record: dict, *, torch_version: str, torch_cuda: Optional[str], elp_version: str,
             csrc: Optional[Path]) -> Optional[str]:
    """Why a built extension with this record must not be used here, or None."""
    if record.get("torch") != torch_version:
        return f"built against torch {record.get('torch')}, but this process runs torch {torch_version}; {REBUILD}"
    if record.get("torch_cuda") != torch_cuda:
        return (f"built against torch CUDA {record.get('torch_cuda')}, but this torch has CUDA {torch_cuda}; "
                f"{REBUILD}")
    if record.get("elp_fast") != elp_version:
        return f"built for elp_fast {record.get('elp_fast')}, but this is elp_fast {elp_version}; {REBUILD}"
    if csrc is not None and csrc.is_dir() and source_files(csrc):
        if record.get("source_hash") != source_hash(csrc):
            return f"stale build: the sources in {csrc} changed since the extension was built; {REBUILD}"
    return None
