"""The SER task (emotion recognition; any utterance-level classification): the pooled classifier
head, the IEMOCAP / manifest data, and the task's registration. Its metrics, UA (mean per-class
recall) and WA (overall accuracy), come from evaluators.ClassificationEvaluator."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data import corpora
from ..validation import int_at_least
from .datasets import DataError, TaskData
from .evaluators import ClassificationEvaluator
from .pooling import masked_mean_std
from .registry import Task, register_task


class ClassifierHead(nn.Module):
    """A task head for wrap(..., task_head=...): a projection of H, masked mean pooling over
    real frames, and a linear classifier trained with cross-entropy (the layout of the
    published E/L-adapter code's and HF's sequence-classification heads). forward(h, frame_mask, labels) ->
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


def prepare(data: dict, reader, head: dict, splits: set) -> TaskData:
    if reader.corpus == "iemocap":
        test_session = data.get("test_session", 5)
        if test_session not in (1, 2, 3, 4, 5):
            raise DataError(f"data.test_session: got {test_session!r}; expected an IEMOCAP session 1..5")
        root = reader.root
        lists = {"train": lambda: corpora.iemocap(root, [s for s in range(1, 6) if s != test_session]),
                 "eval": lambda: corpora.iemocap(root, [test_session])}
        classes = list(corpora.IEMOCAP_CLASSES)
    else:
        lists = {s: (lambda s=s: reader.read(data[s], s)) for s in ("train", "eval", "test") if data.get(s)}
        classes = None
    read = {s: fn() for s, fn in lists.items() if s in splits or s == "train"}
    for s, utts in read.items():
        for u in utts:
            if not u.label:
                raise DataError(f"{u.path} (utterance {u.id}): no emotion label (field 'label'); SER needs one")
    if classes is None:
        if "train" not in read:
            raise DataError("data.train: SER needs the training split to know its classes")
        classes = sorted({u.label for u in read["train"]})
    if len(classes) < 2:
        raise DataError(f"data.train: found the classes {classes}; expected at least two")
    ids = {c: i for i, c in enumerate(classes)}
    sets = {}
    for s, utts in read.items():
        if s not in splits:
            continue
        bad = next((u for u in utts if u.label not in ids), None)
        if bad is not None:
            raise DataError(f"{bad.path} (utterance {bad.id}): label {bad.label!r} is not among the training "
                            f"classes {classes}")
        sets[s] = reader.dataset(utts, [ids[u.label] for u in utts], crop=s == "train",
                                 durations=reader.seconds(utts, s))
    return TaskData("ser", sets.get("train"), sets.get("eval"), sets.get("test"), {"num_classes": len(classes)},
                    {"classes": classes}, {s: (lambda: ClassificationEvaluator(len(classes))) for s in sets})


def build_head(head: dict, in_dim: int, head_args: dict) -> ClassifierHead:
    return ClassifierHead(in_dim, head_args["num_classes"], proj_dim=head.get("proj_dim", 256))


def predictions(output, batch: dict, labels: dict) -> list[dict]:
    classes = labels["classes"]
    probs = torch.softmax(output.logits.float(), -1)
    return [{"prediction": classes[int(p.argmax())], "label": classes[int(y)], "probability": round(float(p.max()), 6)}
            for p, y in zip(probs, batch["labels"])]


TASK = register_task(Task(
    name="ser", summary="emotion recognition: 4 IEMOCAP classes, UA and WA (leave one session out)",
    recipe=Path(__file__).parent / "recipes" / "ser.yaml", corpora=("iemocap", "manifest"),
    prepare=prepare, build_head=build_head, predictions=predictions,
    head_fields={"proj_dim": int_at_least(1)}, data_keys=frozenset({"test_session"}), module=__name__))
