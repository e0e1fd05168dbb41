"""Resume checkpoints on disk, written so that a crash at any instant loses at most the
checkpoint being written and never leaves one that could be loaded half-written.

    <output_dir>/checkpoints/
        step-00000100/                  one complete checkpoint
            adapters/                   adapter_model.safetensors + adapter_config.json (the
                                        trained tensors only; loads with ELPModel.load_adapters)
            optimizer.safetensors       fp32 master weights + optimizer moments, by parameter name
            rng/rank-00000.json         each process's generator states
            trainer_state.json          step, data position, schedule, loss scaler, config,
                                        SHA-256 of every other file; written last
        latest                          name of the newest complete checkpoint
        .tmp-step-00000200-<nonce>/     a checkpoint being written (removed at start if stale)

A checkpoint is built in a temporary directory; every file and the directory are fsynced; the
directory is renamed into place (the commit point); then `latest` is replaced atomically and old
checkpoints beyond keep-last-N are removed. Loading picks the newest directory whose
trainer_state.json parses and whose file hashes all match, so neither a torn `latest` nor a
half-copied directory is ever loaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Optional

from ..checkpoint import read_format_json
from ..files import fsync_dir, write_atomic

log = logging.getLogger("elp_fast.engine")

STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
ADAPTERS_DIR = "adapters"
RNG_DIR = "rng"
LATEST = "latest"
FORMAT = "elp_fast.train_state"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class ResumeError(ValueError):
    """A resume checkpoint cannot be used (a ValueError); the message says why."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def rng_name(rank: int) -> str:
    return f"rank-{rank:05d}.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_tree(root: Path) -> None:
    """fsync every file and directory below root (bottom-up), then root itself."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def clean_stale(ckpt_root: Path) -> list[Path]:
    """Remove temporary directories left by a run that died while writing a checkpoint."""
    removed = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith(".tmp-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def file_hashes(directory: Path) -> dict:
    """SHA-256 of every file under directory except the state file itself, by relative path."""
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != STATE_NAME:
            out[p.relative_to(directory).as_posix()] = sha256_file(p)
    return out


def write_state(tmp: Path, state: dict) -> None:
    """Seal a checkpoint being built in `tmp`: the state file records every other file's hash."""
    state = {**state, "format": FORMAT, "format_version": FORMAT_VERSION, "files": file_hashes(tmp)}
    write_atomic(tmp / STATE_NAME, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode())


def commit(tmp: Path, ckpt_root: Path, step: int, keep_last: int,
           after_rename: Optional[Callable[[], None]] = None) -> Path:
    """Move a sealed temporary checkpoint into place, point `latest` at it, prune old ones."""
    fsync_tree(tmp)
    final = ckpt_root / step_dir_name(step)
    if final.exists():  # the same step saved again (e.g. after a resume): replace it whole
        trash = ckpt_root / f".tmp-replaced-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(ckpt_root)
    if after_rename is not None:
        after_rename()
    write_atomic(ckpt_root / LATEST, (final.name + "\n").encode())
    fsync_dir(ckpt_root)
    for old in list_checkpoints(ckpt_root)[keep_last:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Checkpoint directories, newest step first (completeness not checked)."""
    if not ckpt_root.is_dir():
        return []
    found = [p for p in ckpt_root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)), reverse=True)


def read_state(directory: Path) -> dict:
    """The state of a complete checkpoint; ResumeError naming the problem otherwise."""
    path = directory / STATE_NAME
    if not path.is_file():
        raise ResumeError(f"{directory}: no {STATE_NAME} (not a complete elp_fast checkpoint)")
    state = read_format_json(path, FORMAT, FORMAT_VERSION, ResumeError)
    files = state.get("files")
    if not isinstance(files, dict) or OPTIMIZER_NAME not in files:
        raise ResumeError(f"{path}: lists no {OPTIMIZER_NAME}")
    for rel, digest in files.items():
        f = directory / rel
        if not f.is_file():
            raise ResumeError(f"{directory}: {rel} is missing")
        if sha256_file(f) != digest:
            raise ResumeError(f"{directory}: {rel} does not match its recorded SHA-256 (truncated or edited)")
    return state


def find_resume(ckpt_root: Path) -> Optional[Path]:
    """The newest complete checkpoint under ckpt_root, or None. Incomplete or corrupt ones are
    skipped with a warning (the rename is the commit point, so they should not exist)."""
    latest_file = ckpt_root / LATEST
    pointed = latest_file.read_text().strip() if latest_file.is_file() else None
    for directory in list_checkpoints(ckpt_root):
        try:
            read_state(directory)
        except ResumeError as exc:
            log.warning("skipping checkpoint %s: %s", directory.name, exc)
            continue
        if pointed and pointed != directory.name:
            log.warning("%s names %s but %s is newer and complete; resuming from the newer one",
                        latest_file, pointed, directory.name)
        return directory
    return None


def find_latest_name(ckpt_root: Path) -> Optional[Path]:
    """The checkpoint `latest` names (no verification), or None."""
    latest = ckpt_root / LATEST
    if latest.is_file():
        name = latest.read_text().strip()
        if name and (ckpt_root / name).is_dir():
            return ckpt_root / name
    return None
