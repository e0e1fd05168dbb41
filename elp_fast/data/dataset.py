"""A map-style dataset over `Utterance`s that loads and checks audio lazily, and the collate
function that pads a batch (what the engine feeds the model)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from ..config import SAMPLING_RATE
from .audio import load_audio
from .corpora import Utterance


class AudioDataset(Dataset):
    """Items {"input_values": (samples,) float32, "labels": ...}: the label is labels[i] when a
    list is given, else target(utterance) (an int, or a 1-D LongTensor for CTC targets); neither:
    no labels. max_seconds > 0 keeps only the first max_seconds of longer files (as the
    published E/L-adapter code cuts training audio); with_index adds the item's index (to match embeddings to
    trials)."""

    def __init__(self, utterances: Sequence[Utterance], target: Optional[Callable[[Utterance], Any]] = None,
                 *, labels: Optional[Sequence[Any]] = None, max_seconds: float = 0.0, with_index: bool = False,
                 durations: Optional[Sequence[float]] = None, **load_kwargs: Any) -> None:
        if not utterances:
            raise ValueError("AudioDataset: no utterances given")
        if labels is not None and len(labels) != len(utterances):
            raise ValueError(f"AudioDataset: got {len(labels)} labels for {len(utterances)} utterances")
        if durations is not None and len(durations) != len(utterances):
            raise ValueError(f"AudioDataset: got {len(durations)} durations for {len(utterances)} utterances")
        self.utterances, self.target, self.load_kwargs = list(utterances), target, load_kwargs
        self.labels = list(labels) if labels is not None else None
        self.max_seconds, self.with_index = float(max_seconds), with_index
        self._durations: Optional[list[float]] = list(durations) if durations is not None else None

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        """Seconds per item (after cutting), from the file headers unless given; for batching by
        length."""
        if self._durations is None:
            import soundfile as sf

            self._durations = [sf.info(str(u.path)).duration for u in self.utterances]
        if self.max_seconds:
            return [min(d, self.max_seconds) for d in self._durations]
        return self._durations

    def __getitem__(self, i: int) -> dict:
        u = self.utterances[i]
        x = load_audio(u.path, **self.load_kwargs)
        if self.max_seconds:
            x = x[:int(self.max_seconds * self.load_kwargs.get("sampling_rate", SAMPLING_RATE))]
        item = {"input_values": x}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        elif self.target is not None:
            item["labels"] = self.target(u)
        if self.with_index:
            item["index"] = i
        return item


def pad_collate(items: Sequence[dict]) -> dict:
    """Zero-pad audio to the longest item (attention_mask marks real samples); integer labels
    are stacked, 1-D label tensors (CTC targets, or one id per slot) padded with -100 to the
    longest (the CTC loss ignores it); item indices are kept."""
    if not items:
        raise ValueError("pad_collate: empty batch")
    lengths = [it["input_values"].numel() for it in items]
    x = torch.zeros(len(items), max(lengths))
    mask = torch.zeros(len(items), max(lengths), dtype=torch.long)
    for row, (it, n) in enumerate(zip(items, lengths)):
        x[row, :n] = it["input_values"]
        mask[row, :n] = 1
    batch = {"input_values": x, "attention_mask": mask}
    if "labels" in items[0]:
        labels = [it["labels"] for it in items]
        if isinstance(labels[0], torch.Tensor) and labels[0].dim() == 1:
            out = torch.full((len(labels), max(t.numel() for t in labels)), -100, dtype=torch.long)
            for row, t in enumerate(labels):
                out[row, :t.numel()] = t
            batch["labels"] = out
        else:
            batch["labels"] = torch.as_tensor(labels)
    if "index" in items[0]:
        batch["index"] = torch.as_tensor([it["index"] for it in items])
    return batch
