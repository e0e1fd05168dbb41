"""The compiled CPU ops (`native` backend, elp_fast._C) against the reference: the docs/testing.md
numerics for every output and gradient, every CPU instruction-set build, mixed precision, odd and
non-contiguous inputs, the perturbation meta-test, determinism, saved bytes, opcheck and
torch.compile. The same tests run on CUDA under the `gpu` marker."""
import itertools
import os

import pytest
import torch

from elp_fast import backends, ops
from elp_fast.ops import _native
from numerics import assert_all_pass, assert_perturbations_fail, compare
from op_cases import (ADAPTER_CASES, AGG_CASES, WSUM_CASES, agg_inputs, agg_is_reduced, agg_results,
                      is_reduced, make_inputs, results, saved_bytes_per_token, wsum_results)
from training_cases import run_compiled_first_call, train_tiny

if _native.available() is not None:
    if os.environ.get("ELP_FAST_REQUIRE_NATIVE") == "1":  # scripts/test.sh built it: it must load
        raise RuntimeError(f"the native extension should have been built but does not load: {_native.available()}")
    pytest.skip(f"native extension unavailable: {_native.available()}", allow_module_level=True)

VARIANTS = ("plain", "residual", "residual+post_ln")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _isas():
    """The instruction-set builds this CPU can run (ELP_FAST_CPU_ISA values)."""
    found = []
    for isa in ("default", "avx2", "avx512"):
        os.environ["ELP_FAST_CPU_ISA"] = isa
        try:
            _native.cpu_isa()
            found.append(isa)
        except RuntimeError:
            pass
        finally:
            del os.environ["ELP_FAST_CPU_ISA"]
    return found


ISAS = _isas()


# The shared cases (every N, d, r of docs/testing.md, each dtype with each variant) plus realistic and
# awkward sizes the interpreter-bound Triton tests leave out.
BA_CASES = ADAPTER_CASES + [
    (6392, 1024, 256, torch.bfloat16, "residual+post_ln", "gelu"),
    (6392, 768, 256, torch.float32, "residual", "gelu"),
    (1500, 1023, 8, torch.float32, "residual+post_ln", "relu"),
    (1023, 64, 512, torch.float32, "plain", "gelu"),
    (113, 1023, 8, torch.bfloat16, "residual", "relu"),
    (1500, 1024, 256, torch.float16, "residual", "gelu"),
]


def _ids(cases, fmt):
    return [fmt(*c) for c in cases]


@pytest.mark.parametrize("n,d,r,dtype,variant,activation", BA_CASES, ids=_ids(
    BA_CASES, lambda n, d, r, dt, v, a: f"N{n}-d{d}-r{r}-{str(dt)[6:]}-{v}-{a}"))
def test_bottleneck_matches_reference(n, d, r, dtype, variant, activation):
    inputs, dy = make_inputs(n, d, r, variant)
    fused, base, gold = results("native", inputs, dy, activation, dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"N={n} d={d} r={r}")
    assert fused["out"].dtype == dtype and fused["grad:down_w"].dtype == dtype


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_instruction_set_build(isa, dtype, monkeypatch):
    """Each CPU build (baseline, AVX2, AVX-512) of the row kernels, with row lengths that leave a
    partial vector at the end, passes on its own."""
    monkeypatch.setenv("ELP_FAST_CPU_ISA", isa)
    assert _native.cpu_isa().lower() == isa
    inputs, dy = make_inputs(77, 203, 37, "residual+post_ln")
    fused, base, gold = results("native", inputs, dy, "gelu", dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"bottleneck {isa}")
    inputs, dH = agg_inputs(3, 77, 203, 45)
    fused, base, gold = agg_results("native", inputs, dH, "gelu", dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"aggregate {isa}")
    hs = {"hidden_states": inputs["hidden_states"], "layer_logits": inputs["layer_logits"]}
    dH = torch.randn(77, 203, generator=torch.Generator().manual_seed(7))
    fused, base, gold = wsum_results("native", hs, dH, dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"wsum {isa}")


def test_bad_isa_request_is_named(monkeypatch):
    monkeypatch.setenv("ELP_FAST_CPU_ISA", "sse9")
    with pytest.raises(RuntimeError, match="ELP_FAST_CPU_ISA=sse9"):
        _native.cpu_isa()


@pytest.mark.parametrize("act_dtype", (torch.float16, torch.bfloat16))
def test_half_activations_with_fp32_weights(act_dtype):
    inputs, dy = make_inputs(113, 768, 64, "residual+post_ln", act_dtype=act_dtype)
    fused, _, gold = results("native", inputs, dy, "gelu")
    _, base, _ = results("reference", inputs, dy, "gelu", dtype=act_dtype)
    assert fused["out"].dtype == act_dtype and fused["grad:up_w"].dtype == torch.float32
    assert_all_pass(compare(fused, base, gold, dtype=act_dtype, reduced=is_reduced), "mixed")


def test_non_contiguous_inputs_and_partial_gradients():
    """Transposed weights, strided activations (every other row of a bigger tensor), leading dims;
    frozen x, residual and ln_w get no gradient."""
    inputs, dy = make_inputs(2 * 37, 96, 16, "residual+post_ln")
    big = torch.randn(2 * 37, 2, 96)
    big[:, 0] = inputs["x"]
    strided = {**inputs, "x": big[:, 0].view(2, 37, 96), "residual": inputs["residual"].view(2, 37, 96),
               "down_w": inputs["down_w"].t().contiguous().t(), "up_w": inputs["up_w"].t().contiguous().t()}
    assert not strided["x"].is_contiguous() and not strided["down_w"].is_contiguous()
    frozen = ("x", "residual", "ln_w")

    def call(backend):
        return lambda **kw: ops.bottleneck_adapter(activation="gelu", backend=backend, **kw)
    from numerics import run
    fused = run(call("native"), strided, dy.view(2, 37, 96), frozen=frozen)
    base = run(call("reference"), strided, dy.view(2, 37, 96), frozen=frozen)
    gold = run(call("reference"), strided, dy.view(2, 37, 96), dtype=torch.float64, frozen=frozen)
    assert "grad:x" not in fused and "grad:down_w" in fused and "grad:residual" not in fused
    assert_all_pass(compare(fused, base, gold, dtype=torch.float32, reduced=is_reduced), "strided")


# The shared cases plus the realistic sizes (the native ops are fast enough on CPU).
NATIVE_AGG_CASES = AGG_CASES + [(13, 6392, 768, 512, torch.bfloat16, "gelu", True),
                                (2, 1500, 1023, 512, torch.float16, "gelu", True)]


@pytest.mark.parametrize("L,n,d,m,dtype,activation,hidden_grad", NATIVE_AGG_CASES, ids=_ids(
    NATIVE_AGG_CASES, lambda L, n, d, m, dt, a, h: f"L{L}-N{n}-d{d}-m{m}-{str(dt)[6:]}-{a}-{'dh' if h else 'nodh'}"))
def test_layer_aggregate_matches_reference(L, n, d, m, dtype, activation, hidden_grad):
    inputs, dH = agg_inputs(L, n, d, m)
    frozen = () if hidden_grad else ("hidden_states",)
    fused, base, gold = agg_results("native", inputs, dH, activation, dtype, frozen)
    assert ("grad:hidden_states[0]" in fused) == hidden_grad
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"L={L} N={n} d={d} m={m}")



@pytest.mark.parametrize("L,n,d,dtype", WSUM_CASES, ids=_ids(
    WSUM_CASES, lambda L, n, d, dt: f"L{L}-N{n}-d{d}-{str(dt)[6:]}"))
def test_weighted_layer_sum_matches_reference(L, n, d, dtype):
    inputs, _ = agg_inputs(L, n, d, 8)
    inputs = dict(hidden_states=inputs["hidden_states"], layer_logits=inputs["layer_logits"])
    dH = torch.randn(n, d, generator=torch.Generator().manual_seed(5))
    fused, base, gold = wsum_results("native", inputs, dH, dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"L={L} N={n} d={d}")


def test_stacked_non_contiguous_hidden_states():
    """One (L, B, T, d) tensor, viewed with a transpose: gradients flow to the stacked tensor."""
    inputs, _ = agg_inputs(3, 2 * 11, 32, 16)
    stacked = torch.stack(inputs["hidden_states"]).view(3, 2, 11, 32).transpose(1, 2).requires_grad_()
    params = {k: v for k, v in inputs.items() if k != "hidden_states"}
    outs = {}
    for backend in ("native", "reference"):
        stacked.grad = None
        out = ops.layer_aggregate(stacked, activation="gelu", backend=backend, **params)
        out.backward(torch.ones_like(out))
        outs[backend] = (out.detach(), stacked.grad.clone())
    assert outs["native"][0].shape == (11, 2, 16)
    torch.testing.assert_close(outs["native"][0], outs["reference"][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["native"][1], outs["reference"][1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_perturbation_of_any_result_fails(dtype):
    """A 1e-2 relative change of any one output or gradient fails the rule (fp32 and fp16)."""
    inputs, dy = make_inputs(113, 256, 64, "residual+post_ln")
    agg, dH = agg_inputs(3, 113, 256, 64)
    wsum = {"hidden_states": agg["hidden_states"], "layer_logits": agg["layer_logits"]}
    for (fused, base, gold), reduced in (
            (results("native", inputs, dy, "gelu", dtype=dtype), is_reduced),
            (agg_results("native", agg, dH, "gelu", dtype), agg_is_reduced),
            (wsum_results("native", wsum, torch.randn(113, 256, generator=torch.Generator().manual_seed(3)), dtype),
             agg_is_reduced)):
        assert_perturbations_fail(fused, base, gold, dtype=dtype, reduced=reduced)


@pytest.mark.parametrize("variant", VARIANTS)
def test_saved_for_backward_bytes(variant):
    """The CPU path keeps z (r) and v (d) in the GEMM dtype plus fp32 LN statistics: it trades
    2d bytes per token for not recomputing the up-projection GEMM on a compute-bound CPU. Eager
    (fp32 intermediates) keeps several times more."""
    d, r = 1024, 64
    fused = saved_bytes_per_token("native", variant, d=d, r=r)
    eager = saved_bytes_per_token("reference", variant, d=d, r=r)
    assert fused == 2 * r + 2 * d + (16 if variant == "residual+post_ln" else 8), fused
    assert eager / fused > 3, (eager, fused)


def test_deterministic_backward_and_no_grad_path():
    inputs, dy = make_inputs(300, 256, 64, "residual+post_ln")
    agg, dH = agg_inputs(4, 300, 128, 64)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [results("native", inputs, dy, "gelu")[0] for _ in range(2)]
        agg_runs = [agg_results("native", agg, dH, "gelu", torch.float32)[0] for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in (runs, agg_runs):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    with torch.no_grad():
        y = ops.bottleneck_adapter(activation="gelu", backend="native", **inputs)
        h = ops.layer_aggregate(activation="gelu", backend="native", **agg)
    assert torch.equal(y, runs[0]["out"]) and torch.equal(h, agg_runs[0]["out"])


def test_cpu_default_is_native_and_float64_falls_back():
    inputs, _ = make_inputs(5, 16, 4, "residual")
    args = tuple(inputs[k] for k in ("x", "down_w", "down_b", "up_w", "up_b", "ln_w", "ln_b"))
    assert backends.select("bottleneck_adapter", args, {"activation": "gelu"}) == "native"
    doubles = tuple(t.double() for t in args)
    assert backends.select("bottleneck_adapter", doubles, {"activation": "gelu"}) == "reference"
    with pytest.raises(backends.BackendUnavailableError, match="x has dtype torch.float64"):
        ops.bottleneck_adapter(*doubles, activation="gelu", backend="native")


@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck_bottleneck(variant):
    inputs, dy = make_inputs(33, 64, 16, variant)
    args = [inputs[k].requires_grad_() for k in ("x", "down_w", "down_b", "up_w", "up_b", "ln_w", "ln_b")]
    opt = [inputs.get(k) for k in ("residual", "post_ln_w", "post_ln_b")]
    fwd = torch.ops.elp_fast_C.bottleneck_adapter_fwd
    torch.library.opcheck(fwd.default, (*args, *opt, "gelu", 1e-5))
    _, z, v, stats = fwd(*[a.detach() for a in args], *opt, "gelu", 1e-5)
    plain = [a.detach() for a in args]
    torch.library.opcheck(torch.ops.elp_fast_C.bottleneck_adapter_bwd.default,
                          (dy, plain[0], z, v, stats, *plain[1:], *opt, "relu", True, variant != "plain", True))


def test_opcheck_aggregations():
    inputs, dH = agg_inputs(3, 17, 64, 16)
    hs = [h.requires_grad_() for h in inputs["hidden_states"]]
    params = [inputs[k].requires_grad_() for k in ("proj_w", "proj_b", "ln_w", "ln_b", "layer_logits")]
    for save in (True, False):
        torch.library.opcheck(torch.ops.elp_fast_C.layer_aggregate_fwd.default, (hs, *params, "relu", 1e-5, save))
    frozen = [h.detach() for h in hs]
    plain = [p.detach() for p in params]
    _, z, stats = torch.ops.elp_fast_C.layer_aggregate_fwd(frozen, *plain, "gelu", 1e-5, True)
    torch.library.opcheck(torch.ops.elp_fast_C.layer_aggregate_bwd.default,
                          (dH, frozen, z, stats, *plain, "gelu", 1e-5, True, True, True))
    torch.library.opcheck(torch.ops.elp_fast_C.weighted_layer_sum_fwd.default, (hs, params[-1]))
    torch.library.opcheck(torch.ops.elp_fast_C.weighted_layer_sum_bwd.default,
                          (torch.randn(17, 64), frozen, plain[-1], True, True))


def test_compiles_into_one_graph_with_autograd():
    """torch.compile(fullgraph=True) traces the native ops through their fake kernels and runs
    their backward: same values and gradients as eager."""
    inputs, dy = make_inputs(40, 64, 16, "residual+post_ln")
    agg, dH = agg_inputs(3, 40, 64, 16)

    def step(x, res, hs, **p):
        y = ops.bottleneck_adapter(x, *[p[k] for k in ("down_w", "down_b", "up_w", "up_b", "ln_w", "ln_b")],
                                   activation="gelu", residual=res, post_ln_w=p["post_ln_w"],
                                   post_ln_b=p["post_ln_b"], backend="native")
        h = ops.layer_aggregate([y] + hs, *[p[k] for k in ("proj_w", "proj_b", "lnw", "lnb", "logits")],
                                activation="gelu", backend="native")
        return h

    params = {k: v.requires_grad_() for k, v in inputs.items() if k not in ("x", "residual")}
    params.update(proj_w=torch.randn(3, 16, 64).requires_grad_(), proj_b=agg["proj_b"].requires_grad_(),
                  lnw=agg["ln_w"].requires_grad_(), lnb=agg["ln_b"].requires_grad_(),
                  logits=agg["layer_logits"].requires_grad_())
    x = inputs["x"].requires_grad_()
    hs = agg["hidden_states"][:2]
    got = {}
    for name, fn in (("eager", step), ("compiled", torch.compile(step, fullgraph=True, backend="aot_eager"))):
        for t in [x, *params.values()]:
            t.grad = None
        fn(x, inputs["residual"], hs, **params).backward(dH)
        got[name] = [x.grad.clone()] + [p.grad.clone() for p in params.values()]
    for a, b in zip(got["eager"], got["compiled"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", ["wavlm-postln", "wav2vec2-preln"])
def test_training_converges_like_the_reference(key):
    """A tiny model with E+L+P adapters trained 12 steps on the native CPU ops and on the
    reference: the same per-step losses (fp32 rtol 2e-5) and final adapter weights."""
    steps = 12
    ref_losses, ref_weights = train_tiny(key, "reference", steps)
    nat_losses, nat_weights = train_tiny(key, "native", steps)
    assert ref_losses[-1] < ref_losses[0]
    torch.testing.assert_close(torch.tensor(nat_losses), torch.tensor(ref_losses), rtol=2e-5, atol=0)
    for name, w in ref_weights.items():
        torch.testing.assert_close(nat_weights[name], w, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_compiled_model_runs_the_native_ops_first_time():
    """torch.compile(fullgraph=True) of a wrapped model on the native ops, first call compiled
    in a fresh process (loading the extension must not break the graph): matches eager."""
    out = run_compiled_first_call("native")
    assert out.returncode == 0 and "compiled ok" in out.stdout, out.stderr[-3000:]


# --- GPU: the CUDA kernels of the same extension -------------------------------------------

def _gpu_cases():
    Ns, Ds = (1, 7, 49, 113, 1023, 1500, 6392), (64, 768, 1023, 1024)
    shapes = [(n, d, 64, torch.bfloat16, VARIANTS[i % 3], "gelu") for i, (n, d) in enumerate(itertools.product(Ns, Ds))]
    variants = [(1500, 1023, r, dt, VARIANTS[i % 3], ("gelu", "relu")[i % 2])
                for i, (dt, r) in enumerate(itertools.product(DTYPES, (8, 64, 100, 256, 512)))]
    return shapes + variants


def _cuda_ready():
    return torch.cuda.is_available() and (_native.record() or {}).get("cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("n,d,r,dtype,variant,activation", _gpu_cases())
def test_bottleneck_matches_reference_gpu(n, d, r, dtype, variant, activation):
    assert _cuda_ready(), "the extension was built without CUDA"
    inputs, dy = make_inputs(n, d, r, variant, device="cuda")
    fused, base, gold = results("native", inputs, dy, activation, dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"N={n} d={d} r={r}")


@pytest.mark.gpu
@pytest.mark.parametrize("L,n,d,m,dtype,activation,hidden_grad", AGG_CASES)
def test_aggregations_match_reference_gpu(L, n, d, m, dtype, activation, hidden_grad):
    assert _cuda_ready(), "the extension was built without CUDA"
    inputs, dH = agg_inputs(L, n, d, m, device="cuda")
    frozen = () if hidden_grad else ("hidden_states",)
    fused, base, gold = agg_results("native", inputs, dH, activation, dtype, frozen)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"L={L} N={n} d={d} m={m}")
    wsum = {"hidden_states": inputs["hidden_states"], "layer_logits": inputs["layer_logits"]}
    fused, base, gold = wsum_results("native", wsum, torch.randn(n, d, device="cuda"), dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"wsum L={L} N={n} d={d}")


@pytest.mark.gpu
def test_opcheck_and_determinism_gpu():
    assert _cuda_ready(), "the extension was built without CUDA"
    inputs, dy = make_inputs(257, 1024, 64, "residual+post_ln", param_dtype=torch.bfloat16,
                             act_dtype=torch.bfloat16)
    inputs = {k: v.cuda() for k, v in inputs.items()}
    runs = [results("native", inputs, dy.cuda(), "gelu")[0] for _ in range(2)]
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name
    args = [inputs[k].requires_grad_() for k in ("x", "down_w", "down_b", "up_w", "up_b", "ln_w", "ln_b")]
    opt = [inputs[k] for k in ("residual", "post_ln_w", "post_ln_b")]
    torch.library.opcheck(torch.ops.elp_fast_C.bottleneck_adapter_fwd.default, (*args, *opt, "gelu", 1e-5))
    agg, _ = agg_inputs(3, 17, 64, 16)
    hs = [h.cuda().requires_grad_() for h in agg["hidden_states"]]
    params = [agg[k].cuda().requires_grad_() for k in ("proj_w", "proj_b", "ln_w", "ln_b", "layer_logits")]
    torch.library.opcheck(torch.ops.elp_fast_C.layer_aggregate_fwd.default, (hs, *params, "gelu", 1e-5, True))
    torch.library.opcheck(torch.ops.elp_fast_C.weighted_layer_sum_fwd.default, (hs, params[-1]))
