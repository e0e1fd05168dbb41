"""Batching the engine controls, so a resumed run sees exactly the batches it would have seen.

Each epoch is a permutation of the dataset drawn from its own generator (seed, epoch), cut into
micro-batches: of micro_batch_size utterances, or packed by length under batch_seconds of padded
audio. Optimizer step s takes the next grad_accum_steps x world_size micro-batches, so the data
position is a function of the step alone: a resume starts in the middle of an epoch without
reading the skipped batches. Micro-step j of process r takes micro-batch (j * world + r) of its
step, so with fixed sizes one process with micro batch 2B sees the same utterances per optimizer
step as two processes with B each.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset


def as_dataset(data: Any, name: str) -> tuple[Dataset, Optional[Callable]]:
    """A map-style dataset (and its collate_fn) from a Dataset or a DataLoader over one."""
    collate = None
    if isinstance(data, DataLoader):
        collate = data.collate_fn
        data = data.dataset
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(f"{name}: got {type(data).__name__}; expected a map-style Dataset (with __len__ "
                        "and __getitem__) or a DataLoader over one")
    return data, collate


class BatchPlan:
    """The micro-batches (index lists) of every epoch, a pure function of (seed, epoch): fixed
    size (micro utterances, the last partial one dropped), or packed by length under an
    audio-seconds budget (then micro caps the utterances per batch)."""

    def __init__(self, size: int, micro: int, seed: int, durations: Optional[list] = None,
                 budget: float = 0.0) -> None:
        self.size, self.micro, self.seed, self.durations, self.budget = size, micro, seed, durations, budget
        self._cache: dict[int, list[list[int]]] = {}

    def epoch(self, e: int) -> list[list[int]]:
        if e not in self._cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            order = torch.randperm(self.size, generator=g).tolist()
            if self.budget:
                from ..data.batching import pack_by_length

                plan = pack_by_length(order, self.durations, self.budget, self.micro, g)
            else:
                plan = [order[k:k + self.micro] for k in range(0, self.size - self.micro + 1, self.micro)]
            self._cache = {e: plan}  # one epoch at a time is all a run needs
        return self._cache[e]


def locate(plan: BatchPlan, per_step: int, step: int) -> tuple[int, int]:
    """(epoch, step within it) of optimizer step `step`; epochs' step counts come from their
    plans (they differ when batches are packed by length). Done once, when a run starts."""
    epoch = 0
    while True:
        steps = steps_in_epoch(plan, per_step, epoch)
        if step < steps:
            return epoch, step
        epoch, step = epoch + 1, step - steps


def steps_in_epoch(plan: BatchPlan, per_step: int, epoch: int) -> int:
    n = len(plan.epoch(epoch))
    if n < per_step:
        raise ValueError(f"epoch {epoch} has {n} micro-batches, fewer than the {per_step} one optimizer step needs")
    return n // per_step


class StepBatches(torch.utils.data.Sampler):
    """Index lists of one process's micro-batches, from step `first` of `epoch` to its end. A
    step takes accum x world consecutive micro-batches of the epoch's plan; micro-step j of
    process r takes number j * world + r of them."""

    def __init__(self, plan: BatchPlan, accum: int, world: int, rank: int, epoch: int, first: int) -> None:
        self.plan, self.accum, self.world, self.rank, self.epoch, self.first = plan, accum, world, rank, epoch, first
        self.per_step = accum * world
        self.steps_per_epoch = steps_in_epoch(plan, self.per_step, epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.plan.epoch(self.epoch)
        for s in range(self.first, self.steps_per_epoch):
            for j in range(self.accum):
                yield batches[s * self.per_step + j * self.world + self.rank]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.first) * self.accum


def train_batches(dataset: Dataset, collate: Optional[Callable], *, plan: BatchPlan, accum: int, world: int,
                  rank: int, seed: int, start_step: int, num_workers: int) -> Iterator[list]:
    """Yields, per optimizer step from `start_step` on, the list of this process's micro-batches."""
    epoch, first = locate(plan, accum * world, start_step)
    while True:
        sampler = StepBatches(plan, accum, world, rank, epoch, first)
        # A private generator: creating the loader's iterator must not draw from the global RNG
        # (that would shift dropout and SpecAugment draws between a resumed and a straight run).
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed + epoch))
        group = []
        for batch in loader:
            group.append(batch)
            if len(group) == accum:
                yield group
                group = []
        epoch, first = epoch + 1, 0


def eval_batches(dataset: Dataset, collate: Optional[Callable], *, micro: int, world: int,
                 rank: int, limit: int = 0) -> Iterator[tuple[Any, bool]]:
    """(batch, real) pairs; every process yields the same number (ZeRO-3 gathers parameters in
    each forward, so all processes must run as many). A process past the end repeats its first
    batch with real=False, to be left out of the metrics."""
    n = len(dataset)
    per_round = micro * world
    rounds = -(-n // per_round)
    if limit:
        rounds = min(rounds, limit)
    filler = None
    for b in range(rounds):
        idx = list(range(b * per_round + rank * micro, min(b * per_round + (rank + 1) * micro, n)))
        if idx:
            batch = collate_fn(collate)([dataset[i] for i in idx])
            if filler is None:
                filler = batch
            yield batch, True
        else:
            if filler is None:
                filler = collate_fn(collate)([dataset[0]])
            yield filler, False


def collate_fn(collate: Optional[Callable]) -> Callable:
    if collate is not None:
        return collate
    from torch.utils.data import default_collate

    return default_collate
