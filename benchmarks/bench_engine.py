"""Training-step time and peak memory of the engine (DeepSpeed), across ZeRO stages and
activation checkpointing.

Default (the GPU run): a Base-sized random WavLM (12 layers, d = 768) with the default ELP
adapters (r = 256, m = 512, 8 pseudo frames), bf16, ZeRO-2, 8 utterances of 4 s per step, on the
synthetic tone task, with and without activation checkpointing. `--backbone` also takes the
real-shaped backbones of benchmarks/e2e_models.py (e.g. xls-r-1b, for ZeRO-2 against ZeRO-3:
`--zero-stages 2,3`). Each setting runs in its own process (clean peak-memory counters); step
times are the per-step wall times after the warm-up steps, from the engine's metrics.jsonl (the
engine synchronises every step: it all-reduces the loss).

    python benchmarks/bench_engine.py --out benchmarks/results/<card>-engine.csv
    python benchmarks/bench_engine.py --backbone xls-r-1b --seconds 16 --zero-stages 2,3 --checkpointing all
    python benchmarks/bench_engine.py --smoke      # CPU: small backbone, a few steps
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from e2e_models import BACKBONES

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["device", "backbone", "precision", "zero_stage", "checkpointing", "micro_batch", "seconds",
          "steps_timed", "step_ms_median", "step_ms_p20", "step_ms_p80", "audio_s_per_s", "peak_memory_mib",
          "trainable_parameters", "loss_first", "loss_last"]


def one_run(args) -> dict:
    """Runs in a child process: one Trainer, returns the row."""
    import torch

    from elp_fast.tasks.tones import build_model
    from elp_fast.data import ToneDataset
    from elp_fast.engine import EngineConfig, Trainer

    if args.backbone in ("small", "base"):
        model = build_model(args.backbone)
    else:  # a real-shaped backbone with the default ELP adapters and a 2-class head (the tones)
        import elp_fast
        from e2e_models import hf_classifier

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # fast initialisation
        model = elp_fast.wrap(hf_classifier(args.backbone, device, seed=0, num_labels=2))
    steps = args.warmup + args.steps
    cfg = EngineConfig(output_dir=args.run_dir, max_steps=steps, micro_batch_size=args.micro_batch_size,
                       precision=args.precision, zero_stage=args.zero_stage, lr=1e-3,
                       activation_checkpointing=args.checkpointing, log_every=1, save_every=0,
                       resume="never", progress=False)
    data = ToneDataset(args.micro_batch_size * steps, args.seconds, seed=0)
    summary = Trainer(model, cfg, data).train()
    recs = [json.loads(line) for line in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["type"] == "train"]
    times = sorted(1000.0 / r["steps_per_s"] for r in train if r["step"] > args.warmup)
    q = statistics.quantiles(times, n=5) if len(times) >= 2 else [times[0]] * 4
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    audio = args.micro_batch_size * args.seconds  # real audio per step is 1/2..1 of this (random lengths)
    return {"device": device, "backbone": args.backbone, "precision": args.precision, "zero_stage": args.zero_stage,
            "checkpointing": args.checkpointing, "micro_batch": args.micro_batch_size, "seconds": args.seconds,
            "steps_timed": len(times), "step_ms_median": round(statistics.median(times), 2),
            "step_ms_p20": round(q[0], 2), "step_ms_p80": round(q[3], 2),
            "audio_s_per_s": round(0.75 * audio / (statistics.median(times) / 1000), 1),
            "peak_memory_mib": round(max(summary["peak_memory_bytes"].values()) / 2 ** 20, 1),
            "trainable_parameters": summary["trainable_parameters"],
            "loss_first": round(train[0]["loss"], 4), "loss_last": round(train[-1]["loss"], 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU check: small backbone, fp32, 2 + 2 steps")
    p.add_argument("--out", help="CSV to write (default: print only)")
    p.add_argument("--backbone", choices=["small", "base", *BACKBONES], help="default: base (smoke: small)")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--zero-stages", default="2", help="comma list of ZeRO stages to compare (1, 2, 3)")
    p.add_argument("--zero-stage", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--checkpointing", default="none,all", help="comma-separated settings to compare")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.backbone = args.backbone or "small"
        args.precision, args.micro_batch_size, args.seconds = "fp32", 2, 0.5
        args.steps, args.warmup = 2, 2
    args.backbone = args.backbone or "base"
    if args.child:
        print("ROW " + json.dumps(one_run(args)), flush=True)
        return 0

    rows = []
    settings = [(z, c) for z in args.zero_stages.split(",") for c in args.checkpointing.split(",")]
    for zero, setting in settings:
        with tempfile.TemporaryDirectory() as run_dir:
            cmd = [sys.executable, __file__, "--child", "--run-dir", run_dir, "--backbone", args.backbone,
                   "--precision", args.precision, "--zero-stage", zero,
                   "--micro-batch-size", str(args.micro_batch_size), "--seconds", str(args.seconds),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--checkpointing", setting]
            env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            found = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            if proc.returncode != 0 or not found:
                print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
                print(f"zero_stage={zero} checkpointing={setting}: failed (exit {proc.returncode})", file=sys.stderr)
                return 1
            rows.append(json.loads(found[0]))
            print(" ".join(f"{k}={rows[-1][k]}" for k in FIELDS), flush=True)
    for a, b in zip(rows, rows[1:]):  # each setting against the one before it
        what = " ".join(f"{k} {b[k]} vs {a[k]}" for k in ("zero_stage", "checkpointing") if a[k] != b[k])
        if what:
            print(f"{what}: step time x{b['step_ms_median'] / a['step_ms_median']:.2f}, "
                  f"peak memory x{b['peak_memory_mib'] / a['peak_memory_mib']:.2f}")
    if args.smoke:
        print("smoke mode: CPU, tiny sizes; the numbers only show that the script works")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
