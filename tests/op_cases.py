"""Inputs and result helpers shared by the fused-backend op tests (Triton and native): the same
cases, scales and comparison rules for every backend."""
import torch

from elp_fast import ops
from numerics import run, saved_bytes


def make_inputs(n, d, r, variant, seed=0, param_dtype=torch.float32, act_dtype=torch.float32, device="cpu"):
    """Activations at unit scale, adapter weights at a scale where the bottleneck matters. Made on
    `device` with its own generator (building 262,144-token inputs on a CPU takes seconds)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def mk(*shape, scale=1.0, shift=0.0, dtype=param_dtype):
        return (shift + scale * torch.randn(*shape, generator=g, device=device)).to(dtype)

    inputs = dict(x=mk(n, d, dtype=act_dtype), down_w=mk(r, d, scale=d ** -0.5), down_b=mk(r, scale=0.1),
                  up_w=mk(d, r, scale=r ** -0.5), up_b=mk(d, scale=0.1), ln_w=mk(d, scale=0.1, shift=1.0),
                  ln_b=mk(d, scale=0.1))
    if variant != "plain":
        inputs["residual"] = mk(n, d, dtype=act_dtype)
    if variant == "residual+post_ln":
        inputs.update(post_ln_w=mk(d, scale=0.1, shift=1.0), post_ln_b=mk(d, scale=0.1))
    return inputs, mk(n, d, dtype=act_dtype)


# (N, d, r, dtype, variant, activation): every N, d, r value of docs/testing.md appears at least once,
# each dtype meets every variant, at interpreter-friendly sizes.
ADAPTER_CASES = [
    (1, 64, 8, torch.float32, "plain", "gelu"),
    (7, 64, 100, torch.float16, "residual", "relu"),
    (49, 1023, 64, torch.bfloat16, "residual+post_ln", "gelu"),
    (113, 768, 256, torch.float32, "residual+post_ln", "gelu"),
    (1023, 1024, 64, torch.bfloat16, "residual", "gelu"),
    (1500, 64, 512, torch.float16, "residual+post_ln", "relu"),
    (6392, 64, 8, torch.bfloat16, "plain", "relu"),
    (113, 1024, 100, torch.float16, "plain", "gelu"),
    (49, 768, 512, torch.bfloat16, "plain", "gelu"),
    (7, 1023, 256, torch.float32, "residual", "relu"),
    (1, 768, 64, torch.float16, "residual+post_ln", "gelu"),
]


def is_reduced(name: str) -> bool:
    return name.startswith("grad:") and name not in ("grad:x", "grad:residual")


def results(backend, inputs, dy, activation, *, dtype=None):
    """(fused, base, gold) result dicts; dtype=None keeps each input's own dtype (mixed case)."""
    def call(name):
        return lambda **kw: ops.bottleneck_adapter(activation=activation, backend=name, **kw)
    fused = run(call(backend), inputs, dy, dtype=dtype)
    base = run(call("reference"), inputs, dy, dtype=dtype)
    gold = run(call("reference"), inputs, dy, dtype=torch.float64)
    return fused, base, gold


def saved_bytes_per_token(backend, variant, n=64, d=1024, r=64):
    """Bytes the bottleneck op keeps for backward per token (bf16), besides its inputs."""
    inputs, _ = make_inputs(n, d, r, variant, param_dtype=torch.bfloat16, act_dtype=torch.bfloat16)
    leaves = {k: v.requires_grad_() for k, v in inputs.items()}
    op = lambda: ops.bottleneck_adapter(activation="gelu", backend=backend, **leaves)  # noqa: E731
    return saved_bytes(op, list(leaves.values())) / n


def agg_inputs(L, n, d, m, seed=0, dtype=torch.float32, device="cpu"):
    g = torch.Generator(device=device).manual_seed(seed)

    def mk(*shape, scale=1.0, shift=0.0):
        return (shift + scale * torch.randn(*shape, generator=g, device=device)).to(dtype)

    inputs = dict(hidden_states=[mk(n, d) for _ in range(L)], proj_w=mk(L, m, d, scale=d ** -0.5),
                  proj_b=mk(L, m, scale=0.1), ln_w=mk(L, m, scale=0.1, shift=1.0), ln_b=mk(L, m, scale=0.1),
                  layer_logits=mk(L))
    return inputs, mk(n, m)


def agg_is_reduced(name: str) -> bool:
    return name.startswith("grad:") and not name.startswith("grad:hidden_states")


def agg_results(backend, inputs, dH, activation, dtype, frozen=()):
    def call(name):
        return lambda **kw: ops.layer_aggregate(activation=activation, backend=name, **kw)
    return tuple(run(call(b), inputs, dH, dtype=dt, frozen=frozen)
                 for b, dt in ((backend, dtype), ("reference", dtype), ("reference", torch.float64)))


def wsum_results(backend, inputs, dH, dtype, frozen=()):
    def call(name):
        return lambda **kw: ops.weighted_layer_sum(backend=name, **kw)
    return tuple(run(call(b), inputs, dH, dtype=dt, frozen=frozen)
                 for b, dt in ((backend, dtype), ("reference", dtype), ("reference", torch.float64)))


# (L, N, d, m, dtype, activation, hidden states need gradients)
AGG_CASES = [
    (1, 1, 64, 8, torch.float32, "gelu", True),
    (2, 7, 768, 100, torch.float16, "relu", True),
    (13, 49, 1023, 64, torch.bfloat16, "gelu", True),
    (25, 113, 1024, 512, torch.float32, "gelu", False),
    (2, 1023, 64, 256, torch.bfloat16, "relu", True),
    (13, 1500, 64, 100, torch.float16, "gelu", False),
    (1, 6392, 64, 64, torch.float32, "relu", True),
    (25, 7, 768, 8, torch.bfloat16, "gelu", True),
]

# (L, N, d, dtype)
WSUM_CASES = [(1, 1, 64, torch.float32), (2, 7, 1023, torch.float16), (13, 1500, 768, torch.bfloat16),
              (25, 113, 1024, torch.float32), (25, 6392, 64, torch.bfloat16), (13, 1023, 1024, torch.float16)]
