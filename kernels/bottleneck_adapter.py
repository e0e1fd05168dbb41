"""Fused E-adapter: bottleneck + inner LayerNorm + residual (+ post-LN), forward and backward.

    z = x Wd^T + bd;  a = act(z);  v = a Wu^T + bu;  u = LN(v; g, b)
    s = x + u (+ res);  y = s, or LN(s; g2, b2) with a post-LN

One program owns BM rows and walks the feature dim d in chunks of BD, so any d works and only
(BM, r) and (BM, BD) tiles live in registers. LayerNorm needs whole-row statistics, so v is
recomputed from a (one small GEMM per chunk) instead of being written out: the adapter is
bandwidth-bound for r up to ~200 on H100/H200, and recomputing is cheaper than a round trip of v.

Saved for backward besides the inputs: z in the working dtype (r elements per token) and fp32
(mean, rstd) of the inner LayerNorm, i.e. 2r + 8 bytes per token in fp16/bf16. With a post-LN,
the fused LN_final's (mean, rstd) add 8 bytes (eager LN_final alone saves its 2d-byte input).

Backward: a row kernel recomputes v and forms dx, the residual gradient, dv and dz, plus per-
program partial column sums for the LayerNorm parameters; the weight gradients dWu = dv^T act(z)
and dWd = dz^T x are GEMMs over the rows in weight_grad.py ("two-pass dW", docs/performance.md 1).
All reductions are partial buffers summed in a fixed order: deterministic, no atomics.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import (ACT_CODES, INTERPRET, act_fwd, act_grad, interpreter_tile, mma, pow2, row_class,
                      sm_count)
from ._tuning import pick, plans
from .weight_grad import weight_grad

MAX_R = 512  # (BM, r) fp32 tiles stay in registers; larger bottlenecks use another backend


@triton.jit
def _v_chunk(a, wu_ptr, bu_ptr, cols, cmask, ks, kmask, R, BM: tl.constexpr, BD: tl.constexpr,
             OP_DT: tl.constexpr, INTERP: tl.constexpr):
    """v[:, cols] = a @ Wu[cols, :]^T + bu[cols] (fp32, zero in padded columns)."""
    wt = tl.load(wu_ptr + cols[None, :] * R + ks[:, None], mask=cmask[None, :] & kmask[:, None], other=0.0)
    v = mma(a, wt, tl.zeros((BM, BD), tl.float32), OP_DT, INTERP)
    return v + tl.load(bu_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _merge_stats(mean, m2, t, cmask, d0, D, BD: tl.constexpr):
    """Chan's parallel update of a row's (mean, M2) with one chunk: stable for any offset."""
    nb = tl.minimum(D - d0, BD) * 1.0  # (the loop index is a Python int in the interpreter)
    na = d0 * 1.0
    cmean = tl.sum(tl.where(cmask[None, :], t, 0.0), axis=1) / nb
    c = tl.where(cmask[None, :], t - cmean[:, None], 0.0)
    cm2 = tl.sum(c * c, axis=1)
    delta = cmean - mean
    n = na + nb
    return mean + delta * (nb / n), m2 + cm2 + delta * delta * (na * nb / n)


@triton.jit
def _load_tile(ptr, rows64, cols, rmask, cmask, D):
    return tl.load(ptr + rows64[:, None] * D + cols[None, :], mask=rmask[:, None] & cmask[None, :],
                   other=0.0).to(tl.float32)


@triton.jit
def _s_chunk(a, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, mean1, rstd1, rows64, rmask, cols,
             cmask, ks, kmask, D, R, HAS_RES: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
             OP_DT: tl.constexpr, INTERP: tl.constexpr):
    """(vhat, s) for one chunk: the normalised bottleneck output and x + u (+ res)."""
    v = _v_chunk(a, wu_ptr, bu_ptr, cols, cmask, ks, kmask, R, BM, BD, OP_DT, INTERP)
    vhat = (v - mean1[:, None]) * rstd1[:, None]
    g = tl.load(g_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    s = _load_tile(x_ptr, rows64, cols, rmask, cmask, D) + vhat * g[None, :] + b[None, :]
    if HAS_RES:
        s += _load_tile(res_ptr, rows64, cols, rmask, cmask, D)
    return vhat, s


@triton.jit(do_not_specialize=["N"])  # any row count: one compiled variant
def _fwd_kernel(x_ptr, wd_ptr, bd_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, res_ptr, g2_ptr, b2_ptr,
                y_ptr, z_ptr, stats_ptr, N, D, R, eps,
                ACT: tl.constexpr, HAS_RES: tl.constexpr, HAS_POST: tl.constexpr,
                SAVE: tl.constexpr, NSTAT: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                RP: tl.constexpr, INTERP: tl.constexpr):
    OP_DT = x_ptr.dtype.element_ty
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    ks = tl.arange(0, RP)
    kmask = ks < R
    # z = x Wd^T + bd, rounded to the working dtype: that rounded z is what backward sees.
    acc = tl.zeros((BM, RP), tl.float32)
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        xt = tl.load(x_ptr + rows64[:, None] * D + cols[None, :], mask=rmask[:, None] & cmask[None, :], other=0.0)
        wt = tl.load(wd_ptr + ks[None, :] * D + cols[:, None], mask=kmask[None, :] & cmask[:, None], other=0.0)
        acc = mma(xt, wt, acc, OP_DT, INTERP)
    z = (acc + tl.load(bd_ptr + ks, mask=kmask, other=0.0).to(tl.float32)[None, :]).to(OP_DT)
    if SAVE:
        tl.store(z_ptr + rows64[:, None] * R + ks[None, :], z, mask=rmask[:, None] & kmask[None, :])
    a = act_fwd(z.to(tl.float32), ACT).to(OP_DT)  # padded k: z = 0, act(0) = 0
    # Pass 1: statistics of v.
    mean1 = tl.zeros((BM,), tl.float32)
    m2 = tl.zeros((BM,), tl.float32)
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        v = _v_chunk(a, wu_ptr, bu_ptr, cols, cmask, ks, kmask, R, BM, BD, OP_DT, INTERP)
        mean1, m2 = _merge_stats(mean1, m2, v, cmask, d0, D, BD)
    rstd1 = 1.0 / tl.sqrt(m2 / D + eps)
    mean2 = mean1
    rstd2 = rstd1
    if HAS_POST:
        # Pass 2: statistics of s = x + u (+ res).
        mean2 = tl.zeros((BM,), tl.float32)
        m2 = tl.zeros((BM,), tl.float32)
        for d0 in range(0, D, BD):
            cols = d0 + tl.arange(0, BD)
            cmask = cols < D
            vhat, s = _s_chunk(a, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, mean1, rstd1, rows64,
                               rmask, cols, cmask, ks, kmask, D, R, HAS_RES, BM, BD, OP_DT, INTERP)
            mean2, m2 = _merge_stats(mean2, m2, s, cmask, d0, D, BD)
        rstd2 = 1.0 / tl.sqrt(m2 / D + eps)
    # Last pass: write y.
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        vhat, s = _s_chunk(a, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, mean1, rstd1, rows64,
                           rmask, cols, cmask, ks, kmask, D, R, HAS_RES, BM, BD, OP_DT, INTERP)
        if HAS_POST:
            g2 = tl.load(g2_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            b2 = tl.load(b2_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
            s = (s - mean2[:, None]) * rstd2[:, None] * g2[None, :] + b2[None, :]
        tl.store(y_ptr + rows64[:, None] * D + cols[None, :], s, mask=rmask[:, None] & cmask[None, :])
    if SAVE:
        tl.store(stats_ptr + rows64 * NSTAT, mean1, mask=rmask)
        tl.store(stats_ptr + rows64 * NSTAT + 1, rstd1, mask=rmask)
        if HAS_POST:
            tl.store(stats_ptr + rows64 * NSTAT + 2, mean2, mask=rmask)
            tl.store(stats_ptr + rows64 * NSTAT + 3, rstd2, mask=rmask)


@triton.jit
def _ds_chunk(a, dy_ptr, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, g2_ptr, mean1, rstd1,
              mean2, rstd2, c1, c2, rows64, rmask, cols, cmask, ks, kmask, D, R,
              HAS_RES: tl.constexpr, HAS_POST: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
              OP_DT: tl.constexpr, INTERP: tl.constexpr):
    """(vhat, ds): the gradient reaching s = x + u (+ res) for one chunk."""
    dy = _load_tile(dy_ptr, rows64, cols, rmask, cmask, D)
    if HAS_POST:
        vhat, s = _s_chunk(a, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, mean1, rstd1, rows64,
                           rmask, cols, cmask, ks, kmask, D, R, HAS_RES, BM, BD, OP_DT, INTERP)
        shat = (s - mean2[:, None]) * rstd2[:, None]
        gy = dy * tl.load(g2_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        ds = rstd2[:, None] * (gy - (c1[:, None] + shat * c2[:, None]) / D)
        ds = tl.where(cmask[None, :], ds, 0.0)
    else:
        v = _v_chunk(a, wu_ptr, bu_ptr, cols, cmask, ks, kmask, R, BM, BD, OP_DT, INTERP)
        vhat = (v - mean1[:, None]) * rstd1[:, None]
        ds = dy
    return vhat, ds


@triton.jit(do_not_specialize=["N"])
def _bwd_kernel(dy_ptr, x_ptr, res_ptr, z_ptr, stats_ptr, wd_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr,
                g2_ptr, dx_ptr, dres_ptr, dv_ptr, dz_ptr, pg_ptr, pb_ptr, pg2_ptr, pb2_ptr,
                pbu_ptr, pbd_ptr, N, D, R,
                ACT: tl.constexpr, HAS_RES: tl.constexpr, HAS_POST: tl.constexpr,
                NEED_DX: tl.constexpr, NEED_DRES: tl.constexpr, NEED_PARAMS: tl.constexpr,
                NSTAT: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr, RP: tl.constexpr,
                INTERP: tl.constexpr):
    OP_DT = x_ptr.dtype.element_ty
    pid = tl.program_id(0)
    rows = pid * BM + tl.arange(0, BM)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    ks = tl.arange(0, RP)
    kmask = ks < R
    zmask = rmask[:, None] & kmask[None, :]
    # Only a = act(z) in the working dtype stays live through the passes (registers are the
    # limit here); z itself is read again for act'(z) at the end.
    a = act_fwd(tl.load(z_ptr + rows64[:, None] * R + ks[None, :], mask=zmask, other=0.0).to(tl.float32), ACT).to(OP_DT)
    mean1 = tl.load(stats_ptr + rows64 * NSTAT, mask=rmask, other=0.0)
    rstd1 = tl.load(stats_ptr + rows64 * NSTAT + 1, mask=rmask, other=0.0)
    mean2 = mean1
    rstd2 = rstd1
    zero = tl.zeros((BM,), tl.float32)
    c1 = zero
    c2 = zero
    prow = pid.to(tl.int64) * D
    if HAS_POST:
        mean2 = tl.load(stats_ptr + rows64 * NSTAT + 2, mask=rmask, other=0.0)
        rstd2 = tl.load(stats_ptr + rows64 * NSTAT + 3, mask=rmask, other=0.0)
        # Row sums of the post-LN backward: c1 = sum dy*g2, c2 = sum dy*g2*shat.
        for d0 in range(0, D, BD):
            cols = d0 + tl.arange(0, BD)
            cmask = cols < D
            vhat, s = _s_chunk(a, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, mean1, rstd1, rows64,
                               rmask, cols, cmask, ks, kmask, D, R, HAS_RES, BM, BD, OP_DT, INTERP)
            shat = (s - mean2[:, None]) * rstd2[:, None]
            dy = _load_tile(dy_ptr, rows64, cols, rmask, cmask, D)
            gy = dy * tl.load(g2_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
            c1 += tl.sum(gy, axis=1)
            c2 += tl.sum(gy * shat, axis=1)
            if NEED_PARAMS:
                tl.store(pg2_ptr + prow + cols, tl.sum(dy * shat, axis=0), mask=cmask)
                tl.store(pb2_ptr + prow + cols, tl.sum(dy, axis=0), mask=cmask)
    # Row sums of the inner LN backward: c3 = sum ds*g, c4 = sum ds*g*vhat; ds goes to res.
    c3 = zero
    c4 = zero
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        vhat, ds = _ds_chunk(a, dy_ptr, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, g2_ptr, mean1,
                             rstd1, mean2, rstd2, c1, c2, rows64, rmask, cols, cmask, ks, kmask, D, R,
                             HAS_RES, HAS_POST, BM, BD, OP_DT, INTERP)
        gds = ds * tl.load(g_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        c3 += tl.sum(gds, axis=1)
        c4 += tl.sum(gds * vhat, axis=1)
        if NEED_DRES:
            tl.store(dres_ptr + rows64[:, None] * D + cols[None, :], ds, mask=rmask[:, None] & cmask[None, :])
        if NEED_PARAMS:
            tl.store(pg_ptr + prow + cols, tl.sum(ds * vhat, axis=0), mask=cmask)  # padded rows: ds = 0
            tl.store(pb_ptr + prow + cols, tl.sum(ds, axis=0), mask=cmask)
    # dv (kept for dWu) and da = dv Wu.
    da = tl.zeros((BM, RP), tl.float32)
    for d0 in range(0, D, BD):
        cols = d0 + tl.arange(0, BD)
        cmask = cols < D
        vhat, ds = _ds_chunk(a, dy_ptr, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, g2_ptr, mean1,
                             rstd1, mean2, rstd2, c1, c2, rows64, rmask, cols, cmask, ks, kmask, D, R,
                             HAS_RES, HAS_POST, BM, BD, OP_DT, INTERP)
        g = tl.load(g_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        dv = rstd1[:, None] * (ds * g[None, :] - (c3[:, None] + vhat * c4[:, None]) / D)
        dv = tl.where(cmask[None, :], dv, 0.0)
        if NEED_PARAMS:  # bias gradients from the fp32 values, before rounding for the GEMMs
            tl.store(pbu_ptr + prow + cols, tl.sum(dv, axis=0), mask=cmask)
        dv = dv.to(OP_DT)
        if NEED_PARAMS:
            tl.store(dv_ptr + rows64[:, None] * D + cols[None, :], dv, mask=rmask[:, None] & cmask[None, :])
        wt = tl.load(wu_ptr + cols[:, None] * R + ks[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        da = mma(dv, wt, da, OP_DT, INTERP)
    z = tl.load(z_ptr + rows64[:, None] * R + ks[None, :], mask=zmask, other=0.0).to(tl.float32)
    dz = tl.where(kmask[None, :], da * act_grad(z, ACT), 0.0)
    if NEED_PARAMS:
        tl.store(pbd_ptr + pid.to(tl.int64) * R + ks, tl.sum(dz, axis=0), mask=kmask)
    dz = dz.to(OP_DT)
    if NEED_PARAMS:
        tl.store(dz_ptr + rows64[:, None] * R + ks[None, :], dz, mask=rmask[:, None] & kmask[None, :])
    if NEED_DX:
        for d0 in range(0, D, BD):
            cols = d0 + tl.arange(0, BD)
            cmask = cols < D
            if HAS_POST:
                vhat, ds = _ds_chunk(a, dy_ptr, x_ptr, res_ptr, wu_ptr, bu_ptr, g_ptr, b_ptr, g2_ptr,
                                     mean1, rstd1, mean2, rstd2, c1, c2, rows64, rmask, cols, cmask, ks,
                                     kmask, D, R, HAS_RES, HAS_POST, BM, BD, OP_DT, INTERP)
            else:  # ds = dy: no recomputation of v needed here
                ds = _load_tile(dy_ptr, rows64, cols, rmask, cmask, D)
            wt = tl.load(wd_ptr + ks[:, None] * D + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
            dx = mma(dz, wt, ds, OP_DT, INTERP)
            tl.store(dx_ptr + rows64[:, None] * D + cols[None, :], dx, mask=rmask[:, None] & cmask[None, :])


# Candidate (BM, BD, num_warps) per (fp32, backward) and padded r, timed on the first call
# (_tuning.py). Every candidate compiles for sm_90 without register spills under Triton 3.6 and
# 3.9 (benchmarks/compile_check.py; tables in benchmarks/results/), but for r = 512 (16-bit
# backward, fp32 forward), where no tile of these kernels is spill-free under both and Triton 3.6
# spills 8 bytes per thread (compile_check.ALLOWED_SPILLS). 16-row tiles
# are there for the realistic step sizes: 6,392 tokens fill 132 SMs twice only with them. fp32
# runs IEEE dots without tensor cores, which needs smaller tiles.
CANDIDATES = {  # (fp32, backward) -> {RP: [(BM, BD, num_warps), ...]}
    (False, False): {**{rp: [(16, 64, 4), (32, 64, 4), (64, 64, 8)] for rp in (16, 32, 64, 128)},
                     256: [(16, 64, 4), (32, 32, 8)], 512: [(16, 64, 8), (32, 64, 8)]},
    (False, True): {16: [(16, 32, 4), (32, 64, 8), (64, 64, 8)],
                    **{rp: [(16, 64, 4), (32, 64, 8), (64, 64, 8)] for rp in (32, 64)},
                    128: [(16, 64, 4), (32, 32, 8), (64, 32, 8)], 256: [(16, 32, 4), (32, 32, 8)],
                    512: [(16, 16, 8)]},
    (True, False): {**{rp: [(16, 32, 8), (16, 16, 8)] for rp in (16, 32, 64)},
                    128: [(16, 32, 8), (16, 16, 4)], 256: [(16, 32, 8)], 512: [(16, 16, 8)]},
    (True, True): {16: [(16, 16, 8), (16, 32, 8)], 32: [(16, 16, 8)], 64: [(16, 16, 8), (16, 32, 8)],
                   128: [(16, 16, 8)], 256: [(16, 32, 8)], 512: [(16, 16, 8)]},
}


def _plan(n, d, r, dtype, backward: bool, device):
    """(candidates that fill the card, the interpreter's tile, shape class, RP)."""
    rp = pow2(r)
    cands = plans(CANDIDATES[(dtype == torch.float32, backward)][rp], lambda c: triton.cdiv(n, c[0]),
                  sm_count(device))
    return cands, interpreter_tile(n, d), (str(dtype)[6:], rp, d, row_class(n)), rp


def forward(x, down_w, down_b, up_w, up_b, ln_w, ln_b, residual, post_ln_w, post_ln_b, *,
            activation: str, eps: float, save: bool):
    """x: (N, d) contiguous. Returns y (N, d) and, when save, z (N, r) and fp32 stats (N, 2|4)."""
    n, d = x.shape
    r = down_w.shape[0]
    post = post_ln_w is not None
    nstat = 4 if post else 2
    y = torch.empty_like(x)
    z = torch.empty((n, r) if save else (0,), device=x.device, dtype=x.dtype)
    stats = torch.empty((n, nstat) if save else (0,), device=x.device, dtype=torch.float32)
    cands, interp, shape_class, rp = _plan(n, d, r, x.dtype, False, x.device)

    def launch(config):
        bm, bd, warps = config
        _fwd_kernel[(triton.cdiv(n, bm),)](
            x, down_w, down_b, up_w, up_b, ln_w, ln_b,
            residual if residual is not None else x,
            post_ln_w if post else x, post_ln_b if post else x,
            y, z, stats, n, d, r, eps,
            ACT=ACT_CODES[activation], HAS_RES=residual is not None, HAS_POST=post, SAVE=save,
            NSTAT=nstat, BM=bm, BD=bd, RP=rp, INTERP=INTERPRET, num_warps=warps)
    launch(pick("bottleneck_adapter.fwd", (*shape_class, residual is not None, post, save), cands, launch,
                x.device, interp))
    return y, z, stats


def backward(dy, x, z, stats, down_w, up_w, up_b, ln_w, ln_b, residual, post_ln_w, *,
             activation: str, need_dx: bool, need_dres: bool, need_params: bool):
    """Gradients of forward(). Returns dx, dres, then (dWd, dbd, dWu, dbu, dg, db, dg2, db2) in
    fp32 (None where not needed). dres is only computed here with a post-LN; without one it
    equals dy and the caller uses dy."""
    n, d = x.shape
    r = down_w.shape[0]
    post = post_ln_w is not None
    cands, interp, shape_class, rp = _plan(n, d, r, x.dtype, True, x.device)
    empty = x.new_empty(0)
    dx = torch.empty_like(x) if need_dx else empty
    dres = torch.empty_like(x) if need_dres else empty
    dv = torch.empty_like(x) if need_params else empty
    dz = torch.empty((n, r), device=x.device, dtype=x.dtype) if need_params else empty
    partials = {}

    def launch(config):
        bm, bd, warps = config
        blocks = triton.cdiv(n, bm)
        f32 = dict(device=x.device, dtype=torch.float32)
        pg, pb, pbu = ((torch.empty((blocks, d), **f32) for _ in range(3)) if need_params
                       else (empty, empty, empty))
        pg2, pb2 = (torch.empty((blocks, d), **f32) for _ in range(2)) if need_params and post else (empty, empty)
        pbd = torch.empty((blocks, r), **f32) if need_params else empty
        _bwd_kernel[(blocks,)](
            dy, x, residual if residual is not None else x, z, stats, down_w, up_w, up_b, ln_w, ln_b,
            post_ln_w if post else x,
            dx, dres, dv, dz, pg, pb, pg2, pb2, pbu, pbd, n, d, r,
            ACT=ACT_CODES[activation], HAS_RES=residual is not None, HAS_POST=post,
            NEED_DX=need_dx, NEED_DRES=need_dres, NEED_PARAMS=need_params,
            NSTAT=stats.shape[1], BM=bm, BD=bd, RP=rp, INTERP=INTERPRET, num_warps=warps)
        partials.update(pg=pg, pb=pb, pg2=pg2, pb2=pb2, pbu=pbu, pbd=pbd)
    launch(pick("bottleneck_adapter.bwd", (*shape_class, residual is not None, post, need_dx, need_dres,
                                           need_params), cands, launch, x.device, interp))
    pg, pb, pg2, pb2, pbu, pbd = (partials[k] for k in ("pg", "pb", "pg2", "pb2", "pbu", "pbd"))
    grads: list[Optional[torch.Tensor]] = [None] * 8
    if need_params:
        dwu = weight_grad(dv[None], z[None], b_act=ACT_CODES[activation])[0]
        dwd = weight_grad(dz[None], x[None])[0]
        grads[:6] = [dwd, pbd.sum(0), dwu, pbu.sum(0), pg.sum(0), pb.sum(0)]
        if post:
            grads[6:] = [pg2.sum(0), pb2.sum(0)]
    return (dx if need_dx else None), (dres if need_dres else None), grads
