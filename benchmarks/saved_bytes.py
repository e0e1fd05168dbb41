"""Saved-for-backward bytes per token of every provider of the three ops (docs/performance.md 2: a
fused E-adapter keeps at most 2r + 8 bytes per token in bf16: z and the LayerNorm statistics).

    python benchmarks/saved_bytes.py                  # CPU; rows to results/<cpu>-<date>-saved.csv
    python benchmarks/saved_bytes.py --device cuda    # the compiled Triton and CUDA kernels on a GPU
    python benchmarks/saved_bytes.py --smoke          # small shapes (the test suite runs it)

Deterministic, so a CPU decides it for the Triton kernels (through the interpreter: their values
are not checked here, only what they keep) and for the native CPU ops; the native CUDA kernels
need `--device cuda`. Autograd's saved tensors are counted with saved_tensors_hooks during one
forward (tests/numerics.py's saved_bytes; the op's own inputs are left out, the caller holds
them anyway), at 64 and 128 tokens: the difference over 64 is the bytes per token, the rest a
fixed part (e.g. the reference's fp32 copies of the weights), reported apart.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

if "cuda" not in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import

import torch  # noqa: E402

import harness  # noqa: E402
from bench_cpu import _cpu_name, _with_post_ln  # noqa: E402
from bench_ops import _leaves, aggregate_case, bottleneck_case, wsum_case  # noqa: E402
from elp_fast.ops import _native  # noqa: E402
from numerics import saved_bytes  # noqa: E402

FIELDS = ["op", "provider", "mode", "d", "width", "layers", "dtype", "variant", "saved_bytes_per_token",
          "budget_bytes_per_token", "saved_fixed_bytes", "gpu", "torch", "triton", "commit", "date"]


def cases(smoke: bool, dtype, n: int, cpu: torch.device):
    dims = [(64, 16)] if smoke else [(768, 64), (768, 256), (1024, 64), (1024, 256)]
    for d, r in dims:
        for post in (False, True):
            yield _with_post_ln(bottleneck_case(n, d, r, cpu, dtype), post)
    for L in ((3,) if smoke else (13, 25)):
        d, m = (64, 32) if smoke else (1024, 512)
        yield aggregate_case(L, n, d, m, cpu, dtype)
        yield wsum_case(L, n, d, cpu, dtype)


def saved(fn, case: dict) -> int:
    args, flat = _leaves(case["inputs"])
    return saved_bytes(lambda: fn(**args), flat)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="small shapes (checks the script)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    dtype = torch.bfloat16
    env = harness.environment()
    device = torch.device(args.device)
    if device.type == "cpu":
        env["gpu"] = f"cpu {_cpu_name()}"
    native = _native.available() is None and (device.type == "cpu" or bool(_native.record().get("cuda")))
    providers = ["reference", "eager", "triton"] + (["native"] if native else [])
    rows = []
    for case, twin in zip(cases(args.smoke, dtype, 64, device), cases(args.smoke, dtype, 128, device)):
        post = "post_ln_w" in case["inputs"]
        variant = ("residual+post_ln" if post else "residual") if case["op"] == "bottleneck_adapter" else ""
        for prov in providers:
            fn = case["fns"][prov]
            b1, b2 = saved(fn, case), saved(twin["fns"][prov], twin)
            a = (b2 - b1) / (twin["tokens"] - case["tokens"])
            fixed = b1 - a * case["tokens"]
            budget = 2 * case["width"] + 8 if case["op"] == "bottleneck_adapter" and not post else ""
            rows.append({"op": case["op"], "provider": prov, "mode": "fwd+bwd", "d": case["d"], "width": case["width"],
                         "layers": case["layers"], "dtype": "bfloat16", "variant": variant,
                         "saved_bytes_per_token": a, "budget_bytes_per_token": budget, "saved_fixed_bytes": fixed,
                         **env})
            print(f"{case['op']:18s} d={case['d']:<5d} w={case['width']:<4d} L={case['layers']:<3d} {variant:17s} "
                  f"{prov:9s} {a:9.1f} B/token + {fixed:9.0f} B" + (f"  (budget {budget})" if budget != "" else ""), flush=True)
    base = harness.default_path(env if device.type == "cuda" else {**env, "gpu": f"cpu-{_cpu_name()}"})
    out = args.out or base.with_name(base.stem + "-saved.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"# rows written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
