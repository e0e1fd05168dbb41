"""Fused softmax-weighted sum of hidden states (the SUPERB featurizer), forward and backward.

    H = sum_l w_l h_l,  w = softmax(layer_logits)

Pure bandwidth: forward reads every h_l once (through a pointer table, no stack) and writes H;
backward reads dH once, writes dh_l = w_l dH where the hidden states need gradients and reads h_l
for the per-layer sums sum(dH * h_l) that give the logit gradients. Programs are persistent over
tiles of the flattened (N * d) elements, so those L sums stay in registers per program.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import INTERPRET, aligned16, pointer_table, row_class, sm_count, table_pointer
from ._tuning import pick, plans


@triton.jit  # numel stays specialised: its divisibility lets the masked loads be vectorised
def _fwd_kernel(table_ptr, h0_ptr, w_ptr, out_ptr, numel, L, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    DT = h0_ptr.dtype.element_ty
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    acc = tl.zeros((BLOCK,), tl.float32)
    for l in range(0, L):
        h_ptr = table_pointer(table_ptr, l, DT, ALIGNED)
        acc += tl.load(w_ptr + l) * tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, acc, mask=mask)


@triton.jit(do_not_specialize=["tiles"])
def _bwd_kernel(table_ptr, h0_ptr, w_ptr, dH_ptr, dh_ptr, plog_ptr, numel, L, tiles,
                ALIGNED: tl.constexpr, NEED_DH: tl.constexpr, NEED_LOGITS: tl.constexpr, BLOCK: tl.constexpr,
                LP: tl.constexpr):
    DT = h0_ptr.dtype.element_ty
    pid = tl.program_id(0)
    ls = tl.arange(0, LP)
    sums = tl.zeros((LP,), tl.float32)
    for t in range(pid, tiles, tl.num_programs(0)):
        offs = tl.cast(t, tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        dH = tl.load(dH_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for l in range(0, L):
            if NEED_DH:
                tl.store(dh_ptr + tl.cast(l, tl.int64) * numel + offs, tl.load(w_ptr + l) * dH, mask=mask)
            if NEED_LOGITS:
                h_ptr = table_pointer(table_ptr, l, DT, ALIGNED)
                h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(tl.float32)
                sums = tl.where(ls == l, sums + tl.sum(dH * h, axis=0), sums)
    tl.store(plog_ptr + pid * LP + ls, sums)


# Candidate (BLOCK, num_warps), timed on the first call (_tuning.py). Forward programs own one
# block each (thousands of programs at any realistic size); backward programs are persistent,
# up to 8 per SM, so their per-layer sums stay in registers.
CANDIDATES = [(4096, 8), (2048, 4), (8192, 8)]
_INTERP = (1 << 16, 4)


def _block(numel: int, config) -> int:
    return min(triton.next_power_of_2(max(numel, 16)), config[0])


def _shape(hidden: list[torch.Tensor]) -> tuple:
    return (str(hidden[0].dtype)[6:], len(hidden), aligned16(hidden), row_class(hidden[0].numel()))


def forward(hidden: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """hidden: L contiguous same-shaped tensors; weights: softmax(layer_logits) in fp32."""
    out = torch.empty_like(hidden[0])
    numel = out.numel()
    shape = _shape(hidden)
    table = pointer_table(hidden)
    cands = plans(CANDIDATES, lambda c: triton.cdiv(numel, _block(numel, c)), sm_count(out.device))

    def launch(config):
        block = _block(numel, config)
        _fwd_kernel[(triton.cdiv(numel, block),)](table, hidden[0], weights, out, numel, len(hidden),
                                                   ALIGNED=shape[2], BLOCK=block, num_warps=config[1])
    launch(pick("weighted_layer_sum.fwd", shape, cands, launch, out.device, _INTERP))
    return out


def backward(dH: torch.Tensor, hidden: list[torch.Tensor], weights: torch.Tensor, *,
             need_dh: bool, need_logits: bool):
    """Returns dh (L, *shape) or None, and fp32 sums g_l = sum(dH * h_l) or None."""
    L, numel = len(hidden), dH.numel()
    shape = _shape(hidden)
    table = pointer_table(hidden)
    sms = sm_count(dH.device)
    lp = triton.next_power_of_2(L)
    dh = torch.empty((L, *dH.shape), device=dH.device, dtype=dH.dtype) if need_dh else dH.new_empty(0)

    def programs(config):
        return max(1, min(triton.cdiv(numel, _block(numel, config)), 1 if INTERPRET else 8 * sms))
    cands = plans(CANDIDATES, programs, sms)
    result = {}

    def launch(config):
        block = _block(numel, config)
        progs = programs(config)
        plog = torch.empty((progs, lp), device=dH.device, dtype=torch.float32)
        _bwd_kernel[(progs,)](table, hidden[0], weights, dH, dh, plog, numel, L, triton.cdiv(numel, block),
                              ALIGNED=shape[2], NEED_DH=need_dh, NEED_LOGITS=need_logits, BLOCK=block, LP=lp,
                              num_warps=config[1])
        result["plog"] = plog
    launch(pick("weighted_layer_sum.bwd", (*shape, need_dh, need_logits), cands, launch, dH.device, _INTERP))
    return (dh if need_dh else None), (result["plog"].sum(0)[:L] if need_logits else None)
