"""`elp-fast train`: the engine from the command line.

Until the task recipes land it trains on the embedded synthetic task (tones in noise, two
classes): a small random WavLM by default, a Base-sized random WavLM with --backbone base (for
speed and memory runs), or a local HF checkpoint directory with --model. Runs in one process as
is, and on several under torchrun or the deepspeed launcher:

    elp-fast train --output runs/tones --max-steps 50
    python -m torch.distributed.run --nproc_per_node 2 -m elp_fast.cli train --output runs/tones2
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .config import EngineConfig, EngineConfigError, load_yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="EngineConfig as a .yaml / .yml / .json file")
    p.add_argument("--output", help="output_dir: checkpoints/, metrics.jsonl, summary.json, adapters/")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--micro-batch-size", type=int)
    p.add_argument("--zero-stage", type=int)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--activation-checkpointing", help="'all', 'none' or comma-separated layer indices")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any EngineConfig field, VALUE in YAML syntax (repeatable), e.g. --set lr=1e-3")
    p.add_argument("--backbone", choices=["small", "base"], default="small",
                   help="random WavLM to train: small (4 layers, d=64) or base (12 layers, d=768)")
    p.add_argument("--model", help="local HF checkpoint directory (any supported family) instead of --backbone")
    p.add_argument("--train-size", type=int, default=256, help="synthetic training utterances")
    p.add_argument("--eval-size", type=int, default=64, help="synthetic evaluation utterances")
    p.add_argument("--seconds", type=float, default=1.0, help="length of each synthetic utterance")


def build_config(args: argparse.Namespace) -> EngineConfig:
    data = EngineConfig.from_file(args.config).to_dict() if args.config else {}
    data.setdefault("output_dir", "runs/tones")
    data.setdefault("max_steps", 60)
    data.setdefault("lr", 5e-3)
    data.setdefault("save_every", 20)
    data.setdefault("eval_every", 20)
    for flag, field in (("output", "output_dir"), ("max_steps", "max_steps"),
                        ("micro_batch_size", "micro_batch_size"), ("zero_stage", "zero_stage"),
                        ("precision", "precision")):
        value = getattr(args, flag)
        if value is not None:
            data[field] = value
    if args.activation_checkpointing is not None:
        ac = args.activation_checkpointing
        if ac in ("all", "none"):
            data["activation_checkpointing"] = ac
        else:
            try:
                data["activation_checkpointing"] = [int(i) for i in ac.split(",")]
            except ValueError:
                raise EngineConfigError(f"--activation-checkpointing: got {ac!r}; expected 'all', 'none' or "
                                        "comma-separated layer indices such as 0,1,2") from None
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise EngineConfigError(f"--set: got {item!r}; expected FIELD=VALUE")
        data[field.strip()] = load_yaml(value)
    return EngineConfig.from_dict(data)


def build_model(args: argparse.Namespace):
    import transformers

    from .. import ELPConfig, wrap
    from ..demo import small_wavlm

    if args.model:
        path = Path(args.model)
        if not path.is_dir():
            raise FileNotFoundError(f"--model: {path} is not a directory holding a HF checkpoint")
        backbone = transformers.AutoModelForAudioClassification.from_pretrained(path, num_labels=2)
        return wrap(backbone)
    if args.backbone == "base":
        cfg = transformers.WavLMConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                       intermediate_size=3072, num_labels=2, mask_time_prob=0.0, layerdrop=0.0)
        return wrap(transformers.WavLMForSequenceClassification(cfg))
    return wrap(small_wavlm(0), ELPConfig(e_bottleneck=32, l_dim=48, p_len=4))


def accuracy(model, batch) -> dict:
    logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    return {"accuracy": (int((logits.argmax(-1) == batch["labels"]).sum()), len(batch["labels"]))}


def main(args: argparse.Namespace) -> int:
    from ..data import ToneDataset
    from .trainer import Trainer

    config = build_config(args)
    for name in ("train_size", "eval_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: got {getattr(args, name)}; expected >= 1")
    model = build_model(args)
    trainer = Trainer(model, config, ToneDataset(args.train_size, args.seconds, seed=0),
                      ToneDataset(args.eval_size, args.seconds, seed=1), eval_fn=accuracy)
    summary = trainer.train()
    if trainer.rank == 0 and summary["stopped"] is None:
        print(f"adapters: {summary['checkpoint']}/adapters  (load with ELPModel.load_adapters)")
    return 0
