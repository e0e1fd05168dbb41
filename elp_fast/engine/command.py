"""`elp-fast train`: the engine from the command line.

`--task asr|asv|ser|sic` trains a task recipe on a corpus (elp_fast.tasks.run). The default,
`--task tones`, is the embedded synthetic task (tones in noise, two classes) that needs no
data: a small random WavLM by default, a Base-sized random WavLM with --backbone base (for
speed and memory runs), or a local HF checkpoint directory with --backbone DIR. Runs in one
process as is, and on several under torchrun or the deepspeed launcher:

    elp-fast train --output runs/tones --max-steps 50
    python -m torch.distributed.run --nproc_per_node 2 -m elp_fast.cli train --output runs/tones2
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import distributed
from .config import EngineConfig, EngineConfigError, load_yaml

TASK_HELP = "tones (synthetic, no data needed), asr, asv, ser or sic (a recipe; needs --data)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..tasks.methods import METHODS

    g = p.add_argument_group("what to train")
    g.add_argument("--task", default="tones", choices=["tones", "asr", "asv", "ser", "sic"], metavar="TASK",
                   help=TASK_HELP + " (default tones)")
    g.add_argument("--data", metavar="ROOT", help="corpus root in its standard layout (see the recipe's header)")
    g.add_argument("--method", default="elp", choices=sorted(METHODS), metavar="METHOD",
                   help="elp (default) or a baseline: " + ", ".join(m for m in METHODS if m != "elp"))
    g.add_argument("--backbone", default="small", metavar="small|mini|base|DIR",
                   help="a local HF checkpoint directory (pretrained WavLM, wav2vec 2.0, HuBERT, data2vec-audio), "
                        "or a random WavLM: small (4 layers, d=64, default), mini (the demo's: WavLM's CNN, "
                        "4 layers, d=128) or base (12 layers, d=768)")
    g.add_argument("--model", dest="backbone", help=argparse.SUPPRESS)  # the engine issue's name for --backbone DIR
    g.add_argument("--config", metavar="FILE",
                   help="with --task tones an EngineConfig (.yaml/.json); with a recipe task, a recipe YAML "
                        "replacing the built-in one (elp_fast/tasks/recipes/TASK.yaml)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, VALUE in YAML syntax (repeatable): engine fields as lr=1e-3 or "
                        "engine.lr=1e-3; recipe sections as model.e_bottleneck=64, data.verify=header, "
                        "train.epochs=3, head.margin=0")
    e = p.add_argument_group("engine (win over the config file)")
    e.add_argument("--output", help="run directory: config.yaml, checkpoints/, metrics.jsonl, summary.json")
    e.add_argument("--max-steps", type=int, help="optimizer steps (default: the recipe's epochs)")
    e.add_argument("--micro-batch-size", type=int)
    e.add_argument("--zero-stage", type=int)
    e.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    e.add_argument("--activation-checkpointing", help="'all', 'none' or comma-separated layer indices")
    t = p.add_argument_group("--task tones only")
    t.add_argument("--train-size", type=int, help="synthetic training utterances (default 256)")
    t.add_argument("--eval-size", type=int, help="synthetic evaluation utterances (default 64)")
    t.add_argument("--seconds", type=float, help="length of each synthetic utterance (default 1.0)")


def engine_flags(args: argparse.Namespace) -> dict:
    """EngineConfig fields given as command-line flags."""
    data = {}
    for flag, name in (("output", "output_dir"), ("max_steps", "max_steps"),
                       ("micro_batch_size", "micro_batch_size"), ("zero_stage", "zero_stage"),
                       ("precision", "precision")):
        value = getattr(args, flag)
        if value is not None:
            data[name] = value
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
    return data


def build_config(args: argparse.Namespace) -> EngineConfig:
    data = EngineConfig.from_file(args.config).to_dict() if args.config else {}
    data.setdefault("output_dir", "runs/tones")
    data.setdefault("max_steps", 60)
    data.setdefault("lr", 5e-3)
    data.setdefault("save_every", 20)
    data.setdefault("eval_every", 20)
    data.update(engine_flags(args))
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise EngineConfigError(f"--set: got {item!r}; expected FIELD=VALUE")
        field = field.strip()
        data[field[len("engine."):] if field.startswith("engine.") else field] = load_yaml(value)
    return EngineConfig.from_dict(data)


def build_model(args: argparse.Namespace):
    import torch
    import transformers

    from .. import ELPConfig, wrap
    from ..demo import small_wavlm

    if args.backbone not in ("small", "mini", "base"):
        path = Path(args.backbone)
        if not path.is_dir():
            raise FileNotFoundError(f"--backbone: {path} is not a directory holding a HF checkpoint")
        backbone = transformers.AutoModelForAudioClassification.from_pretrained(path, num_labels=2)
        return wrap(backbone)
    if args.backbone in ("base", "mini"):
        from ..tasks.run import random_wavlm_config

        cfg = random_wavlm_config(args.backbone)
        cfg.num_labels = 2
        torch.manual_seed(0)
        elp_cfg = ELPConfig() if args.backbone == "base" else ELPConfig(e_bottleneck=64, l_dim=128)
        return wrap(transformers.WavLMForSequenceClassification(cfg), elp_cfg)
    return wrap(small_wavlm(0), ELPConfig(e_bottleneck=32, l_dim=48, p_len=4))


def accuracy(model, batch) -> dict:
    logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    return {"accuracy": (int((logits.argmax(-1) == batch["labels"]).sum()), len(batch["labels"]))}


def main(args: argparse.Namespace) -> int:
    tone_flags = [f for f in ("train_size", "eval_size", "seconds") if getattr(args, f) is not None]
    if args.task != "tones":
        from ..tasks.run import train

        if tone_flags:
            raise EngineConfigError(f"--{tone_flags[0].replace('_', '-')}: only for --task tones")
        if args.data is None:
            raise EngineConfigError(f"--data: --task {args.task} needs the corpus root (see `elp-fast train --help`)")
        train(args, engine_flags(args))
        distributed.shutdown()
        return 0
    from ..data import ToneDataset
    from .trainer import Trainer

    if args.data is not None or args.method != "elp":
        raise EngineConfigError("--data / --method: only for the recipe tasks (--task asr|asv|ser|sic)")
    config = build_config(args)
    for name, default in (("train_size", 256), ("eval_size", 64), ("seconds", 1.0)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("train_size", "eval_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: got {getattr(args, name)}; expected >= 1")
    model = build_model(args)
    trainer = Trainer(model, config, ToneDataset(args.train_size, args.seconds, seed=0),
                      ToneDataset(args.eval_size, args.seconds, seed=1), eval_fn=accuracy)
    summary = trainer.train()
    if trainer.rank == 0 and summary["stopped"] is None:
        print(f"adapters: {summary['checkpoint']}/adapters  (load with ELPModel.load_adapters)")
    distributed.shutdown()
    return 0
