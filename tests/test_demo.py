"""The demo (`elp-fast demo`, what scripts/demo.sh runs), shortened: espeak-ng data, ELP
and the head-only baseline through the engine, the summary, the plots, and the same numbers
again from the same seed."""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("deepspeed")
pytest.importorskip("matplotlib")
if shutil.which("espeak-ng") is None:  # scripts/setup_env.sh installs it
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

SHORT = ["--steps", "4", "--train-voices", "3", "--test-voices", "2"]


def demo(out, *extra):
    cmd = [sys.executable, "-m", "elp_fast.cli", "demo", *SHORT, "--output", str(out), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["type"] == "train"]


def test_demo_runs_to_its_summary_and_is_reproducible(tmp_path):
    from elp_fast.demo import MARKER

    out = tmp_path / "demo"
    (out / "elp").mkdir(parents=True)  # an earlier demo run: replaced
    (out / MARKER).write_text("")
    log = demo(out)
    assert "9,127,436" in log and "random initialisation (WavLM-shaped" in log
    assert "ELP adapters (E + L + P)" in log and "head-only baseline" in log and "chance (most frequent intent)" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["utterances"] == {"train": 3 * 12 * 2, "valid": 1 * 12 * 2, "test": 2 * 12 * 2}
    assert set(summary["data"]["voices"]["train"]).isdisjoint(summary["data"]["voices"]["test"])
    assert summary["chance_accuracy"] == pytest.approx(1 / 12)
    elp, head = summary["runs"]["elp"], summary["runs"]["head_only"]
    assert elp["trainable"] > head["trainable"] > 0 and 0 <= elp["accuracy"] <= 1
    assert len(summary["layer_weights"]) == 4 and sum(summary["layer_weights"]) == pytest.approx(1.0)
    for png in ("loss_curves.png", "layer_weights.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    for run in ("elp", "head_only"):
        assert (out / run / "config.yaml").is_file() and len(losses(out / run)) == 1  # logged every 10 steps
    # The same seed gives the same data and the same training, loss for loss.
    again = tmp_path / "again"
    demo(again)
    for run in ("elp", "head_only"):
        assert losses(again / run) == losses(out / run)
    assert json.loads((again / "summary.json").read_text())["runs"]["elp"]["accuracy"] == elp["accuracy"]


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    from elp_fast.cli import main

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit) as info:
        main(["demo", "--steps", "1", "--output", str(tmp_path)])
    assert info.value.code == 2 and "was not made by the demo" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep"
