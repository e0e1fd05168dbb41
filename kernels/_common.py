"""Pieces shared by the Triton kernels: activations, the matmul helper and launch helpers.

Numerics contract (docs/design.md 4): every kernel accumulates in fp32. Matmul operands are rounded to
the working dtype (the activations' dtype) so fp16/bf16 run on tensor cores; fp32 inputs use
IEEE fp32 dots (never TF32), because the tests hold fp32 results to fp32 tolerances.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Read once: the decorators below bind each kernel to the interpreter or the compiler at import.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

ACT_CODES = {"gelu": 0, "relu": 1}


@triton.jit
def act_fwd(z, ACT: tl.constexpr):
    if ACT == 0:  # exact (erf) GELU, as torch's default
        return 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))
    else:
        return tl.maximum(z, 0.0)


@triton.jit
def act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        cdf = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476))
        return cdf + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)
    else:
        return tl.where(z > 0.0, 1.0, 0.0)


@triton.jit
def mma(a, b, acc, OP_DT: tl.constexpr, INTERP: tl.constexpr):
    """acc += a @ b with operands rounded to OP_DT. The interpreter's bf16 dot is wrong, so
    there the rounded operands are widened back to fp32: the rounding (and so the result)
    matches the compiled kernel up to summation order."""
    a = a.to(OP_DT)
    b = b.to(OP_DT)
    if INTERP:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif OP_DT == tl.float32:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


def pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(int(n)))


def interpreter_tile(n: int, d: int, warps: int = 4) -> tuple[int, int, int]:
    """(BM, BD, num_warps) under the interpreter: the biggest blocks, as each program costs
    milliseconds there."""
    return min(pow2(n), 128), min(pow2(d), 256), warps


def row_class(n: int) -> int:
    """The shape class of a row count for tile selection: its power-of-two bucket."""
    return triton.next_power_of_2(max(int(n), 1))


# Set by the offline compile check to plan launches for a card it does not have (132 SMs).
PLAN_SMS: int | None = None


def sm_count(device: torch.device) -> int:
    if PLAN_SMS is not None:
        return PLAN_SMS
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1  # the interpreter runs programs one after another: fewer, bigger programs


def aligned16(tensors: list[torch.Tensor], row_elems: int = 0) -> bool:
    """Every tensor starts on a 16-byte boundary and a row of `row_elems` elements (0: the
    tensors are read as one flat run) is a whole number of 16 bytes: then a kernel may tell the
    compiler so (ALIGNED) and read pointer-table tensors with 16-byte vector loads. Otherwise it
    takes the scalar-load path (correct, slower)."""
    size = tensors[0].element_size()
    return (row_elems * size) % 16 == 0 and all(t.data_ptr() % 16 == 0 for t in tensors)


@triton.jit
def table_pointer(table_ptr, l, DT: tl.constexpr, ALIGNED: tl.constexpr):
    """The l-th tensor of a pointer table; with ALIGNED the compiler is told it is 16-byte
    aligned, which turns the 2-byte loads of the rows into 16-byte vector loads."""
    p = tl.load(table_ptr + l).to(tl.pointer_type(DT))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


def pointer_table(tensors: list[torch.Tensor]) -> torch.Tensor:
    """int64 addresses of L same-shaped tensors, so a kernel reads them without a stack copy.
    On CUDA the table goes through pinned memory with a non-blocking copy: a copy from pageable
    memory would make the host wait for all queued GPU work at every call."""
    table = torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64)
    if tensors[0].device.type != "cuda":
        return table
    return table.pin_memory().to(tensors[0].device, non_blocking=True)
