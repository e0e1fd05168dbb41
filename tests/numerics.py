"""The numerics rule of docs/testing.md, shared by the fused-kernel tests.

gold = the reference in float64; base = the reference in the working dtype; a fused result passes
when  max|fused - gold| <= k * max|base - gold| + FLOOR[dtype] * max|gold|  with k = 2 for
outputs and per-row gradients and k = 3 for gradients reduced over rows (weights, biases, norm
parameters, layer logits). The floor is relative to the tensor's own scale (about one unit in
the last place of the dtype at max|gold|), so one figure fits outputs and gradients of very
different magnitudes; it covers what the reference does not do (matmul operands rounded to fp16/
bf16, as tensor cores need, and another summation order) and is small enough that a 1e-2 relative
perturbation of any checked tensor fails in fp32 and fp16 (test_perturbation_* in the kernel test
files; in bf16 the rule's own 2-3x base error is already about 1e-2, so no tolerance can do that).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

FLOOR = {torch.float32: 1e-6, torch.float16: 5e-4, torch.bfloat16: 5e-3}


@dataclass
class Check:
    name: str
    err_fused: float
    err_base: float
    scale: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.err_fused <= self.tol

    def __str__(self) -> str:
        return (f"{self.name}: |fused-gold| {self.err_fused:.3g} vs tol {self.tol:.3g} "
                f"(|base-gold| {self.err_base:.3g}, max|gold| {self.scale:.3g})")


def run(fn: Callable, inputs: dict, grad_out: torch.Tensor, *, dtype: torch.dtype | None = None,
        frozen: tuple = ()) -> dict:
    """Call fn(**inputs) on fresh leaves (cast to `dtype` when given), backpropagate grad_out and
    return {"out": y, "grad:<name>": ...} for every tensor input not named in `frozen`. Lists of
    tensors (hidden states) become one leaf per element, named "<name>[i]"."""
    def leaf(t: torch.Tensor, name: str) -> torch.Tensor:
        t = t.detach().to(dtype or t.dtype).clone()
        return t if name in frozen else t.requires_grad_()

    leaves, args = {}, {}
    for name, value in inputs.items():
        if isinstance(value, (list, tuple)):
            args[name] = [leaf(v, name) for v in value]
            leaves.update({f"{name}[{i}]": t for i, t in enumerate(args[name])})
        elif isinstance(value, torch.Tensor):
            args[name] = leaves[name] = leaf(value, name)
        else:
            args[name] = value
    out = fn(**args)
    out.backward(grad_out.to(out.dtype))
    result = {"out": out.detach()}
    for name, t in leaves.items():
        if t.requires_grad:
            assert t.grad is not None, f"no gradient reached {name}"
            result[f"grad:{name}"] = t.grad
    return result


def compare(fused: dict, base: dict, gold: dict, *, dtype: torch.dtype, reduced: Callable[[str], bool],
            perturb: float = 0.0) -> list[Check]:
    """One Check per tensor in gold; `perturb` scales the fused tensors (the meta-test)."""
    checks = []
    assert fused.keys() == gold.keys() == base.keys(), (fused.keys(), gold.keys())
    for name, g in gold.items():
        f = fused[name].double() * (1.0 + perturb)
        b = base[name].double()
        scale = float(g.abs().max()) if g.numel() else 0.0
        err_f = float((f - g).abs().max()) if g.numel() else 0.0
        err_b = float((b - g).abs().max()) if g.numel() else 0.0
        k = 3.0 if reduced(name) else 2.0
        checks.append(Check(name, err_f, err_b, scale, k * err_b + FLOOR[dtype] * scale))
    return checks


def assert_all_pass(checks: list[Check], label: str) -> None:
    bad = [str(c) for c in checks if not c.ok]
    assert not bad, f"{label}:\n  " + "\n  ".join(bad)


def assert_perturbations_fail(fused: dict, base: dict, gold: dict, *, dtype: torch.dtype,
                              reduced: Callable[[str], bool]) -> None:
    """The meta-test: the fused results pass, and a 1e-2 relative change of any one of them fails
    (the tolerances are not vacuous)."""
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=reduced), "unperturbed")
    for name in gold:
        one = {k: (v * (1 + 1e-2) if k == name else v) for k, v in fused.items()}
        check = next(c for c in compare(one, base, gold, dtype=dtype, reduced=reduced) if c.name == name)
        assert not check.ok, f"a 1e-2 perturbation of {name} passed: {check}"


def saved_bytes(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> int:
    """Bytes autograd keeps for backward while fn() runs, not counting tensors that share storage
    with `inputs` (the op's own inputs: the caller holds those anyway)."""
    ptrs = {t.untyped_storage().data_ptr() for t in inputs}
    total = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in ptrs:
            total.append(t.numel() * t.element_size())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)
