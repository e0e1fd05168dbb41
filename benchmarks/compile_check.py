"""Compile every Triton kernel variant and tile candidate for a GPU, offline (no GPU needed):
registers, spills, shared memory and global-load widths per kernel, and the launch plans of the
realistic step size.

    python benchmarks/compile_check.py                   # every candidate, sm_90 (H100/H200)
    python benchmarks/compile_check.py --quick           # a representative subset (the test suite's)
    python benchmarks/compile_check.py --jobs 16         # compiles sharded over processes
    python benchmarks/compile_check.py --plans           # launch plans at 6,392 tokens on 132 SMs
    python benchmarks/compile_check.py --warm --jobs 16  # on a GPU: fill Triton's cache for it
    python benchmarks/compile_check.py --out benchmarks/results/compile-sm90-triton-3.9.txt

The launchers in kernels/ run as usual on CPU tensors, with each tile candidate forced in turn
(kernels/_tuning.py), but every kernel launch is captured instead of run. Each captured launch
goes through Triton's own argument specialisation (the launcher's binder: 16-byte divisibility of
pointers and integers, integers equal to 1 made constants) and is compiled for the target, so the
check sees exactly what a GPU run compiles, under whichever Triton version is installed (the GPU
machine's 3.6 in a side environment: docs/testing.md). Registers and spills come from
`cuobjdump -res-usage` (STACK > 0 means spilled registers); LD16, LD8 and LD2 count the PTX's
16-byte, 8-byte and 2-byte global loads (Triton's pipelined async copies included): the
pointer-table kernels must read their rows with 16-byte loads in 16-bit types (fp32's small IEEE
tiles give a thread 8 bytes of a row at times).
Exit status 1 if a kernel fails to compile, exceeds shared memory, spills beyond --spill-bound,
or a table kernel has no 16-byte loads; with --plans, if a target-row launch has fewer than 2
programs per SM.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

os.environ["TRITON_INTERPRET"] = "0"  # compiled kernels (must precede the kernels' import)
if "--warm" not in sys.argv:  # warming fills the cache for the run's own environment: leave it as it is
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the default, stated (triton 3.9 warns otherwise)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from elp_fast.ops import _triton  # noqa: E402

KERNEL_MODULES = ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum", "weight_grad")
TABLE_KERNELS = {("layer_aggregate", "_fwd_kernel"), ("layer_aggregate", "_bwd_kernel"),
                 ("layer_aggregate", "_gemm_kernel"), ("weighted_layer_sum", "_fwd_kernel"),
                 ("weighted_layer_sum", "_bwd_kernel"), ("weight_grad", "_weight_grad_kernel")}
TARGET_SMS = 132  # H100 SXM and H200
# The stated exceptions to "no spills" (bytes per thread), by (kernel, fp32, padded width): at
# r = 512 no tile of these kernels is spill-free under both Triton 3.6 and 3.9 (3.6 spills 8).
ALLOWED_SPILLS = {("bottleneck_adapter._bwd_kernel", False, 512): 8, ("bottleneck_adapter._fwd_kernel", True, 512): 8}
REALISTIC_TOKENS = 6392


def K(name):
    return _triton.kernels(name)


class Capture:
    """Stands in for a JIT kernel: `kernel[grid](*args, **kw)` records the call."""

    def __init__(self, module: str, jit, calls: list):
        self.module, self.jit, self.calls = module, jit, calls

    def __getitem__(self, grid):
        return lambda *args, **kw: self.calls.append((self.module, self.jit, tuple(grid), args, kw))


@contextlib.contextmanager
def captured(calls: list):
    jits = {(m, name): getattr(K(m), name) for m in KERNEL_MODULES for name in dir(K(m))
            if isinstance(getattr(K(m), name), triton.runtime.jit.JITFunction) and name.endswith("_kernel")}
    for (m, name), jit in jits.items():
        setattr(K(m), name, Capture(m, jit, calls))
    try:
        yield
    finally:
        for (m, name), jit in jits.items():
            setattr(K(m), name, jit)


def specialise(jit, args, kw, target):
    """(signature, constexprs, attrs, options) exactly as the launcher's binder makes them."""
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature
    from triton import knobs
    kw = dict(kw)
    kw["debug"] = kw.get("debug", jit.debug) or knobs.runtime.debug
    kw["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    if hasattr(knobs.compilation, "fpsan_homomorphic_casts"):  # triton >= 3.9
        kw["fpsan_homomorphic_casts"] = knobs.compilation.fpsan_homomorphic_casts
    backend = make_backend(target)
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    bound, specialization, options = binder(*args, **kw)
    options, signature, constexprs, attrs = jit._pack_args(backend, kw, bound, specialization, options)
    return signature, constexprs, attrs, options.__dict__


def compile_one(task):
    """Worker: compile one specialised kernel; returns its resource row (or the error)."""
    module, name, signature, constexprs, attrs, options, target = task
    jit = getattr(K(module), name)
    src = triton.compiler.ASTSource(fn=jit, signature=signature, constexprs=constexprs, attrs=attrs)
    t = time.perf_counter()
    try:
        kernel = triton.compile(src, target=target, options=options)
    except Exception as exc:  # report every broken variant, not just the first
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    row = {"seconds": time.perf_counter() - t, "SMEM": int(kernel.metadata.shared)}
    if "cubin" in kernel.asm:
        row.update(resources(kernel.asm["cubin"]))
    ptx = kernel.asm.get("ptx", "")
    # 16-byte global loads: vector loads, or async copies of 16 bytes (Triton's pipelined loads)
    row["LD16"] = len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.(?:b32|u32|f32)|ld\.global(?:\.\w+)*\.v2\.(?:b64|u64)"
                                 r"|cp\.async\.\w+\.shared\.global[^;]*, (?:16|0x10)[,;]", ptx))
    row["LD8"] = len(re.findall(r"ld\.global(?:\.\w+)*\.v2\.(?:b32|u32|f32)|cp\.async\.\w+\.shared\.global[^;]*, "
                                r"(?:8|0x8)[,;]", ptx))
    row["LD2"] = len(re.findall(r"ld\.global(?:\.\w+)*\.(?:b16|u16)\b", ptx))
    return row


def resources(cubin: bytes) -> dict:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    line = next(l for l in text.splitlines() if "REG:" in l)
    return {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line)}


# --- what the launchers launch -------------------------------------------------------------

def _cycle(*lists):
    """Pairs of forward/backward candidates covering every entry of each list at least once."""
    longest = max(len(c) for c in lists)
    return [tuple(c[i % len(c)] for c in lists) for i in range(longest)]


def bottleneck_runs(dtypes, widths, variants, n=64, d=1024):
    for dt, r, variant in itertools.product(dtypes, widths, variants):
        fp32 = dt == torch.float32
        rp = K("_common").pow2(r)
        fwd = K("bottleneck_adapter").CANDIDATES[(fp32, False)][rp]
        bwd = K("bottleneck_adapter").CANDIDATES[(fp32, True)][rp]
        for fc, bc, wc in _cycle(fwd, bwd, K("weight_grad").CANDIDATES[fp32]):
            def run(dt=dt, r=r, variant=variant):
                t = lambda *s: torch.zeros(*s, dtype=dt)  # noqa: E731
                res = t(n, d) if variant != "plain" else None
                post = (t(d), t(d)) if variant.endswith("post_ln") else (None, None)
                w = (t(r, d), t(r), t(d, r), t(d), t(d), t(d))
                x = t(n, d)
                K("bottleneck_adapter").forward(x, *w, res, *post, activation="gelu", eps=1e-5, save=True)
                K("bottleneck_adapter").backward(
                    x, x, t(n, r), torch.zeros(n, 4 if post[0] is not None else 2), w[0], w[2], w[3], w[4], w[5],
                    res, post[0], activation="gelu", need_dx=True, need_dres=post[0] is not None, need_params=True)
            forced = {"bottleneck_adapter.fwd": fc, "bottleneck_adapter.bwd": bc, "weight_grad": wc}
            yield f"bottleneck_adapter {str(dt)[6:]} r={r} {variant}", forced, run


def aggregate_runs(dtypes, widths, n=64, d=1024, L=3):
    for dt, m in itertools.product(dtypes, widths):
        fp32 = dt == torch.float32
        mp = K("_common").pow2(m)
        fwd = K("layer_aggregate").CANDIDATES[(fp32, False)][mp]
        bwd = K("layer_aggregate").CANDIDATES[(fp32, True)][mp]
        for fc, bc, wc in _cycle(fwd, bwd, K("weight_grad").CANDIDATES[fp32]):
            def run(dt=dt, m=m):
                t = lambda *s: torch.zeros(*s, dtype=dt)  # noqa: E731
                hs = [t(n, d) for _ in range(L)]
                params = (t(L, m, d), t(L, m), t(L, m), t(L, m), torch.zeros(L))
                K("layer_aggregate").forward(hs, *params, activation="gelu", eps=1e-5)
                K("layer_aggregate").backward(t(n, m), hs, *params, activation="gelu", eps=1e-5, need_dh=True,
                                              need_params=True)
            yield (f"layer_aggregate {str(dt)[6:]} m={m}",
                   {"layer_aggregate.fwd": fc, "layer_aggregate.bwd": bc, "weight_grad": wc}, run)


def wsum_runs(dtypes, n=64, d=1024):
    for dt in dtypes:
        for c in K("weighted_layer_sum").CANDIDATES:
            def run(dt=dt):
                hs = [torch.zeros(n, d, dtype=dt) for _ in range(3)]
                K("weighted_layer_sum").forward(hs, torch.zeros(3))
                K("weighted_layer_sum").backward(hs[0], hs, torch.zeros(3), need_dh=True, need_logits=True)
            yield (f"weighted_layer_sum {str(dt)[6:]}",
                   {"weighted_layer_sum.fwd": c, "weighted_layer_sum.bwd": c}, run)


def runs(quick: bool):
    dtypes = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16, torch.float32)
    widths = (64, 512) if quick else (8, 32, 64, 128, 256, 512)
    variants = ("residual", "residual+post_ln") if quick else ("plain", "residual", "residual+post_ln")
    yield from bottleneck_runs(dtypes, widths, variants)
    yield from aggregate_runs(dtypes, widths)
    yield from wsum_runs(dtypes)


def capture_all(items) -> list:
    """Every distinct launch of the runs: (label, module, jit, grid, args, kw)."""
    tuning = K("_tuning")
    K("_common").PLAN_SMS = TARGET_SMS  # the split counts of a 132-SM card, not the interpreter's
    out, seen = [], set()
    for label, forced, run in items:
        calls: list = []
        with contextlib.ExitStack() as stack:
            for kernel, config in forced.items():
                stack.enter_context(tuning.forced(kernel, config))
            with picks_recorded(calls), captured(calls):  # unforced kernels: their first candidate
                run()
        for module, jit, grid, args, kw in (c for c in calls if c[0] != "pick"):
            key = (module, jit.__name__, repr([(x.dtype, x.data_ptr() % 16 == 0) if isinstance(x, torch.Tensor)
                                               else x for x in args]), repr(sorted(kw.items())))
            if key not in seen:
                seen.add(key)
                out.append((label, module, jit, grid, args, kw))
    return out


# --- launch plans at the realistic size ----------------------------------------------------

def plan_runs(n=REALISTIC_TOKENS, d=1024):
    """The docs/performance.md target rows at the realistic step size, bf16, every candidate
    that survives the launchers' grid-fill rule."""
    dt = torch.bfloat16
    e = lambda *s: torch.empty(*s, dtype=dt)  # noqa: E731  (never touched: launches are captured)
    for r in (64, 256):
        for variant in ("residual", "residual+post_ln"):
            post = (e(d), e(d)) if variant.endswith("post_ln") else (None, None)

            def run(r=r, post=post):
                w = (e(r, d), e(r), e(d, r), e(d), e(d), e(d))
                x = e(n, d)
                K("bottleneck_adapter").forward(x, *w, e(n, d), *post, activation="gelu", eps=1e-5, save=True)
                K("bottleneck_adapter").backward(x, x, e(n, r), torch.empty(n, 4 if post[0] is not None else 2),
                                                 w[0], w[2], w[3], w[4], w[5], e(n, d), post[0], activation="gelu",
                                                 need_dx=True, need_dres=post[0] is not None, need_params=True)
            yield f"bottleneck_adapter r={r} {variant}", run
    for L, m in itertools.product((13, 25), (256, 512)):
        def agg(L=L, m=m):
            hs = [e(n, d) for _ in range(L)]
            params = (e(L, m, d), e(L, m), e(L, m), e(L, m), torch.zeros(L))
            K("layer_aggregate").forward(hs, *params, activation="gelu", eps=1e-5)
            K("layer_aggregate").backward(e(n, m), hs, *params, activation="gelu", eps=1e-5, need_dh=True,
                                          need_params=True)
        yield f"layer_aggregate L={L} m={m}", agg
        def wsum(L=L):
            hs = [e(n, d) for _ in range(L)]
            K("weighted_layer_sum").forward(hs, torch.zeros(L))
            K("weighted_layer_sum").backward(e(n, d), hs, torch.zeros(L), need_dh=True, need_logits=True)
        yield f"weighted_layer_sum L={L}", wsum


def launch_plans() -> int:
    """Every candidate each target-row launcher may pick, with its grids: fails below 2 per SM."""
    common, tuning = K("_common"), K("_tuning")
    common.PLAN_SMS = TARGET_SMS
    short = 0
    print(f"# launch plans at {REALISTIC_TOKENS} tokens, bf16, on {TARGET_SMS} SMs "
          f"(need >= {tuning.FILL * TARGET_SMS} programs)")
    print(f"{'launcher':40s} {'kernel':36s} {'config':34s} {'grid':>16s} {'per SM':>7s}")
    try:
        for label, run in plan_runs():
            calls: list = []
            with picks_recorded(calls), captured(calls):
                run()
            offered = list(dict.fromkeys((c[1], tuple(c[2])) for c in calls if c[0] == "pick"))
            printed = set()
            for kernel, candidates in offered:
                for config in candidates:
                    calls = []
                    with tuning.forced(kernel, config), picks_recorded(calls), captured(calls):
                        run()
                    owner = None
                    for call in calls:
                        if call[0] == "pick":
                            owner = call[1]
                            continue
                        if owner != kernel:
                            continue
                        module, jit, grid = call[0], call[1], call[2]
                        if (jit.__name__, config, grid) in printed:
                            continue
                        printed.add((jit.__name__, config, grid))
                        per_sm = (grid[0] * (grid[1] if len(grid) > 1 else 1)
                                  * (grid[2] if len(grid) > 2 else 1)) / TARGET_SMS
                        short += per_sm < tuning.FILL
                        print(f"{label:40s} {module + '.' + jit.__name__:36s} {str(config):34s} "
                              f"{str(grid):>16s} {per_sm:7.2f}" + ("  UNDER-FILLED" if per_sm < tuning.FILL else ""))
    finally:
        common.PLAN_SMS = None
    print(f"# {short} target-row launches under {tuning.FILL} programs per SM")
    return short


@contextlib.contextmanager
def picks_recorded(calls: list):
    """Each kernel module's `pick` records ("pick", kernel, candidates) into `calls` and returns
    the forced candidate or the first one: the launches captured after it are that kernel's."""
    tuning = K("_tuning")
    saved = {m: K(m).pick for m in KERNEL_MODULES}

    def pick(kernel, shape_class, candidates, launch, device, interpreter):
        calls.append(("pick", kernel, list(candidates)))
        return tuning._forced.get(kernel, candidates[0])
    for m in KERNEL_MODULES:
        K(m).pick = pick
    try:
        yield
    finally:
        for m, f in saved.items():
            K(m).pick = f


# --- main ----------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200)")
    p.add_argument("--quick", action="store_true", help="a representative subset (the test suite's)")
    p.add_argument("--jobs", type=int, default=1, help="compile in this many processes")
    p.add_argument("--plans", action="store_true", help="print the launch plans at the realistic size and check "
                                                       "every target-row launch fills the card twice")
    p.add_argument("--warm", action="store_true", help="compile for this machine's GPU into Triton's cache "
                                                      "(no table; for a run that follows)")
    p.add_argument("--smem", type=int, default=232_448, help="shared memory per block in bytes (sm_90: 227 KiB)")
    p.add_argument("--spill-bound", type=int, default=0, help="spilled bytes per thread allowed (STACK)")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    if args.plans:
        return 1 if launch_plans() else 0
    if args.warm:
        from triton.runtime import driver
        target = driver.active.get_current_target()
    else:
        target = GPUTarget("cuda", args.arch, 32)
    t0 = time.perf_counter()
    launches = capture_all(runs(args.quick))
    tasks = [(module, jit.__name__, *specialise(jit, a, kw, target), target) for _, module, jit, _, a, kw in launches]
    results = []
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else contextlib.nullcontext() as pool:
        for row in (pool.map(compile_one, tasks, chunksize=2) if pool else map(compile_one, tasks)):
            results.append(row)
            if len(results) % 50 == 0:
                print(f"# {len(results)}/{len(tasks)} compiled, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                      flush=True)
    lines = [f"# Triton {triton.__version__}, target {target.backend} sm_{target.arch}, "
             f"{len(tasks)} kernels in {time.perf_counter() - t0:.0f} s ({args.jobs} jobs)",
             f"{'variant':40s} {'kernel':34s} {'config':30s} {'warps':>5s} {'REG':>4s} {'STACK':>6s} "
             f"{'SMEM':>7s} {'LD16':>5s} {'LD8':>5s} {'LD2':>5s}"]
    failures = 0
    for (label, module, jit, _, a, kw), task, row in zip(launches, tasks, results):
        constexprs = task[3]
        names = [n for i, n in enumerate(jit.arg_names) if (i,) in constexprs and n in ("BM", "BD", "BN", "BK", "BK1",
                                                                                        "BK2", "BLOCK")]
        config = " ".join(f"{n}={kw[n]}" for n in names if n in kw)
        kernel = f"{module}.{jit.__name__}"
        if "error" in row:
            failures += 1
            lines.append(f"{label:40s} {kernel:34s} FAILED: {row['error']}")
            continue
        problems = []
        if row["SMEM"] > args.smem:
            problems.append("SHARED MEMORY OVER THE LIMIT")
        fp32 = not any(isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16) for x in a)
        bound = max(args.spill_bound, ALLOWED_SPILLS.get((kernel, fp32, kw.get("RP")), 0))
        if row.get("STACK", 0) > bound:
            problems.append(f"SPILLS {row['STACK']} B")
        elif row.get("STACK", 0):
            problems.append(f"spills {row['STACK']} B (allowed)")
        if (module, jit.__name__) in TABLE_KERNELS and kw.get("ALIGNED") and not fp32 and row["LD16"] == 0:
            problems.append("NO 16-BYTE LOADS")
        failures += any(not p.endswith("(allowed)") for p in problems)
        lines.append(f"{label:40s} {kernel:34s} {config:30s} {kw.get('num_warps', 4):5d} {row.get('REG', -1):4d} "
                     f"{row.get('STACK', -1):6d} {row['SMEM']:7d} {row['LD16']:5d} {row['LD8']:5d} {row['LD2']:5d}"
                     + ("  " + "; ".join(problems) if problems else ""))
    lines.append(f"# {len(tasks)} kernels for sm_{target.arch}: {failures} failed to compile, exceed shared memory, "
                 f"spill (over {args.spill_bound} B, or ALLOWED_SPILLS) or lack 16-byte table loads")
    print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
