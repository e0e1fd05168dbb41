"""SIC pieces: slot vocabularies (Fluent Speech Commands: action, object, location) and a
multi-slot head on pooled H with one cross-entropy per slot."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .asv import masked_mean_std


class SlotVocab:
    """Per slot, the sorted values seen in training, and their ids."""

    def __init__(self, slot_names: Sequence[str], examples: Sequence[Sequence[str]]) -> None:
        self.names = list(slot_names)
        if not self.names or not examples:
            raise ValueError("SlotVocab: needs slot names and at least one example")
        bad = [i for i, e in enumerate(examples) if len(e) != len(self.names)]
        if bad:
            raise ValueError(f"SlotVocab: examples {bad[:5]} do not have {len(self.names)} slots {self.names}")
        self.values = [sorted({e[s] for e in examples}) for s in range(len(self.names))]
        self._ids = [{v: i for i, v in enumerate(vals)} for vals in self.values]

    @property
    def sizes(self) -> list[int]:
        return [len(v) for v in self.values]

    def encode(self, slots: Sequence[str], utterance: Optional[str] = None) -> torch.Tensor:
        if len(slots) != len(self.names):
            raise ValueError(f"{utterance or 'slots'}: got {len(slots)} slot values; expected {self.names}")
        ids = []
        for name, value, table in zip(self.names, slots, self._ids):
            if value not in table:
                raise ValueError(f"{utterance or 'slots'}: {name} {value!r} was not seen in training; "
                                 f"expected one of {sorted(table)}")
            ids.append(table[value])
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Sequence[int]) -> tuple:
        return tuple(vals[i] for vals, i in zip(self.values, ids))


class MultiSlotHead(nn.Module):
    """Masked-mean pooled H -> a hidden layer -> one classifier per slot; the loss sums the
    slots' cross-entropies. A task head for wrap(..., task_head=...): forward(h, frame_mask,
    labels) -> (per-slot logits, loss or None)."""

    def __init__(self, in_dim: int, slot_sizes: Sequence[int], hidden: int = 256) -> None:
        super().__init__()
        if not slot_sizes or any(n < 1 for n in slot_sizes):
            raise ValueError(f"MultiSlotHead: slot_sizes must be positive class counts, got {list(slot_sizes)}")
        self.in_dim, self.slot_sizes, self.hidden_dim = in_dim, list(slot_sizes), hidden
        self.hidden = nn.Linear(in_dim, hidden)
        self.slots = nn.ModuleList(nn.Linear(hidden, n) for n in slot_sizes)

    def describe(self) -> dict:
        return {"in_dim": self.in_dim, "slot_sizes": self.slot_sizes, "hidden": self.hidden_dim}

    def check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if labels.shape != (batch, len(self.slots)):
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch}, {len(self.slots)}), "
                             "one id per slot")
        bad = [s for s, n in enumerate(self.slot_sizes) if bool(((labels[:, s] < 0) | (labels[:, s] >= n)).any())]
        if bad:
            raise ValueError(f"labels: slot {bad[0]} holds ids outside 0..{self.slot_sizes[bad[0]] - 1}")

    def forward(self, h: torch.Tensor, frame_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None) -> tuple[list[torch.Tensor], Optional[torch.Tensor]]:
        pooled, _ = masked_mean_std(h, frame_mask)
        z = F.gelu(self.hidden(pooled.to(self.hidden.weight.dtype)))
        logits = [head(z) for head in self.slots]
        return logits, (self.loss(logits, labels) if labels is not None else None)

    @staticmethod
    def loss(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """labels (batch, slots) of slot ids."""
        if labels.dim() != 2 or labels.shape[1] != len(logits):
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected (batch, {len(logits)} slots)")
        return sum(F.cross_entropy(lg.float(), labels[:, s]) for s, lg in enumerate(logits))

    @staticmethod
    def predict(logits: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([lg.argmax(-1) for lg in logits], dim=1)
