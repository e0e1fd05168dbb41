"""Speed-up and memory charts (PNG) from the committed results, beside them in benchmarks/results/.

    python benchmarks/plot.py                    # the newest results per kind and device
    python benchmarks/plot.py --out /tmp/charts  # somewhere else

Per op-level file (bench_ops.py on a GPU, bench_cpu.py on a CPU): `<file>-speedup.png`, the
forward + backward speed-up of each fused provider over each baseline of the same run, per
configuration. Per end-to-end file (bench_e2e.py): `<file>-speedup.png`, each method's training
step against elp-eager (ELP with eager adapter modules), and `<file>-memory.png`, peak memory per step on a GPU (the bytes
autograd keeps for backward on a CPU). Ratios only: never a comparison across runs or cards.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import report
import targets as tg


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _barh(groups: list, series: dict, title: str, xlabel: str, path: Path, line: float = None) -> Path:
    """groups: y labels; series: {legend: [value per group]}."""
    plt = _plt()
    series = {name: vals for name, vals in series.items() if any(v == v for v in vals)}  # drop unmeasured
    n, k = len(groups), max(1, len(series))
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.28 * n * k))
    h = 0.8 / k
    for i, (name, vals) in enumerate(series.items()):
        ys = [g + (i - (k - 1) / 2) * h for g in range(n)]
        ax.barh(ys, [0 if v != v else v for v in vals], height=h, label=name)
    ax.set_yticks(range(n))
    ax.set_yticklabels(groups, fontsize=7)
    ax.invert_yaxis()
    if line is not None:
        ax.axvline(line, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def op_speedup(path: Path, rows: list, out: Path) -> Path:
    gpu = tg.is_gpu(rows[0])
    fused = [p for p in tg.FUSED if any(r["provider"] == p for r in rows)]
    baselines = ["eager", "compile"] + ([] if gpu else ["reference"])
    configs, series = [], {f"{p} vs {b}": [] for p in fused for b in baselines}
    for r in rows:
        if r["provider"] != fused[0] or r["mode"] != "fwd+bwd":
            continue
        shape = (f"r={r['width']}" if r["op"] == "bottleneck_adapter" else f"L={r['layers']}")
        configs.append(f"{r['op']} {r['dtype']} N={r['tokens']} d={r['d']} {shape}")
        for p in fused:
            twin = next((t for t in rows if t["provider"] == p and all(
                t[k] == r[k] for k in ("op", "mode", "tokens", "d", "width", "layers", "dtype", "variant"))), {})
            for b in baselines:
                series[f"{p} vs {b}"].append(tg.num(twin, f"speedup_vs_{b}"))
    r0 = rows[0]
    return _barh(configs, series, f"fwd+bwd speed-up, {r0['gpu']}, {r0['date']}",
                 "speed-up (x), same run", out / f"{path.stem}-speedup.png", line=1.0)


def e2e_charts(path: Path, rows: list, out: Path) -> list:
    gpu = tg.is_gpu(rows[0])
    ok = [r for r in rows if r["status"] == "ok"]
    variants = list(dict.fromkeys(r["variant"] for r in ok))
    groups = list(dict.fromkeys((r["backbone"], r["checkpointing"]) for r in ok))
    labels = [f"{b}, ckpt {c}" for b, c in groups]

    def values(field):
        return {v: [next((tg.num(r, field) for r in ok if (r["backbone"], r["checkpointing"], r["variant"])
                          == (b, c, v)), float("nan")) for b, c in groups] for v in variants}
    r0 = rows[0]
    where = f"{r0['gpu']}, {r0['date']}, batch {r0['batch']} x {r0['seconds']} s"
    speed = _barh(labels, values("speedup_vs_eager"), f"training step vs elp-eager ({where})",
                  "speed-up (x), same run", out / f"{path.stem}-speedup.png", line=1.0)
    field, xl = ("peak_mib", "peak memory per step (MiB)") if gpu else ("saved_mib", "saved for backward per step (MiB)")
    mem = _barh(labels, values(field), f"memory ({where})", xl, out / f"{path.stem}-memory.png")
    return [speed, mem]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=report.RESULTS)
    p.add_argument("--out", type=Path, help="folder for the PNGs (default: beside the results)")
    args = p.parse_args(argv)
    out = args.out or args.results
    out.mkdir(parents=True, exist_ok=True)
    data = report.load(args.results)
    made = []
    for device, files in sorted(data.get("op", {}).items()):
        made += [op_speedup(path, rows, out) for path, rows in files]
    for device, files in sorted(data.get("e2e", {}).items()):
        for path, rows in files:
            made += e2e_charts(path, rows, out)
    for m in made:
        print(f"wrote {m}")
    if not made:
        print(f"no op-level or end-to-end results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
