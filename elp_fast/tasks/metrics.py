"""The metrics each task reports, as its field reports them (plain Python / numpy, no torch).

- ASR: word and character error rates, corpus level (total edits / total reference length).
- ASV: equal error rate and the normalised minimum detection cost (minDCF) of trial scores.
- SER: unweighted accuracy (UA, mean per-class recall) and weighted accuracy (WA, overall).
- SIC: accuracy where an utterance counts only when every slot is right.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, deletions, insertions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _check_pairs(refs: Sequence[str], hyps: Sequence[str], name: str) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"{name}: got {len(refs)} references and {len(hyps)} hypotheses; expected as many of each")
    bad = [i for i, t in enumerate(list(refs) + list(hyps)) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name}: references and hypotheses must be strings")


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over a corpus: sum of word edit distances / sum of reference words."""
    _check_pairs(refs, hyps, "wer")
    words = sum(len(r.split()) for r in refs)
    if words == 0:
        raise ValueError("wer: the references hold no words")
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / words


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate over a corpus (spaces count as characters, runs of them as one)."""
    _check_pairs(refs, hyps, "cer")
    refs = [" ".join(r.split()) for r in refs]
    hyps = [" ".join(h.split()) for h in hyps]
    chars = sum(len(r) for r in refs)
    if chars == 0:
        raise ValueError("cer: the references hold no characters")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / chars


def _scores_labels(scores, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{name}: got {s.size} scores and {y.size} labels; expected one label per trial")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: scores contain NaN or Inf")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 1 (target trial) or 0 (non-target trial)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"{name}: needs both target and non-target trials (got {int(y.sum())} targets "
                         f"of {y.size})")
    return s, y


def _error_curves(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Miss and false-alarm rates when trials scoring >= t are accepted, for t at every distinct
    score and above the highest (nothing accepted)."""
    thresholds = np.unique(s)
    tar, non = np.sort(s[y]), np.sort(s[~y])
    miss = np.searchsorted(tar, thresholds, side="left") / tar.size   # targets below t
    fa = 1.0 - np.searchsorted(non, thresholds, side="left") / non.size  # non-targets at or above t
    return np.append(miss, 1.0), np.append(fa, 0.0)


def eer(scores, labels) -> float:
    """Equal error rate: where the miss rate equals the false-alarm rate, linearly interpolated
    between the two thresholds that bracket it."""
    miss, fa = _error_curves(*_scores_labels(scores, labels, "eer"))
    d = miss - fa  # rises from <= 0 (accept all) to 1 (accept none)
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float((miss[i] + fa[i]) / 2)
    alpha = -d[i - 1] / (d[i] - d[i - 1])
    return float(fa[i - 1] + alpha * (fa[i] - fa[i - 1]))


def min_dcf(scores, labels, p_target: float = 0.05, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost over all thresholds (VoxSRC: p_target 0.05; NIST SRE
    often 0.01): min_t (c_miss P_miss p + c_fa P_fa (1 - p)) / min(c_miss p, c_fa (1 - p))."""
    if not 0 < p_target < 1:
        raise ValueError(f"min_dcf: p_target must be in (0, 1), got {p_target}")
    miss, fa = _error_curves(*_scores_labels(scores, labels, "min_dcf"))
    cost = c_miss * miss * p_target + c_fa * fa * (1 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    y, p = np.asarray(labels).ravel(), np.asarray(preds).ravel()
    if y.shape != p.shape:
        raise ValueError(f"confusion_matrix: got {y.size} labels and {p.size} predictions")
    for name, v in (("labels", y), ("predictions", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must be class ids in 0..{num_classes - 1}")
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y, p), 1)
    return m


def unweighted_accuracy(confusion: np.ndarray) -> float:
    """UA: the mean over classes present in the labels of their recall (SER's headline metric)."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        raise ValueError("unweighted_accuracy: the confusion matrix is empty")
    return float((np.diag(confusion)[present] / support[present]).mean())


def weighted_accuracy(confusion: np.ndarray) -> float:
    """WA: overall accuracy (classes weighted by their frequency)."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    if total == 0:
        raise ValueError("weighted_accuracy: the confusion matrix is empty")
    return float(np.trace(confusion) / total)


def all_slots_accuracy(labels, preds) -> float:
    """SIC: fraction of utterances whose every slot (columns) is predicted right."""
    y, p = np.asarray(labels), np.asarray(preds)
    if y.shape != p.shape or y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"all_slots_accuracy: got shapes {y.shape} and {p.shape}; expected equal "
                         "(utterances, slots)")
    return float((y == p).all(axis=1).mean())
