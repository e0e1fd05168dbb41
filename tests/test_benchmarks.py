"""The benchmark script's CPU smoke mode runs end to end (so it does not rot between GPU runs)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


def test_bench_ops_smoke(tmp_path):
    out = tmp_path / "rows.csv"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ops.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    ops = {"bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"}
    providers = {"eager", "compile", "reference", "triton"}
    assert {(r["op"], r["provider"], r["mode"]) for r in rows} == {
        (o, p, m) for o in ops for p in providers for m in ("fwd", "fwd+bwd")}
    for r in rows:
        assert r["gate"] == "ok", r
        assert float(r["median_ms"]) > 0 and float(r["p20_ms"]) <= float(r["p80_ms"])
    triton_saved = [float(r["saved_bytes_per_token"]) for r in rows
                    if r["provider"] == "triton" and r["mode"] == "fwd+bwd" and r["op"] == "bottleneck_adapter"]
    assert triton_saved and triton_saved[0] <= 16 * 4 + 8  # fp32 smoke, r = 16: z + (mean, rstd)
    assert "smoke mode" in proc.stdout
