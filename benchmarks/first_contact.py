"""First contact with a device: is every fused op right on this card, and about how fast?

    python benchmarks/first_contact.py                   # on a GPU: bf16, 6,392 tokens, d = 1024
    python benchmarks/first_contact.py --backends native --append   # after the native build
    python benchmarks/first_contact.py --smoke           # CPU, tiny sizes, fp32 (CI)

Every op (bottleneck_adapter with residual and with residual + post-LN, r in {64, 256};
layer_aggregate with (L, m) in {(13, 256), (25, 512)}; weighted_layer_sum with L in {13, 25})
runs once on every GPU backend asked for ("triton", and "native" when the extension was built
with CUDA kernels): its output and every gradient go through the benchmarks' correctness gate
(bench_ops.gate_case: the numerics rule of docs/testing.md against the float64 reference), then
one forward + backward is timed beside the eager composition (bench_ops' baselines). Then one
ELP training step (forward and backward) of a Base-sized WavLM (12 layers, d = 768, batch
8 x 16 s) per backend: the loss and every trainable gradient against the reference backend by
the same rule (gold: the reference model in fp32 on a GPU, float64 on a CPU; base: the reference
in the working dtype).

Each result is one JSON line appended to --out as soon as it is known (flushed and synced), so a
run cut short keeps what finished. A backend that cannot run here is recorded with its reason
and is not a failure; the exit status is 1 when any comparison fails or a check raises.
--smoke runs the same checks at tiny sizes on the CPU: the Triton kernels through the
interpreter and the native CPU ops (when built), fp32, a 4-layer WavLM.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

SMOKE = "--smoke" in sys.argv
# Before any kernel import: the interpreter on the CPU, compiled kernels on the GPU.
os.environ["TRITON_INTERPRET"] = "1" if SMOKE else "0"

import torch  # noqa: E402

import bench_ops  # noqa: E402  (puts tests/ on sys.path through harness)
import e2e_models as em  # noqa: E402
import harness  # noqa: E402
from numerics import compare, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("triton", "native")
SAMPLE_RATE = 16_000


def op_cases(smoke: bool, device, dtype) -> list[tuple[str, dict]]:
    """(label, bench_ops case) at the realistic step size (8 x 16 s = 6,392 tokens, d = 1024), or
    tiny in smoke mode. Only what the gate and one timing need of each case is used."""
    n, d = (64, 64) if smoke else (6392, 1024)
    ranks = (8, 16) if smoke else (64, 256)
    aggs = ((2, 16), (3, 32)) if smoke else ((13, 256), (25, 512))
    cases = []
    for variant in ("residual", "residual+post_ln"):
        for r in ranks:
            case = bench_ops.bottleneck_case(n, d, r, device, dtype)
            if variant == "residual+post_ln":
                g = torch.Generator(device="cpu").manual_seed(1)
                case["inputs"]["post_ln_w"] = (1.0 + 0.1 * torch.randn(d, generator=g)).to(device, dtype)
                case["inputs"]["post_ln_b"] = (0.1 * torch.randn(d, generator=g)).to(device, dtype)
            case["variant"] = variant
            cases.append((f"bottleneck_adapter N={n} d={d} r={r} {variant}", case))
    for L, m in aggs:
        case = bench_ops.aggregate_case(L, n, d, m, device, dtype)
        case["variant"] = ""
        cases.append((f"layer_aggregate N={n} d={d} L={L} m={m}", case))
    for L, _ in aggs:
        case = bench_ops.wsum_case(L, n, d, device, dtype)
        case["variant"] = ""
        cases.append((f"weighted_layer_sum N={n} d={d} L={L}", case))
    return cases


def unavailable(backend: str, device) -> str | None:
    """Why `backend` cannot run on `device`, or None."""
    if backend == "triton":
        from elp_fast.ops import _triton
        return _triton.available()
    from elp_fast.ops import _native
    if bench_ops.native_ready(device):
        return None
    reason = _native.available()
    return reason or "the extension was built without CUDA kernels (build it on this machine)"


class Log:
    """JSON lines appended as they come; each one is on disk before the next check starts."""

    def __init__(self, path: Path, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            path.write_text("")
        self.path, self.failed = path, 0

    def write(self, record: dict) -> None:
        if record.get("status") not in ("ok", "unavailable", None):
            self.failed += 1
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        print(" | ".join(f"{k}={v}" for k, v in record.items() if k != "env"), flush=True)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_op(label: str, case: dict, backends: list, device, dtype, smoke: bool, log: Log) -> None:
    """The gate for every backend of one case (one float64 gold for all), then one timing of each
    passing backend interleaved with eager."""
    fns = {b: case["fns"][b] for b in backends}
    first = {}
    for b, fn in fns.items():  # the first call compiles (Triton): timed apart, like first_call_s
        t = time.perf_counter()
        try:
            run(fn, case["inputs"], case["grad_out"])
            _sync(device)
        except Exception:  # noqa: BLE001  (the gate below reports the error)
            pass
        first[b] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    gates, passed = bench_ops.gate_case(case, fns, dtype)
    gate_s = round(time.perf_counter() - t, 3)
    timings, timing_error = {}, ""
    if passed:
        try:
            calls, _, _ = bench_ops.mode_calls("fwd+bwd", {"eager": case["fns"]["eager"], **passed},
                                               case["inputs"], case["grad_out"])
            timings = harness.time_providers(calls, device, rounds=1, smoke=smoke)
            del calls
        except Exception as exc:  # noqa: BLE001  (recorded: one broken timing must not hide the rest)
            timing_error = f"{type(exc).__name__}: {str(exc)[:200]}"
    eager_ms = timings.get("eager", (None, None))[1]
    for b in backends:
        record = {"kind": "op", "check": label, "op": case["op"], "backend": b, "variant": case["variant"],
                  "tokens": case["tokens"], "d": case["d"], "width": case["width"], "layers": case["layers"],
                  "dtype": str(dtype).replace("torch.", ""), "gate": gates[b],
                  "status": "ok" if gates[b] == "ok" else "FAIL", "first_call_s": first[b], "gate_s": gate_s}
        if b in timings:
            ms = timings[b][1]
            record.update(ms=round(ms, 4), eager_ms=round(eager_ms, 4), speedup_vs_eager=round(eager_ms / ms, 3))
        elif record["status"] == "ok" and timing_error:
            record.update(status="error", error=f"timing: {timing_error}")
        log.write(record)
    if device.type == "cuda":
        torch.cuda.empty_cache()


def model_setup(smoke: bool, device) -> tuple[torch.nn.Module, dict, str]:
    """A wrapped random WavLM (default ELP adapters, dropout off) in fp32 and its batch."""
    import elp_fast

    backbone = "tiny-wavlm" if smoke else "wavlm-base-plus"
    batch, seconds = (2, 0.5) if smoke else (8, 16.0)
    hf = em.hf_classifier(backbone, device, seed=0)
    torch.manual_seed(1)
    model = elp_fast.wrap(hf).to(device).train()
    g = torch.Generator().manual_seed(0)
    inputs = {"input_values": 0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=g),
              "labels": torch.randint(0, em.NUM_LABELS, (batch,), generator=g)}
    return model, inputs, f"{backbone}, batch {batch} x {seconds:g} s"


def model_step(model: torch.nn.Module, inputs: dict, backend: str, dtype, device, audio_dtype) -> dict:
    """Loss and trainable gradients of one forward + backward of a copy of `model` in `dtype`."""
    import elp_fast

    m = copy.deepcopy(model).to(dtype)
    x = inputs["input_values"].to(audio_dtype).to(device, dtype)  # the same audio values for every run
    with elp_fast.use_backend(backend):
        loss = m(x, labels=inputs["labels"].to(device)).loss
        loss.backward()
    out = {"out": loss.detach()}
    for name, p in m.named_parameters():
        if p.requires_grad:
            if p.grad is None:
                raise RuntimeError(f"no gradient reached {name}")
            out[f"grad:{name}"] = p.grad
    return out


def check_model(backends: list, device, dtype, smoke: bool, log: Log) -> None:
    t = time.perf_counter()
    model, inputs, what = model_setup(smoke, device)
    gold_dtype = torch.float64 if device.type == "cpu" else torch.float32
    gold = model_step(model, inputs, "reference", gold_dtype, device, dtype)
    base = model_step(model, inputs, "reference", dtype, device, dtype)
    ref_s = round(time.perf_counter() - t, 3)
    for b in backends:
        record = {"kind": "model", "check": f"ELP training step, {what}", "backend": b,
                  "dtype": str(dtype).replace("torch.", ""), "trainable_tensors": len(gold) - 1,
                  "loss_reference": round(float(base["out"]), 6), "reference_s": ref_s}
        t = time.perf_counter()
        try:
            fused = model_step(model, inputs, b, dtype, device, dtype)
            _sync(device)
            record["step_s"] = round(time.perf_counter() - t, 3)
            record["loss"] = round(float(fused["out"]), 6)
            bad = [str(c) for c in compare(fused, base, gold, dtype=dtype, reduced=lambda n: n != "out")
                   if not c.ok]
            record["gate"] = "ok" if not bad else f"FAIL {len(bad)} of {len(gold)}: " + "; ".join(bad[:5])
            record["status"] = "ok" if not bad else "FAIL"
        except Exception as exc:  # noqa: BLE001  (recorded, and a failure)
            record.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        log.write(record)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, fp32, Triton interpreter (CI)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma list of triton, native")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results" /
                                                                   "device-run")) / "first-contact.jsonl",
                   help="JSON lines file (default $OUT/first-contact.jsonl)")
    p.add_argument("--append", action="store_true", help="add to --out instead of starting it afresh")
    p.add_argument("--no-model", action="store_true", help="the op checks only")
    args = p.parse_args(argv)
    wanted = [b for b in args.backends.split(",") if b]
    if not wanted or set(wanted) - set(BACKENDS):
        p.error(f"--backends: got {args.backends!r}; expected a comma list of {', '.join(BACKENDS)}")
    device = torch.device("cpu" if args.smoke else "cuda")
    if not args.smoke and not torch.cuda.is_available():
        p.error("no CUDA device (use --smoke for the CPU check)")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    # The fp32 gold of the model step in true fp32 (cuDNN would run its convolutions in TF32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log = Log(args.out, args.append)
    env = harness.environment()
    log.write({"kind": "env", "mode": "smoke" if args.smoke else "gpu", **env})
    backends = []
    for b in wanted:
        reason = unavailable(b, device)
        if reason is None:
            backends.append(b)
        else:
            log.write({"kind": "backend", "backend": b, "status": "unavailable", "reason": reason})
    t0 = time.perf_counter()
    if backends:
        for label, case in op_cases(args.smoke, device, dtype):
            check_op(label, case, backends, device, dtype, args.smoke, log)
        if not args.no_model:
            check_model(backends, device, dtype, args.smoke, log)
    log.write({"kind": "summary", "backends": backends, "failed": log.failed,
               "seconds": round(time.perf_counter() - t0, 1)})
    return 1 if log.failed else 0


if __name__ == "__main__":
    sys.exit(main())
