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
                                                  train a task recipe (asr, asv, ser, sic)
  elp-fast train --task ser --data IEMOCAP --backbone DIR --method l_only
                                                  ... or one of the baselines
  elp-fast eval --run runs/sic-elp                evaluate a run's adapters (test split by default)
  elp-fast info                                   versions and which fused kernels run here

`elp-fast COMMAND --help` explains each command's options."""

TRAIN_EPILOG = """\
methods (--method):
{methods}

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


def main(argv=None) -> int:
    from .tasks.methods import describe_methods

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
    train = sub.add_parser("train", help="train adapters for a task recipe (or the synthetic tone task)",
                           description="Train with the DeepSpeed engine; works under torchrun / the deepspeed "
                                       "launcher for several processes.",
                           epilog=TRAIN_EPILOG.format(methods=describe_methods()),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    from .engine.command import add_arguments

    add_arguments(train)
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
    info = sub.add_parser("info", help="versions and the op backend table")
    info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from .config import ELPConfigError
    from .engine.config import EngineConfigError
    from .tasks.datasets import DataError
    from .tasks.recipe import RecipeError

    from .checkpoint import CheckpointError
    from .engine.checkpoints import ResumeError

    user_errors = (EngineConfigError, ELPConfigError, DataError, RecipeError, CheckpointError, ResumeError,
                   FileNotFoundError, FileExistsError)
    try:
        if args.command == "demo":
            from .demo import main as demo_main

            return demo_main(args, parser)
        if args.command == "train":
            from .engine.command import main as train_main

            return train_main(args)
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
