"""The benchmark scripts' smoke modes run end to end (so they do not rot between real runs)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from elp_fast.ops import _native

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ops_smoke(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "rows.csv"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ops.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    ops = {"bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"}
    providers = {"eager", "compile", "reference", "triton"} | ({"native"} if _native.available() is None else set())
    assert {(r["op"], r["provider"], r["mode"]) for r in rows} == {
        (o, p, m) for o in ops for p in providers for m in ("fwd", "fwd+bwd")}
    for r in rows:
        assert r["gate"] == "ok", r
        assert float(r["median_ms"]) > 0 and float(r["p20_ms"]) <= float(r["p80_ms"])
    triton_saved = [float(r["saved_bytes_per_token"]) for r in rows
                    if r["provider"] == "triton" and r["mode"] == "fwd+bwd" and r["op"] == "bottleneck_adapter"]
    assert triton_saved and triton_saved[0] <= 16 * 4 + 8  # fp32 smoke, r = 16: z + (mean, rstd)
    assert "smoke mode" in proc.stdout


@pytest.mark.skipif(_native.available() is not None, reason="needs the native extension")
def test_bench_cpu_smoke(tmp_path):
    out = tmp_path / "cpu.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert {(r["op"], r["provider"], r["mode"], r["dtype"]) for r in rows} == {
        (o, p, m, d) for o in ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum")
        for p in ("reference", "native") for m in ("fwd", "fwd+bwd") for d in ("float32", "bfloat16")}
    assert all(r["gate"] == "ok" and float(r["speedup_vs_reference"]) > 0 for r in rows)
    assert "fwd+bwd ratio" in proc.stdout


def test_bench_engine_smoke(tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "engine.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_engine.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["checkpointing"] for r in rows] == ["none", "all"]
    for r in rows:
        assert int(r["steps_timed"]) == 2 and float(r["step_ms_median"]) > 0 and float(r["peak_memory_mib"]) > 0
    assert "checkpointing all vs none" in proc.stdout
