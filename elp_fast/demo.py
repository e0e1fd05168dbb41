"""The embedded demo (`elp-fast demo`, the README's first command): spoken-command intent
classification from nothing on disk.

1. Synthesise a small Fluent-Speech-Commands-style data set with espeak-ng: 12 intents (action,
   object, location), each said by many voices at varied speed and pitch; the variants of the
   validation and test voices never occur in training (elp_fast.data.spoken_commands).
2. Train ELP adapters (E, L, P) with the SIC recipe through the DeepSpeed engine on a small
   WavLM-shaped backbone (random initialisation unless --backbone names a checkpoint), then a
   head-only baseline the same way (same steps, batches, head and learning rate).
3. Evaluate both on the held-out voices and print the comparison; write the run directory with
   summary.json and PNG plots of the loss curves and of the learned layer weights.

Nothing is downloaded. Both run directories are ordinary `elp-fast train` runs (config.yaml,
metrics.jsonl, checkpoints/), so `elp-fast eval --run OUTPUT/elp` works on them too.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import torch

MARKER = ".elp_fast_demo"  # the demo only ever deletes a folder that it made itself
DEMO_LR = 1e-2             # head, L-adapters, layer weights: a random backbone needs a brisk rate
DEMO_LR_INNER = 1e-4       # E- and P-adapters, encoder norms: small, as in the published E/L-adapter code
RUNS = {"elp": "ELP adapters (E + L + P)", "head_only": "head-only baseline"}


def add_arguments(p) -> None:
    p.add_argument("--output", default="demo_output",
                   help="run directory (default demo_output; replaced only when an earlier demo made it)")
    p.add_argument("--backbone", metavar="DIR",
                   help="a local pretrained checkpoint (WavLM, wav2vec 2.0, HuBERT, data2vec-audio) instead "
                        "of the random WavLM-shaped one")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per model (default 300)")
    p.add_argument("--train-voices", type=int, default=36, help="training voices (default 36)")
    p.add_argument("--test-voices", type=int, default=8, help="held-out test voices (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, backbone and training (default 0)")


def base_plus_report() -> str:
    import transformers

    from . import wrap

    with torch.device("meta"):
        model = transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
    return wrap(model, p_len=0).parameter_report()


def fresh_output(output: Path) -> None:
    if output.exists():
        if not (output / MARKER).is_file():
            raise FileExistsError(f"{output} exists and was not made by the demo; choose another --output")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    (output / MARKER).write_text("made by `elp-fast demo`; it deletes this folder when run again\n")


def demo_recipe(steps: int, seed: int, pretrained: bool) -> dict:
    """The SIC recipe with demo-sized settings: a fixed number of steps with warm-up and linear
    decay, learning rates for a small random backbone, adapter sizes for its width (the recipe's
    defaults with a pretrained --backbone), and a GELU after the head's hidden layer (the
    settings the README's demo figures were measured with)."""
    from .tasks.recipe import load_recipe

    recipe = load_recipe("sic")
    recipe["train"] = {"epochs": 1}
    recipe["data"]["verify"] = "header"  # synthesised just now, by us
    recipe["head"]["activation"] = "gelu"
    if not pretrained:
        recipe["model"].update(e_bottleneck=64, l_dim=128)
        recipe["head"]["hidden"] = 128
    lrs = {"head": DEMO_LR, "l_adapters": DEMO_LR, "layer_weights": DEMO_LR, "e_adapters": DEMO_LR_INNER,
           "p_adapter": DEMO_LR_INNER, "layer_norms": DEMO_LR_INNER}
    recipe["methods"] = {"elp": lrs, "head_only": {"head": DEMO_LR}}
    recipe["engine"].update(max_steps=steps, micro_batch_size=16, warmup_steps=max(1, steps // 10), schedule="linear",
                            seed=seed, save_every=0, eval_every=0, log_every=10, resume="never", lr=DEMO_LR)
    return recipe


def chance_accuracy(test_csv: Path) -> float:
    """The all-slots accuracy of always answering the most frequent test intent."""
    rows = [line.split(",")[-3:] for line in test_csv.read_text().splitlines()[1:] if line.strip()]
    return Counter(map(tuple, rows)).most_common(1)[0][1] / len(rows)


def _losses(run: Path) -> tuple[list, list]:
    steps, losses = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "train":
            steps.append(rec["step"])
            losses.append(rec["loss"])
    return steps, losses


def plot(output: Path, runs: dict, layer_weights: Optional[list]) -> list[Path]:
    """loss_curves.png (training loss of both runs) and layer_weights.png (ELP's learned
    softmax weights per encoder layer)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: plots skipped (pip install matplotlib)")
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, run in runs.items():
        steps, losses = _losses(run["dir"])
        ax.plot(steps, losses, label=f"{RUNS[name]}: held-out accuracy {100 * run['accuracy']:.1f} %")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (sum of 3 slot cross-entropies)")
    ax.set_title("Spoken-command intents: training loss")
    ax.legend()
    fig.tight_layout()
    paths = [output / "loss_curves.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    if layer_weights:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.bar(range(1, len(layer_weights) + 1), layer_weights, color="tab:blue")
        ax.axhline(1 / len(layer_weights), color="grey", linestyle="--", label="initial (uniform)")
        ax.set_xlabel("encoder layer (output X^l)")
        ax.set_ylabel("softmax(w)_l")
        ax.set_title("Learned L-adapter layer weights (ELP)")
        ax.set_xticks(range(1, len(layer_weights) + 1))
        ax.legend()
        fig.tight_layout()
        paths.append(output / "layer_weights.png")
        fig.savefig(paths[1], dpi=120)
        plt.close(fig)
    return paths


def run_demo(output="demo_output", *, steps: int = 300, seed: int = 0, backbone: Optional[str] = None,
             train_voices: int = 36, test_voices: int = 8) -> dict:
    from .files import write_atomic
    from .data import spoken_commands
    from .tasks.run import train_recipe

    t_start = time.time()
    output = Path(output)
    fresh_output(output)
    print("== WavLM Base+ dimensions with the E + L adapters of Otake et al. (shapes only, nothing downloaded)")
    print(base_plus_report())

    data_dir = output / "data"
    print(f"\n== Synthesising spoken commands with espeak-ng into {data_dir}")
    t0 = time.time()
    made = spoken_commands.build(data_dir, train_voices=train_voices, valid_voices=max(1, test_voices // 2),
                                 test_voices=test_voices, seed=seed)
    n, sec = made["utterances"], made["seconds"]
    print(f"{made['intents']} intents; train {n['train']} utterances ({sec['train'] / 60:.1f} min) by "
          f"{train_voices} voices; held out: valid {n['valid']}, test {n['test']} utterances by voices whose "
          f"variants never train ({', '.join(made['voices']['test'][:4])}, ...); {time.time() - t0:.0f} s")

    spec = backbone or "mini"
    runs: dict = {}
    model = None
    for method in RUNS:
        print(f"\n== Training: {RUNS[method]} ({steps} steps, SIC recipe, DeepSpeed engine, one process)")
        recipe = demo_recipe(steps, seed, pretrained=backbone is not None)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()  # per run; a CPU process's peak cannot be reset
        t0 = time.time()
        summary, trained = train_recipe(recipe, method, spec, data_dir,
                                        {"output_dir": str(output / method)}, quiet=method != "elp")
        counts = trained.trainable_parameter_counts()
        runs[method] = {"dir": output / method, "accuracy": summary["test"]["accuracy"],
                        "valid_accuracy": summary["eval"].get("accuracy"),
                        "trainable": counts["trainable"], "total": counts["total"],
                        "audio_s_per_s": summary["audio_s_per_s"], "seconds": time.time() - t0,
                        "peak_memory_mib": max(summary["peak_memory_bytes"].values()) / 2 ** 20}
        if method == "elp":
            model = trained

    weights = model.l_adapters.layer_weights().tolist() if model is not None and model.l_adapters is not None else None
    plots = plot(output, runs, weights)
    chance = chance_accuracy(data_dir / "data" / "test_data.csv")
    described = ("random initialisation (WavLM-shaped: its 7-layer CNN, 4 layers, d=128; seed "
                 f"{seed}); a pretrained --backbone DIR does far better" if backbone is None
                 else f"pretrained weights from {Path(backbone).resolve()}")
    print(f"\n== Summary: all-slots accuracy on {n['test']} utterances by {test_voices} held-out voices")
    print(f"backbone: {described}")
    print(f"  {'':<28}{'trainable / total parameters':>34}{'accuracy':>11}{'audio-s/s':>11}")
    for method, r in runs.items():
        share = f"{r['trainable']:,} ({100 * r['trainable'] / r['total']:.1f} %) / {r['total']:,}"
        print(f"  {RUNS[method]:<28}{share:>34}{100 * r['accuracy']:>10.1f}%{r['audio_s_per_s']:>11.0f}")
    print(f"  {'chance (most frequent intent)':<28}{'':>34}{100 * chance:>10.1f}%")
    if torch.cuda.is_available():
        print("peak GPU memory: " + ", ".join(f"{RUNS[m]} {r['peak_memory_mib']:,.0f} MiB" for m, r in runs.items()))
    else:
        print(f"peak memory: {runs['head_only']['peak_memory_mib']:,.0f} MiB resident (this process, both runs: "
              "a CPU process's peak cannot be split by run)")
    result = {"seed": seed, "steps": steps, "backbone": described, "data": made, "chance_accuracy": chance,
              "runs": {m: {k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()} for m, r in runs.items()},
              "layer_weights": weights, "plots": [str(p) for p in plots], "seconds": time.time() - t_start}
    write_atomic(output / "summary.json", (json.dumps(result, indent=2) + "\n").encode())
    print(f"run directory {output}/: summary.json, {', '.join(p.name for p in plots) or 'no plots'}, "
          f"elp/ and head_only/ (config.yaml, metrics.jsonl, checkpoints/); {time.time() - t_start:.0f} s in all")
    return result


def main(args, parser) -> int:
    for name in ("steps", "train_voices", "test_voices"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: got {getattr(args, name)}; expected >= 1")
    from .data.spoken_commands import SynthesisError

    try:
        run_demo(args.output, steps=args.steps, seed=args.seed, backbone=args.backbone,
                 train_voices=args.train_voices, test_voices=args.test_voices)
    except SynthesisError as exc:
        parser.exit(2, f"elp-fast demo: {exc}\n")
    return 0
