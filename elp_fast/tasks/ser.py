"""SER (and any utterance-level classification): the pooled classifier head. Its metrics, UA
(mean per-class recall) and WA (overall accuracy), are in elp_fast.tasks.metrics."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .asv import masked_mean_std


class ClassifierHead(nn.Module):
    """A task head for wrap(..., task_head=...): a projection of H, masked mean pooling over
    real frames, and a linear classifier trained with cross-entropy (the layout of the
    predecessor's and HF's sequence-classification heads). forward(h, frame_mask, labels) ->
    (logits, loss or None)."""

    def __init__(self, in_dim: int, num_classes: int, proj_dim: int = 256) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ClassifierHead: num_classes must be >= 2, got {num_classes}")
        self.in_dim, self.num_classes, self.proj_dim = in_dim, num_classes, proj_dim
        self.projector = nn.Linear(in_dim, proj_dim)
        self.classifier = nn.Linear(proj_dim, num_classes)

    def describe(self) -> dict:
        return {"in_dim": self.in_dim, "num_classes": self.num_classes, "proj_dim": self.proj_dim}

    def check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if labels.shape != (batch,):
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch},), one class per utterance")
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(f"labels: got class ids {labels.tolist()}; expected ids in 0..{self.num_classes - 1}")

    def forward(self, h: torch.Tensor, frame_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None):
        pooled, _ = masked_mean_std(self.projector(h), frame_mask)
        logits = self.classifier(pooled.to(self.classifier.weight.dtype))
        return logits, (F.cross_entropy(logits.float(), labels) if labels is not None else None)
