"""Compile every Triton kernel variant for a GPU architecture, offline (no GPU needed), and report
registers and spills per thread (cuobjdump -res-usage on the cubin: STACK > 0 means spilled
registers) and the shared memory Triton allocates, per kernel.

    python benchmarks/compile_check.py             # all variants, sm_90 (H100/H200)
    python benchmarks/compile_check.py --quick     # one variant per kernel and config family

The interpreter cannot tell whether a kernel compiles, nor what it costs in registers: this can.
The launchers in kernels/ run as usual on small CPU tensors, but each kernel launch is captured
and compiled for the target instead, with the launcher's own block sizes and warps, so the
check sees exactly what a GPU run would compile. Exit status 1 if any kernel fails to compile or needs more shared memory than a block gets.
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ["TRITON_INTERPRET"] = "0"  # compiled kernels (must precede the kernels' import)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from elp_fast.ops import _triton  # noqa: E402

TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64",
         torch.int32: "i32"}


class Capture:
    """Stands in for a JIT kernel: `kernel[grid](*args, **kw)` records the call."""

    def __init__(self, jit, calls: list):
        self.jit, self.calls = jit, calls

    def __getitem__(self, grid):
        return lambda *args, **kw: self.calls.append((self.jit, args, kw))


def compile_call(jit, args, kw, arch: int):
    """Compile one captured launch for sm_<arch>; returns (resource usage dict, seconds)."""
    options = {k: kw.pop(k) for k in ("num_warps", "num_stages") if k in kw}
    bound = dict(zip(jit.arg_names, args), **kw)
    signature, constexprs, attrs = {}, {}, {}
    for i, (name, param) in enumerate(zip(jit.arg_names, jit.params)):
        value = bound[name]
        if param.is_constexpr:
            signature[name], constexprs[(i,)] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            signature[name] = "*" + TYPES[value.dtype]
            if value.data_ptr() % 16 == 0:  # what the launcher's specialisation would see
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
            if value % 16 == 0 and value != 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{jit.__name__}: argument {name} of type {type(value).__name__}")
    src = triton.compiler.ASTSource(fn=jit, signature=signature, constexprs=constexprs, attrs=attrs)
    t = time.perf_counter()
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    seconds = time.perf_counter() - t
    usage = resources(kernel.asm["cubin"])
    usage["SMEM"] = int(kernel.metadata.shared)  # Triton's dynamic shared memory (staging, reductions)
    return usage, options, seconds


def resources(cubin: bytes) -> dict:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    line = next(l for l in text.splitlines() if "REG:" in l)
    return {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line)}


def launches(quick: bool):
    """(label, launcher thunk) for every variant the dispatcher can send to the kernels."""
    K = {name: _triton.kernels(name) for name in ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum")}
    dtypes = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16, torch.float32)
    widths = (64, 512) if quick else (8, 64, 256, 512)
    variants = ("residual", "residual+post_ln") if quick else ("plain", "residual", "residual+post_ln")
    n, d = 64, 1024
    for dt, r, variant in itertools.product(dtypes, widths, variants):
        t = lambda *s: torch.zeros(*s, dtype=dt)  # noqa: E731
        res = t(n, d) if variant != "plain" else None
        post = (t(d), t(d)) if variant.endswith("post_ln") else (None, None)
        w = (t(r, d), t(r), t(d, r), t(d), t(d), t(d))

        def both(K=K["bottleneck_adapter"], w=w, res=res, post=post, dt=dt):
            x = torch.zeros(n, d, dtype=dt)
            y, z, stats = K.forward(x, *w, res, *post, activation="gelu", eps=1e-5, save=True)
            K.backward(x, x, torch.zeros(n, w[0].shape[0], dtype=dt), torch.zeros(n, 4 if post[0] is not None else 2),
                       w[0], w[2], w[3], w[4], w[5], res, post[0], activation="gelu", need_dx=True,
                       need_dres=post[0] is not None, need_params=True)
        yield f"bottleneck_adapter {str(dt)[6:]} r={r} {variant}", both
    for dt, m in itertools.product(dtypes, widths):
        L = 3
        t = lambda *s: torch.zeros(*s, dtype=dt)  # noqa: E731

        def agg(K=K["layer_aggregate"], t=t, m=m):
            hs = [t(n, d) for _ in range(L)]
            params = (t(L, m, d), t(L, m), t(L, m), t(L, m), torch.zeros(L))
            K.forward(hs, *params, activation="gelu", eps=1e-5)
            K.backward(t(n, m), hs, *params, activation="gelu", eps=1e-5, need_dh=True, need_params=True)
        yield f"layer_aggregate {str(dt)[6:]} m={m}", agg
    for dt in dtypes:
        def wsum(K=K["weighted_layer_sum"], dt=dt):
            hs = [torch.zeros(n, d, dtype=dt) for _ in range(3)]
            K.forward(hs, torch.zeros(3))
            K.backward(hs[0], hs, torch.zeros(3), need_dh=True, need_logits=True)
        yield f"weighted_layer_sum {str(dt)[6:]}", wsum


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200)")
    p.add_argument("--quick", action="store_true", help="a representative subset (the test suite's)")
    p.add_argument("--smem", type=int, default=232_448, help="shared memory per block in bytes (sm_90: 227 KiB)")
    args = p.parse_args(argv)
    mods = [_triton.kernels(n) for n in ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum", "weight_grad")]
    jits = {(m, name): getattr(m, name) for m in mods for name in dir(m)
            if isinstance(getattr(m, name), triton.runtime.jit.JITFunction) and name.endswith("_kernel")}
    failures, seen = 0, set()
    print(f"{'variant':44s} {'kernel':22s} {'warps':>5s} {'REG':>4s} {'STACK':>6s} {'SMEM':>7s}  compile")
    for label, thunk in launches(args.quick):
        calls: list = []
        for (m, name), jit in jits.items():
            setattr(m, name, Capture(jit, calls))
        try:
            thunk()
        finally:
            for (m, name), jit in jits.items():
                setattr(m, name, jit)
        for jit, a, kw in calls:
            key = (jit.__name__, repr([x.dtype if isinstance(x, torch.Tensor) else x for x in a]), repr(kw))
            if key in seen:
                continue
            seen.add(key)
            try:
                usage, options, seconds = compile_call(jit, a, dict(kw), args.arch)
            except Exception as exc:  # report every broken variant, not just the first
                failures += 1
                print(f"{label:44s} {jit.__name__:22s} FAILED: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            over = usage["SMEM"] > args.smem  # would fail to launch ("out of resources")
            failures += over
            print(f"{label:44s} {jit.__name__:22s} {options.get('num_warps', 4):5d} {usage['REG']:4d} "
                  f"{usage['STACK']:6d} {usage['SMEM']:7d}  {seconds:.1f}s"
                  + ("  SHARED MEMORY OVER THE LIMIT" if over else ""), flush=True)
    print(f"# {len(seen)} kernels for sm_{args.arch}: {failures} failed to compile or exceed shared memory")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
