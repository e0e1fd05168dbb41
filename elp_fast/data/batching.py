"""Batching by length under an audio-seconds budget: utterances of similar length share a batch,
so little of each batch is padding, and a batch's padded size stays under the budget."""
from __future__ import annotations

from typing import Sequence

import torch


def pack_by_length(order: Sequence[int], durations: Sequence[float], budget: float, max_items: int,
                   generator: torch.Generator, bucket: int = 1000) -> list[list[int]]:
    """Micro-batches (index lists) covering `order`: each window of `bucket` consecutive indices
    is sorted by duration and packed greedily while items x longest duration <= budget seconds
    (and at most max_items); the batches are then shuffled. An utterance longer than the budget
    is a batch of its own."""
    if budget <= 0:
        raise ValueError(f"pack_by_length: budget must be > 0 seconds, got {budget}")
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        window = sorted(order[start:start + bucket], key=lambda i: durations[i])
        current: list[int] = []
        longest = 0.0
        for i in window:
            d = float(durations[i])
            if current and ((len(current) + 1) * max(longest, d) > budget or len(current) == max_items):
                batches.append(current)
                current, longest = [], 0.0
            current.append(i)
            longest = max(longest, d)
        if current:
            batches.append(current)
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[k] for k in perm]
