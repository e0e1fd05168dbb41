"""End to end: one training step (forward + backward + optimizer) of random-initialised backbones
with real shapes, for ELP and the methods users would otherwise run (benchmarks/e2e_models.py).

    python benchmarks/bench_e2e.py                  # on a GPU: batch 8 x 16 s, bf16
    python benchmarks/bench_e2e.py --backbones wavlm-base-plus --batch 2 --seconds 4 --dtype float32
                                                    # CPU ratios at a size that fits 2 cores
    python benchmarks/bench_e2e.py --smoke          # CPU, tiny backbones (the test suite runs it)

Protocol (docs/performance.md 3, at step level): a group is one backbone with one checkpointing
setting. Every variant of a group is built (all from the same seed), its first step timed on its
own (compilation, autotuning, lazy optimizer state), then the variants are timed interleaved over
rounds, each round a few steps per variant; a row reports the median of round medians and p20/p80
of all steps, and its ratios against elp-eager (the target's "HF eager + unfused adapters") and
elp-reference of the same group. Correctness gate: every ELP variant starts from the same
weights, so its first loss must match elp-reference's (bf16: 2 %, fp32: 1e-4 relative); one
that fails is reported, not timed; so is a variant whose trainable tensors get no gradient.
Memory on a GPU: `state_mib` (weights, optimizer state and master copies, measured after the
first step) and `step_peak_mib` (the peak above that during a step); on any device `saved_mib`,
the bytes autograd keeps for backward in one step, weights and batch left out. One profiled step
per variant gives the breakdown columns (benchmarks/step_profile.py; for elp-compile only the
optimizer splits off: the compiled graph has no module boundaries). Rows are written after
every round, so a run stopped by a time limit keeps what it measured; --budget-s starts no new
group once spent.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from pathlib import Path

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import

import torch  # noqa: E402

import e2e_models as em  # noqa: E402
import harness  # noqa: E402
import step_profile  # noqa: E402

FIELDS = ["backbone", "variant", "checkpointing", "batch", "seconds", "dtype", "status", "step_ms", "step_p20_ms",
          "step_p80_ms", "steps_timed", "first_step_s", "audio_h_per_device_h", "speedup_vs_eager",
          "speedup_vs_reference", "state_mib", "step_peak_mib", "peak_mib", "peak_vs_eager", "saved_mib",
          "saved_vs_eager", "trainable_params",
          "total_params", "loss_first", *[f"pct_{c}" for c in step_profile.CATEGORIES], "profiled_ms",
          "gpu", "torch", "triton", "cuda", "commit", "date"]
SAMPLE_RATE = 16_000


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _allocated(device) -> float:
    return torch.cuda.memory_allocated() / 2**20 if device.type == "cuda" else float("nan")


def saved_mib(step_fn, model: torch.nn.Module, batch: dict) -> float:
    """Bytes autograd saves for backward during one step (each storage once), leaving out the
    weights and the batch, which exist anyway: the activation memory a method costs."""
    held = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), *batch.values()]}
    seen: dict = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            if key not in held:
                seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. fake)
            pass
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step_fn()
    return sum(seen.values()) / 2**20


def run_group(backbone: str, ck: bool, variants: list, args, device, dtype, env: dict, out: Path,
              rows_before: list) -> list:
    """Every variant on one backbone with one checkpointing setting, timed interleaved; returns
    the group's rows."""
    g = torch.Generator().manual_seed(0)
    batch = {"input_values": torch.randn(args.batch, int(args.seconds * SAMPLE_RATE), generator=g).to(device, dtype),
             "labels": torch.randint(0, em.NUM_LABELS, (args.batch,), generator=g).to(device)}
    audio_s = args.batch * args.seconds
    built, rows = {}, {}
    for name in variants:
        row = {"backbone": backbone, "variant": name, "checkpointing": "all" if ck else "none", "batch": args.batch,
               "seconds": args.seconds, "dtype": str(dtype).replace("torch.", ""), "status": "ok", **env}
        rows[(name, ck)] = row
        try:
            before = _allocated(device)
            v = em.build_variant(name, backbone, device, dtype, ck, compile_backend=args.compile_backend)
            no_grad: list = []
            first = em.make_step(v, batch, after_backward=lambda: no_grad.extend(
                p for p in v.params if p.grad is None))
            t = time.perf_counter()
            loss = float(first())
            _sync(device)
            row["first_step_s"] = round(time.perf_counter() - t, 3)
            row["state_mib"] = round(_allocated(device) - before, 1)
            row["loss_first"] = round(loss, 5)
            row["trainable_params"] = sum(p.numel() for p in v.params)
            row["total_params"] = v.total_params
            if no_grad:  # e.g. PEFT LoRA on HF WavLM, whose attention reads q/k/v/out weights directly
                row["status"] = (f"not comparable: {len(no_grad)} of {len(v.params)} trainable tensors got no "
                                 "gradient (they do not take part in the forward)")
                continue
            built[(name, ck)] = (v, em.make_step(v, batch))
        except torch.cuda.OutOfMemoryError:
            row["status"] = "out of memory"
            torch.cuda.empty_cache()
        except Exception as exc:  # reported in the row: one broken variant must not hide the rest
            row["status"] = f"error: {type(exc).__name__}: {str(exc)[:160]}"
    # Correctness gate: the ELP variants start from elp-reference's weights and must agree.
    tol = 2e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-4
    for (name, ck), row in rows.items():
        ref = rows.get(("elp-reference", ck), {}).get("loss_first")
        if name in em.ELP_VARIANTS and name != "elp-reference" and (name, ck) in built and ref is not None:
            if not abs(row["loss_first"] - ref) <= tol * max(1.0, abs(ref)):
                row["status"] = f"FAIL first loss {row['loss_first']} vs reference {ref}"
                del built[(name, ck)]
        if (name, ck) in built and not math.isfinite(row["loss_first"]):
            row["status"] = "FAIL loss is not finite"
            del built[(name, ck)]

    samples: dict = {k: [] for k in built}
    round_medians: dict = {k: [] for k in built}
    peaks: dict = {k: 0.0 for k in built}
    for _ in range(args.rounds):
        for key, (v, step) in built.items():
            times = []
            for _ in range(args.steps):
                _sync(device)
                if device.type == "cuda":
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                step()
                _sync(device)
                times.append((time.perf_counter() - t) * 1e3)
                if device.type == "cuda":
                    peaks[key] = max(peaks[key], (torch.cuda.max_memory_allocated() - base) / 2**20)
            samples[key] += times
            round_medians[key].append(statistics.median(times))
        _fill(rows, samples, round_medians, peaks, audio_s)
        _write(rows_before + list(rows.values()), out)
    # Saved-for-backward bytes and the profiled step, after the timing (they perturb it).
    for key, (v, step) in built.items():
        model = v.model._orig_mod if hasattr(v.model, "_orig_mod") else v.model
        rows[key]["saved_mib"] = round(saved_mib(step, model, batch), 1)
        if v.name == "elp-compile":  # compiled code is one fused graph: only the optimizer splits off
            model = torch.nn.Module()
        prof = step_profile.breakdown(em.make_step(v, batch, step_profile.optimizer_scope), model, device)
        for c in step_profile.CATEGORIES:
            rows[key][f"pct_{c}"] = round(prof[c], 1)
        rows[key]["profiled_ms"] = round(prof["profiled_ms"], 2)
    _fill(rows, samples, round_medians, peaks, audio_s)
    built.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return list(rows.values())


def _fill(rows: dict, samples: dict, round_medians: dict, peaks: dict, audio_s: float) -> None:
    for key, s in samples.items():
        if not s:
            continue
        row = rows[key]
        q = statistics.quantiles(s, n=5) if len(s) > 1 else s * 4
        row["step_ms"] = round(statistics.median(round_medians[key]), 2)
        row["step_p20_ms"], row["step_p80_ms"] = round(q[0], 2), round(q[3], 2)
        row["steps_timed"] = len(s)
        row["audio_h_per_device_h"] = round(audio_s / (row["step_ms"] / 1e3), 1)
        if peaks[key]:
            row["step_peak_mib"] = round(peaks[key], 1)
            row["peak_mib"] = round(peaks[key] + row.get("state_mib", 0.0), 1)
    for (name, ck), row in rows.items():  # ratios against the baselines of the same group
        eager, ref = rows.get(("elp-eager", ck), {}), rows.get(("elp-reference", ck), {})
        if row.get("step_ms") and eager.get("step_ms"):
            row["speedup_vs_eager"] = round(eager["step_ms"] / row["step_ms"], 3)
        if row.get("step_ms") and ref.get("step_ms"):
            row["speedup_vs_reference"] = round(ref["step_ms"] / row["step_ms"], 3)
        if row.get("peak_mib") and eager.get("peak_mib"):
            row["peak_vs_eager"] = round(row["peak_mib"] / eager["peak_mib"], 3)
        if row.get("saved_mib") and eager.get("saved_mib"):
            row["saved_vs_eager"] = round(row["saved_mib"] / eager["saved_mib"], 3)


def _write(rows: list, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def summary(rows: list) -> str:
    lines = ["backbone | variant | ckpt | step ms | audio-h/device-h | x elp-eager | x elp-reference | peak MiB | "
             "saved MiB | trainable | attention/matmul/conv/adapters/head/optimizer/other %"]
    for r in rows:
        pct = "/".join(f"{r.get(f'pct_{c}', float('nan')):.0f}" for c in step_profile.CATEGORIES)
        lines.append(f"{r['backbone']} | {r['variant']} | {r['checkpointing']} | {r.get('step_ms', '-')} | "
                     f"{r.get('audio_h_per_device_h', '-')} | {r.get('speedup_vs_eager', '-')} | "
                     f"{r.get('speedup_vs_reference', '-')} | "
                     f"{r.get('peak_mib', '-')} | {r.get('saved_mib', '-')} | {r.get('trainable_params', '-')} | "
                     f"{pct}" + ("" if r["status"] == "ok" else f" | {r['status']}"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, tiny backbones, one round (checks the script)")
    p.add_argument("--backbones", default="wavlm-large,wavlm-base-plus,wav2vec2-large,xls-r-1b",
                   help=f"comma list of {', '.join(em.BACKBONES)}")
    p.add_argument("--variants", default=",".join(em.VARIANTS))
    p.add_argument("--checkpointing", default="none,all", help="comma list: none, all")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=16.0)
    p.add_argument("--dtype", default=None, help="bfloat16 on a GPU, float32 on a CPU unless given")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--budget-s", type=float, default=float("inf"),
                   help="start no new backbone x checkpointing group after this many seconds")
    p.add_argument("--out", type=Path, help="CSV for the rows (default results/<device>-<date>-e2e.csv)")
    args = p.parse_args(argv)
    if args.smoke:
        args.backbones = "tiny-wavlm,tiny-wav2vec2"
        # bf16 as on a GPU, so the smoke mode covers the fp32-master optimizer path too.
        args.batch, args.seconds, args.rounds, args.steps, args.dtype = 2, 0.5, 1, 1, "bfloat16"
        args.compile_backend = "aot_eager"  # Inductor's CPU compile takes minutes on CI
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    if not set(args.checkpointing.split(",")) <= {"none", "all"}:
        p.error(f"--checkpointing: got {args.checkpointing!r}; expected a comma list of none, all")
    args.checkpointing = [c == "all" for c in args.checkpointing.split(",")]
    variants = args.variants.split(",")
    bad = [v for v in variants if v not in em.VARIANTS] + [b for b in args.backbones.split(",") if b not in em.BACKBONES]
    if bad:
        p.error(f"unknown variant or backbone: {bad}; variants {em.VARIANTS}, backbones {sorted(em.BACKBONES)}")
    env = harness.environment()
    if device.type == "cpu":
        from bench_cpu import _cpu_name
        env["gpu"] = f"cpu {_cpu_name()} ({torch.get_num_threads()} threads)"
    out = args.out or harness.default_path(env).with_name(harness.default_path(env).stem + "-e2e.csv")
    print(f"# {env}", flush=True)
    deadline = time.monotonic() + args.budget_s
    rows: list = []
    for backbone in args.backbones.split(","):
        for ck in args.checkpointing:
            if time.monotonic() > deadline:
                print(f"# {backbone}, checkpointing {ck}: not run (--budget-s spent)", flush=True)
                continue
            t = time.perf_counter()
            rows += run_group(backbone, ck, variants, args, device, dtype, env, out, rows)
            _write(rows, out)
            print(f"# {backbone}, checkpointing {'all' if ck else 'none'}: {time.perf_counter() - t:.0f} s",
                  flush=True)
    print(summary(rows))
    if args.smoke:
        print("# smoke mode: tiny backbones on a CPU; the numbers only show that the script works")
    print(f"# rows written to {out}")
    return 1 if any(r["status"].startswith(("FAIL", "error")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
