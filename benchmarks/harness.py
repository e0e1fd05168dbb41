"""The benchmark protocol of docs/performance.md section 3, shared by the op benchmarks.

- every provider of a configuration is timed in the same run, interleaved over >= 3 rounds;
  rows report the median of round medians and p20/p80 of all samples;
- the first call (compilation, autotuning) is timed separately and never mixed into the samples;
  the seconds the Triton kernels spend choosing tile configurations in it are read off their
  tuning module (select_s);
- a correctness gate against the reference runs before timing: a failing provider is reported,
  not timed;
- on CUDA: triton.testing.do_bench (CUDA events, L2 flushed) and the peak-memory delta; on CPU
  (the smoke mode CI runs) a perf_counter loop, useful only to keep the script working.
"""
from __future__ import annotations

import csv
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the numerics rule (tests/numerics.py) is the gate

from numerics import compare  # noqa: E402


@dataclass
class Row:
    op: str
    provider: str
    mode: str
    tokens: int
    d: int
    width: int  # r for the bottleneck, m for layer_aggregate, 0 otherwise
    layers: int
    dtype: str
    median_ms: float = float("nan")
    p20_ms: float = float("nan")
    p80_ms: float = float("nan")
    gbps: float = float("nan")
    tflops: float = float("nan")
    pct_of_floor: float = float("nan")
    speedup_vs_eager: float = float("nan")
    speedup_vs_compile: float = float("nan")
    speedup_vs_reference: float = float("nan")
    peak_mem_mb: float = float("nan")
    saved_bytes_per_token: float = float("nan")
    first_call_s: float = float("nan")
    select_s: float = float("nan")  # of first_call_s: the Triton kernels' tile selection (triton rows)
    gate: str = ""
    variant: str = ""
    env: dict = field(default_factory=dict)


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    cuda = torch.cuda.is_available()
    return {"gpu": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda or "none",
            "commit": commit, "date": datetime.date.today().isoformat()}


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured copy bandwidth (read + write bytes per second) of the device's memory: the
    floor's yardstick. On a CPU: the median of 10 copies of `nbytes` (beyond the caches)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        from triton.testing import do_bench
        ms = do_bench(lambda: dst.copy_(src), warmup=10, rep=100)
    else:
        dst.copy_(src)
        times = []
        for _ in range(10):
            t = time.perf_counter()
            dst.copy_(src)
            times.append((time.perf_counter() - t) * 1e3)
        ms = statistics.median(times)
    return 2 * src.numel() / ms / 1e6


def gate(result: dict, base: dict, gold: dict, dtype: torch.dtype, reduced: Callable[[str], bool]) -> str:
    """'ok' or the failing tensors (docs/testing.md rule, gold = the reference in float64)."""
    bad = [str(c) for c in compare(result, base, gold, dtype=dtype, reduced=reduced) if not c.ok]
    return "ok" if not bad else "FAIL " + "; ".join(bad)


BASELINES = ("reference", "eager", "compile")  # what the speed-ups are measured against


def gate_providers(fns: dict, run: Callable, base: dict, gold: dict, dtype: torch.dtype,
                   reduced: Callable[[str], bool]) -> tuple[dict, dict]:
    """(gate per provider, the providers to time). A fused provider that fails the gate is not
    timed; a baseline is timed anyway (the speed-ups need it; Inductor, for one, reorders
    reductions), unless it raised."""
    gates, timed = {}, {}
    for name, fn in fns.items():
        try:
            gates[name] = gate(run(fn), base, gold, dtype, reduced)
        except Exception as exc:  # e.g. a compile failure: reported in the row
            gates[name] = f"FAIL {type(exc).__name__}: {str(exc)[:200]}"
            continue
        if gates[name] == "ok" or name in BASELINES:
            timed[name] = fn
    return gates, timed


def _samples(fn: Callable, device: torch.device, smoke: bool, samples: int | None = None) -> list[float]:
    if device.type == "cuda":
        from triton.testing import do_bench
        return list(do_bench(fn, warmup=25, rep=100, return_mode="all"))
    out = []
    for _ in range(samples or (2 if smoke else 5)):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def selection_seconds() -> float:
    """Wall seconds this process has spent so far choosing tile configurations for the Triton
    kernels (their tuning module, kernels/_tuning.py); nan where the kernels have none."""
    try:
        from elp_fast.ops import _triton
        return float(_triton.kernels("_tuning").selection_seconds())
    except (ImportError, AttributeError):
        return float("nan")


def first_call(fn: Callable, device: torch.device, select: bool = False) -> tuple[float, float]:
    """(seconds of one synchronised call, the tile-selection seconds within it: nan unless
    `select`, or where the kernels do not select tiles)."""
    before = selection_seconds() if select else float("nan")
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return seconds, (selection_seconds() - before if select else float("nan"))


class Timing(NamedTuple):
    first_call_s: float
    median_ms: float  # of the round medians
    p20_ms: float
    p80_ms: float
    select_s: float  # of first_call_s: tile selection (nan unless asked for)


def time_providers(fns: dict[str, Callable], device: torch.device, rounds: int, smoke: bool,
                   samples: int | None = None, select: tuple = ()) -> dict[str, Timing]:
    """{provider: Timing}, providers interleaved; the first call of every provider is timed apart,
    and for the providers named in `select` so is the tile selection within it."""
    first = {name: first_call(fn, device, name in select) for name, fn in fns.items()}
    per_round: dict[str, list] = {n: [] for n in fns}
    pooled: dict[str, list] = {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            s = _samples(fn, device, smoke, samples)
            per_round[name].append(statistics.median(s))
            pooled[name].extend(s)
    out = {}
    for name in fns:
        q = statistics.quantiles(pooled[name], n=5) if len(pooled[name]) > 1 else pooled[name] * 4
        out[name] = Timing(first[name][0], statistics.median(per_round[name]), q[0], q[3], first[name][1])
    return out


def peak_memory_mb(fn: Callable, device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def write(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = []
    for r in rows:
        d = asdict(r)
        d.update(d.pop("env"))
        flat.append(d)
    if path.suffix == ".json":
        path.write_text(json.dumps(flat, indent=1))
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


def default_path(env: dict) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in env["gpu"].lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return ROOT / "benchmarks" / "results" / f"{slug}-{env['date']}.csv"


