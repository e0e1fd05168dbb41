"""Speed and memory of the adapter ops on a GPU: eager PyTorch, torch.compile, the Triton kernels
and the CUDA kernels of the native extension. (CPU rows: benchmarks/bench_cpu.py.)

    python benchmarks/bench_ops.py                 # on a GPU: the docs/performance.md configurations
    python benchmarks/bench_ops.py --compile       # the same, with the torch.compile baseline
    python benchmarks/bench_ops.py --sizes roofline,realistic --list   # the plan, in run order
    python benchmarks/bench_ops.py --smoke --compile   # CPU, tiny sizes, Triton interpreter (CI)

Configurations run in the order of --sizes (size class by size class); within a class the
E-adapter (d = 1024, r in {64, 256}: the section 2 targets) comes first, then layer_aggregate and
weighted_layer_sum, so every op has the rows of the first class before any row of the next.

Providers, all on the same inputs in the working dtype (bf16 on the GPU):
  eager      the module composition a user writes (F.linear, F.layer_norm; for the L path one
             module per layer, torch.stack, multiply, sum), i.e. the baseline of the targets;
  compile    with --compile only: torch.compile of that composition (default mode; `aot_eager`
             in smoke mode, since Inductor's CPU compile takes minutes on CI). Without it the
             rows have no compile provider and the speed-ups against it stay empty;
  reference  elp_fast's reference op (fp32 accumulation: the spec, not tuned for speed), timed up
             to 25,568 tokens only (its fp32 activations of the roofline sizes do not fit);
  triton     elp_fast's Triton kernels;
  native     elp_fast's compiled extension (cuBLAS GEMMs + CUDA row kernels), when it was built
             with CUDA. The summary compares it with triton: the dispatcher's CUDA order.
The correctness gate runs once per configuration on its first 65,536 token rows (float64 gold).
The first timed call of every provider and mode is timed apart (first_call_s); for triton, select_s
is what the kernels spent choosing tile configurations in it, the gate's choosing added on the
fwd+bwd row (nan where they choose none).
The floor is the bytes the fused design must move (docs/performance.md 1) over the measured copy
bandwidth. Rows go to benchmarks/results/<gpu>-<date>.csv unless --out says otherwise, rewritten
after every configuration; the summary at the end reads the targets of docs/performance.md 2 off
the rows. The same cases, providers and gate also run under pytest-benchmark
(benchmarks/test_ops_bench.py); the interleaved rows of this script are the ones committed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import harness  # noqa: E402
import targets  # noqa: E402
from elp_fast import ops  # noqa: E402
from elp_fast.ops import _native  # noqa: E402
from numerics import run, saved_bytes  # noqa: E402

EPS = 1e-5


def _act(x, activation):
    return F.gelu(x) if activation == "gelu" else F.relu(x)


# --- eager compositions (the baselines) ----------------------------------------------------

def eager_bottleneck(x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual=None, post_ln_w=None,
                     post_ln_b=None, *, activation="gelu", eps=EPS):
    d = x.shape[-1]
    y = x + F.layer_norm(F.linear(_act(F.linear(x, down_w, down_b), activation), up_w, up_b), (d,), ln_w, ln_b, eps)
    if residual is not None:
        y = y + residual
    return F.layer_norm(y, (d,), post_ln_w, post_ln_b, eps) if post_ln_w is not None else y


def eager_aggregate(hidden_states, proj_w, proj_b, ln_w, ln_b, layer_logits, *, activation="gelu", eps=EPS):
    m = proj_w.shape[1]
    outs = [F.layer_norm(_act(F.linear(h, proj_w[l], proj_b[l]), activation), (m,), ln_w[l], ln_b[l], eps)
            for l, h in enumerate(hidden_states)]
    w = torch.softmax(layer_logits, dim=0)
    return (torch.stack(outs) * w.view(-1, 1, 1)).sum(0)


def eager_wsum(hidden_states, layer_logits):
    w = torch.softmax(layer_logits, dim=0)
    return (torch.stack(hidden_states) * w.view(-1, 1, 1)).sum(0)


# --- configurations ------------------------------------------------------------------------

def bottleneck_case(n, d, r, device, dtype, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def mk(*s, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*s, generator=g)).to(device=device, dtype=dtype)
    inputs = dict(x=mk(n, d), down_w=mk(r, d, scale=d ** -0.5), down_b=mk(r, scale=0.1),
                  up_w=mk(d, r, scale=r ** -0.5), up_b=mk(d, scale=0.1), ln_w=mk(d, scale=0.1, shift=1.0),
                  ln_b=mk(d, scale=0.1), residual=mk(n, d))
    e = torch.finfo(dtype).bits // 8
    fwd_bytes = n * (3 * d * e + r * e + 8)  # read x, residual; write y, z, (mean, rstd)
    bwd_bytes = n * ((5 * d + 4 * r) * e + 8)  # dy, z, stats; dx, dv, dz; dW pass: dv, z, dz, x
    return dict(op="bottleneck_adapter", inputs=inputs, grad_out=mk(n, d), tokens=n, d=d, width=r, layers=1,
                fns=dict(eager=eager_bottleneck,
                         reference=lambda **kw: ops.bottleneck_adapter(**kw, activation="gelu", backend="reference"),
                         triton=lambda **kw: ops.bottleneck_adapter(**kw, activation="gelu", backend="triton"),
                         native=lambda **kw: ops.bottleneck_adapter(**kw, activation="gelu", backend="native")),
                bytes={"fwd": fwd_bytes, "fwd+bwd": fwd_bytes + bwd_bytes},
                flops={"fwd": 4 * n * r * d, "fwd+bwd": 12 * n * r * d},
                reduced=lambda name: name.startswith("grad:") and name not in ("grad:x", "grad:residual"))


def aggregate_case(L, n, d, m, device, dtype, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def mk(*s, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*s, generator=g)).to(device=device, dtype=dtype)
    inputs = dict(hidden_states=[mk(n, d) for _ in range(L)], proj_w=mk(L, m, d, scale=d ** -0.5),
                  proj_b=mk(L, m, scale=0.1), ln_w=mk(L, m, scale=0.1, shift=1.0), ln_b=mk(L, m, scale=0.1),
                  layer_logits=mk(L))
    e = torch.finfo(dtype).bits // 8
    fwd_bytes = n * e * (L * d + m)
    bwd_bytes = n * e * (m + 3 * L * d + 2 * L * m)  # dH, h; dh; dz out and back; h again for dW
    return dict(op="layer_aggregate", inputs=inputs, grad_out=mk(n, m), tokens=n, d=d, width=m, layers=L,
                fns=dict(eager=eager_aggregate,
                         reference=lambda **kw: ops.layer_aggregate(**kw, activation="gelu", backend="reference"),
                         triton=lambda **kw: ops.layer_aggregate(**kw, activation="gelu", backend="triton"),
                         native=lambda **kw: ops.layer_aggregate(**kw, activation="gelu", backend="native")),
                bytes={"fwd": fwd_bytes, "fwd+bwd": fwd_bytes + bwd_bytes},
                flops={"fwd": 2 * n * L * d * m, "fwd+bwd": 6 * n * L * d * m},
                reduced=lambda name: name.startswith("grad:") and not name.startswith("grad:hidden"))


def wsum_case(L, n, d, device, dtype, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def mk(*s):
        return torch.randn(*s, generator=g).to(device=device, dtype=dtype)
    inputs = dict(hidden_states=[mk(n, d) for _ in range(L)], layer_logits=mk(L))
    e = torch.finfo(dtype).bits // 8
    fwd_bytes = n * e * d * (L + 1)  # 2(L+1)d in bf16: docs/performance.md's ideal forward
    return dict(op="weighted_layer_sum", inputs=inputs, grad_out=mk(n, d), tokens=n, d=d, width=0, layers=L,
                fns=dict(eager=eager_wsum,
                         reference=lambda **kw: ops.weighted_layer_sum(**kw, backend="reference"),
                         triton=lambda **kw: ops.weighted_layer_sum(**kw, backend="triton"),
                         native=lambda **kw: ops.weighted_layer_sum(**kw, backend="native")),
                bytes={"fwd": fwd_bytes, "fwd+bwd": fwd_bytes + n * e * d * (2 * L + 1)},
                flops={"fwd": 2 * n * L * d, "fwd+bwd": 4 * n * L * d},
                reduced=lambda name: name == "grad:layer_logits")


OPS = ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum")
SIZES = {"realistic": (6392, 25568), "roofline": (262_144, 1_048_576)}  # tokens per size class
LAYER_MAX_TOKENS = 262_144  # 25 layers x 1M tokens do not fit with gradients


@dataclasses.dataclass(frozen=True)
class Spec:
    """One configuration of the plan, before any tensor exists (build() allocates them)."""
    op: str
    size: str  # the size class: "smoke", "realistic" or "roofline"
    tokens: int
    d: int
    width: int  # r for the bottleneck, m for layer_aggregate, 0 otherwise
    layers: int

    def __str__(self) -> str:
        return f"{self.op}-{self.size}-N{self.tokens}-d{self.d}-w{self.width}-L{self.layers}"

    def build(self, device, dtype) -> dict:
        if self.op == "bottleneck_adapter":
            return bottleneck_case(self.tokens, self.d, self.width, device, dtype)
        if self.op == "layer_aggregate":
            return aggregate_case(self.layers, self.tokens, self.d, self.width, device, dtype)
        return wsum_case(self.layers, self.tokens, self.d, device, dtype)


def plan(sizes: list[str], ops=OPS) -> list[Spec]:
    """The configurations in run order: the size classes in the order given; within one, the
    E-adapter at d = 1024, r in {64, 256} (the targets) first, then layer_aggregate and
    weighted_layer_sum (L in {13, 25}, up to LAYER_MAX_TOKENS). "smoke": CI's tiny shapes."""
    specs = []
    for size in sizes:
        if size == "smoke":
            cls = [Spec("bottleneck_adapter", size, 64, 64, 16, 1), Spec("layer_aggregate", size, 64, 64, 32, 3),
                   Spec("weighted_layer_sum", size, 64, 64, 0, 3)]
        elif size in SIZES:
            ns = SIZES[size]
            cls = [Spec("bottleneck_adapter", size, n, 1024, r, 1) for n in ns for r in (64, 256)]
            cls += [s for n in ns if n <= LAYER_MAX_TOKENS for L in (13, 25)
                    for s in (Spec("layer_aggregate", size, n, 1024, 512, L), Spec("weighted_layer_sum", size, n, 1024, 0, L))]
        else:
            raise ValueError(f"unknown size class {size!r}: smoke, {', '.join(SIZES)}")
        specs += [s for s in cls if s.op in ops]
    return specs


def configurations(smoke: bool, device, dtype, sizes: list[str], ops=OPS):
    """The cases of plan(), each built (its tensors allocated) only when the loop reaches it."""
    for spec in plan(["smoke"] if smoke else sizes, ops):
        yield spec.build(device, dtype)


# --- one configuration ---------------------------------------------------------------------

def _leaves(inputs: dict) -> tuple[dict, list]:
    args, flat = {}, []
    for k, v in inputs.items():
        if isinstance(v, list):
            args[k] = [t.detach().clone().requires_grad_() for t in v]
            flat += args[k]
        else:
            args[k] = v.detach().clone().requires_grad_()
            flat.append(args[k])
    return args, flat


MODES = ("fwd", "bwd", "fwd+bwd")


def mode_calls(mode: str, fns: dict, inputs: dict, dy: torch.Tensor) -> tuple[dict, dict, list]:
    """({provider: thunk}, args, leaves) timing one mode on fresh leaves: "fwd" the forward,
    "fwd+bwd" forward and backward, "bwd" the backward alone (each provider's forward runs
    once here, untimed, and its graph is kept between calls)."""
    args, flat = _leaves(inputs)
    if mode == "fwd":
        return {n: (lambda f: lambda: f(**args))(f) for n, f in fns.items()}, args, flat
    if mode == "fwd+bwd":
        return {n: (lambda f: lambda: torch.autograd.grad(f(**args), flat, dy))(f) for n, f in fns.items()}, args, flat
    outs = {n: f(**args) for n, f in fns.items()}
    return ({n: (lambda o: lambda: torch.autograd.grad(o, flat, dy, retain_graph=True))(outs[n]) for n in fns},
            args, flat)


def with_bwd(case: dict) -> dict:
    """The backward alone moves (and computes) what forward + backward does beyond the forward."""
    for key in ("bytes", "flops"):
        case[key]["bwd"] = case[key]["fwd+bwd"] - case[key]["fwd"]
    return case


_COMPILED: dict = {}


def _compiled(fn, smoke: bool):
    """One torch.compile wrapper per eager function for the whole run: new sizes then reuse its
    dynamic-shape graph instead of compiling from scratch for every configuration."""
    if fn not in _COMPILED:
        # Donated buffers (the compiled backward freeing saved activations as it goes) forbid
        # retain_graph, which timing the backward alone needs: off, for every mode alike.
        import torch._dynamo.config
        import torch._functorch.config
        torch._functorch.config.donated_buffer = False
        # Every configuration (sizes, L, dtype) may recompile; past the limit Dynamo would run
        # the function eagerly without a word, and the compile rows would time eager.
        torch._dynamo.config.recompile_limit = 64
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        _COMPILED[fn] = torch.compile(fn, backend="aot_eager" if smoke else "inductor")
    return _COMPILED[fn]


def native_ready(device) -> bool:
    """The extension loaded and has kernels for this device."""
    if _native.available() is not None:
        return False
    return device.type == "cpu" or bool(_native.record().get("cuda"))


def provider_names(tokens: int, device, with_compile: bool) -> list[str]:
    """The providers a configuration of `tokens` rows is measured with, in timing order."""
    names = ["eager"] + (["compile"] if with_compile else [])
    names += (["reference"] if tokens <= REFERENCE_MAX_TOKENS else []) + ["triton"]
    return names + (["native"] if native_ready(device) else [])


def providers(case: dict, device, smoke: bool, with_compile: bool) -> dict:
    """{provider: fn} of a case (provider_names); the compile wrapper is shared by the run."""
    return {name: _compiled(case["fns"]["eager"], smoke) if name == "compile" else case["fns"][name]
            for name in provider_names(case["tokens"], device, with_compile)}


GATE_ROWS = 65_536  # the gate checks the first rows only: a float64 gold of 1M tokens does not fit
REFERENCE_MAX_TOKENS = 25_568  # beyond, the fp32 reference's activations crowd out the others


def _first_rows(inputs: dict, grad_out: torch.Tensor, n: int) -> tuple[dict, torch.Tensor]:
    """The same problem on the first n token rows (rows are independent in all three ops)."""
    out = {k: ([h[:n] for h in v] if k == "hidden_states" else v[:n] if k in ("x", "residual") else v)
           for k, v in inputs.items()}
    return out, grad_out[:n]


def gate_case(case: dict, fns: dict, dtype, rows: int = GATE_ROWS) -> tuple[dict, dict]:
    """Correctness gate, once per configuration (forward and backward) on its first rows: a
    failing fused provider is reported and not timed; baselines are timed anyway
    (harness.gate_providers). The float64 gold is freed on return."""
    inputs, dy = _first_rows(case["inputs"], case["grad_out"], rows)
    gold = run(case["fns"]["reference"], inputs, dy, dtype=torch.float64)
    base = run(case["fns"]["reference"], inputs, dy)
    return harness.gate_providers(fns, lambda fn: run(fn, inputs, dy), base, gold, dtype, case["reduced"])


def gated(case: dict, fns: dict, dtype) -> tuple[dict, dict, float]:
    """gate_case, and the seconds the Triton kernels spent choosing tiles in it: the gate calls
    them first, so at a new shape class the choice happens there (nan where they choose none)."""
    before = harness.selection_seconds()
    gates, timed = gate_case(case, fns, dtype)
    return gates, timed, harness.selection_seconds() - before


def row_select_s(provider: str, mode: str, first_call: float, gate: float) -> float:
    """A row's select_s: the tile selection in its first call; the triton fwd+bwd row also carries
    the gate's (a forward and backward), so a configuration's rows add up to all it caused."""
    return first_call + gate if provider == "triton" and mode == "fwd+bwd" else first_call


def fill_timed(row: harness.Row, timings: dict, case: dict, mode: str, bandwidth: float) -> None:
    """A timed row's times, rates, % of the floor and speed-ups against the baselines timed."""
    row.first_call_s, row.median_ms, row.p20_ms, row.p80_ms, row.select_s = timings[row.provider]
    row.gbps = case["bytes"][mode] / row.median_ms / 1e6
    row.tflops = case["flops"][mode] / row.median_ms / 1e9
    row.pct_of_floor = 100 * (case["bytes"][mode] / bandwidth / 1e6) / row.median_ms
    for ref in harness.BASELINES:
        if ref in timings:
            setattr(row, f"speedup_vs_{ref}", timings[ref].median_ms / row.median_ms)


def bench(case: dict, device, dtype, rounds: int, smoke: bool, bandwidth: float, env: dict,
          with_compile: bool = False) -> list:
    fns = providers(case, device, smoke, with_compile)
    gates, timed, gate_select_s = gated(case, fns, dtype)
    rows = []
    with_bwd(case)
    for mode in MODES:
        calls, args, flat = mode_calls(mode, timed, case["inputs"], case["grad_out"])
        timings = harness.time_providers(calls, device, rounds, smoke, select=("triton",))
        for name in fns:
            row = harness.Row(case["op"], name, mode, case["tokens"], case["d"], case["width"], case["layers"],
                              str(dtype).replace("torch.", ""), gate=gates[name], env=env)
            if name in timings:
                fill_timed(row, timings, case, mode, bandwidth)
                row.select_s = row_select_s(name, mode, row.select_s, gate_select_s)
                row.peak_mem_mb = harness.peak_memory_mb(calls[name], device)
                if mode == "fwd+bwd" and name != "compile":
                    row.saved_bytes_per_token = saved_bytes(lambda: fns[name](**args), flat) / case["tokens"]
            rows.append(row)
        del calls  # a "bwd" mode's kept graphs
    return rows


def cuda_order(rows: list) -> str:
    """native vs triton, fwd+bwd, per op: the measurement behind the dispatcher's CUDA order."""
    lines = ["op | configurations | triton ms / native ms (median, min, max) | faster"]
    for op in sorted({r.op for r in rows}):
        ratios = []
        for r in rows:
            if r.op == op and r.provider == "native" and r.mode == "fwd+bwd" and not math.isnan(r.median_ms):
                twin = [t for t in rows if t.provider == "triton" and (t.op, t.mode, t.tokens, t.width, t.layers)
                        == (r.op, r.mode, r.tokens, r.width, r.layers) and not math.isnan(t.median_ms)]
                if twin:
                    ratios.append(twin[0].median_ms / r.median_ms)
        if ratios:
            ratios.sort()
            med = ratios[len(ratios) // 2]
            lines.append(f"{op} | {len(ratios)} | {med:.2f} ({ratios[0]:.2f}, {ratios[-1]:.2f}) | "
                         f"{'native' if med > 1 else 'triton'}")
    return "\n".join(lines) if len(lines) > 1 else "native vs triton: not measured (no native CUDA build)"


def summary(rows: list) -> str:
    """The docs/performance.md section 2 targets (benchmarks/targets.py) per fused provider."""
    flat = [{**dataclasses.asdict(r), **r.env} for r in rows]
    lines = ["target | baseline | goal | provider | configurations | worst | best | met"]
    for t in targets.TARGETS:
        if t.kind != "op":
            continue
        for provider in targets.FUSED:
            v = targets.evaluate(t, flat, provider)
            if v is not None:
                lines.append(f"{t.what} | {t.baseline} | {t.goal} | {provider} | {v.configurations} | "
                             f"{v.worst:.2f} | {v.best:.2f} | {'yes' if v.met else 'NO'}")
    return "\n".join(lines) if len(lines) > 1 else "targets: nothing measured"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, Triton interpreter (CI)")
    p.add_argument("--sizes", default="realistic,roofline",
                   help="comma list of realistic, roofline, run in this order (default: %(default)s)")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile of the eager composition (compiles cold in every run)")
    p.add_argument("--list", action="store_true", help="print the configurations in run order and exit")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, help="CSV or JSON file for the rows")
    args = p.parse_args(argv)
    wanted = args.ops.split(",")
    if set(wanted) - set(OPS):
        p.error(f"unknown op(s) {sorted(set(wanted) - set(OPS))}: {', '.join(OPS)}")
    sizes = ["smoke"] if args.smoke else args.sizes.split(",")
    if not args.smoke and set(sizes) - set(SIZES):
        p.error(f"unknown size class(es) {sorted(set(sizes) - set(SIZES))}: {', '.join(SIZES)}")
    if args.list:
        for spec in plan(sizes, wanted):
            print(spec)
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cpu" and not args.smoke:
        p.error("no CUDA device: timings are only quoted for a GPU (use --smoke to check the script)")
    dtype = torch.float32 if args.smoke else torch.bfloat16  # bf16 CPU matmuls are unrepresentative
    env = harness.environment()
    bandwidth = harness.copy_bandwidth_gbps(device, 1 << 30 if device.type == "cuda" else 1 << 24)
    print(f"# {env}  copy bandwidth {bandwidth:.0f} GB/s", flush=True)
    rows = []
    out = args.out or (Path(os.environ.get("TMPDIR", "/tmp")) / "elp_fast-bench-smoke.csv"
                       if args.smoke else harness.default_path(env))
    for case in configurations(args.smoke, device, dtype, sizes, wanted):
        new = bench(case, device, dtype, args.rounds if not args.smoke else 1, args.smoke, bandwidth, env,
                    args.compile)
        for r in new:
            print(f"{r.op:18s} {r.mode:7s} N={r.tokens:<8d} w={r.width:<4d} L={r.layers:<3d} {r.provider:9s} "
                  f"{r.median_ms:9.3f} ms  x{r.speedup_vs_eager:5.2f} eager  {r.pct_of_floor:5.1f}% floor  "
                  f"first {r.first_call_s:6.2f} s (select {r.select_s:5.2f} s)  {r.gate[:60]}", flush=True)
        rows += new
        harness.write(rows, out)  # after every configuration: a run cut short keeps its rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("# smoke mode: CPU timings through the interpreter, not performance data" if args.smoke
          else summary(rows) + "\n\n" + cuda_order(rows))
    print(f"# rows written to {out}")
    failed = [r for r in rows if r.provider in ("triton", "native") and r.gate != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
