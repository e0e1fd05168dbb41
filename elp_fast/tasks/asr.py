"""ASR pieces: the character vocabulary of a CTC head, target encoding, greedy decoding, the
frame count of an utterance (a CTC target longer than it cannot be aligned) and the CTC head."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SAMPLING_RATE

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
    (DESIGN.md 5). forward(h, frame_mask, labels) -> (logits, loss or None); labels (batch,
    max_target) padded with -100."""

    def __init__(self, in_dim: int, vocab_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"CTCHead: vocab_size must be >= 2 (blank + one token), got {vocab_size}")
        self.in_dim, self.vocab_size, self.p = in_dim, vocab_size, dropout
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
                              reduction="mean", zero_infinity=True)
        return logits, loss
