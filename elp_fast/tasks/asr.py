"""The ASR task: character CTC. Its pieces: the character vocabulary of the CTC head, target
encoding, greedy decoding, the frame count of an utterance (a CTC target longer than it cannot
be aligned), the CTC head, the WER / CER evaluator and the task's registration."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SAMPLING_RATE
from ..validation import BOOLEAN, number_in
from . import metrics
from .datasets import DataError, TaskData
from .evaluators import Rows, forward
from .registry import Task, register_task

BLANK, WORD_SEP = "<blank>", "|"
# LibriSpeech transcripts: upper-case letters, apostrophes and spaces (spaces become "|").
LIBRISPEECH_CHARS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")


class CharVocab:
    """Token 0 is the CTC blank (the HF heads' pad_token_id), 1 the word separator, then the
    characters."""

    def __init__(self, chars: Sequence[str] = LIBRISPEECH_CHARS) -> None:
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1 or c.isspace() or c == WORD_SEP]
        if bad or len(set(chars)) != len(chars):
            raise ValueError(f"CharVocab: chars must be distinct single non-space characters other than "
                             f"{WORD_SEP!r}, got {bad or 'duplicates'}")
        self.tokens = [BLANK, WORD_SEP, *chars]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank(self) -> int:
        return 0

    def encode(self, text: str, utterance: Optional[str] = None) -> torch.Tensor:
        """Token ids of a transcript (upper-cased; runs of spaces are one separator)."""
        words = text.upper().split()
        if not words:
            raise ValueError(f"{utterance or 'transcript'}: the transcript is empty")
        ids = []
        for w, word in enumerate(words):
            if w:
                ids.append(1)
            for c in word:
                if c not in self.index:
                    raise ValueError(f"{utterance or 'transcript'}: character {c!r} in {text!r} is not in the "
                                     f"vocabulary {''.join(self.tokens[2:])!r}")
                ids.append(self.index[c])
        return torch.tensor(ids, dtype=torch.long)

    def decode_ids(self, ids: Sequence[int]) -> str:
        return "".join(" " if i == 1 else self.tokens[i] for i in ids if i != 0).strip()

    def greedy_decode(self, logits: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> list[str]:
        """Best path: argmax per frame, repeats merged, blanks dropped (padded frames ignored)."""
        if logits.dim() != 3 or logits.shape[-1] != len(self):
            raise ValueError(f"greedy_decode: got logits of shape {tuple(logits.shape)}; expected "
                             f"(batch, frames, {len(self)})")
        best = logits.argmax(-1).cpu()
        lengths = (frame_mask.sum(-1).tolist() if frame_mask is not None else [best.shape[1]] * best.shape[0])
        out = []
        for row, n in zip(best, lengths):
            path = torch.unique_consecutive(row[:int(n)]).tolist()
            out.append(" ".join(self.decode_ids(path).split()))
        return out


def frames_for_samples(samples: int, conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Output frames of the CNN feature encoder for `samples` input samples."""
    n = samples
    for k, s in zip(conv_kernel, conv_stride):
        n = (n - k) // s + 1
    return max(n, 0)


def check_ctc_target(target: torch.Tensor, samples: int, conv_kernel, conv_stride, utterance: str) -> None:
    """A CTC target needs at least one frame per token (two for a repeated token): refuse, naming
    the utterance, before the loss would silently be infinite."""
    frames = frames_for_samples(samples, conv_kernel, conv_stride)
    repeats = int((target[1:] == target[:-1]).sum()) if target.numel() > 1 else 0
    need = target.numel() + repeats
    if need > frames:
        raise ValueError(f"{utterance}: the transcript needs {need} frames ({target.numel()} tokens, {repeats} "
                         f"repeated), but its {samples / SAMPLING_RATE:.2f} s of audio give {frames}; expected a "
                         "shorter transcript or longer audio")


class CTCHead(nn.Module):
    """A task head for wrap(..., task_head=...): dropout and a linear layer from H to the
    characters, trained with CTC (blank = 0) computed in fp32 whatever the model's precision
    (docs/design.md 5). forward(h, frame_mask, labels) -> (logits, loss or None); labels (batch,
    max_target) padded with -100."""

    def __init__(self, in_dim: int, vocab_size: int, dropout: float = 0.1, zero_infinity: bool = False) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"CTCHead: vocab_size must be >= 2 (blank + one token), got {vocab_size}")
        self.in_dim, self.vocab_size, self.p, self.zero_infinity = in_dim, vocab_size, dropout, zero_infinity
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_dim, vocab_size)

    def describe(self) -> dict:
        return {"in_dim": self.in_dim, "vocab_size": self.vocab_size, "dropout": self.p}

    def check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if labels.dim() != 2 or labels.shape[0] != batch:
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch}, max_target_length) "
                             "padded with -100")
        bad = (labels != -100) & ((labels < 1) | (labels >= self.vocab_size))
        if bool(bad.any()):
            raise ValueError(f"labels: got token ids {labels[bad].unique().tolist()}; expected ids in "
                             f"1..{self.vocab_size - 1} (0 is the blank) or -100 for padding")

    def forward(self, h: torch.Tensor, frame_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None):
        logits = self.proj(self.dropout(h))
        if labels is None:
            return logits, None
        batch, frames = logits.shape[:2]
        lengths = (frame_mask.sum(-1) if frame_mask is not None
                   else torch.full((batch,), frames, dtype=torch.long, device=logits.device))
        keep = labels >= 0
        targets = keep.sum(-1)
        if bool((targets > lengths).any()):
            i = int((targets > lengths).nonzero()[0])
            raise ValueError(f"labels: utterance {i} of the batch has {int(targets[i])} target tokens but "
                             f"{int(lengths[i])} frames; expected target length <= frames")
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        with torch.backends.cudnn.flags(enabled=False):
            loss = F.ctc_loss(log_probs, labels.masked_select(keep), lengths, targets, blank=0,
                              reduction="mean", zero_infinity=self.zero_infinity)
        return logits, loss


class CTCEvaluator(Rows):
    """Corpus WER and CER of greedy decoding against the label ids' text."""

    def __init__(self, vocab: CharVocab) -> None:
        self.vocab = vocab
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        out = forward(model, batch)
        if not keep:
            return
        hyps = self.vocab.greedy_decode(out.logits, out.attention_mask)
        refs = [self.vocab.decode_ids([i for i in row if i >= 0]) for row in batch["labels"].tolist()]
        self.rows.append(np.array([[metrics.edit_distance(r.split(), h.split()), len(r.split()),
                                    metrics.edit_distance(r, h), len(r)] for r, h in zip(refs, hyps)],
                                  dtype=np.float64))

    def result(self, gather) -> dict:
        e = self.stack(gather, 4).sum(axis=0)
        return {"WER": e[0] / e[1] if e[1] else float("nan"), "CER": e[2] / e[3] if e[3] else float("nan")}


def prepare(data: dict, reader, head: dict, splits: set) -> TaskData:
    vocab = CharVocab()
    sets = {}
    for split in ("train", "eval", "test"):
        if split not in splits or not data.get(split):
            continue
        utts = reader.read(data[split], split)
        seconds = reader.seconds(utts, split)
        labels = []
        for u, s in zip(utts, seconds):
            where = f"{u.path} (utterance {u.id})"
            if not u.text:
                raise DataError(f"{where}: no transcript (field 'text'); ASR needs one")
            target = vocab.encode(u.text, where)
            check_ctc_target(target, round(s * SAMPLING_RATE), reader.conv_kernel, reader.conv_stride, where)
            labels.append(target)
        sets[split] = reader.dataset(utts, labels, durations=seconds)
    return TaskData("asr", sets.get("train"), sets.get("eval"), sets.get("test"), {"vocab_size": len(vocab)},
                    {"vocabulary": vocab.tokens}, {s: (lambda: CTCEvaluator(vocab)) for s in sets})


def build_head(head: dict, in_dim: int, head_args: dict) -> CTCHead:
    return CTCHead(in_dim, head_args["vocab_size"], dropout=head.get("dropout", 0.1),
                   zero_infinity=head.get("zero_infinity", False))


def predictions(output, batch: dict, labels: dict) -> list[dict]:
    vocab = CharVocab(labels["vocabulary"][2:])
    hyps = vocab.greedy_decode(output.logits, output.attention_mask)
    refs = [vocab.decode_ids([i for i in row if i >= 0]) for row in batch["labels"].tolist()]
    return [{"hypothesis": h, "reference": r} for h, r in zip(hyps, refs)]


TASK = register_task(Task(
    name="asr", summary="speech recognition: character CTC, WER and CER (LibriSpeech / LibriLight)",
    recipe=Path(__file__).parent / "recipes" / "asr.yaml", corpora=("librispeech", "manifest"),
    prepare=prepare, build_head=build_head, predictions=predictions,
    head_fields={"dropout": number_in(0, 1), "zero_infinity": BOOLEAN}, can_crop=False, module=__name__))
