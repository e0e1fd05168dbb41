"""Batching by length under an audio-seconds budget, and the engine's batch plan."""
import pytest
import torch

from elp_fast.data import ToneDataset
from elp_fast.data.batching import pack_by_length
from elp_fast.engine.data import BatchPlan, StepBatches, locate


def test_pack_by_length_respects_the_budget_and_covers_everything():
    g = torch.Generator().manual_seed(0)
    durations = [float(d) for d in torch.rand(500, generator=g) * 9 + 1]  # 1-10 s
    order = torch.randperm(500, generator=g).tolist()
    batches = pack_by_length(order, durations, budget=40.0, max_items=16, generator=g, bucket=100)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) * max(durations[i] for i in b) <= 40.0 and len(b) <= 16
    padded = sum(len(b) * max(durations[i] for i in b) for b in batches)
    assert sum(durations) / padded > 0.9, "sorting within buckets keeps padding small"
    # an utterance longer than the budget is a batch of its own
    assert pack_by_length([0, 1], [50.0, 1.0], budget=40.0, max_items=8, generator=g) in ([[1], [0]], [[0], [1]])
    with pytest.raises(ValueError, match="budget must be > 0"):
        pack_by_length([0], [1.0], budget=0, max_items=1, generator=g)


def test_fixed_plan_steps_and_resume_position():
    plan = BatchPlan(size=10, micro=2, seed=3)
    assert len(plan.epoch(0)) == 5 and all(len(b) == 2 for b in plan.epoch(0))
    # 2 processes x 1 accumulation: 2 steps per epoch (the fifth micro-batch is left over)
    seen = [list(StepBatches(plan, accum=1, world=2, rank=r, epoch=0, first=0)) for r in (0, 1)]
    assert seen[0] == [plan.epoch(0)[0], plan.epoch(0)[2]] and seen[1] == [plan.epoch(0)[1], plan.epoch(0)[3]]
    assert locate(plan, per_step=2, step=5) == (2, 1)  # epoch 2, its second step
    later = StepBatches(plan, accum=1, world=2, rank=0, epoch=2, first=1)
    assert list(later) == [plan.epoch(2)[2]]


def test_budget_plan_from_durations():
    data = ToneDataset(64, seconds=1.0)
    plan = BatchPlan(len(data), micro=32, seed=0, durations=data.durations(), budget=4.0)
    batches = plan.epoch(0)
    assert sorted(i for b in batches for i in b) == list(range(64))
    assert all(len(b) * max(data.durations()[i] for i in b) <= 4.0 for b in batches)
    assert plan.epoch(0) is batches and plan.epoch(1) != batches
    with pytest.raises(ValueError, match="fewer than the 64 one optimizer step needs"):
        StepBatches(plan, accum=8, world=8, rank=0, epoch=0, first=0)
