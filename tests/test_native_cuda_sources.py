"""The CUDA half of the native extension, checked without a GPU: every .cu file compiles for
sm_90 with torch's extension flags (when nvcc is on this machine), the row-kernel variants that
realistic widths use do not spill registers, and the host sources compile with CUDA enabled.
Running them needs the GPU machine (tests/test_native_ops.py, `gpu` marker)."""
import os
import re
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"


def _nvcc():
    home = cpp_extension.CUDA_HOME or os.environ.get("CUDA_HOME")
    if home and (Path(home) / "bin" / "nvcc").is_file():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


NVCC = _nvcc()


def _include_flags(tmp_path):
    includes = cpp_extension.include_paths()
    marker = Path(includes[0]) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    if not marker.is_file():  # a CPU build of torch lacks this generated header: stand it in
        stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
        stub.mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes = [str(tmp_path / "stub"), *includes]
    return [f"-I{p}" for p in includes]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (CUDA_HOME or PATH)")
def test_cuda_sources_compile_for_sm90_without_spills(tmp_path):
    flags = [*cpp_extension.COMMON_NVCC_FLAGS, "-std=c++20", "-O3", "-DELP_FAST_WITH_CUDA", "-gencode",
             "arch=compute_90,code=sm_90", "-Xptxas", "-v", "-Xcompiler", "-fPIC", *_include_flags(tmp_path)]
    sources = sorted(CSRC.rglob("*.cu"))
    assert {p.name for p in sources} >= {"bottleneck_adapter_cuda.cu", "layer_aggregate_cuda.cu",
                                         "weighted_layer_sum_cuda.cu", "cuda_dispatch.cu"}

    def compile_one(src):
        return src, subprocess.run([NVCC, *flags, "-c", str(src), "-o", str(tmp_path / (src.name + ".o"))],
                                   capture_output=True, text=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, sources))
    spills, registers = {}, {}
    for src, out in results:
        assert out.returncode == 0, f"{src.name}:\n{out.stderr[-4000:]}"
        # ptxas -v: "Compiling entry function 'NAME'" ... "N bytes spill stores" ... "Used N registers"
        for name, spill in re.findall(r"Compiling entry function '(\w+)'.*?(\d+) bytes spill stores",
                                      out.stderr, flags=re.S):
            spills[name] = int(spill)
        for name, regs in re.findall(r"Compiling entry function '(\w+)'.*?Used (\d+) registers", out.stderr,
                                     flags=re.S):
            registers[name] = int(regs)
    assert len(spills) > 50, f"expected every kernel instantiation in the ptxas report, got {len(spills)}"
    assert registers.keys() == spills.keys()
    # <T, E, S> with S (slots per thread) = 1: every width up to 1024 threads x 16 bytes (the pattern
    # also matches fp32, mangled "IfLi4E...", where the 16-bit types have "E" before "Li").
    single_slot = {n: s for n, s in spills.items() if re.search(r"Li(1|4|8)ELi1EEEv", n)}
    assert len(single_slot) >= 12 and not any(single_slot.values()), single_slot
    # bias_act <T, E> (E = 1 or 16 bytes) and bias_act_grad <T>: one variant per type, all used.
    columns = {n: s for n, s in spills.items() if "bias_act" in n}
    assert len(columns) == 9 and not any(columns.values()), columns

    # The launch geometry the launchers' comments give at the realistic widths: the chunked backward
    # kernels' 16-byte single-slot variants run 256-thread blocks (row groups), two of which share
    # an SM's 65,536 registers at <= 128 registers a thread; bias_act_grad runs up to 512 threads.
    def regs_of(kernel, pattern=""):
        found = {n: r for n, r in registers.items() if kernel in n and re.search(pattern, n)}
        assert found, kernel
        return found

    for kernel in ("adapter_out_grad_kernel", "layer_bwd_kernel"):
        chunked = regs_of(kernel, r"Li(4|8)ELi1EEEv")
        assert len(chunked) == 3 and max(chunked.values()) <= 128, chunked
    grad = regs_of("bias_act_grad_kernel")
    assert max(grad.values()) <= 128, grad


def test_host_sources_compile_with_cuda_enabled():
    """The op files' CUDA registrations and dispatch compile (host compiler, syntax only)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++")
    flags = ["-std=c++20", "-fsyntax-only", "-DELP_FAST_WITH_CUDA", f"-I{sysconfig.get_paths()['include']}",
             *[f"-I{p}" for p in cpp_extension.include_paths()]]
    sources = [p for p in sorted(CSRC.rglob("*.cpp")) if not p.name.startswith("cpu_isa_")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda src: subprocess.run(["g++", *flags, str(src)], capture_output=True, text=True),
                             sources))
    for src, out in zip(sources, outs):
        assert out.returncode == 0, f"{src.name}:\n{out.stderr[-3000:]}"
