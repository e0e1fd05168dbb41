import json
import os
import subprocess
import sys

import pytest
import torch

import elp_fast
from elp_fast import BackendUnavailableError, backends, ops


def _args():
    x = torch.randn(3, 8)
    return (x, torch.randn(2, 8), torch.zeros(2), torch.randn(8, 2), torch.zeros(8), torch.ones(8), torch.zeros(8))


def test_automatic_choice_on_cpu_is_native_when_built():
    from elp_fast.ops import _native
    want = "native" if _native.available() is None else "reference"
    assert backends.select("bottleneck_adapter", _args(), {"activation": "gelu"}) == want


def test_explicit_unavailable_backend_raises_with_reason(monkeypatch):
    doubles = tuple(t.double() for t in _args())
    with pytest.raises(BackendUnavailableError, match=r"bottleneck_adapter: backend 'native' was requested but "
                                                      r"cannot run: (x has dtype torch.float64|not built)"):
        ops.bottleneck_adapter(*doubles, activation="gelu", backend="native")
    monkeypatch.setenv("ELP_FAST_BACKEND", "native")
    with pytest.raises(BackendUnavailableError, match="backend 'native'"):
        ops.weighted_layer_sum([torch.randn(2, 3, dtype=torch.float64)], torch.zeros(1, dtype=torch.float64))


def test_precedence_argument_over_use_backend_over_environment(monkeypatch):
    monkeypatch.setenv("ELP_FAST_BACKEND", "native")
    with elp_fast.use_backend("reference"):
        assert backends.requested_backend() == "reference"
        assert backends.requested_backend("triton") == "triton"
    assert backends.requested_backend() == "native"  # restored after the block
    monkeypatch.delenv("ELP_FAST_BACKEND")
    elp_fast.use_backend("reference")  # plain call: process-wide until changed
    try:
        assert backends.requested_backend() == "reference"
    finally:
        elp_fast.use_backend("auto")
    assert backends.requested_backend() == "auto"


def test_bad_backend_names_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match=r"use_backend: got 'cuda'; expected one of"):
        elp_fast.use_backend("cuda")
    monkeypatch.setenv("ELP_FAST_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"environment variable ELP_FAST_BACKEND: got 'fast'"):
        ops.bottleneck_adapter(*_args(), activation="gelu")


def test_automatic_fallback_logs_reason_once(caplog):
    calls = []
    backends.register("probe_op", "reference", lambda x: calls.append("ref") or x)
    backends.register("probe_op", "native", lambda x: x, available=lambda: "extension not built")
    with caplog.at_level("INFO", logger="elp_fast.backends"):
        for _ in range(3):
            backends.dispatch("probe_op", (torch.ones(1),), {})
    assert calls == ["ref"] * 3
    assert [r.getMessage() for r in caplog.records] == ["probe_op: not using native backend: extension not built"]
    with pytest.raises(BackendUnavailableError, match="extension not built"):
        backends.dispatch("probe_op", (torch.ones(1),), {}, backend="native")
    backends._OPS.pop("probe_op")


def test_import_is_light_and_info_prints_table():
    code = ("import sys, elp_fast; import torch; "
            "bad = [m for m in ('triton', 'elp_fast._C', 'transformers', 'deepspeed') if m in sys.modules]; "
            "print(bad, torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] False"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # a plain CPU process
    info = subprocess.run([sys.executable, "-m", "elp_fast.info", "--json"], capture_output=True, text=True,
                          check=True, env=env)
    data = json.loads(info.stdout)
    rows = {(r["op"], r["backend"]): r for r in data["backends"]}
    assert rows[("layer_aggregate", "reference")]["available"] is True
    if not torch.cuda.is_available():
        assert rows[("bottleneck_adapter", "triton")]["available"] is False
        assert "no CUDA device" in rows[("bottleneck_adapter", "triton")]["reason"]
    assert data["versions"]["torch"] == torch.__version__
    text = subprocess.run([sys.executable, "-m", "elp_fast.info"], capture_output=True, text=True, check=True).stdout
    assert "weighted_layer_sum" in text and "reference" in text and "native" in text
