"""Batching the engine controls, so a resumed run sees exactly the batches it would have seen.

Each epoch is a permutation of the dataset drawn from its own generator (seed, epoch); it is cut
into global batches of micro_batch_size x grad_accum_steps x world_size utterances (the last
partial one is dropped). Optimizer step s takes global batch s of the sequence, so the data
position is a function of the step alone: a resume starts in the middle of an epoch without
reading the skipped batches. Within a global batch, micro-step j of process r takes slice
(j * world + r), so one process with micro batch 2B sees the same utterances per optimizer step
as two processes with B each.
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


class StepBatches(torch.utils.data.Sampler):
    """Index lists of one process's micro-batches, from optimizer step `start` to the end of
    the epoch that contains it."""

    def __init__(self, size: int, micro: int, accum: int, world: int, rank: int, seed: int, start: int) -> None:
        self.size, self.micro, self.accum, self.world, self.rank, self.seed = size, micro, accum, world, rank, seed
        self.global_batch = micro * accum * world
        self.steps_per_epoch = size // self.global_batch
        self.epoch, self.first = divmod(start, self.steps_per_epoch)

    def order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for s in range(self.first, self.steps_per_epoch):
            batch = order[s * self.global_batch:(s + 1) * self.global_batch]
            for j in range(self.accum):
                k = (j * self.world + self.rank) * self.micro
                yield batch[k:k + self.micro]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.first) * self.accum


def train_batches(dataset: Dataset, collate: Optional[Callable], *, micro: int, accum: int, world: int,
                  rank: int, seed: int, start_step: int, num_workers: int) -> Iterator[list]:
    """Yields, per optimizer step from `start_step` on, the list of this process's micro-batches."""
    step = start_step
    while True:
        sampler = StepBatches(len(dataset), micro, accum, world, rank, seed, step)
        # A private generator: creating the loader's iterator must not draw from the global RNG
        # (that would shift dropout and SpecAugment draws between a resumed and a straight run).
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(seed + sampler.epoch))
        group = []
        for batch in loader:
            group.append(batch)
            if len(group) == accum:
                yield group
                group = []
                step += 1


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
