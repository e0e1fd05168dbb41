"""A task of another package: defined in a temporary module with elp_fast's public pieces only,
registered through ELP_FAST_TASK_MODULES, trained and evaluated through the command line. The
evaluation runs in a fresh process that finds the task again from the module the run recorded."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("deepspeed")
pytest.importorskip("soundfile")

import task_fixtures as fx  # noqa: E402
from elp_fast import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
"""Toy task: is the tone high or low?"""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from elp_fast.tasks.datasets import DataError, TaskData
from elp_fast.tasks.evaluators import ClassificationEvaluator
from elp_fast.tasks.pooling import masked_mean_std
from elp_fast.tasks.registry import Task, register_task
from elp_fast.validation import int_at_least

CLASSES = ["low", "high"]


class PitchHead(nn.Module):
    def __init__(self, in_dim, width):
        super().__init__()
        self.in_dim, self.width = in_dim, width
        self.proj = nn.Linear(in_dim, width)
        self.out = nn.Linear(width, len(CLASSES))

    def describe(self):
        return {"in_dim": self.in_dim, "width": self.width}

    def forward(self, h, frame_mask=None, labels=None):
        pooled, _ = masked_mean_std(self.proj(h), frame_mask)
        logits = self.out(pooled)
        return logits, (F.cross_entropy(logits, labels) if labels is not None else None)


def prepare(data, reader, head, splits):
    sets = {}
    for split in ("train", "eval"):
        if split in splits and data.get(split):
            utts = reader.read(data[split], split)
            bad = [u for u in utts if u.label not in CLASSES]
            if bad:
                raise DataError(f"{bad[0].path}: label {bad[0].label!r}; expected one of {CLASSES}")
            sets[split] = reader.dataset(utts, [CLASSES.index(u.label) for u in utts], crop=split == "train",
                                         durations=reader.seconds(utts, split))
    return TaskData("toy", sets.get("train"), sets.get("eval"), None, {}, {"classes": CLASSES},
                    {s: (lambda: ClassificationEvaluator(len(CLASSES))) for s in sets})


def build_head(head, in_dim, head_args):
    return PitchHead(in_dim, head.get("width", 8))


def predictions(output, batch, labels):
    return [{"prediction": labels["classes"][int(i)]} for i in output.logits.argmax(-1)]


TASK = register_task(Task(
    name="toy", summary="is the tone high or low", recipe=Path(__file__).with_name("toy.yaml"),
    corpora=("manifest",), prepare=prepare, build_head=build_head, predictions=predictions,
    head_fields={"width": int_at_least(1)}, module=__name__))
'''

TOY_RECIPE = {
    "task": "toy",
    "data": {"corpus": "manifest", "train": "train.jsonl", "eval": "eval.jsonl", "verify": "header"},
    "model": {"e_bottleneck": 8, "l_dim": 16, "p_len": 2},
    "head": {"width": 8},
    "train": {"epochs": 1},
    "engine": {"micro_batch_size": 4, "log_every": 1, "save_every": 0},
    "methods": {"elp": {"head": 1.0e-2, "l_adapters": 1.0e-2, "layer_weights": 1.0e-2}},
}


def corpus(root):
    for split, n in (("train", 8), ("eval", 6)):
        rows = []
        for i in range(n):
            label = "high" if i % 2 else "low"
            path = fx.tone(root / split / f"{i}.wav", 0.4, 900.0 if label == "high" else 200.0, seed=i)
            rows.append({"id": f"{split}{i}", "audio": str(path.relative_to(root)), "label": label})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_task_from_another_module_trains_and_evaluates_through_the_cli(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "toy_task.py").write_text(TOY_MODULE)
    (plugin / "toy.yaml").write_text(yaml.safe_dump(TOY_RECIPE))
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("ELP_FAST_TASK_MODULES", "toy_task")
    data, run = corpus(tmp_path / "corpus"), tmp_path / "run"

    assert cli.main(["train", "--task", "toy", "--data", str(data), "--output", str(run), "--max-steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "task toy, method elp: random initialisation" in out
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["task"] == "toy" and config["task_module"] == "toy_task"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "train"]
    assert steps == [1, 2, 3]
    summary = json.loads((run / "summary.json").read_text())
    assert {"UA", "WA"} <= set(summary["eval"])

    # A fresh process without ELP_FAST_TASK_MODULES: the run's task_module brings the task back.
    env = {k: v for k, v in os.environ.items() if k != "ELP_FAST_TASK_MODULES"}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-m", "elp_fast.cli", "eval", "--run", str(run), "--predictions"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    evaluated = json.loads((run / "eval-eval.json").read_text())
    assert evaluated["UA"] == pytest.approx(summary["eval"]["UA"], abs=1e-6)
    rows = [json.loads(line) for line in (run / "predictions-eval.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"eval{i}" for i in range(6)]
    assert {r["prediction"] for r in rows} <= {"low", "high"}

    # Unregistered names are refused by the command line.
    monkeypatch.delenv("ELP_FAST_TASK_MODULES")
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "nosuch", "--data", str(data)])
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_a_task_module_that_cannot_be_imported_is_named(monkeypatch, capsys):
    monkeypatch.setenv("ELP_FAST_TASK_MODULES", "no_such_task_module")
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert "ELP_FAST_TASK_MODULES: cannot import task module 'no_such_task_module'" in err
