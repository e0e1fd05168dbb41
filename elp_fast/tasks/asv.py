"""ASV pieces: pooling H to a speaker embedding, softmax and additive angular margin (AAM)
losses, cosine scoring of trials and adaptive score normalisation (AS-norm)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean_std(h: torch.Tensor, frame_mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over real frames of h (batch, frames, dim), in fp32."""
    h = h.float()
    if frame_mask is None:
        return h.mean(1), h.std(1, unbiased=False)
    m = frame_mask.unsqueeze(-1).to(h.dtype)
    n = m.sum(1).clamp_min(1.0)
    mean = (h * m).sum(1) / n
    var = (((h - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
    return mean, var.clamp_min(1e-10).sqrt()


class SpeakerEmbedding(nn.Module):
    """Masked mean (or mean + std, "stats") pooling of H, then a linear projection."""

    def __init__(self, in_dim: int, emb_dim: int = 256, pooling: str = "stats") -> None:
        super().__init__()
        if pooling not in ("mean", "stats"):
            raise ValueError(f"SpeakerEmbedding: pooling must be 'mean' or 'stats', got {pooling!r}")
        self.pooling = pooling
        self.proj = nn.Linear(in_dim * (2 if pooling == "stats" else 1), emb_dim)

    def forward(self, h: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        mean, std = masked_mean_std(h, frame_mask)
        pooled = torch.cat([mean, std], -1) if self.pooling == "stats" else mean
        return self.proj(pooled.to(self.proj.weight.dtype))


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): logits s * cos(theta + m) for the true class,
    s * cos(theta) for the others; margin 0 gives a normalised softmax."""

    def __init__(self, emb_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        if not 0 <= margin < math.pi / 2 or scale <= 0 or num_classes < 2:
            raise ValueError(f"AAMSoftmax: need 0 <= margin < pi/2, scale > 0 and >= 2 classes; got margin "
                             f"{margin}, scale {scale}, {num_classes} classes")
        self.margin, self.scale = margin, scale
        self.weight = nn.Parameter(torch.empty(num_classes, emb_dim))
        nn.init.xavier_normal_(self.weight)

    def logits(self, emb: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        cos = F.linear(F.normalize(emb.float()), F.normalize(self.weight.float())).clamp(-1 + 1e-7, 1 - 1e-7)
        if labels is None or self.margin == 0:
            return self.scale * cos
        theta = torch.acos(cos)
        target = torch.cos(theta + self.margin)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(onehot, target, cos)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels), labels)


class SpeakerHead(nn.Module):
    """A task head for wrap(..., task_head=...): speaker embeddings of pooled H, trained as a
    classifier of the training speakers with loss "aam" (additive angular margin softmax;
    margin 0: normalised softmax) or "softmax" (a plain linear classifier and cross-entropy, as
    the predecessor). forward(h, frame_mask, labels) -> (embeddings, loss or None); score trials
    with cosine_scores."""

    def __init__(self, in_dim: int, num_speakers: int, emb_dim: int = 256, pooling: str = "stats",
                 margin: float = 0.2, scale: float = 30.0, loss: str = "aam") -> None:
        super().__init__()
        if loss not in ("aam", "softmax"):
            raise ValueError(f"SpeakerHead: loss must be 'aam' or 'softmax', got {loss!r}")
        self.in_dim, self.config = in_dim, {"in_dim": in_dim, "num_speakers": num_speakers, "emb_dim": emb_dim,
                                            "pooling": pooling, "margin": margin, "scale": scale, "loss": loss}
        self.embedding = SpeakerEmbedding(in_dim, emb_dim, pooling)
        if loss == "aam":
            self.aam = AAMSoftmax(emb_dim, num_speakers, margin, scale)
        else:
            self.classifier = nn.Linear(emb_dim, num_speakers)

    def describe(self) -> dict:
        return dict(self.config)

    def check_labels(self, labels: torch.Tensor, batch: int) -> None:
        n = self.config["num_speakers"]
        if labels.shape != (batch,):
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch},), one speaker per utterance")
        if bool(((labels < 0) | (labels >= n)).any()):
            raise ValueError(f"labels: got speaker ids {labels.tolist()}; expected ids in 0..{n - 1}")

    def forward(self, h: torch.Tensor, frame_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        emb = self.embedding(h, frame_mask)
        if labels is None:
            return emb, None
        if self.config["loss"] == "aam":
            return emb, self.aam(emb, labels)
        return emb, F.cross_entropy(self.classifier(emb).float(), labels)


def cosine_scores(enroll: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of paired embeddings (trials, dim) -> (trials,)."""
    if enroll.shape != test.shape or enroll.dim() != 2:
        raise ValueError(f"cosine_scores: got shapes {tuple(enroll.shape)} and {tuple(test.shape)}; expected "
                         "two equal (trials, dim)")
    return F.cosine_similarity(enroll.float(), test.float(), dim=-1)


def as_norm(scores: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor, cohort: torch.Tensor,
            top_k: int = 300) -> torch.Tensor:
    """Adaptive symmetric score normalisation: each trial score is z-normalised against the
    top_k cohort scores of its enrolment and of its test embedding, and the two are averaged."""
    if cohort.dim() != 2 or cohort.shape[1] != enroll.shape[1] or cohort.shape[0] < 2:
        raise ValueError(f"as_norm: cohort must be (speakers >= 2, {enroll.shape[1]}), got {tuple(cohort.shape)}")
    c = F.normalize(cohort.float())
    k = min(top_k, c.shape[0])

    def stats(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = (F.normalize(e.float()) @ c.T).topk(k, dim=1).values
        return top.mean(1), top.std(1).clamp_min(1e-6)

    me, se = stats(enroll)
    mt, st = stats(test)
    return 0.5 * ((scores - me) / se + (scores - mt) / st)
