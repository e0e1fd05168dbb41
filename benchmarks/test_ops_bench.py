"""The op micro-benchmarks of bench_ops.py under pytest-benchmark:

    pytest benchmarks --benchmark-only                             # time every case, print the table
    pytest benchmarks --benchmark-only --benchmark-json=ops.json   # the same, and the results as JSON
    pytest benchmarks --benchmark-only --benchmark-autosave        # keep the run under .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare         # ... and compare with the last kept run
    pytest benchmarks --benchmark-disable                          # every case once: gate and a call

The cases, providers and gate are bench_ops.py's (plan, providers, gated, mode_calls): one test
per configuration, provider and mode (fwd, bwd, fwd+bwd), grouped per configuration and mode so
the table compares the providers. The gate runs once per configuration, before any of its
timings; a provider it leaves untimed (a fused one failing it, or one that raised) fails its
tests. Each result's extra_info holds the configuration, the gate, the bytes and FLOPs of the mode,
GB/s and TFLOP/s at the median, the first call's seconds and the Triton kernels' tile selection
(select_s, as in bench_ops.py's rows); machine_info names the device and versions.

Without CUDA: the smoke sizes through the Triton interpreter in fp32 (the wiring, not timings);
on CUDA: --bench-sizes (realistic by default, or roofline) in bf16; --bench-ops picks ops and
--bench-compile adds torch.compile. pytest-benchmark times one provider at a time, each call
synchronised, with its own calibration: good for looking quickly and for comparing commits. The
committed tables (docs/performance.md 5) come from bench_ops.py's rows: every provider of a
configuration interleaved over rounds, CUDA-event timing, ratios within one run.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

pytest.importorskip("pytest_benchmark")

import bench_ops  # noqa: E402
import harness  # noqa: E402

CUDA = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32  # as bench_ops.py: bf16 on the GPU, fp32 in smoke mode


def _listed(config, option: str, default) -> list[str]:
    value = config.getoption(option)
    return value.split(",") if value else list(default)


def pytest_generate_tests(metafunc):
    if "spec" not in metafunc.fixturenames:
        return
    sizes = _listed(metafunc.config, "--bench-sizes", ["realistic"] if CUDA else ["smoke"])
    if not CUDA and sizes != ["smoke"]:
        raise pytest.UsageError("--bench-sizes: without CUDA only the smoke sizes run (Triton interpreter)")
    with_compile = metafunc.config.getoption("--bench-compile")
    specs = bench_ops.plan(sizes, _listed(metafunc.config, "--bench-ops", bench_ops.OPS))
    _SPECS.update({str(spec): spec for spec in specs})
    cases = [(str(spec), provider, mode) for spec in specs
             for provider in bench_ops.provider_names(spec.tokens, DEVICE, with_compile) for mode in bench_ops.MODES]
    metafunc.parametrize(("spec", "provider", "mode"), cases, ids=["-".join(c) for c in cases])


_SPECS: dict = {}  # the plan's configurations by name (the test parameter: a name reads well in the JSON)
_PREPARED: dict = {}


def _prepared(spec: bench_ops.Spec, with_compile: bool) -> tuple[dict, dict, dict, float]:
    """(case, gate per provider, providers to time, the gate's tile-selection seconds) of one
    configuration, built and gated on its first test; the previous configuration's tensors are
    dropped first (tests run in plan order)."""
    key = (spec, with_compile)
    if key not in _PREPARED:
        _PREPARED.clear()
        if CUDA:
            torch.cuda.empty_cache()
        case = bench_ops.with_bwd(spec.build(DEVICE, DTYPE))
        fns = bench_ops.providers(case, DEVICE, not CUDA, with_compile)
        _PREPARED[key] = (case, *bench_ops.gated(case, fns, DTYPE))
    return _PREPARED[key]


def _number(x: float):
    return None if math.isnan(x) else x  # JSON has no NaN


def test_op(benchmark, request, spec, provider, mode):
    spec = _SPECS[spec]
    case, gates, timed, gate_select_s = _prepared(spec, request.config.getoption("--bench-compile"))
    benchmark.group = f"{spec.op} {mode} N={spec.tokens} d={spec.d} w={spec.width} L={spec.layers}"
    info = benchmark.extra_info
    info.update(op=spec.op, provider=provider, mode=mode, size=spec.size, tokens=spec.tokens, d=spec.d,
                width=spec.width, layers=spec.layers, dtype=str(DTYPE).replace("torch.", ""), gate=gates[provider],
                bytes=case["bytes"][mode], flops=case["flops"][mode])
    if provider not in timed:
        pytest.fail(f"{provider} is not timed (correctness gate): {gates[provider]}", pytrace=False)
    calls, _, _ = bench_ops.mode_calls(mode, {provider: timed[provider]}, case["inputs"], case["grad_out"])
    fn = calls[provider]
    first_s, select_s = harness.first_call(fn, DEVICE, select=provider == "triton")
    select_s = bench_ops.row_select_s(provider, mode, select_s, gate_select_s)
    info.update(first_call_s=first_s, select_s=_number(select_s))
    benchmark((lambda: (fn(), torch.cuda.synchronize())) if CUDA else fn)
    if benchmark.stats is not None:  # None under --benchmark-disable
        median_s = benchmark.stats.stats.median
        info.update(gbps=case["bytes"][mode] / median_s / 1e9, tflops=case["flops"][mode] / median_s / 1e12)
