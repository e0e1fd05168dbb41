"""The synthetic tone task (`elp-fast train` without --task): tones in noise, two classes,
nothing to download. For trying engine settings (precision, ZeRO, checkpointing, launchers) on a
small random WavLM (default), `--backbone mini` or `base` for larger random ones, or a local HF
checkpoint directory. Runs in one process as is, and on several under torchrun or the deepspeed
launcher:

    elp-fast train --output runs/tones --max-steps 50
    python -m torch.distributed.run --nproc_per_node 2 -m elp_fast.cli train --output runs/tones2
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import EngineConfig, EngineConfigError, Trainer, distributed
from ..engine.config import load_yaml

FLAGS = {"train_size": 256, "eval_size": 64, "seconds": 1.0}  # the tone-only flags and their defaults


def build_config(config_file, engine_flags: dict, overrides: list) -> EngineConfig:
    """EngineConfig from the optional file, the tone task's defaults, the flags and `--set`s."""
    data = EngineConfig.from_file(config_file).to_dict() if config_file else {}
    data.setdefault("output_dir", "runs/tones")
    data.setdefault("max_steps", 60)
    data.setdefault("lr", 5e-3)
    data.setdefault("save_every", 20)
    data.setdefault("eval_every", 20)
    data.update(engine_flags)
    for item in overrides:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise EngineConfigError(f"--set: got {item!r}; expected FIELD=VALUE")
        field = field.strip()
        data[field[len("engine."):] if field.startswith("engine.") else field] = load_yaml(value)
    return EngineConfig.from_dict(data)


def build_model(backbone: str):
    """small | mini | base (random WavLMs with a two-class head) or a local checkpoint directory."""
    import transformers

    from ..config import ELPConfig
    from ..models import wrap
    from ..models.random_backbone import SIZES, random_wavlm

    if backbone not in SIZES:
        path = Path(backbone)
        if not path.is_dir():
            raise FileNotFoundError(f"--backbone: {path} is not a directory holding a HF checkpoint")
        return wrap(transformers.AutoModelForAudioClassification.from_pretrained(path, num_labels=2))
    extra = {"classifier_proj_size": 32} if backbone == "small" else {}
    model = random_wavlm(backbone, 0, "sequence_classification", num_labels=2, **extra)
    elp = {"base": ELPConfig(), "mini": ELPConfig(e_bottleneck=64, l_dim=128),
           "small": ELPConfig(e_bottleneck=32, l_dim=48, p_len=4)}[backbone]
    return wrap(model, elp)


def accuracy(model, batch) -> dict:
    logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    return {"accuracy": (int((logits.argmax(-1) == batch["labels"]).sum()), len(batch["labels"]))}


def main(args: argparse.Namespace, engine_flags: dict) -> int:
    from ..data import ToneDataset

    if args.data is not None or args.method != "elp":
        raise EngineConfigError("--data / --method: only for the recipe tasks (see --task)")
    config = build_config(args.config, engine_flags, args.set)
    for name, default in FLAGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("train_size", "eval_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: got {getattr(args, name)}; expected >= 1")
    model = build_model(args.backbone)
    trainer = Trainer(model, config, ToneDataset(args.train_size, args.seconds, seed=0),
                      ToneDataset(args.eval_size, args.seconds, seed=1), eval_fn=accuracy)
    summary = trainer.train()
    if trainer.rank == 0 and summary["stopped"] is None:
        print(f"adapters: {summary['checkpoint']}/adapters  (load with ELPModel.load_adapters)")
    distributed.shutdown()
    return 0
