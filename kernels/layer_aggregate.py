"""Fused L-adapters + softmax-weighted sum, forward and backward.

    H = sum_l w_l * LN(act(h_l P_l^T + p_l); g_l, b_l),   w = softmax(layer_logits)

One program owns BM rows and loops over the L layers, reading each hidden state in place through
a table of pointers (no torch.stack) and keeping H in registers: the per-layer outputs are never
written. The whole m-row of a layer's projection sits in registers, so its LayerNorm statistics
are exact and cheap to recompute: backward saves nothing but the inputs.

Backward: programs own contiguous row ranges and loop layer by layer, so the per-layer partial
sums (LN gamma/beta, layer logits) stay in registers and are written once per program and layer.
The row kernel writes dz_l (for the projection weight GEMMs in weight_grad.py) and, when the
hidden states need it, dh_l = dz_l P_l. Every reduction is a fixed-order sum: deterministic.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import ACT_CODES, INTERPRET, act_fwd, act_grad, mma, pointer_table, sm_count, tiles
from .weight_grad import weight_grad

MAX_M = 512  # the (BM, m) fp32 tiles stay in registers


@triton.jit
def _project(h_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, D, M, BM: tl.constexpr,
             BD: tl.constexpr, MP: tl.constexpr, OP_DT: tl.constexpr, INTERP: tl.constexpr):
    """z = h_l P_l^T + p_l for BM rows: (BM, MP) fp32."""
    acc = tl.zeros((BM, MP), tl.float32)
    w_base = pw_ptr + tl.cast(l, tl.int64) * M * D
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        ht = tl.load(h_ptr + rows64[:, None] * D + cols[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)
        wt = tl.load(w_base + ms[None, :] * D + cols[:, None], mask=mmask[None, :] & cmask[:, None], other=0.0)
        acc = mma(ht, wt, acc, OP_DT, INTERP)
    return acc + tl.load(pb_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _normalise(z, mmask, M, eps, ACT: tl.constexpr):
    """(ahat, rstd): the LayerNorm of act(z) over the m valid columns (zero in padded ones)."""
    a = tl.where(mmask[None, :], act_fwd(z, ACT), 0.0)
    mean = tl.sum(a, axis=1) / M
    c = tl.where(mmask[None, :], a - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(c * c, axis=1) / M + eps)
    return c * rstd[:, None], rstd


@triton.jit
def _fwd_kernel(table_ptr, h0_ptr, pw_ptr, pb_ptr, g_ptr, b_ptr, w_ptr, out_ptr, N, D, M, L, eps,
                ACT: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, MP: tl.constexpr,
                INTERP: tl.constexpr):
    OP_DT = h0_ptr.dtype.element_ty
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    ms = tl.arange(0, MP)
    mmask = ms < M
    H = tl.zeros((BM, MP), tl.float32)
    for l in range(0, L):
        h_ptr = tl.load(table_ptr + l).to(tl.pointer_type(OP_DT))
        z = _project(h_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, D, M, BM, BD, MP, OP_DT, INTERP)
        ahat, rstd = _normalise(z, mmask, M, eps, ACT)
        g = tl.load(g_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        H += tl.load(w_ptr + l) * (ahat * g[None, :] + b[None, :])
    tl.store(out_ptr + rows64[:, None] * M + ms[None, :], H, mask=rmask[:, None] & mmask[None, :])


@triton.jit
def _bwd_kernel(table_ptr, h0_ptr, dH_ptr, pw_ptr, pb_ptr, g_ptr, b_ptr, w_ptr,
                dz_ptr, dh_ptr, pg_ptr, pbias_ptr, plog_ptr,
                N, D, M, L, rows_per_prog, eps,
                ACT: tl.constexpr, NEED_DH: tl.constexpr, NEED_PARAMS: tl.constexpr,
                BM: tl.constexpr, BD: tl.constexpr, MP: tl.constexpr, INTERP: tl.constexpr):
    OP_DT = h0_ptr.dtype.element_ty
    pid = tl.program_id(0)
    start = pid * rows_per_prog
    end = tl.minimum(N, start + rows_per_prog)
    ms = tl.arange(0, MP)
    mmask = ms < M
    for l in range(0, L):
        h_ptr = tl.load(table_ptr + l).to(tl.pointer_type(OP_DT))
        wl = tl.load(w_ptr + l)
        g = tl.load(g_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        acc_g = tl.zeros((MP,), tl.float32)
        acc_bias = tl.zeros((MP,), tl.float32)
        acc_log = tl.zeros((BM,), tl.float32)
        for r0 in range(start, end, BM):
            rows = r0 + tl.arange(0, BM)
            rmask = rows < end
            rows64 = rows.to(tl.int64)
            z = _project(h_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, D, M, BM, BD, MP, OP_DT, INTERP)
            ahat, rstd = _normalise(z, mmask, M, eps, ACT)
            dH = tl.load(dH_ptr + rows64[:, None] * M + ms[None, :], mask=rmask[:, None] & mmask[None, :],
                         other=0.0).to(tl.float32)
            acc_log += tl.sum(dH * (ahat * g[None, :] + b[None, :]), axis=1)
            do = wl * dH
            acc_g += tl.sum(do * ahat, axis=0)
            dah = do * g[None, :]
            da = rstd[:, None] * (dah - (tl.sum(dah, axis=1)[:, None] + ahat * tl.sum(dah * ahat, axis=1)[:, None]) / M)
            dz = tl.where(mmask[None, :], da * act_grad(z, ACT), 0.0)
            acc_bias += tl.sum(dz, axis=0)  # fp32, before rounding for the GEMMs
            dz = dz.to(OP_DT)
            if NEED_PARAMS:
                tl.store(dz_ptr + tl.cast(l, tl.int64) * N * M + rows64[:, None] * M + ms[None, :], dz,
                         mask=rmask[:, None] & mmask[None, :])
            if NEED_DH:
                w_base = pw_ptr + tl.cast(l, tl.int64) * M * D
                for d0 in range(0, D, BD):
                    cols = d0 + tl.arange(0, BD)
                    cmask = cols < D
                    wt = tl.load(w_base + ms[:, None] * D + cols[None, :], mask=mmask[:, None] & cmask[None, :], other=0.0)
                    dh = mma(dz, wt, tl.zeros((BM, BD), tl.float32), OP_DT, INTERP)
                    tl.store(dh_ptr + tl.cast(l, tl.int64) * N * D + rows64[:, None] * D + cols[None, :], dh,
                             mask=rmask[:, None] & cmask[None, :])
        part = pid.to(tl.int64) * L + l
        tl.store(plog_ptr + part, tl.sum(acc_log, axis=0))
        if NEED_PARAMS:
            tl.store(pg_ptr + part * MP + ms, acc_g)
            tl.store(pbias_ptr + part * MP + ms, acc_bias)


# (BM, BD, num_warps) by padded m, for sm_90: the largest tiles without register spills and
# within shared memory (benchmarks/compile_check.py), except m = 512 backward (224 bytes per
# thread spilled in half precision even at the smallest tile) and some fp32 variants (<= 168
# bytes). fp32 runs IEEE dots without tensor cores and needs smaller tiles. Chosen offline from
# resource counts, not from GPU timings.
_TILES = {  # (fp32, backward) -> {MP: (BM, BD, num_warps)}
    (False, False): {16: (64, 64, 8), 32: (64, 64, 8), 64: (64, 64, 8), 128: (64, 32, 8),
                     256: (32, 32, 8), 512: (16, 32, 8)},
    (False, True): {16: (64, 64, 8), 32: (64, 64, 8), 64: (64, 64, 8), 128: (32, 32, 8),
                    256: (16, 32, 8), 512: (16, 32, 8)},
    (True, False): {16: (32, 32, 8), 32: (32, 32, 8), 64: (32, 32, 8), 128: (16, 16, 8),
                    256: (16, 32, 8), 512: (16, 16, 8)},
    (True, True): {16: (32, 32, 8), 32: (32, 32, 8), 64: (32, 32, 8), 128: (32, 32, 8),
                   256: (16, 32, 8), 512: (16, 16, 8)},
}


def forward(hidden: list[torch.Tensor], proj_w, proj_b, ln_w, ln_b, weights, *, activation: str,
            eps: float) -> torch.Tensor:
    """hidden: L contiguous (N, d) tensors; weights: softmax(layer_logits) in fp32."""
    n, d = hidden[0].shape
    L, m, _ = proj_w.shape
    out = torch.empty((n, m), device=hidden[0].device, dtype=hidden[0].dtype)
    bm, bd, mp, warps = tiles(_TILES, n, d, m, hidden[0].dtype, backward=False)
    _fwd_kernel[(triton.cdiv(n, bm),)](
        pointer_table(hidden), hidden[0], proj_w, proj_b, ln_w, ln_b, weights, out, n, d, m, L, eps,
        ACT=ACT_CODES[activation], BM=bm, BD=bd, MP=mp, INTERP=INTERPRET, num_warps=warps)
    return out


def backward(dH, hidden: list[torch.Tensor], proj_w, proj_b, ln_w, ln_b, weights, *,
             activation: str, eps: float, need_dh: bool, need_params: bool):
    """Returns dh (L, N, d) or None, then fp32 (dproj_w, dproj_b, dln_w, dln_b) or Nones, then
    fp32 per-layer sums g_l = sum dH * LN_l(...) (the caller turns them into logit gradients)."""
    n, d = hidden[0].shape
    L, m, _ = proj_w.shape
    dev, dt = hidden[0].device, hidden[0].dtype
    bm, bd, mp, warps = tiles(_TILES, n, d, m, dt, backward=True)
    # Programs own whole row ranges (a few per SM) so per-layer partials stay in registers.
    progs = max(1, min(triton.cdiv(n, bm), 1 if INTERPRET else 4 * sm_count(dev)))
    rows_per_prog = triton.cdiv(triton.cdiv(n, progs), bm) * bm
    progs = triton.cdiv(n, rows_per_prog)
    empty = hidden[0].new_empty(0)
    dz = torch.empty((L, n, m), device=dev, dtype=dt) if need_params else empty
    dh = torch.empty((L, n, d), device=dev, dtype=dt) if need_dh else empty
    f32 = dict(device=dev, dtype=torch.float32)
    pg = torch.empty((progs, L, mp), **f32) if need_params else empty
    pbias = torch.empty((progs, L, mp), **f32) if need_params else empty
    plog = torch.empty((progs, L), **f32)
    _bwd_kernel[(progs,)](
        pointer_table(hidden), hidden[0], dH, proj_w, proj_b, ln_w, ln_b, weights, dz, dh, pg, pbias, plog,
        n, d, m, L, rows_per_prog, eps,
        ACT=ACT_CODES[activation], NEED_DH=need_dh, NEED_PARAMS=need_params,
        BM=bm, BD=bd, MP=mp, INTERP=INTERPRET, num_warps=warps)
    params: list[Optional[torch.Tensor]] = [None] * 4
    if need_params:
        dpw = weight_grad(dz, hidden)
        # d ln_b[l] = w_l * sum_rows dH: one column sum here instead of L register accumulators
        dlnb = weights[:, None] * dH.float().sum(0)[None, :]
        params = [dpw, pbias.sum(0)[:, :m], pg.sum(0)[:, :m], dlnb]
    return (dh if need_dh else None), params, plog.sum(0)
