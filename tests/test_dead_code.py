"""No dead code and no unused imports in the package: vulture (at 60 % confidence, with the
explained exceptions of tests/dead_code_allowed.py) and pyflakes find nothing."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT)


def test_vulture_finds_no_dead_code():
    pytest.importorskip("vulture")
    p = run("vulture", "elp_fast", "kernels", "tests/dead_code_allowed.py", "--min-confidence", "60",
            "--exclude", "elp_fast/_C_build.json")
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr


def test_pyflakes_finds_nothing():
    pytest.importorskip("pyflakes")
    p = run("pyflakes", "elp_fast", "kernels", "benchmarks", "tests")
    # The exceptions: info.py imports elp_fast.ops for the registration it does on import, and the
    # whitelist above names what it names without defining it.
    lines = [line for line in p.stdout.splitlines() if not line.startswith("tests/dead_code_allowed.py")
             and not ("elp_fast/info.py" in line and "'.ops' imported but unused" in line)]
    assert lines == [], p.stdout
