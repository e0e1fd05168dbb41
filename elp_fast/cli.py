"""The `elp-fast` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="elp-fast", description="ELP-adapter tuning for speech encoders")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="parameter report of WavLM Base+ and a short ELP training run (no downloads)")
    demo.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    demo.add_argument("--output", default="demo_output", help="folder for the adapter checkpoint")
    demo.add_argument("--seed", type=int, default=0)
    info = sub.add_parser("info", help="versions and the op backend table")
    info.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "demo":
        if args.steps < 1:
            parser.error(f"--steps: got {args.steps}; expected >= 1")
        from .demo import run_demo

        run_demo(steps=args.steps, output=args.output, seed=args.seed)
        return 0
    from .info import main as info_main

    return info_main(["--json"] if args.json else [])


if __name__ == "__main__":
    sys.exit(main())
