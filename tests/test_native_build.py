"""The native extension's build switches and build record: ELP_FAST_BUILD_EXT=0 installs a
package without it that still works; a stale or mismatched build is refused with a reason; a bad
switch value is named. Subprocesses run copies of the package with `python -S` so that the
editable install of this checkout cannot shadow them."""
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from elp_fast import native_build
from elp_fast.ops import _native
from elp_fast.version import __version__

ROOT = Path(__file__).resolve().parents[1]
SITE = sysconfig.get_paths()["purelib"]


def _record(**change):
    record = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "elp_fast": __version__,
              "source_hash": native_build.source_hash(ROOT / "csrc")}
    return {**record, **change}


def _problems(record, csrc=ROOT / "csrc"):
    return native_build.problems(record, torch_version=torch.__version__, torch_cuda=torch.version.cuda,
                                 elp_version=__version__, csrc=csrc)


def test_record_mismatches_are_named(tmp_path):
    assert _problems(_record()) is None
    assert "built against torch 2.11.0+cu130, but this process runs torch" in _problems(_record(torch="2.11.0+cu130"))
    assert "torch CUDA 13.0" in _problems(_record(torch_cuda="13.0"))
    assert "built for elp_fast 0.0.1" in _problems(_record(elp_fast="0.0.1"))
    csrc = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", csrc)
    assert _problems(_record(), csrc) is None
    (csrc / "common" / "rows.h").write_text((csrc / "common" / "rows.h").read_text() + "// edited\n")
    assert "stale build: the sources in" in _problems(_record(), csrc)
    assert _problems(_record(), None) is None  # an installed package has no sources to compare


def _run_isolated(code: str, *paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    """python -S with only `paths` and the environment's site-packages (no .pth files, so no
    editable-install finder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ELP_FAST_BACKEND")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), SITE, *site.getsitepackages()])
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, cwd=cwd)


PROBE = """
import json, torch
from elp_fast import backends, ops
from elp_fast.ops import _native
x = torch.randn(5, 16)
args = (x, torch.randn(4, 16), torch.zeros(4), torch.randn(16, 4), torch.zeros(16), torch.ones(16), torch.zeros(16))
y = ops.bottleneck_adapter(*args, activation="gelu")
print(json.dumps({"reason": _native.available(), "file": ops.__file__,
                  "chosen": backends.select("bottleneck_adapter", args, {"activation": "gelu"}),
                  "finite": bool(torch.isfinite(y).all())}))
"""


@pytest.mark.skipif(_native.available() is not None, reason="needs the built extension to copy")
def test_stale_copy_is_refused_and_the_package_still_works(tmp_path):
    for name in ("elp_fast", "kernels", "csrc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    fresh = json.loads(_run_isolated(PROBE, tmp_path, cwd=tmp_path).stdout)
    assert fresh["file"].startswith(str(tmp_path)) and fresh["reason"] is None and fresh["chosen"] == "native"
    rows = tmp_path / "csrc" / "common" / "rows.h"
    rows.write_text(rows.read_text() + "// an edit after the build\n")
    out = _run_isolated(PROBE, tmp_path, cwd=tmp_path)
    stale = json.loads(out.stdout)
    assert stale["reason"].startswith("stale build: the sources in"), stale
    assert stale["chosen"] == "reference" and stale["finite"]


PIP = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]


def _source_copy(dest: Path) -> Path:
    """The tracked files of this checkout (as they are now) in `dest`."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    return dest


def _wheel(src: Path, out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
                          env={**os.environ, **env}, capture_output=True, text=True)


def test_failed_build_warns_in_auto_mode_and_fails_when_required(tmp_path):
    """A compiler that fails (here `false`): auto installs without the extension, 1 is an error."""
    src = _source_copy(tmp_path / "src")
    out = _wheel(src, tmp_path / "auto", CXX="false")
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "auto").glob("elp_fast-*.whl"))
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "/_C." in n]
    strict = _wheel(src, tmp_path / "strict", CXX="false", ELP_FAST_BUILD_EXT="1")
    assert strict.returncode != 0 and not list((tmp_path / "strict").glob("*.whl"))


@pytest.mark.slow
def test_build_switch_zero_installs_a_working_package_without_the_extension(tmp_path):
    src = _source_copy(tmp_path / "src")
    out = _wheel(src, tmp_path / "wheels", ELP_FAST_BUILD_EXT="0")
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "wheels").glob("elp_fast-*.whl"))
    subprocess.run([*PIP, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True)
    assert not list((tmp_path / "site" / "elp_fast").glob("_C*"))
    out = _run_isolated(PROBE, tmp_path / "site", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert result["reason"].startswith("not built") and result["chosen"] == "reference" and result["finite"]


def test_bad_build_switch_is_named():
    env = {**os.environ, "ELP_FAST_BUILD_EXT": "yes"}
    out = subprocess.run([sys.executable, "setup.py", "--name"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "ELP_FAST_BUILD_EXT='yes': expected auto, 0 or 1" in out.stderr
