"""The Triton bottleneck_adapter against the reference (docs/testing.md numerics), saved bytes,
determinism, opcheck and the perturbation meta-test. On CPU the kernels run in the Triton
interpreter at sizes that keep the suite fast; the `gpu` tests run the full grid compiled."""
import itertools

import pytest
import torch

from elp_fast import ops
from numerics import assert_all_pass, assert_perturbations_fail, compare, run
from op_cases import ADAPTER_CASES, is_reduced, make_inputs, saved_bytes_per_token
from op_cases import results as _results

pytest.importorskip("triton")


def results(inputs, dy, activation, *, dtype=None):
    return _results("triton", inputs, dy, activation, dtype=dtype)


VARIANTS = ("plain", "residual", "residual+post_ln")
HALF = (torch.float16, torch.bfloat16)




@pytest.mark.parametrize("n,d,r,dtype,variant,activation", ADAPTER_CASES,
                         ids=[f"N{c[0]}-d{c[1]}-r{c[2]}-{str(c[3])[6:]}-{c[4]}-{c[5]}" for c in ADAPTER_CASES])
def test_matches_reference(n, d, r, dtype, variant, activation):
    inputs, dy = make_inputs(n, d, r, variant)
    fused, base, gold = results(inputs, dy, activation, dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"N={n} d={d} r={r}")
    assert fused["out"].dtype == dtype and fused["grad:down_w"].dtype == dtype


@pytest.mark.parametrize("act_dtype", HALF)
def test_half_activations_with_fp32_weights(act_dtype):
    """The usual mixed-precision layout: fp32 master weights, half-precision activations. The
    kernels round the weights to the activations' dtype for the tensor-core matmuls (as autocast
    does), so the working-dtype base is the reference with every input in that dtype."""
    inputs, dy = make_inputs(113, 768, 64, "residual+post_ln", act_dtype=act_dtype)
    fused, _, gold = results(inputs, dy, "gelu")
    base = run(lambda **kw: ops.bottleneck_adapter(activation="gelu", backend="reference", **kw),
               inputs, dy, dtype=act_dtype)
    assert fused["out"].dtype == act_dtype and fused["grad:up_w"].dtype == torch.float32
    assert_all_pass(compare(fused, base, gold, dtype=act_dtype, reduced=is_reduced), "mixed")


def test_leading_dims_and_partial_gradients():
    """(B, T, d) input; only some tensors need gradients (frozen x, trainable adapter)."""
    inputs, dy = make_inputs(2 * 37, 64, 16, "residual")
    inputs["x"] = inputs["x"].view(2, 37, 64)
    inputs["residual"] = inputs["residual"].view(2, 37, 64)

    def call(backend):
        return lambda **kw: ops.bottleneck_adapter(activation="gelu", backend=backend, **kw)
    fused = run(call("triton"), inputs, dy.view(2, 37, 64), frozen=("x", "residual", "ln_w"))
    gold = run(call("reference"), inputs, dy.view(2, 37, 64), dtype=torch.float64, frozen=("x", "residual", "ln_w"))
    assert "grad:x" not in fused and "grad:down_w" in fused
    assert_all_pass(compare(fused, fused, gold, dtype=torch.float32, reduced=is_reduced), "partial")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("variant", ["residual", "residual+post_ln"])
def test_perturbation_of_any_result_fails(dtype, variant):
    """The tolerances are not vacuous: a 1e-2 relative change of any one output or gradient fails.
    (In bf16 the rule's own 2-3x base error is already about 1e-2, so the meta-test runs on the
    dtypes where the rule has room: fp32 and fp16.)"""
    inputs, dy = make_inputs(113, 256, 64, variant)
    assert_perturbations_fail(*results(inputs, dy, "gelu", dtype=dtype), dtype=dtype, reduced=is_reduced)


@pytest.mark.parametrize("variant", VARIANTS)
def test_saved_for_backward_bytes(variant):
    """Besides its inputs the op keeps z (r values in the working dtype) and fp32 (mean, rstd):
    2r + 8 bytes per token in bf16, plus 8 for the fused post-LN's statistics. The reference
    (eager, with fp32 intermediates) keeps over 25x more."""
    r = 64
    fused, eager = saved_bytes_per_token("triton", variant, r=r), saved_bytes_per_token("reference", variant, r=r)
    limit = 2 * r + 8 + (8 if variant == "residual+post_ln" else 0)
    assert fused <= limit, f"{fused} bytes per token saved, limit {limit}"
    assert eager / fused > 25, (eager, fused)


def assert_deterministic(inputs, dy) -> dict:
    """Two runs under torch.use_deterministic_algorithms(True): bit-identical results."""
    torch.use_deterministic_algorithms(True)
    try:
        runs = [run(lambda **kw: ops.bottleneck_adapter(activation="gelu", backend="triton", **kw), inputs, dy)
                for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name
    return runs[0]


def test_deterministic_backward_and_no_saving_without_grad():
    inputs, dy = make_inputs(300, 256, 64, "residual+post_ln")
    first = assert_deterministic(inputs, dy)
    with torch.no_grad():
        y = ops.bottleneck_adapter(activation="gelu", backend="triton", **inputs)
    assert torch.equal(y, first["out"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck(variant):
    inputs, _ = make_inputs(33, 64, 16, variant)
    args = [inputs[k].requires_grad_() for k in ("x", "down_w", "down_b", "up_w", "up_b", "ln_w", "ln_b")]
    args += [inputs.get(k) for k in ("residual", "post_ln_w", "post_ln_b")]
    for save in (True, False):
        torch.library.opcheck(torch.ops.elp_fast.bottleneck_adapter_triton.default,
                              (*args, "gelu", 1e-5, save))


# --- GPU: the full grid, compiled ---------------------------------------------------------

N_ALL, D_ALL, R_ALL = (1, 7, 49, 113, 1023, 1500, 6392), (64, 768, 1023, 1024), (8, 64, 100, 256, 512)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _gpu_grid():
    """Every (N, d) of docs/testing.md on one compiled variant (N and d are runtime values), then every
    (dtype, r) at an awkward shape with variant and activation cycling, so each dtype meets each
    variant: 43 cases, each compiling little, so a fresh GPU machine gets through them in minutes."""
    shapes = [(n, d, 64, torch.bfloat16, "residual", "gelu") for n, d in itertools.product(N_ALL, D_ALL)]
    variants = [(1500, 1023, r, dt, VARIANTS[i % 3], ("gelu", "relu")[i % 2])
                for i, (dt, r) in enumerate(itertools.product(DTYPES, R_ALL))]
    return shapes + variants


@pytest.mark.gpu
@pytest.mark.parametrize("n,d,r,dtype,variant,activation", _gpu_grid())
def test_matches_reference_gpu(n, d, r, dtype, variant, activation):
    inputs, dy = make_inputs(n, d, r, variant, device="cuda")
    fused, base, gold = results(inputs, dy, activation, dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"N={n} d={d} r={r}")


@pytest.mark.gpu
@pytest.mark.parametrize("r", [64, 256])
def test_deterministic_gpu_full_size(r):
    inputs, dy = make_inputs(262_144, 1024, r, "residual", param_dtype=torch.bfloat16, act_dtype=torch.bfloat16,
                             device="cuda")
    assert_deterministic(inputs, dy)
