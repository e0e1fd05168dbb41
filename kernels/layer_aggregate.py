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

That row plan keeps a (BM, m) fp32 tile per live value, so wide adapters need BM = 16 and every
16-row program re-reads each layer's whole projection (1 MiB at m = 512, d = 1024) from L2. The
GEMM plan splits the work instead: a tiled GEMM per layer writes z_l = h_l P_l^T + p_l (working
dtype, one (L, N, m) scratch; 128-row tiles, so each projection is read N / 128 times), and an
epilogue applies act + LayerNorm + the weighted sum: the row kernels themselves, reading z
instead of projecting (FROM_Z). Backward: the same GEMM recomputes z, the row kernel writes dz_l
over it, and dh_l = dz_l P_l is the same GEMM kernel again. It is a candidate like any tile
(_tuning.py); at m = 512 it is the only one.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import (ACT_CODES, INTERPRET, act_fwd, act_grad, aligned16, interpreter_tile, mma, pointer_table,
                      pow2, row_class, sm_count, table_pointer)
from ._tuning import pick, plans
from .weight_grad import weight_grad

MAX_M = 512  # the row kernels' (BM, m) fp32 tiles stay in registers


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
def _z(table_ptr, z_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, N, D, M, BM: tl.constexpr, BD: tl.constexpr,
       MP: tl.constexpr, OP_DT: tl.constexpr, ALIGNED: tl.constexpr, FROM_Z: tl.constexpr, INTERP: tl.constexpr):
    """z_l for BM rows, fp32: projected here (the row plan), or read from the GEMM plan's scratch."""
    if FROM_Z:
        return tl.load(z_ptr + tl.cast(l, tl.int64) * N * M + rows64[:, None] * M + ms[None, :],
                       mask=rmask[:, None] & mmask[None, :], other=0.0).to(tl.float32)
    else:
        h_ptr = table_pointer(table_ptr, l, OP_DT, ALIGNED)
        return _project(h_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, D, M, BM, BD, MP, OP_DT, INTERP)


@triton.jit(do_not_specialize=["N"])
def _fwd_kernel(table_ptr, h0_ptr, z_ptr, pw_ptr, pb_ptr, g_ptr, b_ptr, w_ptr, out_ptr, N, D, M, L, eps,
                ACT: tl.constexpr, ALIGNED: tl.constexpr, FROM_Z: tl.constexpr, BM: tl.constexpr, BD: tl.constexpr,
                MP: tl.constexpr, INTERP: tl.constexpr):
    OP_DT = h0_ptr.dtype.element_ty
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    ms = tl.arange(0, MP)
    mmask = ms < M
    H = tl.zeros((BM, MP), tl.float32)
    for l in range(0, L):
        z = _z(table_ptr, z_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, N, D, M, BM, BD, MP, OP_DT, ALIGNED,
               FROM_Z, INTERP)
        ahat, rstd = _normalise(z, mmask, M, eps, ACT)
        g = tl.load(g_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + l * M + ms, mask=mmask, other=0.0).to(tl.float32)
        H += tl.load(w_ptr + l) * (ahat * g[None, :] + b[None, :])
    tl.store(out_ptr + rows64[:, None] * M + ms[None, :], H, mask=rmask[:, None] & mmask[None, :])


@triton.jit
def _row_bwd(z, dH, g, b, wl, rstd, ahat, mmask, M, ACT: tl.constexpr):
    """(dz, per-row logit sums, do = w_l dH) of one row block: LayerNorm and act backward."""
    row_log = tl.sum(dH * (ahat * g[None, :] + b[None, :]), axis=1)
    do = wl * dH
    dah = do * g[None, :]
    da = rstd[:, None] * (dah - (tl.sum(dah, axis=1)[:, None] + ahat * tl.sum(dah * ahat, axis=1)[:, None]) / M)
    return tl.where(mmask[None, :], da * act_grad(z, ACT), 0.0), row_log, do


@triton.jit(do_not_specialize=["N", "rows_per_prog"])
def _bwd_kernel(table_ptr, h0_ptr, z_ptr, dH_ptr, pw_ptr, pb_ptr, g_ptr, b_ptr, w_ptr,
                dz_ptr, dh_ptr, pg_ptr, pbias_ptr, plog_ptr,
                N, D, M, L, rows_per_prog, eps,
                ACT: tl.constexpr, ALIGNED: tl.constexpr, FROM_Z: tl.constexpr, NEED_DH: tl.constexpr,
                NEED_PARAMS: tl.constexpr,
                BM: tl.constexpr, BD: tl.constexpr, MP: tl.constexpr, INTERP: tl.constexpr):
    OP_DT = h0_ptr.dtype.element_ty
    pid = tl.program_id(0)
    start = pid * rows_per_prog
    end = tl.minimum(N, start + rows_per_prog)
    ms = tl.arange(0, MP)
    mmask = ms < M
    for l in range(0, L):
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
            z = _z(table_ptr, z_ptr, pw_ptr, pb_ptr, rows64, rmask, ms, mmask, l, N, D, M, BM, BD, MP, OP_DT,
                   ALIGNED, FROM_Z, INTERP)
            ahat, rstd = _normalise(z, mmask, M, eps, ACT)
            dH = tl.load(dH_ptr + rows64[:, None] * M + ms[None, :], mask=rmask[:, None] & mmask[None, :],
                         other=0.0).to(tl.float32)
            dz, row_log, do = _row_bwd(z, dH, g, b, wl, rstd, ahat, mmask, M, ACT)
            acc_log += row_log
            acc_g += tl.sum(do * ahat, axis=0)
            acc_bias += tl.sum(dz, axis=0)  # fp32, before rounding for the GEMMs
            dz = dz.to(OP_DT)
            if NEED_PARAMS or FROM_Z:  # the GEMM plan's dh = dz P needs it too (over z, in place)
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


# --- the GEMM plan -------------------------------------------------------------------------

@triton.jit(do_not_specialize=["N"])
def _gemm_kernel(a_table, a_ptr, stride_al, b_ptr, stride_bl, stride_bk, stride_bn, bias_ptr, c_ptr,
                 N, K, C, A_TABLE: tl.constexpr, ALIGNED: tl.constexpr, HAS_BIAS: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, INTERP: tl.constexpr):
    """Per layer l (grid axis 2): C_l (N, C) = A_l (N, K) @ B_l (K, C) (+ bias_l), written in the
    working dtype. A_l is row-major (row stride K), from the pointer table or at stride_al; B_l
    is read through strides, so it can be P_l^T (z = h P^T) or P_l (dh = dz P). Column blocks
    vary fastest over the grid: programs running together share A's rows and P_l, both from L2."""
    l = tl.program_id(2)
    OP_DT = c_ptr.dtype.element_ty
    if A_TABLE:
        a_base = table_pointer(a_table, l, OP_DT, ALIGNED)
    else:
        a_base = a_ptr + tl.cast(l, tl.int64) * stride_al
    b_base = b_ptr + tl.cast(l, tl.int64) * stride_bl
    cols = tl.program_id(0) * BN + tl.arange(0, BN)
    rows = tl.program_id(1) * BM + tl.arange(0, BM)
    rmask = rows < N
    cmask = cols < C
    rows64 = rows.to(tl.int64)
    acc = tl.zeros((BM, BN), tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        kmask = ks < K
        at = tl.load(a_base + rows64[:, None] * K + ks[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        bt = tl.load(b_base + ks[:, None] * stride_bk + cols[None, :] * stride_bn,
                     mask=kmask[:, None] & cmask[None, :], other=0.0)
        acc = mma(at, bt, acc, OP_DT, INTERP)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + l * C + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    out = c_ptr + tl.cast(l, tl.int64) * N * C + rows64[:, None] * C + cols[None, :]
    tl.store(out, acc, mask=rmask[:, None] & cmask[None, :])


# Candidates per (fp32, backward) and padded m, timed on the first call (_tuning.py):
# ("rows", BM, BD, num_warps) for the row plan, ("gemm", BM, BN, BK, num_warps, epilogue BM,
# epilogue num_warps) for the GEMM plan. Every candidate compiles for sm_90 without register
# spills under the supported Triton versions (benchmarks/compile_check.py; tables in
# benchmarks/results/). The row plan at m = 512 spills at any tile: there the GEMM plan is the
# only candidate. fp32 runs IEEE dots without tensor cores, which needs smaller tiles.
_GEMM_HALF = ("gemm", 128, 128, 64, 8, 16, 8)
_GEMM_FP32 = ("gemm", 64, 64, 32, 8, 8, 8)
CANDIDATES = {  # (fp32, backward) -> {MP: [config, ...]}
    (False, False): {**{mp: [("rows", 16, 64, 4), ("rows", 32, 64, 8), ("rows", 64, 64, 8)] for mp in (16, 32, 64)},
                     128: [("rows", 16, 64, 8), ("rows", 16, 32, 16), ("rows", 32, 32, 8), _GEMM_HALF],
                     256: [("rows", 16, 32, 4), ("rows", 16, 32, 16), _GEMM_HALF], 512: [_GEMM_HALF]},
    (False, True): {**{mp: [("rows", 16, 64, 4), ("rows", 32, 64, 8), ("rows", 64, 64, 8)] for mp in (16, 32, 64)},
                    128: [("rows", 16, 32, 4), ("rows", 32, 32, 8), _GEMM_HALF],
                    256: [("rows", 16, 32, 8), _GEMM_HALF], 512: [_GEMM_HALF]},
    (True, False): {16: [("rows", 16, 32, 4), ("rows", 16, 32, 8)],
                    **{mp: [("rows", 16, 32, 4), ("rows", 32, 32, 8)] for mp in (32, 64)},
                    128: [("rows", 16, 16, 8), _GEMM_FP32], 256: [("rows", 16, 16, 8), _GEMM_FP32],
                    512: [_GEMM_FP32]},
    (True, True): {16: [("rows", 16, 32, 4), ("rows", 32, 16, 8)], 32: [("rows", 16, 32, 4), ("rows", 32, 32, 16)],
                   64: [("rows", 16, 32, 8), ("rows", 32, 16, 8)], 128: [("rows", 16, 16, 4), _GEMM_FP32],
                   256: [("rows", 16, 16, 8), _GEMM_FP32], 512: [_GEMM_FP32]},
}


def _row_tile(config) -> tuple[int, int, int]:
    """(BM, BD, num_warps) of a candidate's row kernel: the row plan's tile, or the GEMM plan's
    epilogue (which reads z and so needs no BD)."""
    return tuple(config[1:4]) if config[0] == "rows" else (config[5], 16, config[6])


def _programs(config, n: int, sms: int, backward: bool) -> int:
    """Programs of the candidate's row kernel: its smallest launch, the one that decides how
    full the card is (backward programs are persistent, at most 4 per SM)."""
    blocks = triton.cdiv(n, _row_tile(config)[0])
    return min(blocks, 4 * sms) if backward else blocks


def _plan(hidden, m, backward: bool):
    n, d = hidden[0].shape
    dev, dt = hidden[0].device, hidden[0].dtype
    mp = pow2(m)
    sms = sm_count(dev)
    cands = plans(CANDIDATES[(dt == torch.float32, backward)][mp], lambda c: _programs(c, n, sms, backward), sms)
    aligned = aligned16(hidden, d)
    bm, bd, warps = interpreter_tile(n, d)
    shape_class = (str(dt)[6:], mp, d, len(hidden), aligned, row_class(n))
    return cands, ("rows", bm, bd, warps), shape_class, mp, aligned, sms


def _gemm(a, b, *, out, stride_bl, stride_bk, stride_bn, k, c, bias=None, aligned=False, config):
    """out (L, N, c) = A_l @ B_l (+ bias) per layer: A is a list of (N, k) tensors (pointer table)
    or an (L, N, k) tensor."""
    _, bm, bn, bk, warps = config[:5]
    table = isinstance(a, list)
    n = a[0].shape[0] if table else a.shape[1]
    layers = len(a) if table else a.shape[0]
    first = a[0] if table else a
    _gemm_kernel[(triton.cdiv(c, bn), triton.cdiv(n, bm), layers)](
        pointer_table(a) if table else first, first, 0 if table else n * k, b, stride_bl, stride_bk, stride_bn,
        bias if bias is not None else b, out, n, k, c,
        A_TABLE=table, ALIGNED=aligned, HAS_BIAS=bias is not None, BM=bm, BN=bn, BK=bk, INTERP=INTERPRET,
        num_warps=warps)
    return out


def _project_all(hidden, proj_w, proj_b, aligned, config):
    """z (L, N, m) = h_l P_l^T + p_l, every layer, in the working dtype."""
    n, d = hidden[0].shape
    L, m, _ = proj_w.shape
    z = torch.empty((L, n, m), device=hidden[0].device, dtype=hidden[0].dtype)
    return _gemm(hidden, proj_w, out=z, stride_bl=m * d, stride_bk=1, stride_bn=d, k=d, c=m, bias=proj_b,
                 aligned=aligned, config=config)


def forward(hidden: list[torch.Tensor], proj_w, proj_b, ln_w, ln_b, weights, *, activation: str,
            eps: float) -> torch.Tensor:
    """hidden: L contiguous (N, d) tensors; weights: softmax(layer_logits) in fp32."""
    n, d = hidden[0].shape
    L, m, _ = proj_w.shape
    out = torch.empty((n, m), device=hidden[0].device, dtype=hidden[0].dtype)
    cands, interp, shape_class, mp, aligned, _ = _plan(hidden, m, backward=False)
    table = pointer_table(hidden)

    def launch(config):
        bm, bd, warps = _row_tile(config)
        # The GEMM plan: z from the GEMM, then this kernel as its epilogue (the row plan: unused).
        z = _project_all(hidden, proj_w, proj_b, aligned, config) if config[0] == "gemm" else hidden[0]
        _fwd_kernel[(triton.cdiv(n, bm),)](
            table, hidden[0], z, proj_w, proj_b, ln_w, ln_b, weights, out, n, d, m, L, eps,
            ACT=ACT_CODES[activation], ALIGNED=aligned, FROM_Z=config[0] == "gemm", BM=bm, BD=bd, MP=mp,
            INTERP=INTERPRET, num_warps=warps)
    launch(pick("layer_aggregate.fwd", shape_class, cands, launch, hidden[0].device, interp))
    return out


def backward(dH, hidden: list[torch.Tensor], proj_w, proj_b, ln_w, ln_b, weights, *,
             activation: str, eps: float, need_dh: bool, need_params: bool):
    """Returns dh (L, N, d) or None, then fp32 (dproj_w, dproj_b, dln_w, dln_b) or Nones, then
    fp32 per-layer sums g_l = sum dH * LN_l(...) (the caller turns them into logit gradients)."""
    n, d = hidden[0].shape
    L, m, _ = proj_w.shape
    dev, dt = hidden[0].device, hidden[0].dtype
    cands, interp, shape_class, mp, aligned, sms = _plan(hidden, m, backward=True)
    table = pointer_table(hidden)
    empty = hidden[0].new_empty(0)
    f32 = dict(device=dev, dtype=torch.float32)
    result = {}

    def partials(progs):
        return (torch.empty((progs, L, mp), **f32), torch.empty((progs, L, mp), **f32),
                torch.empty((progs, L), **f32))

    def row_split(bm):
        # Programs own whole row ranges (a few per SM) so per-layer partials stay in registers.
        progs = max(1, min(triton.cdiv(n, bm), 1 if INTERPRET else 4 * sms))
        rows_per_prog = triton.cdiv(triton.cdiv(n, progs), bm) * bm
        return triton.cdiv(n, rows_per_prog), rows_per_prog

    def launch(config):
        gemm = config[0] == "gemm"
        bm, bd, warps = _row_tile(config)
        if gemm:  # z from the GEMM; the row kernel, as its epilogue, writes dz over it
            z = dz = _project_all(hidden, proj_w, proj_b, aligned, config)
        else:
            z = hidden[0]  # unused
            dz = torch.empty((L, n, m), device=dev, dtype=dt) if need_params else empty
        progs, rows_per_prog = row_split(bm)
        dh = torch.empty((L, n, d), device=dev, dtype=dt) if need_dh else empty
        pg, pbias, plog = partials(progs)
        _bwd_kernel[(progs,)](
            table, hidden[0], z, dH, proj_w, proj_b, ln_w, ln_b, weights, dz, dh, pg, pbias, plog,
            n, d, m, L, rows_per_prog, eps,
            ACT=ACT_CODES[activation], ALIGNED=aligned, FROM_Z=gemm, NEED_DH=need_dh and not gemm,
            NEED_PARAMS=need_params, BM=bm, BD=bd, MP=mp, INTERP=INTERPRET, num_warps=warps)
        if gemm and need_dh:  # dh_l = dz_l P_l
            _gemm(dz, proj_w, out=dh, stride_bl=m * d, stride_bk=d, stride_bn=1, k=m, c=d, config=config)
        result.update(dz=dz, dh=dh, pg=pg, pbias=pbias, plog=plog)
    launch(pick("layer_aggregate.bwd", (*shape_class, need_dh, need_params), cands, launch, dev, interp))
    params: list[Optional[torch.Tensor]] = [None] * 4
    if need_params:
        dpw = weight_grad(result["dz"], hidden)
        # d ln_b[l] = w_l * sum_rows dH: one column sum here instead of L register accumulators
        dlnb = weights[:, None] * dH.float().sum(0)[None, :]
        params = [dpw, result["pbias"].sum(0)[:, :m], result["pg"].sum(0)[:, :m], dlnb]
    return (result["dh"] if need_dh else None), params, result["plog"].sum(0)
