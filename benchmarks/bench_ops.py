"""Speed and memory of the adapter ops on a GPU: eager PyTorch, torch.compile, the Triton kernels
and the CUDA kernels of the native extension. (CPU rows: benchmarks/bench_cpu.py.)

    python benchmarks/bench_ops.py                 # on a GPU: the docs/performance.md configurations
    python benchmarks/bench_ops.py --smoke         # CPU, tiny sizes, Triton interpreter (CI)

Providers, all on the same inputs in the working dtype (bf16 on the GPU):
  eager      the module composition a user writes (F.linear, F.layer_norm; for the L path one
             module per layer, torch.stack, multiply, sum), i.e. the baseline of the targets;
  compile    torch.compile of that composition (default mode; `aot_eager` in smoke mode, since
             Inductor's CPU compile takes minutes on CI);
  reference  elp_fast's reference op (fp32 accumulation: the spec, not tuned for speed), timed up
             to 25,568 tokens only (its fp32 activations of the roofline sizes do not fit);
  triton     elp_fast's Triton kernels;
  native     elp_fast's compiled extension (cuBLAS GEMMs + CUDA row kernels), when it was built
             with CUDA. The summary compares it with triton: the dispatcher's CUDA order.
The correctness gate runs once per configuration on its first 65,536 token rows (float64 gold).
The floor is the bytes the fused design must move (docs/performance.md 1) over the measured copy
bandwidth. Rows go to benchmarks/results/<gpu>-<date>.csv unless --out says otherwise; the
summary at the end reads the targets of docs/performance.md 2 off the rows.
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


def configurations(smoke: bool, device, dtype, sizes: list[str]):
    if smoke:
        yield bottleneck_case(64, 64, 16, device, dtype)
        yield aggregate_case(3, 64, 64, 32, device, dtype)
        yield wsum_case(3, 64, 64, device, dtype)
        return
    tokens = {"realistic": [6392, 25568], "roofline": [262_144, 1_048_576]}
    ns = [n for s in sizes for n in tokens[s]]
    for n in ns:
        for r in (64, 256):
            yield bottleneck_case(n, 1024, r, device, dtype)
    for n in (x for x in ns if x <= 262_144):  # 25 layers x 1M tokens do not fit with gradients
        for L in (13, 25):
            yield aggregate_case(L, n, 1024, 512, device, dtype)
            yield wsum_case(L, n, 1024, device, dtype)


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


def fill_timed(row: harness.Row, timings: dict, case: dict, mode: str, bandwidth: float) -> None:
    """A timed row's times, rates, % of the floor and speed-ups against the baselines timed."""
    row.first_call_s, row.median_ms, row.p20_ms, row.p80_ms = timings[row.provider]
    row.gbps = case["bytes"][mode] / row.median_ms / 1e6
    row.tflops = case["flops"][mode] / row.median_ms / 1e9
    row.pct_of_floor = 100 * (case["bytes"][mode] / bandwidth / 1e6) / row.median_ms
    for ref in harness.BASELINES:
        if ref in timings:
            setattr(row, f"speedup_vs_{ref}", timings[ref][1] / row.median_ms)


def bench(case: dict, device, dtype, rounds: int, smoke: bool, bandwidth: float, env: dict) -> list:
    fns = {"eager": case["fns"]["eager"], "compile": _compiled(case["fns"]["eager"], smoke),
           "reference": case["fns"]["reference"], "triton": case["fns"]["triton"]}
    if native_ready(device):
        fns["native"] = case["fns"]["native"]
    if case["tokens"] > REFERENCE_MAX_TOKENS:
        del fns["reference"]
    gates, timed = gate_case(case, fns, dtype)
    rows = []
    with_bwd(case)
    for mode in MODES:
        calls, args, flat = mode_calls(mode, timed, case["inputs"], case["grad_out"])
        timings = harness.time_providers(calls, device, rounds, smoke)
        for name in fns:
            row = harness.Row(case["op"], name, mode, case["tokens"], case["d"], case["width"], case["layers"],
                              str(dtype).replace("torch.", ""), gate=gates[name], env=env)
            if name in timings:
                fill_timed(row, timings, case, mode, bandwidth)
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
    p.add_argument("--sizes", default="realistic,roofline", help="comma list of realistic, roofline")
    p.add_argument("--ops", default="bottleneck_adapter,layer_aggregate,weighted_layer_sum")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, help="CSV or JSON file for the rows")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cpu" and not args.smoke:
        p.error("no CUDA device: timings are only quoted for a GPU (use --smoke to check the script)")
    dtype = torch.float32 if args.smoke else torch.bfloat16  # bf16 CPU matmuls are unrepresentative
    env = harness.environment()
    bandwidth = harness.copy_bandwidth_gbps(device, 1 << 30 if device.type == "cuda" else 1 << 24)
    print(f"# {env}  copy bandwidth {bandwidth:.0f} GB/s", flush=True)
    rows = []
    wanted = set(args.ops.split(","))
    out = args.out or (Path(os.environ.get("TMPDIR", "/tmp")) / "elp_fast-bench-smoke.csv"
                       if args.smoke else harness.default_path(env))
    for case in configurations(args.smoke, device, dtype, args.sizes.split(",")):
        if case["op"] not in wanted:
            continue
        new = bench(case, device, dtype, args.rounds if not args.smoke else 1, args.smoke, bandwidth, env)
        for r in new:
            print(f"{r.op:18s} {r.mode:7s} N={r.tokens:<8d} w={r.width:<4d} L={r.layers:<3d} {r.provider:9s} "
                  f"{r.median_ms:9.3f} ms  x{r.speedup_vs_eager:5.2f} eager  {r.pct_of_floor:5.1f}% floor  "
                  f"{r.gate[:60]}", flush=True)
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
