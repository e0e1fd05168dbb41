"""The targets of docs/performance.md section 2, read off benchmark rows (bench_ops.py, bench_cpu.py,
saved_bytes.py and bench_e2e.py rows, as dicts of CSV strings or of values). Used by bench_ops.py's
summary and by report.py, so the run's printout and the README say the same thing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional


def num(row: dict, key: str) -> float:
    try:
        return float(row.get(key, "nan"))
    except (TypeError, ValueError):
        return float("nan")


def is_gpu(row: dict) -> bool:
    return not str(row.get("gpu", "cpu")).startswith("cpu")


@dataclass
class Target:
    what: str
    baseline: str
    goal: str
    kind: str                                # "op", "saved" or "e2e": which rows it reads
    select: Callable[[dict], bool]
    value: Callable[[dict], float]           # the measured ratio of one row
    ok: Callable[[float], bool]
    worst: Callable = min                    # the configuration that decides (min for >=, max for <=)
    gpu_only: bool = True                    # False: a CPU run can decide it too


def _op(row: dict, op: str, mode: Optional[str] = None) -> bool:
    return row.get("op") == op and (mode is None or row.get("mode") == mode)


TARGETS = [
    Target("E-adapter fused fwd+bwd, bf16, d=1024, r in {64, 256}, >= 262k tokens", "PyTorch eager", ">= 3x", "op",
           lambda r: _op(r, "bottleneck_adapter", "fwd+bwd") and num(r, "tokens") >= 262_144 and num(r, "d") == 1024,
           lambda r: num(r, "speedup_vs_eager"), lambda v: v >= 3.0),
    Target("same", "torch.compile (default mode)", ">= 2x", "op",
           lambda r: _op(r, "bottleneck_adapter", "fwd+bwd") and num(r, "tokens") >= 262_144 and num(r, "d") == 1024,
           lambda r: num(r, "speedup_vs_compile"), lambda v: v >= 2.0),
    Target("same", "measured-bandwidth floor", ">= 70 %", "op",
           lambda r: _op(r, "bottleneck_adapter", "fwd+bwd") and num(r, "tokens") >= 262_144 and num(r, "d") == 1024,
           lambda r: num(r, "pct_of_floor"), lambda v: v >= 70.0),
    Target("L aggregation with adapters fused (fwd+bwd), L in {13, 25}", "eager (stack + per-layer modules)",
           ">= 5x", "op", lambda r: _op(r, "layer_aggregate", "fwd+bwd"),
           lambda r: num(r, "speedup_vs_eager"), lambda v: v >= 5.0),
    Target("weighted_layer_sum fused, fwd", "s3prl-style stack/mul/sum", ">= 3.5x", "op",
           lambda r: _op(r, "weighted_layer_sum", "fwd"), lambda r: num(r, "speedup_vs_eager"), lambda v: v >= 3.5),
    Target("weighted_layer_sum fused, fwd", "measured-bandwidth floor", ">= 80 %", "op",
           lambda r: _op(r, "weighted_layer_sum", "fwd"), lambda r: num(r, "pct_of_floor"), lambda v: v >= 80.0),
    Target("realistic step size (6,392 tokens), every op and mode", "eager", ">= 1.0x", "op",
           lambda r: num(r, "tokens") == 6392, lambda r: num(r, "speedup_vs_eager"), lambda v: v >= 1.0),
    Target("saved-for-backward bytes per E-adapter per token (bf16, pre-LN layer)", "2r + 8", "<= 1.0x", "saved",
           lambda r: _op(r, "bottleneck_adapter", "fwd+bwd") and r.get("dtype") == "bfloat16"
           and r.get("variant", "residual") != "residual+post_ln",
           lambda r: num(r, "saved_bytes_per_token") / (2 * num(r, "width") + 8), lambda v: v <= 1.0,
           worst=max, gpu_only=False),
    Target("ELP training step (fused), WavLM-Large, batch 8 x 16 s", "HF eager + unfused adapters (elp-eager)",
           ">= 2x", "e2e",
           lambda r: r.get("backbone") == "wavlm-large" and r.get("variant") == "elp-fused"
           and r.get("checkpointing") == "none" and num(r, "batch") == 8 and num(r, "seconds") == 16,
           lambda r: num(r, "speedup_vs_eager"), lambda v: v >= 2.0),
    Target("same", "same, peak memory", "<= 0.5x", "e2e",
           lambda r: r.get("backbone") == "wavlm-large" and r.get("variant") == "elp-fused"
           and r.get("checkpointing") == "none" and num(r, "batch") == 8 and num(r, "seconds") == 16,
           lambda r: num(r, "peak_vs_eager"), lambda v: v <= 0.5, worst=max),
]
FUSED = ("triton", "native")


@dataclass
class Verdict:
    target: Target
    provider: str
    configurations: int
    worst: float
    best: float
    met: bool
    device: str
    date: str


def evaluate(target: Target, rows: list, provider: Optional[str] = None) -> Optional[Verdict]:
    """The target over the rows of one run (op rows of `provider`); None when none apply."""
    sel = [r for r in rows if target.select(r) and (provider is None or r.get("provider") == provider)
           and (not target.gpu_only or is_gpu(r))]
    vals = [target.value(r) for r in sel]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return None
    worst = target.worst(vals)
    best = min(vals) if target.worst is max else max(vals)
    first = sel[0]
    return Verdict(target, provider or "", len(vals), worst, best, target.ok(worst), str(first.get("gpu", "")),
                   str(first.get("date", "")))
