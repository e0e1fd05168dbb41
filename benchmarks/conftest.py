"""pytest set-up of the op micro-benchmarks under pytest-benchmark (benchmarks/test_ops_bench.py):
the Triton interpreter on a machine without CUDA, and the options that pick what is measured.

    pytest benchmarks --benchmark-only                        # CUDA: realistic sizes, bf16; CPU: smoke, fp32
    pytest benchmarks --benchmark-only --bench-sizes roofline --bench-compile

Without CUDA (or under TRITON_INTERPRET=1) the timings mean nothing (interpreter, tiny shapes),
so each benchmark runs for 0.01 s and at least 2 rounds instead of pytest-benchmark's 1 s and 5
rounds, unless --benchmark-max-time / --benchmark-min-rounds say otherwise.
"""
import os
import shlex
import sys
from pathlib import Path

import pytest
import torch

# Must be set before any Triton kernel module is imported (docs/design.md 6).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_ops, harness


def pytest_addoption(parser):
    group = parser.getgroup("elp_fast op benchmarks")
    group.addoption("--bench-sizes", default=None,
                    help="comma list of size classes: smoke, realistic, roofline (default: realistic on CUDA; "
                         "without CUDA only smoke runs)")
    group.addoption("--bench-ops", default=None, help="comma list of ops (default: all three)")
    group.addoption("--bench-compile", action="store_true",
                    help="also measure torch.compile of the eager composition (compiles on first use)")


def pytest_configure(config):
    compiled = os.environ.get("TRITON_INTERPRET", "0") in ("", "0")  # test_ops_bench.py: CUDA and compiled kernels
    if (torch.cuda.is_available() and compiled) or not hasattr(config.option, "benchmark_max_time"):
        return
    given = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    for option, smoke in (("benchmark_max_time", 0.01), ("benchmark_min_rounds", 2)):
        flag = "--" + option.replace("_", "-")
        if not any(str(a).startswith(flag) for a in given):
            setattr(config.option, option, smoke)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    """The JSON says which device, torch, Triton and CUDA measured it."""
    import harness

    machine_info["elp_fast"] = harness.environment()
