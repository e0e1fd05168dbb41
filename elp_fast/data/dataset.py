"""A map-style dataset over `Utterance`s that loads and checks audio lazily, and the collate
function that pads a batch (what the engine feeds the model)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset

from .audio import load_audio
from .corpora import Utterance


class AudioDataset(Dataset):
    """Items {"input_values": (samples,) float32, "labels": target(utterance)}; `target` maps an
    utterance to its label (an int, or a 1-D LongTensor for CTC targets); None: no labels."""

    def __init__(self, utterances: Sequence[Utterance], target: Optional[Callable[[Utterance], Any]] = None,
                 **load_kwargs: Any) -> None:
        if not utterances:
            raise ValueError("AudioDataset: no utterances given")
        self.utterances, self.target, self.load_kwargs = list(utterances), target, load_kwargs
        self._durations: Optional[list[float]] = None

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        """Seconds per utterance from the file headers (read once), for batching by length."""
        if self._durations is None:
            import soundfile as sf

            self._durations = [sf.info(str(u.path)).duration for u in self.utterances]
        return self._durations

    def __getitem__(self, i: int) -> dict:
        u = self.utterances[i]
        item = {"input_values": load_audio(u.path, **self.load_kwargs)}
        if self.target is not None:
            item["labels"] = self.target(u)
        return item


def pad_collate(items: Sequence[dict]) -> dict:
    """Zero-pad audio to the longest item (attention_mask marks real samples); integer labels
    are stacked, label sequences padded with -100 (ignored by the CTC loss)."""
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
    return batch
