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


def test_a_run_directory_is_continued_only_with_the_same_settings(tmp_path, capsys):
    data = task_fixtures.fluent_speech_commands(tmp_path / "fsc")
    run = tmp_path / "run"
    code, log = train(["--task", "sic", "--data", str(data), "--output", str(run)])
    assert code == 0, log[-4000:]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--task", "sic", "--data", str(data), "--output", str(run), "--method", "l_only",
                  "--micro-batch-size", "4"])
    assert exc.value.code == 2
    assert "holds a run with other settings (method, model differ)" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_two_processes_zero3_with_score_normalisation(tmp_path):
    """ASV under torchrun: the trial utterances and the AS-norm cohort are split over two
    processes (ZeRO-3), gathered, and scored once."""
    data = task_fixtures.voxceleb1(tmp_path / "vox")
    run = tmp_path / "run"
    code, log = train(["--task", "asv", "--data", str(data), "--output", str(run), "--zero-stage", "3",
                       "--set", "head.score_norm=as_norm"], procs=2, micro=2)
    assert code == 0, log[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and {"EER%", "EER%_raw", "minDCF"} <= set(summary["eval"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = next(r["lr"] for r in records if r["type"] == "train")
    assert lrs["head"] == pytest.approx(5e-4 * 0.3)  # the recipe's head rate x its first epoch's factor


def test_backbone_from_a_local_checkpoint_directory(tmp_path):
    """--backbone DIR loads the encoder of a saved HF checkpoint (here a head model, whose
    encoder weights AutoModel takes); the run records the directory, and eval reloads it."""
    import torch
    import transformers

    from elp_fast.tasks.run import random_wavlm_config

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
