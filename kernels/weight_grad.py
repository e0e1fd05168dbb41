"""Weight gradients of the fused ops: out[b] = A[b]^T act(B[b]), a GEMM over the token rows.

The reduction runs over the token rows N, which are long (thousands to millions) while the
weight tiles are small, so the rows are split into S slices; each program writes its own fp32
partial tile and the partials are summed afterwards in a fixed order. No atomics: the result is
bit-identical from run to run (deterministic mode needs nothing special).

A is (BATCH, N, K1) at a fixed batch stride (a scratch the row kernel wrote); B is either
(BATCH, N, K2) at a fixed stride or, with a pointer table, BATCH separate (N, K2) tensors (the
hidden states of layer_aggregate, read in place). B may pass through the activation on load,
which turns the saved pre-activation z into the matmul operand act(z).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import INTERPRET, act_fwd, aligned16, mma, pointer_table, pow2, row_class, sm_count, table_pointer
from ._tuning import pick, plans


@triton.jit(do_not_specialize=["N", "rows_per_split"])
def _weight_grad_kernel(a_ptr, b_ptr, out_ptr, N, K1, K2, rows_per_split, S, stride_ab, stride_bb,
                        B_TABLE: tl.constexpr, ALIGNED: tl.constexpr, B_ACT: tl.constexpr, ACT: tl.constexpr,
                        BK1: tl.constexpr, BK2: tl.constexpr,
                        BN: tl.constexpr, INTERP: tl.constexpr):
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    pid_sb = tl.program_id(2)
    split = pid_sb % S
    batch = pid_sb // S
    OP_DT = a_ptr.dtype.element_ty
    a_base = a_ptr + batch.to(tl.int64) * stride_ab
    if B_TABLE:
        b_base = table_pointer(b_ptr, batch, OP_DT, ALIGNED)
    else:
        b_base = b_ptr + batch.to(tl.int64) * stride_bb
    i = pid_i * BK1 + tl.arange(0, BK1)
    j = pid_j * BK2 + tl.arange(0, BK2)
    imask = i < K1
    jmask = j < K2
    start = split * rows_per_split
    end = tl.minimum(N, start + rows_per_split)
    acc = tl.zeros((BK1, BK2), tl.float32)
    for n0 in range(start, end, BN):
        n = n0 + tl.arange(0, BN)
        nmask = n < end
        n64 = n.to(tl.int64)
        at = tl.load(a_base + n64[None, :] * K1 + i[:, None], mask=imask[:, None] & nmask[None, :], other=0.0)
        bt = tl.load(b_base + n64[:, None] * K2 + j[None, :], mask=nmask[:, None] & jmask[None, :], other=0.0)
        if B_ACT:
            bt = act_fwd(bt.to(tl.float32), ACT)  # masked rows: act(0) = 0 for GELU and ReLU
        acc = mma(at, bt, acc, OP_DT, INTERP)
    out_base = out_ptr + pid_sb.to(tl.int64) * K1 * K2
    tl.store(out_base + i[:, None] * K2 + j[None, :], acc, mask=imask[:, None] & jmask[None, :])


# Candidate (BK1, BK2, BN, num_warps) (BK1/BK2 capped at the padded sizes), timed on the first
# call (_tuning.py); all spill-free for sm_90 (benchmarks/compile_check.py). fp32 runs IEEE
# dots without tensor cores: smaller tiles.
CANDIDATES = {False: [(128, 128, 64, 8), (64, 128, 64, 4), (64, 64, 64, 4)],
              True: [(64, 64, 32, 8), (32, 64, 32, 4)]}


def weight_grad(a: torch.Tensor, b, *, b_act: Optional[int] = None) -> torch.Tensor:
    """a: (BATCH, N, K1) contiguous; b: (BATCH, N, K2) contiguous, or a list of BATCH contiguous
    (N, K2) tensors. Returns fp32 (BATCH, K1, K2)."""
    batch, n, k1 = a.shape
    table = isinstance(b, (list, tuple))
    if table:
        k2 = b[0].shape[-1]
        b_arg, stride_bb = pointer_table(list(b)), 0
    else:
        k2 = b.shape[-1]
        b_arg, stride_bb = b, n * k2
    aligned = table and aligned16(list(b), k2)
    sms = sm_count(a.device)

    def grid_of(config):
        """(grid, rows per split, splits) of a candidate: enough row slices that the card gets
        about 4 programs per SM, each slice a whole number of BN-row blocks."""
        bk1, bk2, bn = min(pow2(k1), config[0]), min(pow2(k2), config[1]), config[2]
        tiles = triton.cdiv(k1, bk1) * triton.cdiv(k2, bk2) * batch
        want = 1 if INTERPRET else max(1, triton.cdiv(4 * sms, tiles))
        splits = max(1, min(want, triton.cdiv(n, bn)))
        rows_per_split = triton.cdiv(triton.cdiv(n, splits), bn) * bn
        splits = max(1, triton.cdiv(n, rows_per_split))
        return (triton.cdiv(k1, bk1), triton.cdiv(k2, bk2), batch * splits), rows_per_split, splits

    cands = plans(CANDIDATES[a.dtype == torch.float32], lambda c: math.prod(grid_of(c)[0]), sms)
    result = {}

    def launch(config):
        grid, rows_per_split, splits = grid_of(config)
        out = torch.empty((batch * splits, k1, k2), device=a.device, dtype=torch.float32)
        _weight_grad_kernel[grid](
            a, b_arg, out, n, k1, k2, rows_per_split, splits, n * k1, stride_bb,
            B_TABLE=table, ALIGNED=aligned, B_ACT=b_act is not None, ACT=b_act or 0,
            BK1=min(pow2(k1), config[0]), BK2=min(pow2(k2), config[1]), BN=config[2], INTERP=INTERPRET,
            num_warps=config[3])
        result["out"], result["splits"] = out, splits
    interp = (pow2(k1, 16), pow2(k2, 16), 256, 4)
    launch(pick("weight_grad", (str(a.dtype)[6:], pow2(k1), pow2(k2), batch, table, aligned, b_act, row_class(n)),
                cands, launch, a.device, interp))
    # Fixed-order reduction of the partials (torch's sum is deterministic).
    return result["out"].view(batch, result["splits"], k1, k2).sum(1)
