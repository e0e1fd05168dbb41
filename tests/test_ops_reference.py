"""The reference ops are the spec: check them against independent compositions of torch
modules, float64 gradcheck, dtype contract and argument errors."""
import pytest
import torch
import torch.nn.functional as F

from elp_fast import ops


def _bottleneck_args(n=5, d=6, r=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return [mk(n, d), mk(r, d), mk(r), mk(d, r), mk(d), 1 + 0.1 * mk(d), mk(d)], mk(n, d), (1 + 0.1 * mk(d), mk(d))


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("variant", ["plain", "residual", "residual+post_ln"])
def test_bottleneck_matches_module_composition(activation, variant):
    (x, dw, db, uw, ub, lw, lb), res, (pw, pb) = _bottleneck_args(n=7, d=16, r=4)
    act = F.gelu if activation == "gelu" else F.relu
    expect = x + F.layer_norm(F.linear(act(F.linear(x, dw, db)), uw, ub), (16,), lw, lb, 1e-5)
    kw = {}
    if variant != "plain":
        expect, kw = expect + res, dict(residual=res)
    if variant == "residual+post_ln":
        expect = F.layer_norm(expect, (16,), pw, pb, 1e-5)
        kw.update(post_ln_w=pw, post_ln_b=pb)
    got = ops.bottleneck_adapter(x, dw, db, uw, ub, lw, lb, activation=activation, **kw)
    torch.testing.assert_close(got, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_bottleneck_gradcheck_float64(activation):
    args, res, (pw, pb) = _bottleneck_args()
    tensors = [t.requires_grad_() for t in args + [res, pw, pb]]

    def f(x, dw, db, uw, ub, lw, lb, res, pw, pb):
        return ops.bottleneck_adapter_ref(x, dw, db, uw, ub, lw, lb, activation=activation,
                                          residual=res, post_ln_w=pw, post_ln_b=pb)

    assert torch.autograd.gradcheck(f, tensors)


def _aggregate_args(L=3, n=4, d=5, m=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return [mk(n, d) for _ in range(L)], mk(L, m, d), mk(L, m), 1 + 0.1 * mk(L, m), mk(L, m), mk(L)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_layer_aggregate_matches_per_layer_modules(activation):
    hs, pw, pb, lw, lb, logits = _aggregate_args(L=4, n=6, d=8, m=5)
    act = F.gelu if activation == "gelu" else F.relu
    w = torch.softmax(logits, 0)
    expect = sum(w[l] * F.layer_norm(act(F.linear(hs[l], pw[l], pb[l])), (5,), lw[l], lb[l], 1e-5) for l in range(4))
    got_list = ops.layer_aggregate(hs, pw, pb, lw, lb, logits, activation=activation)
    got_stacked = ops.layer_aggregate(torch.stack(hs), pw, pb, lw, lb, logits, activation=activation)
    torch.testing.assert_close(got_list, expect, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_stacked, expect, rtol=1e-12, atol=1e-12)


def test_layer_aggregate_gradcheck_float64():
    hs, *params = _aggregate_args()
    tensors = [t.requires_grad_() for t in hs + params]

    def f(*t):
        return ops.layer_aggregate_ref(list(t[:3]), *t[3:], activation="gelu")

    assert torch.autograd.gradcheck(f, tensors)


def test_weighted_layer_sum_value_and_gradcheck():
    hs = [torch.randn(4, 5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    logits = torch.randn(3, dtype=torch.float64, requires_grad=True)
    w = torch.softmax(logits, 0)
    torch.testing.assert_close(ops.weighted_layer_sum(hs, logits), sum(w[l] * hs[l] for l in range(3)))
    assert torch.autograd.gradcheck(lambda *t: ops.weighted_layer_sum_ref(list(t[:3]), t[3]), hs + [logits])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_ops_return_input_dtype_and_accumulate_in_fp32(dtype):
    (x, *w), res, _ = _bottleneck_args(n=9, d=32, r=8, dtype=torch.float32)
    x16 = x.to(dtype)
    y = ops.bottleneck_adapter(x16, *w, activation="gelu", residual=res.to(dtype), backend="reference")
    assert y.dtype == dtype
    # The reference: the same result as computing in fp32 from the rounded inputs, then rounding once.
    expect = ops.bottleneck_adapter(x16.float(), *w, activation="gelu", residual=res.to(dtype).float(),
                                    backend="reference").to(dtype)
    assert torch.equal(y, expect)
    hs, *p = _aggregate_args(dtype=torch.float32)
    out = ops.layer_aggregate([h.to(dtype) for h in hs], *p, activation="relu")
    assert out.dtype == dtype


def test_leading_dims_are_flattened_and_restored():
    (x, *w), res, _ = _bottleneck_args(n=6, d=8, r=2)
    y = ops.bottleneck_adapter(x.view(2, 3, 8), *w, activation="gelu")
    torch.testing.assert_close(y.view(6, 8), ops.bottleneck_adapter(x, *w, activation="gelu"))
    hs, pw, pb, lw, lb, logits = _aggregate_args(n=6)
    out = ops.layer_aggregate([h.view(2, 3, 5) for h in hs], pw, pb, lw, lb, logits, activation="gelu")
    assert out.shape == (2, 3, 3)


def test_bad_op_arguments_name_the_argument():
    (x, dw, db, uw, ub, lw, lb), res, _ = _bottleneck_args()
    with pytest.raises(ValueError, match=r"bottleneck_adapter: up_w has shape \(6, 2\); expected \(6, 3\)"):
        ops.bottleneck_adapter(x, dw, db, uw[:, :2], ub, lw, lb, activation="gelu")
    with pytest.raises(ValueError, match=r"bottleneck_adapter: activation got 'tanh'"):
        ops.bottleneck_adapter(x, dw, db, uw, ub, lw, lb, activation="tanh")
    with pytest.raises(ValueError, match=r"residual has shape \(4, 6\); expected \(5, 6\)"):
        ops.bottleneck_adapter(x, dw, db, uw, ub, lw, lb, activation="gelu", residual=res[:4])
    with pytest.raises(ValueError, match="post_ln_w and post_ln_b must be given together"):
        ops.bottleneck_adapter(x, dw, db, uw, ub, lw, lb, activation="gelu", post_ln_w=lw)
    with pytest.raises(TypeError, match=r"x has dtype torch.int64"):
        ops.bottleneck_adapter(x.long(), dw, db, uw, ub, lw, lb, activation="gelu")
    hs, pw, pb, lwt, lbt, logits = _aggregate_args()
    with pytest.raises(ValueError, match=r"layer_aggregate: proj_w has shape \(3, 3, 5\); expected \(2, \*, 5\)"):
        ops.layer_aggregate(hs[:2], pw, pb, lwt, lbt, logits, activation="gelu")
    with pytest.raises(ValueError, match=r"hidden_states\[1\] is \(4, 4\)"):
        ops.layer_aggregate([hs[0], hs[1][:, :4], hs[2]], pw, pb, lwt, lbt, logits, activation="gelu")
    with pytest.raises(ValueError, match=r"weighted_layer_sum: layer_logits has shape \(3,\); expected \(2\)"):
        ops.weighted_layer_sum(hs[:2], logits)
