"""Whole-set evaluation for the engine (Trainer(evaluator=...)): each evaluator keeps numpy rows
per batch on its process; result(gather) concatenates every process's rows, then computes the
metric the field reports. update() runs on every evaluation batch, padding ones included
(keep=False), so each process runs as many forwards (ZeRO-3 needs that)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import metrics
from .asr import CharVocab
from .asv import as_norm


def _forward(model, batch: dict):
    return model(batch["input_values"], attention_mask=batch.get("attention_mask"))


class _Rows:
    def reset(self) -> None:
        self.rows: list[np.ndarray] = []

    def _stack(self, gather: Callable, width: int) -> np.ndarray:
        local = np.concatenate(self.rows) if self.rows else np.zeros((0, width))
        return gather(local)


class ClassificationEvaluator(_Rows):
    """SER (or any utterance classifier): UA (mean per-class recall) and WA (overall accuracy)
    from the argmax of the logits."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        preds = _forward(model, batch).logits.argmax(-1)
        if keep:
            self.rows.append(np.stack([batch["labels"].cpu().numpy(), preds.cpu().numpy()], axis=1))

    def result(self, gather: Callable) -> dict:
        rows = self._stack(gather, 2).astype(np.int64)
        cm = metrics.confusion_matrix(rows[:, 0], rows[:, 1], self.num_classes)
        return {"UA": metrics.unweighted_accuracy(cm), "WA": metrics.weighted_accuracy(cm)}


class SlotEvaluator(_Rows):
    """SIC: an utterance counts only when every slot is right (MultiSlotHead logits)."""

    def __init__(self) -> None:
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        logits = _forward(model, batch).logits
        if keep:
            preds = torch.stack([lg.argmax(-1) for lg in logits], dim=1).cpu().numpy()
            self.rows.append((preds == batch["labels"].cpu().numpy()).all(axis=1, keepdims=True).astype(np.float64))

    def result(self, gather: Callable) -> dict:
        ok = self._stack(gather, 1)
        return {"accuracy": float(ok.mean()) if ok.size else float("nan")}


class CTCEvaluator(_Rows):
    """ASR: corpus WER and CER of greedy decoding against the label ids' text."""

    def __init__(self, vocab: CharVocab) -> None:
        self.vocab = vocab
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        out = _forward(model, batch)
        if not keep:
            return
        hyps = self.vocab.greedy_decode(out.logits, out.attention_mask)
        refs = [self.vocab.decode_ids([i for i in row if i >= 0]) for row in batch["labels"].tolist()]
        self.rows.append(np.array([[metrics.edit_distance(r.split(), h.split()), len(r.split()),
                                    metrics.edit_distance(r, h), len(r)] for r, h in zip(refs, hyps)],
                                  dtype=np.float64))

    def result(self, gather: Callable) -> dict:
        e = self._stack(gather, 4).sum(axis=0)
        return {"WER": e[0] / e[1] if e[1] else float("nan"), "CER": e[2] / e[3] if e[3] else float("nan")}


class VerificationEvaluator(_Rows):
    """ASV: embeds every utterance of the evaluation set (batches carry their dataset "index"),
    scores the trials by cosine similarity, and reports EER and minDCF (in %, as VoxCeleb results
    are quoted, and the raw minDCF). With cohort_start, items from that index on are a cohort of
    training speakers, and the scores are AS-normalised against it (the raw EER is kept too)."""

    def __init__(self, trials: Sequence[tuple[int, int, int]], p_target: float = 0.05,
                 cohort_start: Optional[int] = None, top_k: int = 300) -> None:
        self.trials = np.asarray(trials, dtype=np.int64)  # (label, index a, index b)
        self.p_target, self.cohort_start, self.top_k = p_target, cohort_start, top_k
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        emb = torch.nn.functional.normalize(_forward(model, batch).logits.float(), dim=-1)
        self.width = 1 + emb.shape[1]  # known on every process, even one with only padding batches
        if keep:
            self.rows.append(np.concatenate([batch["index"].cpu().numpy()[:, None], emb.cpu().numpy()], axis=1))

    def result(self, gather: Callable) -> dict:
        rows = self._stack(gather, self.width)
        table = {int(i): r for i, r in zip(rows[:, 0], rows[:, 1:])}
        missing = sorted({int(i) for i in self.trials[:, 1:].ravel()} - set(table))
        if missing:
            raise ValueError(f"VerificationEvaluator: trial utterances {missing[:5]} were not in the evaluation set")
        a = np.stack([table[i] for i in self.trials[:, 1]])
        b = np.stack([table[i] for i in self.trials[:, 2]])
        scores = (a * b).sum(axis=1)
        labels = self.trials[:, 0]
        out = {}
        if self.cohort_start is not None:
            cohort = np.stack([r for i, r in table.items() if i >= self.cohort_start])
            normed = as_norm(torch.from_numpy(scores), torch.from_numpy(a), torch.from_numpy(b),
                             torch.from_numpy(cohort), self.top_k).numpy()
            out["EER%_raw"] = 100 * metrics.eer(scores, labels)
            scores = normed
        out["EER%"] = 100 * metrics.eer(scores, labels)
        out["minDCF"] = metrics.min_dcf(scores, labels, p_target=self.p_target)
        return out
