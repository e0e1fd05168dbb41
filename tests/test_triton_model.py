"""The Triton backend inside a wrapped model: dispatch and its reasons, training convergence
against the reference backend, and torch.compile of the whole ELP model."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from elp_fast import BackendUnavailableError, backends, ops
from training_cases import run_compiled_first_call
from training_cases import train_tiny as _train

pytest.importorskip("triton")


def _bottleneck(n=5, d=16, r=4, dtype=torch.float32):
    return (torch.randn(n, d, dtype=dtype), torch.randn(r, d, dtype=dtype), torch.zeros(r, dtype=dtype),
            torch.randn(d, r, dtype=dtype), torch.zeros(d, dtype=dtype), torch.ones(d, dtype=dtype),
            torch.zeros(d, dtype=dtype))


def test_triton_declines_with_reasons():
    with pytest.raises(BackendUnavailableError, match=r"x has dtype torch.float64 \(the Triton kernels take"):
        ops.bottleneck_adapter(*_bottleneck(dtype=torch.float64), activation="gelu", backend="triton")
    with pytest.raises(BackendUnavailableError, match=r"bottleneck r=513 is above the kernels' limit 512"):
        ops.bottleneck_adapter(*_bottleneck(d=8, r=513), activation="gelu", backend="triton")
    hs = [torch.randn(4, 8) for _ in range(2)]
    with pytest.raises(BackendUnavailableError, match=r"adapter width m=513 is above the kernels' limit 512"):
        ops.layer_aggregate(hs, torch.randn(2, 513, 8), torch.zeros(2, 513), torch.ones(2, 513),
                            torch.zeros(2, 513), torch.zeros(2), activation="gelu", backend="triton")
    with pytest.raises(BackendUnavailableError, match=r"layer_logits has dtype torch.float64"):
        ops.weighted_layer_sum(hs, torch.zeros(2, dtype=torch.float64), backend="triton")
    # The automatic choice on CPU never picks the interpreter: it is a test vehicle, not a speed-up.
    assert backends.select("bottleneck_adapter", _bottleneck(), {"activation": "gelu"}) in ("native", "reference")


def test_cpu_without_interpreter_names_the_switch():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = textwrap.dedent("""
        import torch
        from elp_fast import ops, BackendUnavailableError
        try:
            ops.weighted_layer_sum([torch.randn(2, 3)], torch.zeros(1), backend="triton")
        except BackendUnavailableError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    if not torch.cuda.is_available():
        assert "cannot run: no CUDA device (set TRITON_INTERPRET=1" in out, out


@pytest.mark.gpu
def test_automatic_choice_on_cuda_is_triton():
    args = tuple(t.cuda() for t in _bottleneck())
    assert backends.select("bottleneck_adapter", args, {"activation": "gelu"}) == "triton"


@pytest.mark.parametrize("key", ["wavlm-postln", "wav2vec2-preln"])
def test_training_converges_like_the_reference(key):
    steps = 12
    ref_losses, ref_weights = _train(key, "reference", steps)
    tri_losses, tri_weights = _train(key, "triton", steps)
    assert ref_losses[-1] < ref_losses[0]  # it trains at all
    torch.testing.assert_close(torch.tensor(tri_losses), torch.tensor(ref_losses), rtol=2e-5, atol=0)
    for name, w in ref_weights.items():
        torch.testing.assert_close(tri_weights[name], w, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_compiled_model_runs_the_custom_ops_first_time():
    """torch.compile(fullgraph=True) of a wrapped model whose very first call is compiled: the
    dispatcher's checks must not break the graph; loss and gradients match eager."""
    out = run_compiled_first_call("triton")
    assert out.returncode == 0 and "compiled ok" in out.stdout, out.stderr[-3000:]
