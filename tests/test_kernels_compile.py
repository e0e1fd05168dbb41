"""The Triton kernels compile for sm_90 (H100/H200) with the block sizes the launchers pick, and
fit a block's shared memory. The interpreter runs kernels without compiling them, so this is the
CPU machine's only check of the compiled path (benchmarks/compile_check.py, --quick subset)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


@pytest.mark.skipif(not (TOOLS / "ptxas").exists() or not (TOOLS / "cuobjdump").exists(),
                    reason="this Triton build ships no ptxas/cuobjdump")
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_check.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if "_kernel" in l]
    kernels = {l.split()[-6] for l in lines}  # the kernel-name column
    assert {"_fwd_kernel", "_bwd_kernel", "_weight_grad_kernel"} <= kernels, proc.stdout
    assert "0 failed" in proc.stdout.splitlines()[-1]
