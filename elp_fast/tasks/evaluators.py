"""Whole-set evaluation for the engine (Trainer(evaluator=...)): each evaluator keeps numpy rows
per batch on its process; result(gather) concatenates every process's rows, then computes the
metric. update() runs on every evaluation batch, padding ones included (keep=False), so each
process runs as many forwards (ZeRO-3 needs that). The base class and the utterance classifier's
evaluator live here; each task file holds the evaluator of its own metric."""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import metrics


def forward(model, batch: dict):
    return model(batch["input_values"], attention_mask=batch.get("attention_mask"))


class Rows:
    """Per-process rows of numbers, gathered over every process for the result."""

    def reset(self) -> None:
        self.rows: list[np.ndarray] = []

    def stack(self, gather: Callable, width: int) -> np.ndarray:
        local = np.concatenate(self.rows) if self.rows else np.zeros((0, width))
        return gather(local)


class ClassificationEvaluator(Rows):
    """Utterance classification (SER, or a task of your own): UA (mean per-class recall) and WA
    (overall accuracy) from the argmax of the logits."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        preds = forward(model, batch).logits.argmax(-1)
        if keep:
            self.rows.append(np.stack([batch["labels"].cpu().numpy(), preds.cpu().numpy()], axis=1))

    def result(self, gather: Callable) -> dict:
        rows = self.stack(gather, 2).astype(np.int64)
        cm = metrics.confusion_matrix(rows[:, 0], rows[:, 1], self.num_classes)
        return {"UA": metrics.unweighted_accuracy(cm), "WA": metrics.weighted_accuracy(cm)}
