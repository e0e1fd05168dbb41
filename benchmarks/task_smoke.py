"""A task recipe end to end on the current device: the SIC recipe trains a few steps from a tiny
Fluent-Speech-Commands-layout fixture (tests/task_fixtures.py), in bf16 with ZeRO-2, then
`elp-fast eval` reproduces its test metric from the saved adapters. device_check.sh runs it on
the GPU (and in --smoke mode on CPU)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="folder for the fixture corpus and the run")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args()
    import task_fixtures

    from elp_fast import cli

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    data = task_fixtures.fluent_speech_commands(out / "fsc")
    run = out / "run"
    cli.main(["train", "--task", "sic", "--data", str(data), "--output", str(run), "--max-steps", "4",
              "--micro-batch-size", "4", "--precision", args.precision, "--zero-stage", "2", "--set", "log_every=1"])
    cli.main(["eval", "--run", str(run)])
    trained = json.loads((run / "summary.json").read_text())["test"]["accuracy"]
    record = json.loads((run / "eval-test.json").read_text())
    evaluated = record["accuracy"]
    print(f"test accuracy after training ({args.precision}) {trained:.4f}, from the saved adapters (fp32) "
          f"{evaluated:.4f}")
    # eval computes in fp32: under bf16 / fp16 training one utterance may come out differently
    return 0 if abs(trained - evaluated) <= 1 / record["utterances"] + 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
