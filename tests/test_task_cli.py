"""Each task recipe trains a few steps from its fixture corpus through `elp-fast train` (a real
DeepSpeed run in a fresh process), and `elp-fast eval` reproduces its metric from the saved
adapters."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("deepspeed")
pytest.importorskip("soundfile")

import task_fixtures  # noqa: E402
from elp_fast import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"asr": {"WER", "CER"}, "asv": {"EER%", "minDCF"}, "ser": {"UA", "WA"}, "sic": {"accuracy"}}


def train(args, procs=1, micro=4):
    cli_args = ["-m", "elp_fast.cli", "train", *args, "--max-steps", "2", "--micro-batch-size", str(micro),
                "--set", "log_every=1"]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] if procs > 1 else []
    cmd = [sys.executable, *launcher, *cli_args]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "TRITON_INTERPRET": "1"})
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("task,method", [("asr", "elp"), ("asv", "elp"), ("ser", "elp"), ("sic", "elp"),
                                         ("sic", "adapters"), ("ser", "full")])
def test_recipe_trains_from_its_fixture_and_eval_reproduces_the_metric(tmp_path, task, method, capsys):
    data = task_fixtures.BUILDERS[task](tmp_path / "corpus")
    run = tmp_path / "run"
    code, log = train(["--task", task, "--data", str(data), "--method", method, "--output", str(run)])
    assert code == 0, log[-4000:]
    assert f"task {task}, method {method}: random initialisation" in log
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["task"] == task and config["method"] == method and config["engine"]["max_steps"] == 2
    assert config["engine"]["group_lr"] == yaml.safe_load(
        (ROOT / "elp_fast/tasks/recipes" / f"{task}.yaml").read_text())["methods"][method]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "train"] == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert METRICS[task] <= set(summary["eval"])
    split = "test" if "test" in summary else "eval"
    assert (task in ("asv", "ser")) == (split == "eval")  # they have no separate test split
    assert (run / "checkpoints" / "step-00000002" / "adapters" / "adapter_model.safetensors").is_file()

    assert cli.main(["eval", "--run", str(run), "--split", split]) == 0
    evaluated = json.loads((run / f"eval-{split}.json").read_text())
    for name in METRICS[task]:
        assert evaluated[name] == pytest.approx(summary[split][name], abs=1e-6), name


def test_a_run_directory_is_continued_only_with_the_same_settings(tmp_path):
    """Killed during its step-4 checkpoint, a run continues from step 2 with the same command;
    other settings are refused (by the run directory's check, or by the engine's) and change
    nothing, config.yaml included."""
    data = task_fixtures.fluent_speech_commands(tmp_path / "fsc")
    run = tmp_path / "run"
    command = ["--task", "sic", "--data", str(data), "--output", str(run), "--max-steps", "4", "--set", "save_every=2"]
    code, log = cli_run(command, crash_at="4:adapters")
    assert code == -9, log[-4000:]
    config = (run / "config.yaml").read_text()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    for extra, message in ((["--method", "l_only"], "holds a run with other settings (method, model differ)"),
                           (["--set", "seed=5"], "was written by a run with other settings")):
        code, log = cli_run(command + extra)
        assert code == 2 and message in log, log[-3000:]
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
        assert (run / "config.yaml").read_text() == config
    code, log = cli_run(command)
    assert code == 0, log[-4000:]
    assert "resumed from" in log and "step-00000002" in log
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "train"]
    assert steps == [1, 2, 3, 4]


def cli_run(args, crash_at=None):
    cmd = [sys.executable, "-m", "elp_fast.cli", "train", *args, "--micro-batch-size", "4", "--set", "log_every=1"]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    if crash_at:
        env["ELP_FAST_CRASH_AT"] = crash_at
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("task,extra", [("asv", ["--zero-stage", "3", "--set", "head.score_norm=as_norm"]),
                                        ("sic", ["--zero-stage", "2"])])
def test_two_processes(tmp_path, task, extra):
    """Under torchrun: ASV's trial utterances and AS-norm cohort split over two processes (ZeRO-3)
    and scored once; SIC's valid and test splits gathered (ZeRO-2)."""
    data = task_fixtures.BUILDERS[task](tmp_path / "corpus")
    run = tmp_path / "run"
    code, log = train(["--task", task, "--data", str(data), "--output", str(run), *extra], procs=2, micro=2)
    assert code == 0, log[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = next(r["lr"] for r in records if r["type"] == "train")
    if task == "asv":
        assert {"EER%", "EER%_raw", "minDCF"} <= set(summary["eval"])
        assert lrs["head"] == pytest.approx(5e-4 * 0.3)  # the recipe's head rate x its first epoch's factor
    else:
        assert "accuracy" in summary["eval"] and "accuracy" in summary["test"]
        assert cli.main(["eval", "--run", str(run)]) == 0  # one process, the same test accuracy
        assert json.loads((run / "eval-test.json").read_text())["accuracy"] == pytest.approx(summary["test"]["accuracy"])


def test_backbone_from_a_local_checkpoint_directory(tmp_path):
    """--backbone DIR loads the encoder of a saved HF checkpoint (here a head model, whose
    encoder weights AutoModel takes); the run records the directory, and eval reloads it."""
    import torch
    import transformers

    from elp_fast.models.random_backbone import random_wavlm_config

    torch.manual_seed(3)
    ckpt = tmp_path / "wavlm-ctc"
    transformers.WavLMForCTC(random_wavlm_config("small")).save_pretrained(ckpt)
    data = task_fixtures.fluent_speech_commands(tmp_path / "fsc")
    run = tmp_path / "run"
    code, log = train(["--task", "sic", "--data", str(data), "--backbone", str(ckpt), "--output", str(run)])
    assert code == 0, log[-4000:]
    assert f"pretrained weights from {ckpt.resolve()}" in log
    assert yaml.safe_load((run / "config.yaml").read_text())["backbone"] == str(ckpt.resolve())
    assert cli.main(["eval", "--run", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads((run / "eval-test.json").read_text())["accuracy"] == pytest.approx(summary["test"]["accuracy"])
