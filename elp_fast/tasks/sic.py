"""The SIC task (intent classification): slot vocabularies (Fluent Speech Commands: action,
object, location), a multi-slot head on pooled H with one cross-entropy per slot, the all-slots
accuracy evaluator and the task's registration."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import corpora
from ..validation import int_at_least, one_of
from .datasets import DataError, TaskData
from .evaluators import Rows, forward
from .pooling import masked_mean_std
from .registry import Task, register_task

HEAD_ACTIVATIONS = {"none": None, "gelu": F.gelu, "relu": F.relu}


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
    """Masked-mean pooled H -> a linear layer of width `hidden` (-> `activation`, "none" by
    default) -> one linear classifier per slot; the loss sums the slots' cross-entropies. With
    no activation this is the published E/L-adapter code's head: its per-frame projection,
    masked mean and one classifier over all slot values split per slot compute the same function
    (a mean commutes with a linear map). A task head for wrap(..., task_head=...):
    forward(h, frame_mask, labels) -> (per-slot logits, loss or None)."""

    def __init__(self, in_dim: int, slot_sizes: Sequence[int], hidden: int = 256, activation: str = "none") -> None:
        super().__init__()
        if not slot_sizes or any(n < 1 for n in slot_sizes):
            raise ValueError(f"MultiSlotHead: slot_sizes must be positive class counts, got {list(slot_sizes)}")
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"MultiSlotHead: activation got {activation!r}; expected one of {sorted(HEAD_ACTIVATIONS)}")
        self.in_dim, self.slot_sizes, self.hidden_dim, self.activation = in_dim, list(slot_sizes), hidden, activation
        self.hidden = nn.Linear(in_dim, hidden)
        self.slots = nn.ModuleList(nn.Linear(hidden, n) for n in slot_sizes)

    def describe(self) -> dict:
        return {"in_dim": self.in_dim, "slot_sizes": self.slot_sizes, "hidden": self.hidden_dim,
                "activation": self.activation}

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
        z = self.hidden(pooled.to(self.hidden.weight.dtype))
        act = HEAD_ACTIVATIONS[self.activation]
        z = act(z) if act is not None else z
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


class SlotEvaluator(Rows):
    """An utterance counts only when every slot is right (MultiSlotHead logits)."""

    def __init__(self) -> None:
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        logits = forward(model, batch).logits
        if keep:
            preds = MultiSlotHead.predict(logits).cpu().numpy()
            self.rows.append((preds == batch["labels"].cpu().numpy()).all(axis=1, keepdims=True).astype(np.float64))

    def result(self, gather) -> dict:
        ok = self.stack(gather, 1)
        return {"accuracy": float(ok.mean()) if ok.size else float("nan")}


def prepare(data: dict, reader, head: dict, splits: set) -> TaskData:
    names = data.get("slot_names", list(corpora.FSC_SLOTS))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"data.slot_names: got {names!r}; expected a list of slot names")
    read = {s: reader.read(data[s], s) for s in ("train", "eval", "test")
            if data.get(s) and (s in splits or s == "train")}
    if "train" not in read:
        raise DataError("data.train: SIC needs the training split to know its slot values")
    for utts in read.values():
        for u in utts:
            if u.slots is None or len(u.slots) != len(names) or not all(isinstance(v, str) for v in u.slots):
                raise DataError(f"{u.path} (utterance {u.id}): slots {u.slots!r}; expected {len(names)} string "
                                f"values {names} (field 'slots')")
    vocab = SlotVocab(names, [u.slots for u in read["train"]])
    sets = {}
    for s, utts in read.items():
        if s in splits:
            labels = [vocab.encode(u.slots, f"{u.path} (utterance {u.id})") for u in utts]
            sets[s] = reader.dataset(utts, labels, crop=s == "train", durations=reader.seconds(utts, s))
    return TaskData("sic", sets.get("train"), sets.get("eval"), sets.get("test"), {"slot_sizes": vocab.sizes},
                    {"slots": dict(zip(names, vocab.values))}, {s: SlotEvaluator for s in sets})


def build_head(head: dict, in_dim: int, head_args: dict) -> MultiSlotHead:
    return MultiSlotHead(in_dim, head_args["slot_sizes"], hidden=head.get("hidden", 256),
                         activation=head.get("activation", "none"))


def predictions(output, batch: dict, labels: dict) -> list[dict]:
    names, values = list(labels["slots"]), list(labels["slots"].values())
    preds = MultiSlotHead.predict(output.logits).tolist()
    return [{"prediction": {n: v[i] for n, v, i in zip(names, values, p)},
             "label": {n: v[i] for n, v, i in zip(names, values, y)}}
            for p, y in zip(preds, batch["labels"].tolist())]


TASK = register_task(Task(
    name="sic", summary="intent classification: action, object and location slots, all-slots accuracy (Fluent "
                        "Speech Commands)",
    recipe=Path(__file__).parent / "recipes" / "sic.yaml", corpora=("fluent_speech_commands", "manifest"),
    prepare=prepare, build_head=build_head, predictions=predictions,
    head_fields={"hidden": int_at_least(1), "activation": one_of(*HEAD_ACTIVATIONS)},
    data_keys=frozenset({"slot_names"}), module=__name__))
