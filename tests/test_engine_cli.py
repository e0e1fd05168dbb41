"""`elp-fast train` as the README shows it: one process, and two under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

import elp_fast  # noqa: E402
from elp_fast.models.random_backbone import random_wavlm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--train-size", "16", "--eval-size", "8", "--seconds", "0.25", "--micro-batch-size", "4",
         "--set", "log_every=1"]


def elp_fast_cmd(args, procs=1):
    cli = ["-m", "elp_fast.cli", "train", *args]
    if procs > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cli]
    return [sys.executable, *cli]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TRITON_INTERPRET": "1"},
                       timeout=600)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("procs", [1, 2])
def test_train_command(tmp_path, procs):
    out = tmp_path / "run"
    code, log = run(elp_fast_cmd(["--config", "examples/tones.yaml", "--output", str(out), "--max-steps", "4", "--set", "warmup_steps=1",
                                  "--set", "group_lr={head: 1e-3}",
                                  *SMALL], procs))
    assert code == 0, log[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 4 and summary["world_size"] == procs and summary["zero_stage"] == 2
    assert "accuracy" in summary["eval"] and summary["peak_memory_bytes"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "train"] == [1, 2, 3, 4]
    lrs = next(r["lr"] for r in records if r["type"] == "train")
    assert {k.split("/")[0] for k in lrs} == {"e_adapters", "l_adapters", "layer_weights", "p_adapter",
                                              "layer_norms", "head"}
    assert lrs["head"] == pytest.approx(lrs["e_adapters"] * 1e-3 / 5e-3), "per-group learning rates"
    assert "adapters:" in log and "done: step 4/4" in log
    elp = elp_fast.wrap(random_wavlm("small", 0, "sequence_classification", num_labels=2, classifier_proj_size=32), e_bottleneck=32, l_dim=48, p_len=4)
    elp.load_adapters(out / "checkpoints" / "step-00000004" / "adapters")


@pytest.mark.parametrize("args,message", [
    (["--set", "lr=-1"], "EngineConfig.lr: got -1"),
    (["--set", "lr"], "--set: got 'lr'; expected FIELD=VALUE"),
    (["--activation-checkpointing", "1,x"], "activation_checkpointing: got '1,x'"),
    (["--config", "missing.yaml"], "missing.yaml does not exist"),
    (["--backbone", "/no/such/dir"], "--backbone: /no/such/dir is not a directory"),
    (["--zero-stage", "5"], "EngineConfig.zero_stage: got 5"),
])
def test_train_command_rejects_bad_arguments(tmp_path, capsys, args, message):
    from elp_fast.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", "--output", str(out), *args])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err, err
    assert not out.exists()
