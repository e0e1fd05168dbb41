"""The `elp-fast` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="elp-fast", description="ELP-adapter tuning for speech encoders")
    # The deepspeed launcher passes --local_rank before the subcommand (LOCAL_RANK is read from the env).
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="parameter report of WavLM Base+ and a short ELP training run (no downloads)")
    demo.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    demo.add_argument("--output", default="demo_output", help="folder for the run (replaced when it holds an earlier demo run)")
    demo.add_argument("--seed", type=int, default=0)
    train = sub.add_parser("train", help="train adapters with the DeepSpeed engine (synthetic task until the "
                           "task recipes land); works under torchrun / deepspeed for several processes")
    from .engine.command import add_arguments

    add_arguments(train)
    info = sub.add_parser("info", help="versions and the op backend table")
    info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "demo":
        if args.steps < 1:
            parser.error(f"--steps: got {args.steps}; expected >= 1")
        from .demo import run_demo

        try:
            run_demo(steps=args.steps, output=args.output, seed=args.seed)
        except FileExistsError as exc:
            parser.exit(2, f"elp-fast demo: {exc}\n")
        return 0
    if args.command == "train":
        from .engine import EngineConfigError
        from .engine.command import main as train_main

        try:
            return train_main(args)
        except (EngineConfigError, FileNotFoundError) as exc:
            parser.exit(2, f"elp-fast train: {exc}\n")
    from .info import main as info_main

    return info_main(["--json"] if args.json else [])


if __name__ == "__main__":
    sys.exit(main())
