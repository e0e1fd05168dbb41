"""The embedded demo: the parameter figure of WavLM Base+ and a short ELP training run.

Nothing is downloaded: the Base+ sized model is built on the meta device (shapes only) for the
parameter report, and the training run uses a small randomly initialised WavLM on a synthetic
two-class task (low vs high tones in noise), trained by the engine (DeepSpeed, one process); the
final checkpoint's adapters are then reloaded into a fresh backbone, which must reproduce the
trained model's outputs exactly.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

MARKER = ".elp_fast_demo"  # the demo only ever deletes a folder that it made itself


def base_plus_report() -> str:
    import transformers

    from . import wrap

    with torch.device("meta"):
        model = transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
    return wrap(model, p_len=0).parameter_report()


def small_wavlm(seed: int):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.WavLMConfig(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_labels=2,
        classifier_proj_size=32, mask_time_prob=0.0, layerdrop=0.0)
    return transformers.WavLMForSequenceClassification(cfg)


def _fresh_output(output: Path) -> None:
    if output.exists():
        if not (output / MARKER).is_file():
            raise FileExistsError(f"{output} exists and was not made by the demo; choose another --output")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    (output / MARKER).write_text("made by `elp-fast demo`; it deletes this folder when run again\n")


def run_demo(steps: int = 60, output: str | Path = "demo_output", seed: int = 0) -> dict:
    from . import ELPConfig, wrap
    from .data import ToneDataset
    from .engine import EngineConfig, Trainer
    from .engine.command import accuracy

    print("== Parameter report: WavLM Base+ dimensions, E (r=256, layers 1-11) + L (m=512) + layer norms, no P")
    print(base_plus_report())

    output = Path(output)
    _fresh_output(output)
    cfg = ELPConfig(e_bottleneck=32, l_dim=48, p_len=4)
    print(f"\n== Training a small random WavLM with ELP adapters for {steps} steps (synthetic tones, "
          "DeepSpeed engine, one process)")
    model = wrap(small_wavlm(seed), cfg)
    model.print_trainable_parameters()
    engine_cfg = EngineConfig(output_dir=str(output), max_steps=steps, micro_batch_size=8, lr=5e-3,
                              warmup_steps=min(5, steps), save_every=max(1, steps // 2), eval_every=0,
                              log_every=5, seed=seed, resume="never")
    held_out = ToneDataset(64, 0.5, seed=seed + 1)
    summary = Trainer(model, engine_cfg, ToneDataset(512, 0.5, seed=seed), held_out, eval_fn=accuracy).train()
    accuracy_ = summary["eval"]["accuracy"]
    print(f"held-out accuracy on 64 new utterances: {accuracy_:.2f}")

    adapters = Path(summary["checkpoint"]) / "adapters"
    batch = {k: torch.stack([held_out[i][k] for i in range(16)]) for k in ("input_values", "attention_mask")}
    model.eval()
    fresh = wrap(small_wavlm(seed), cfg).eval()
    fresh.load_adapters(adapters)
    with torch.no_grad():
        same = torch.equal(fresh(**batch).logits, model(**batch).logits)
    size = (adapters / "adapter_model.safetensors").stat().st_size
    print(f"adapters saved to {adapters}/ ({size / 1024:.0f} KiB); reloaded into a fresh backbone: "
          f"outputs {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise RuntimeError("reloaded adapters do not reproduce the trained model's outputs")
    return {"summary": summary, "accuracy": accuracy_, "reload_identical": same}


def add_arguments(p) -> None:
    p.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    p.add_argument("--output", default="demo_output", help="folder for the run (replaced when it holds an earlier demo run)")
    p.add_argument("--seed", type=int, default=0)


def main(args, parser) -> int:
    if args.steps < 1:
        parser.error(f"--steps: got {args.steps}; expected >= 1")
    run_demo(steps=args.steps, output=args.output, seed=args.seed)
    return 0
