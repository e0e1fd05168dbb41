"""The `elp-fast` command: train, eval, demo, info."""
from __future__ import annotations

import argparse
import os
import sys

# On CPU, oneDNN caches a primitive for every input shape it meets (default: 1024 of them); speech
# batches of varied lengths never reuse one, and the cache grew the demo's memory by about 1 GB.
# A small cache costs nothing measurable here; set the variable yourself to override.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")

DESCRIPTION = """\
ELP-adapter tuning for self-supervised speech encoders (WavLM, wav2vec 2.0, HuBERT,
data2vec-audio): the encoder stays frozen, small adapters and a task head train.

  elp-fast demo                                   see it work in a few minutes, nothing to download
  elp-fast train --task sic --data FSC_ROOT --backbone WAVLM_DIR
                                                  train a task recipe (asr, asv, ser, sic, or a
                                                  registered task of another package)
  elp-fast train --task ser --data IEMOCAP --backbone DIR --method l_only
                                                  ... or one of the baselines
  elp-fast eval --run runs/sic-elp                evaluate a run's adapters (test split by default)
  elp-fast eval --run runs/sic-elp --predictions  ... and write each utterance's prediction
  elp-fast info                                   versions and which fused kernels run here

`elp-fast COMMAND --help` explains each command's options."""

TRAIN_EPILOG = """\
methods (--method):
{methods}

tasks (--task):
{tasks}

Each recipe (elp_fast/tasks/recipes/TASK.yaml; the resolved one is saved as config.yaml in the
run directory) holds the data splits, adapter settings, head, epochs and the learning rate of
every parameter group per method. Examples:

  elp-fast train --task asr --data /data/librispeech --backbone /models/wavlm-base-plus
  elp-fast train --task sic --data /data/fsc --backbone DIR --method full --output runs/sic-full
  elp-fast train --task ser --data /data/IEMOCAP --backbone DIR --set data.test_session=1 \\
      --set engine.precision=bf16 --set train.epochs=10
  torchrun --nproc_per_node 4 -m elp_fast.cli train --task asv --data /data/voxceleb1 --backbone DIR \\
      --zero-stage 2 --precision bf16

A run directory that holds a checkpoint is resumed (same settings), never overwritten."""


def add_train_arguments(p: argparse.ArgumentParser, tasks: list) -> None:
    from .tasks.methods import METHODS

    g = p.add_argument_group("what to train")
    g.add_argument("--task", default="tones", choices=["tones", *tasks], metavar="TASK",
                   help=f"tones (synthetic, no data needed; the default) or a recipe task: {', '.join(tasks)} "
                        "(needs --data)")
    g.add_argument("--data", metavar="ROOT", help="corpus root in its standard layout (see the recipe's header)")
    g.add_argument("--method", default="elp", choices=sorted(METHODS), metavar="METHOD",
                   help="elp (default) or a baseline: " + ", ".join(m for m in METHODS if m != "elp"))
    g.add_argument("--backbone", default="small", metavar="small|mini|base|DIR",
                   help="a local HF checkpoint directory (pretrained WavLM, wav2vec 2.0, HuBERT, data2vec-audio), "
                        "or a random WavLM: small (4 layers, d=64, default), mini (the demo's: WavLM's CNN, "
                        "4 layers, d=128) or base (12 layers, d=768)")
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
    """EngineConfig fields given as command-line flags (EngineConfig checks their values)."""
    data = {}
    for flag, name in (("output", "output_dir"), ("max_steps", "max_steps"), ("micro_batch_size", "micro_batch_size"),
                       ("zero_stage", "zero_stage"), ("precision", "precision"),
                       ("activation_checkpointing", "activation_checkpointing")):
        value = getattr(args, flag)
        if value is not None:
            data[name] = value
    return data


def train(args: argparse.Namespace) -> int:
    from .engine import distributed
    from .engine.config import EngineConfigError

    flags = engine_flags(args)
    if args.task == "tones":
        from .tasks.tones import main as tones_main

        return tones_main(args, flags)
    from .tasks.tones import FLAGS
    from .tasks.run import train as train_task

    given = [f for f in FLAGS if getattr(args, f) is not None]
    if given:
        raise EngineConfigError(f"--{given[0].replace('_', '-')}: only for --task tones")
    if args.data is None:
        raise EngineConfigError(f"--data: --task {args.task} needs the corpus root (see `elp-fast train --help`)")
    train_task(args, flags)
    distributed.shutdown()
    return 0


def main(argv=None) -> int:
    from .tasks.methods import describe_methods
    from .tasks.registry import TaskError, get_task, task_names

    try:
        tasks = task_names()  # the built-in tasks and those registered by other packages
    except TaskError as exc:
        print(f"elp-fast: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="elp-fast", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # The deepspeed launcher passes --local_rank before the subcommand (LOCAL_RANK is read from the env).
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="spoken-commands demo: synthesise speech, train ELP and a head-only baseline, compare",
        description="Synthesises a small spoken-commands data set with espeak-ng (intents in the style of "
                    "Fluent Speech Commands, many voices, some held out), trains ELP adapters and a head-only "
                    "baseline on a small WavLM-shaped backbone with the DeepSpeed engine, evaluates on the "
                    "held-out voices and writes a run directory with plots. About 3 minutes on 2 CPU cores.")
    from .demo import add_arguments as add_demo_arguments

    add_demo_arguments(demo)
    task_lines = "\n".join(f"  {name:<13} {get_task(name).summary}" for name in tasks)
    train_parser = sub.add_parser(
        "train", help="train adapters for a task recipe (or the synthetic tone task)",
        description="Train with the DeepSpeed engine; works under torchrun / the deepspeed launcher for several "
                    "processes.", epilog=TRAIN_EPILOG.format(methods=describe_methods(), tasks=task_lines),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(train_parser, tasks)
    ev = sub.add_parser("eval", help="evaluate a run's adapters on a split",
                        description="Rebuilds the model of a run directory (its config.yaml), loads the newest "
                                    "complete checkpoint's adapters and reports the task's metric; writes "
                                    "RUN/eval-SPLIT.json.")
    ev.add_argument("--run", required=True, help="run directory of `elp-fast train --task ...`")
    ev.add_argument("--split", choices=["eval", "test"],
                    help="default: test where the recipe has a test split (ASR, SIC), else eval (ASV's trial "
                         "list, SER's held-out session)")
    ev.add_argument("--checkpoint", help="a checkpoint (step-*) or adapters directory instead of the newest")
    ev.add_argument("--data", metavar="ROOT", help="corpus root, if it moved since training")
    ev.add_argument("--backbone", metavar="DIR", help="backbone directory, if it moved since training")
    ev.add_argument("--batch-size", type=int,
                    help="utterances per batch (default: the run's micro_batch_size, which reproduces the "
                         "training run's own evaluation: backbones with a group-normalised CNN, such as "
                         "WavLM/wav2vec2 Base, see the padding of their batch)")
    ev.add_argument("--predictions", action="store_true",
                    help="also write RUN/predictions-SPLIT.jsonl: per utterance its id, audio path, the "
                         "prediction (transcript, class, slots or embedding) and the label")
    info = sub.add_parser("info", help="versions and the op backend table")
    info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from .checkpoint import CheckpointError
    from .config import ELPConfigError
    from .engine.checkpoints import ResumeError
    from .engine.config import EngineConfigError
    from .tasks.datasets import DataError
    from .tasks.recipe import RecipeError

    user_errors = (EngineConfigError, ELPConfigError, DataError, RecipeError, CheckpointError, ResumeError,
                   TaskError, FileNotFoundError, FileExistsError)
    try:
        if args.command == "demo":
            from .demo import main as demo_main

            return demo_main(args, parser)
        if args.command == "train":
            return train(args)
        if args.command == "eval":
            if args.batch_size is not None and args.batch_size < 1:
                parser.error(f"--batch-size: got {args.batch_size}; expected >= 1")
            from .tasks.run import evaluate

            return evaluate(args)
    except user_errors as exc:
        parser.exit(2, f"elp-fast {args.command}: {exc}\n")
    from .info import main as info_main

    return info_main(["--json"] if args.json else [])


if __name__ == "__main__":
    sys.exit(main())
