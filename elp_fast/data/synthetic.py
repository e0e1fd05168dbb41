"""Synthetic audio that needs no download: a two-class tone task for demos and engine tests."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from ..config import SAMPLING_RATE



class ToneDataset(Dataset):
    """Label 0: a 200-400 Hz tone, label 1: a 1.5-3 kHz tone, both in noise, each padded to
    `seconds` with a random real length (half to all of it). Item i depends only on (seed, i),
    so any process can read any item and every run sees the same data."""

    def __init__(self, size: int, seconds: float = 0.5, seed: int = 0) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"ToneDataset: size must be an integer >= 1, got {size!r}")
        if not isinstance(seconds, (int, float)) or not 0.05 <= seconds <= 60:
            raise ValueError(f"ToneDataset: seconds must be in [0.05, 60], got {seconds!r}")
        self.size, self.samples, self.seed = size, int(SAMPLING_RATE * seconds), seed

    def __len__(self) -> int:
        return self.size

    def _draw(self, i: int) -> tuple[torch.Generator, int, int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = int(torch.randint(0, 2, (), generator=g))
        length = int(torch.randint(self.samples // 2, self.samples + 1, (), generator=g))
        return g, label, length

    def durations(self) -> list[float]:
        """Seconds of real audio per item (what batching by length packs)."""
        return [self._draw(i)[2] / SAMPLING_RATE for i in range(self.size)]

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.size:
            raise IndexError(f"ToneDataset: index {i} out of range 0..{self.size - 1}")
        g, label, length = self._draw(i)
        n = self.samples
        lo, hi = (200.0, 400.0) if label == 0 else (1500.0, 3000.0)
        freq = lo + (hi - lo) * float(torch.rand((), generator=g))
        t = torch.arange(n) / SAMPLING_RATE
        x = 0.5 * torch.sin(2 * math.pi * freq * t) + 0.1 * torch.randn(n, generator=g)
        mask = (torch.arange(n) < length).long()
        return {"input_values": x * mask, "attention_mask": mask, "labels": torch.tensor(label)}
