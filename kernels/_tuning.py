"""Tile configurations chosen on the card: first-call selection over a few candidates.

Every kernel family lists its candidate configurations per shape class (dtype class, padded
width) in its own file; each candidate is spill-free under the Triton versions elp_fast supports
(benchmarks/compile_check.py checks them, docs/performance.md 4). At a launch:

1. `plans()` drops the candidates whose grid would leave the card under-filled (fewer than
   FILL programs per SM) when another candidate fills it: at 6,392 tokens a 64-row tile gives
   100 programs for 132 SMs, a 16-row tile 400;
2. `pick()` times the remaining candidates once per (kernel, shape class) on the real inputs
   (CUDA events, a few repetitions each), keeps the fastest in memory and in a JSON cache on disk
   ($ELP_FAST_CACHE_DIR, default ~/.cache/elp_fast/tiles.json, keyed by card and Triton version),
   and returns it. The time spent choosing is counted (`selection_seconds()`); benchmarks report it.

Every candidate computes the same thing with fp32 accumulation; they differ in summation order
only (a different tile splits a dot differently), so results can differ in the last bits from one
card or cache to another but never from one call to the next. ELP_FAST_TILES=first skips the
timing and takes each family's first surviving candidate (reproducible across machines).

Under the Triton interpreter nothing is timed: the interpreter's tile (the largest blocks: each
program costs milliseconds there) is used, unless a test forces a candidate with `forced()`.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

FILL = 2  # programs per SM the grid should reach at least (latency hiding across a wave)

_lock = threading.Lock()
_chosen: dict[str, tuple] = {}      # "kernel|class" -> config, this process
_forced: dict[str, tuple] = {}      # kernel -> config (tests, compile_check)
_seconds = [0.0]
_disk: dict | None = None


def selection_seconds() -> float:
    """Wall seconds this process has spent choosing tiles (compiling and timing candidates)."""
    return _seconds[0]


@contextlib.contextmanager
def forced(kernel: str, config: tuple) -> Iterator[None]:
    """Launches of `kernel` use `config` inside the block (tests, the offline compile check)."""
    previous = _forced.get(kernel)
    _forced[kernel] = tuple(config)
    try:
        yield
    finally:
        if previous is None:
            _forced.pop(kernel, None)
        else:
            _forced[kernel] = previous


def plans(candidates: Sequence[tuple], programs: Callable[[tuple], int], sms: int) -> list[tuple]:
    """The candidates whose grid reaches FILL programs per SM, or, when none does (small inputs),
    those with the largest grid."""
    grids = [programs(c) for c in candidates]
    need = min(FILL * sms, max(grids))
    return [c for c, g in zip(candidates, grids) if g >= need]


def _cache_path() -> Path:
    root = os.environ.get("ELP_FAST_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "elp_fast")
    return Path(root) / "tiles.json"


def _device_key(device: torch.device) -> str:
    import triton
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"{name}|triton {triton.__version__}"


def _load_disk() -> dict:
    global _disk
    if _disk is None:
        try:
            _disk = json.loads(_cache_path().read_text())
        except (OSError, ValueError):
            _disk = {}  # no cache yet, or unreadable: choose again
    return _disk


def _save_disk() -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(_disk, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the choice still holds for this process


def _time_ms(launch: Callable[[], object], device: torch.device) -> float:
    from triton.testing import do_bench
    return float(do_bench(launch, warmup=5, rep=20))


def pick(kernel: str, shape_class: tuple, candidates: list[tuple], launch: Callable[[tuple], object],
         device: torch.device, interpreter: tuple) -> tuple:
    """The configuration for this launch. `candidates` (already through `plans()`) are timed with
    `launch(config)` the first time a (kernel, shape class) is seen on this card."""
    if kernel in _forced:
        return _forced[kernel]
    if device.type != "cuda":
        return interpreter
    if len(candidates) == 1 or os.environ.get("ELP_FAST_TILES") == "first":
        return candidates[0]
    key = f"{kernel}|{'|'.join(map(str, shape_class))}"
    with _lock:
        if key in _chosen:
            return _chosen[key]
        disk = _load_disk().setdefault(_device_key(device), {})
        stored = tuple(disk.get(key, ()))
        if stored in candidates:
            _chosen[key] = stored
            return stored
        t0 = time.perf_counter()
        times = {c: _time_ms(lambda c=c: launch(c), device) for c in candidates}
        best = min(candidates, key=times.__getitem__)
        _seconds[0] += time.perf_counter() - t0
        _chosen[key] = best
        disk[key] = list(best)
        _save_disk()
        return best
