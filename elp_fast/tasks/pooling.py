"""Pooling of H over the real frames of each utterance, shared by the utterance-level heads."""
from __future__ import annotations

from typing import Optional

import torch


def masked_mean_std(h: torch.Tensor, frame_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over real frames of h (batch, frames, dim), in fp32."""
    h = h.float()
    if frame_mask is None:
        return h.mean(1), h.std(1, unbiased=False)
    m = frame_mask.unsqueeze(-1).to(h.dtype)
    n = m.sum(1).clamp_min(1.0)
    mean = (h * m).sum(1) / n
    var = (((h - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
    return mean, var.clamp_min(1e-10).sqrt()
