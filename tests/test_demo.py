"""The main job (`elp-fast demo`, what scripts/demo.sh runs), shortened."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("deepspeed")


def test_demo_trains_saves_and_reloads(tmp_path):
    from elp_fast.demo import MARKER

    out = tmp_path / "demo"
    (out / "checkpoints" / "step-00000009").mkdir(parents=True)  # an earlier demo run: replaced
    (out / MARKER).write_text("")
    cmd = [sys.executable, "-m", "elp_fast.cli", "demo", "--steps", "4", "--output", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "9,127,436" in p.stdout and "reloaded into a fresh backbone: outputs identical" in p.stdout
    assert sorted(x.name for x in (out / "checkpoints").iterdir()) == ["latest", "step-00000002", "step-00000004"]


def test_demo_never_deletes_a_folder_it_did_not_make(tmp_path, capsys):
    from elp_fast.cli import main

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit) as info:
        main(["demo", "--steps", "1", "--output", str(tmp_path)])
    assert info.value.code == 2 and "was not made by the demo" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep"
