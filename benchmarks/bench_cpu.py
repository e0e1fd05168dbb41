"""CPU rows: the compiled CPU ops (`native`) against the reference, the eager composition a user
writes and torch.compile of it, at the realistic shapes.

    python benchmarks/bench_cpu.py            # this machine, about 10 minutes on 2 cores
    python benchmarks/bench_cpu.py --smoke    # tiny shapes, checks the script (tests run it)

Shapes (one training step of 8 x 16 s utterances): N = 6,392 frames; the E-adapter at r = 256
with d = 768 (Base: post-LN layer, so residual + post-LN) and d = 1,024 (Large: pre-LN, residual
only); the L aggregation at m = 512 and weighted_layer_sum, for L in {13, 25} and d in {768, 1024};
float32 and bfloat16; forward, backward alone and both. Providers: `reference` (elp_fast's spec
op), `native` (the compiled CPU ops), `eager` (the module composition of bench_ops.py) and
`compile` (torch.compile of it, Inductor; its compile seconds are the rows' first_call_s). All
providers of a configuration are timed in the same run, interleaved over rounds (docs/performance.md
3); CPU numbers are quoted only as ratios. A correctness gate (the docs/testing.md rule on the first
1,024 rows against a float64 gold) runs first; the native ops are not timed if they fail it, the
baselines are (their rows say so). GB/s and % of floor use the bytes of bench_ops.py over this
machine's copy bandwidth, measured in the same run. The summary reads the native ops'
goal off the rows: native >= 1.2x the reference for forward + backward of both composite
ops.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

import harness
from bench_ops import (MODES, _compiled, aggregate_case, bottleneck_case, fill_timed, gate_case, mode_calls,
                       with_bwd, wsum_case)
from elp_fast import ops
from elp_fast.ops import _native
from numerics import saved_bytes

TARGET = 1.2
GATE_ROWS = 1024


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def configurations(smoke: bool, dtype):
    cpu = torch.device("cpu")
    if smoke:
        yield bottleneck_case(64, 48, 16, cpu, dtype), {"post": True}
        yield aggregate_case(3, 64, 48, 32, cpu, dtype), {}
        yield wsum_case(3, 64, 48, cpu, dtype), {}
        return
    n = 6392
    yield bottleneck_case(n, 768, 256, cpu, dtype), {"post": True}   # Base: post-LN layer
    yield bottleneck_case(n, 1024, 256, cpu, dtype), {"post": False}  # Large: pre-LN layer
    for L in (13, 25):
        for d in (768, 1024):
            yield aggregate_case(L, n, d, 512, cpu, dtype), {}
            yield wsum_case(L, n, d, cpu, dtype), {}


def _with_post_ln(case: dict, post: bool) -> dict:
    """The bottleneck case with the layer's post-LN (Base) or without (Large)."""
    if post:
        d = case["d"]
        g = torch.Generator().manual_seed(1)
        dtype = case["inputs"]["x"].dtype
        case["inputs"]["post_ln_w"] = (1 + 0.1 * torch.randn(d, generator=g)).to(dtype)
        case["inputs"]["post_ln_b"] = (0.1 * torch.randn(d, generator=g)).to(dtype)
    return case


def _provider(op: str, backend: str):
    if op == "bottleneck_adapter":
        return lambda **kw: ops.bottleneck_adapter(**kw, activation="gelu", backend=backend)
    if op == "layer_aggregate":
        return lambda **kw: ops.layer_aggregate(**kw, activation="gelu", backend=backend)
    return lambda **kw: ops.weighted_layer_sum(**kw, backend=backend)


def bench(case: dict, dtype, rounds: int, samples: int, env: dict, providers: list, smoke: bool,
          bandwidth: float) -> list:
    fns = {b: _provider(case["op"], b) for b in ("reference", "native")}
    if "eager" in providers:
        fns["eager"] = case["fns"]["eager"]
    if "compile" in providers:
        fns["compile"] = _compiled(case["fns"]["eager"], smoke)
    gates, timed = gate_case(case, fns, dtype, GATE_ROWS)
    rows = []
    with_bwd(case)
    for mode in MODES:
        calls, args, flat = mode_calls(mode, timed, case["inputs"], case["grad_out"])
        timings = harness.time_providers(calls, torch.device("cpu"), rounds, smoke=False, samples=samples)
        for name in fns:
            row = harness.Row(case["op"], name, mode, case["tokens"], case["d"], case["width"], case["layers"],
                              str(dtype).replace("torch.", ""), gate=gates[name], env=env)
            if name not in timings:
                rows.append(row)
                continue
            fill_timed(row, timings, case, mode, bandwidth)
            if mode == "fwd+bwd" and name != "compile":  # what autograd keeps (docs/performance.md 2: <= 2r + 8)
                row.saved_bytes_per_token = saved_bytes(lambda: fns[name](**args), flat) / case["tokens"]
            row.variant = "residual+post_ln" if "post_ln_w" in case["inputs"] else (
                "residual" if case["op"] == "bottleneck_adapter" else "")
            rows.append(row)
        del calls  # a "bwd" mode's kept graphs
    return rows


def summary(rows: list) -> str:
    lines = [f"op | dtype | shape | native/reference fwd | bwd | fwd+bwd | >= {TARGET}x (fwd+bwd) | "
             "native/eager fwd+bwd | native/compile fwd+bwd"]
    keys = sorted({(r.op, r.dtype, r.tokens, r.d, r.width, r.layers) for r in rows if r.provider == "native"})
    for op, dt, n, d, w, L in keys:
        mine = {r.mode: r for r in rows if r.provider == "native" and
                (r.op, r.dtype, r.tokens, r.d, r.width, r.layers) == (op, dt, n, d, w, L)}
        ratio = {m: r.speedup_vs_reference for m, r in mine.items()}
        shape = f"N={n} d={d}" + (f" r={w}" if op == "bottleneck_adapter" else f" L={L}" + (f" m={w}" if w else ""))
        composite = op in ("bottleneck_adapter", "layer_aggregate")
        met = ("yes" if ratio["fwd+bwd"] >= TARGET else "NO") if composite else "(no target)"
        lines.append(f"{op} | {dt} | {shape} | {ratio['fwd']:.2f} | {ratio['bwd']:.2f} | {ratio['fwd+bwd']:.2f} | {met} | "
                     f"{mine['fwd+bwd'].speedup_vs_eager:.2f} | {mine['fwd+bwd'].speedup_vs_compile:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shapes: checks the script, not performance")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--ops", default="bottleneck_adapter,layer_aggregate,weighted_layer_sum")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--samples", type=int, default=3, help="timed calls per provider per round")
    p.add_argument("--providers", default="eager,compile",
                   help="besides reference and native: comma list of eager, compile (or empty)")
    p.add_argument("--out", type=Path, help="CSV or JSON file for the rows")
    args = p.parse_args(argv)
    reason = _native.available()
    if reason is not None:
        p.error(f"the native extension is not available: {reason}")
    env = harness.environment()
    env["gpu"] = f"cpu {_cpu_name()} ({torch.get_num_threads()} threads, {_native.cpu_isa()})"
    bandwidth = harness.copy_bandwidth_gbps(torch.device("cpu"), 1 << 24 if args.smoke else 1 << 30)
    print(f"# {env}  copy bandwidth {bandwidth:.1f} GB/s", flush=True)
    providers = [x for x in args.providers.split(",") if x]
    out = args.out or harness.default_path({**env, "gpu": f"cpu-{_cpu_name()}"})
    rows = []
    for dtype in (getattr(torch, name) for name in args.dtypes.split(",")):
        for case, extra in configurations(args.smoke, dtype):
            if case["op"] not in args.ops.split(","):
                continue
            if case["op"] == "bottleneck_adapter":
                case = _with_post_ln(case, extra["post"])
            new = bench(case, dtype, 1 if args.smoke else args.rounds, 1 if args.smoke else args.samples, env,
                        providers, args.smoke, bandwidth)
            for r in new:
                print(f"{r.op:18s} {r.dtype:8s} {r.mode:7s} N={r.tokens:<5d} d={r.d:<4d} w={r.width:<3d} "
                      f"L={r.layers:<2d} {r.provider:9s} {r.median_ms:9.1f} ms  x{r.speedup_vs_reference:5.2f}  "
                      f"{r.gate[:50]}", flush=True)
            rows += new
            harness.write(rows, out)
    print(summary(rows))
    print(f"# rows written to {out}")
    failed = [r for r in rows if r.provider == "native" and r.gate != "ok"]  # ours; eager/compile are reported
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
