"""Tile selection (kernels/_tuning.py): every candidate configuration of every Triton kernel gives
the reference's results (docs/testing.md numerics) when forced, through the interpreter at small
sizes; the grid-fill rule, the selection cache, and the aligned/unaligned pointer-table paths."""
import contextlib
import json

import pytest
import torch

from elp_fast import ops
from elp_fast.ops import _triton
from numerics import assert_all_pass, compare, run
from op_cases import agg_inputs, agg_is_reduced, agg_results, is_reduced, make_inputs, results, wsum_results

pytest.importorskip("triton")


def K(name):
    return _triton.kernels(name)


def _entries(table: dict) -> list:
    """(fp32, padded width, forward config, backward config): every candidate of the forward
    and backward lists at least once, paired in order."""
    out = []
    for fp32 in (False, True):
        for width, fwd in table[(fp32, False)].items():
            bwd = table[(fp32, True)][width]
            out += [(fp32, width, fwd[i % len(fwd)], bwd[i % len(bwd)]) for i in range(max(len(fwd), len(bwd)))]
    return out


def _widths_of(padded: int) -> int:
    """A width with this padded size that is not itself a power of two where possible."""
    return padded if padded <= 16 else padded - 3


def _forced(**configs):
    stack = contextlib.ExitStack()
    for kernel, config in configs.items():
        stack.enter_context(K("_tuning").forced(kernel.replace("__", "."), config))
    return stack


BOTTLENECK = _entries(K("bottleneck_adapter").CANDIDATES)
AGGREGATE = _entries(K("layer_aggregate").CANDIDATES)


@pytest.mark.parametrize("fp32,rp,fwd,bwd", BOTTLENECK, ids=[f"{'fp32' if e[0] else 'bf16'}-r{e[1]}-{e[2]}-{e[3]}"
                                                             for e in BOTTLENECK])
def test_bottleneck_candidate_matches_reference(fp32, rp, fwd, bwd):
    dtype = torch.float32 if fp32 else torch.bfloat16
    bm, bd = max(fwd[0], bwd[0]), max(fwd[1], bwd[1])
    n, d = 2 * bm + 5, bd + 7  # a partial last row block and a partial last column chunk
    variant = ("residual+post_ln", "residual", "plain")[rp.bit_length() % 3]
    inputs, dy = make_inputs(n, d, _widths_of(rp), variant)
    wg = K("weight_grad").CANDIDATES[fp32]
    with _forced(bottleneck_adapter__fwd=fwd, bottleneck_adapter__bwd=bwd,
                 weight_grad=wg[rp.bit_length() % len(wg)]):
        fused, base, gold = results("triton", inputs, dy, "gelu", dtype=dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=is_reduced), f"N={n} d={d} r={rp}")


@pytest.mark.parametrize("fp32,mp,fwd,bwd", AGGREGATE, ids=[f"{'fp32' if e[0] else 'bf16'}-m{e[1]}-{e[2]}-{e[3]}"
                                                            for e in AGGREGATE])
def test_aggregate_candidate_matches_reference(fp32, mp, fwd, bwd):
    dtype = torch.float32 if fp32 else torch.bfloat16
    rows = [c[1] if c[0] == "rows" else c[5] for c in (fwd, bwd)]
    gemm = [c for c in (fwd, bwd) if c[0] == "gemm"]
    n = max(rows + [c[1] for c in gemm]) + 3  # one full row block and a partial one
    d = max([c[2] for c in (fwd, bwd) if c[0] == "rows"] + [c[3] for c in gemm]) + 5
    inputs, dH = agg_inputs(3, n, d, _widths_of(mp))
    with _forced(layer_aggregate__fwd=fwd, layer_aggregate__bwd=bwd):
        fused, base, gold = agg_results("triton", inputs, dH, "gelu", dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"N={n} d={d} m={mp}")


@pytest.mark.parametrize("config", K("weighted_layer_sum").CANDIDATES)
@pytest.mark.parametrize("fp32", [False, True])
def test_weighted_sum_candidate_matches_reference(config, fp32):
    dtype = torch.float32 if fp32 else torch.bfloat16
    inputs, _ = agg_inputs(3, 2 * config[0] // 64 + 1, 64, 8)  # two and a bit blocks of elements
    inputs = dict(hidden_states=inputs["hidden_states"], layer_logits=inputs["layer_logits"])
    dH = torch.randn(inputs["hidden_states"][0].shape, generator=torch.Generator().manual_seed(3))
    with _forced(weighted_layer_sum__fwd=config, weighted_layer_sum__bwd=config):
        fused, base, gold = wsum_results("triton", inputs, dH, dtype)
    assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced), f"{config}")


def test_every_candidate_is_covered():
    """The parametrisations above reach every entry of every candidate table."""
    for table, entries in ((K("bottleneck_adapter").CANDIDATES, BOTTLENECK),
                           (K("layer_aggregate").CANDIDATES, AGGREGATE)):
        for (fp32, backward), widths in table.items():
            for width, configs in widths.items():
                used = {e[3] if backward else e[2] for e in entries if e[0] == fp32 and e[1] == width}
                assert set(configs) <= used, (fp32, backward, width)
    # weight_grad: the bottleneck tests cycle its candidates through the padded r values
    for fp32 in (False, True):
        wg = K("weight_grad").CANDIDATES[fp32]
        assert {wg[rp.bit_length() % len(wg)] for _, rp, _, _ in (e for e in BOTTLENECK if e[0] == fp32)} == set(wg)


# --- the selection rules ---------------------------------------------------------------------

def test_plans_keep_the_candidates_that_fill_the_card():
    plans = K("_tuning").plans
    cands = [(16,), (32,), (64,)]
    # 6,392 rows on 132 SMs: only 16-row tiles reach 2 programs per SM
    assert plans(cands, lambda c: -(-6392 // c[0]), 132) == [(16,)]
    # a million rows: every candidate fills the card, so all are timed
    assert plans(cands, lambda c: -(-1_048_576 // c[0]), 132) == cands
    # tiny inputs: nothing fills the card; the candidates with the largest grid stay
    assert plans(cands, lambda c: -(-20 // c[0]), 132) == [(16,)]


class _FakeCuda:
    type = "cuda"


def test_pick_times_once_then_reads_the_cache(tmp_path, monkeypatch):
    tuning = K("_tuning")
    monkeypatch.setenv("ELP_FAST_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_chosen", {})
    monkeypatch.setattr(tuning, "_disk", None)
    monkeypatch.setattr(tuning, "_device_key", lambda device: "card|triton x")
    timed = []
    speed = {(1,): 3.0, (2,): 1.0, (3,): 2.0}

    def fake_time(launch, device):
        launch()
        return speed[timed[-1]]
    monkeypatch.setattr(tuning, "_time_ms", fake_time)
    launch = timed.append
    before = tuning.selection_seconds()
    assert tuning.pick("k", ("bf16", 64), [(1,), (2,), (3,)], launch, _FakeCuda(), (9,)) == (2,)
    assert timed == [(1,), (2,), (3,)] and tuning.selection_seconds() >= before
    assert tuning.pick("k", ("bf16", 64), [(1,), (2,), (3,)], launch, _FakeCuda(), (9,)) == (2,)
    assert len(timed) == 3  # chosen once per shape class
    stored = json.loads((tmp_path / "tiles.json").read_text())
    assert stored == {"card|triton x": {"k|bf16|64": [2]}}
    # a new process (empty memory) reads the choice from disk without timing
    monkeypatch.setattr(tuning, "_chosen", {})
    monkeypatch.setattr(tuning, "_disk", None)
    assert tuning.pick("k", ("bf16", 64), [(1,), (2,), (3,)], launch, _FakeCuda(), (9,)) == (2,)
    assert len(timed) == 3
    # ELP_FAST_TILES=first: no timing, the first candidate
    monkeypatch.setenv("ELP_FAST_TILES", "first")
    assert tuning.pick("k", ("bf16", 128), [(3,), (1,)], launch, _FakeCuda(), (9,)) == (3,)
    assert len(timed) == 3
    # forced wins over everything; CPU tensors (the interpreter) get the interpreter's tile
    with tuning.forced("k", (7,)):
        assert tuning.pick("k", ("bf16", 64), [(1,)], launch, _FakeCuda(), (9,)) == (7,)
    assert tuning.pick("k", ("bf16", 64), [(1,), (2,)], launch, torch.device("cpu"), (9,)) == (9,)


# --- aligned and unaligned pointer tables ------------------------------------------------------

def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """The same values (differentiably) at a storage offset of one element: contiguous, but not
    16-byte aligned."""
    return torch.cat([t.new_zeros(1), t.reshape(-1)])[1:].view(t.shape)


def _aligned_flags(monkeypatch, module: str, kernel: str) -> list:
    """Records the ALIGNED argument of every launch of `module.kernel`."""
    seen = []
    jit = getattr(K(module), kernel)

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen.append(kw["ALIGNED"])
                return jit[grid](*args, **kw)
            return launch
    monkeypatch.setattr(K(module), kernel, Spy())
    return seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unaligned_hidden_states_take_the_scalar_path(monkeypatch, dtype):
    inputs, dH = agg_inputs(3, 21, 64, 16)
    wsum_inputs = dict(hidden_states=inputs["hidden_states"], layer_logits=inputs["layer_logits"])
    dW = torch.randn(21, 64, generator=torch.Generator().manual_seed(4))
    flags = _aligned_flags(monkeypatch, "layer_aggregate", "_fwd_kernel")
    wsum_flags = _aligned_flags(monkeypatch, "weighted_layer_sum", "_fwd_kernel")

    def agg(backend, misalign):
        def fn(hidden_states, **kw):
            hs = [_misaligned(h) for h in hidden_states] if misalign else hidden_states
            return ops.layer_aggregate(hs, activation="gelu", backend=backend, **kw)
        return fn

    def wsum(backend, misalign):
        def fn(hidden_states, **kw):
            hs = [_misaligned(h) for h in hidden_states] if misalign else hidden_states
            return ops.weighted_layer_sum(hs, backend=backend, **kw)
        return fn
    for misalign in (False, True):
        for make, case, dy, name in ((agg, inputs, dH, "layer_aggregate"), (wsum, wsum_inputs, dW, "wsum")):
            fused = run(make("triton", misalign), case, dy, dtype=dtype)
            base = run(make("reference", False), case, dy, dtype=dtype)
            gold = run(make("reference", False), case, dy, dtype=torch.float64)
            assert_all_pass(compare(fused, base, gold, dtype=dtype, reduced=agg_is_reduced),
                            f"{name} misaligned={misalign}")
        assert flags[-1] is (not misalign) and wsum_flags[-1] is (not misalign)


def test_alignment_rule():
    aligned16 = K("_common").aligned16
    x = torch.zeros(4, 64, dtype=torch.bfloat16)
    assert aligned16([x, x.clone()], 64)
    assert not aligned16([x, _misaligned(x)], 64)
    assert not aligned16([x], 63)  # 126-byte rows: the second row starts off a 16-byte boundary
    assert aligned16([x[:, :63].contiguous().view(-1)])  # flat reads only need the start aligned
