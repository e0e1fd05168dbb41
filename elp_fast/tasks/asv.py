"""The ASV task (speaker verification): pooling H to a speaker embedding, softmax and additive
angular margin (AAM) losses, cosine scoring of trials with optional score normalisation against
a cohort of training utterances (S-norm, or adaptive AS-norm), EER / minDCF, the VoxCeleb1 /
manifest data and the task's registration."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import corpora
from ..data.corpora import Utterance
from ..validation import int_at_least, number_in, one_of
from . import metrics
from .datasets import DataError, TaskData
from .evaluators import Rows, forward
from .pooling import masked_mean_std
from .registry import Task, register_task

SCORE_NORMS = ("none", "s_norm", "as_norm")
AS_NORM_TOP_K = 300


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
    the published E/L-adapter code). forward(h, frame_mask, labels) -> (embeddings, loss or None);
    VerificationEvaluator scores trials by the cosine of the embeddings."""

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


def as_norm(scores: torch.Tensor, enroll: torch.Tensor, test: torch.Tensor, cohort: torch.Tensor,
            top_k: Optional[int] = 300) -> torch.Tensor:
    """Adaptive symmetric score normalisation: each trial score is z-normalised against the
    top_k cohort scores of its enrolment and of its test embedding, and the two are averaged.
    top_k None: against every cohort score (S-norm)."""
    if cohort.dim() != 2 or cohort.shape[1] != enroll.shape[1] or cohort.shape[0] < 2:
        raise ValueError(f"as_norm: cohort must be (speakers >= 2, {enroll.shape[1]}), got {tuple(cohort.shape)}")
    c = F.normalize(cohort.float())
    k = c.shape[0] if top_k is None else min(top_k, c.shape[0])

    def stats(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = (F.normalize(e.float()) @ c.T).topk(k, dim=1).values
        return top.mean(1), top.std(1).clamp_min(1e-6)

    me, se = stats(enroll)
    mt, st = stats(test)
    return 0.5 * ((scores - me) / se + (scores - mt) / st)


class VerificationEvaluator(Rows):
    """Embeds every utterance of the evaluation set (batches carry their dataset "index"),
    scores the trials by cosine similarity, and reports EER and minDCF (in %, as VoxCeleb
    results are quoted, and the raw minDCF). With cohort_start, items from that index on are a
    cohort of training utterances and the scores are normalised against it: S-norm (top_k None,
    the whole cohort) or AS-norm (the top_k closest); the raw EER is kept too."""

    def __init__(self, trials: Sequence[tuple[int, int, int]], p_target: float = 0.05,
                 cohort_start: Optional[int] = None, top_k: Optional[int] = AS_NORM_TOP_K) -> None:
        self.trials = np.asarray(trials, dtype=np.int64)  # (label, index a, index b)
        self.p_target, self.cohort_start, self.top_k = p_target, cohort_start, top_k
        self.reset()

    def update(self, model, batch: dict, keep: bool) -> None:
        emb = F.normalize(forward(model, batch).logits.float(), dim=-1)
        self.width = 1 + emb.shape[1]  # known on every process, even one with only padding batches
        if keep:
            self.rows.append(np.concatenate([batch["index"].cpu().numpy()[:, None], emb.cpu().numpy()], axis=1))

    def result(self, gather: Callable) -> dict:
        rows = self.stack(gather, self.width)
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


def _trials_from_manifest(path: Path, ids: dict) -> list[tuple[int, int, int]]:
    trials = []
    for n, label, a, b in corpora.trial_lines(path, item="id"):
        for p in (a, b):
            if p not in ids:
                raise DataError(f"{path}:{n}: utterance id {p!r} is not in the evaluation manifest")
        trials.append((label, ids[a], ids[b]))
    return trials


def cohort(train_utts: list, speakers: list, score_norm: str, size: int) -> list:
    """The training utterances scores are normalised against: for S-norm `size` of them drawn at
    random (seed 0, so every evaluation of a run uses the same ones); for AS-norm the first
    utterance of each of the first `size` speakers."""
    if score_norm == "s_norm":
        pick = np.random.default_rng(0).choice(len(train_utts), size=min(size, len(train_utts)), replace=False)
        return [train_utts[i] for i in sorted(pick)]
    first: dict = {}
    for u in train_utts:
        first.setdefault(u.speaker, u)
    return [first[s] for s in speakers][:size]


def prepare(data: dict, reader, head: dict, splits: set) -> TaskData:
    if not data.get("trials"):
        raise DataError("data.trials: ASV needs a trial list")
    root = reader.root
    trials_path = root / data["trials"]
    if reader.corpus == "voxceleb1":
        raw = corpora.voxceleb1_trials(trials_path, root)
        eval_paths = sorted({p for _, a, b in raw for p in (a, b)})
        index = {p: i for i, p in enumerate(eval_paths)}
        eval_utts = [Utterance(str(p.relative_to(root / "wav")), p) for p in eval_paths]
        trials = [(t, index[a], index[b]) for t, a, b in raw]
        test_speakers = {u.id.split("/")[0] for u in eval_utts}
        train_utts = [u for u in corpora.voxceleb1(root) if u.speaker not in test_speakers]
        if not train_utts:
            raise DataError(f"{root / 'wav'}: every speaker appears in the trial list; no training speakers left")
    else:
        if not data.get("train") or not data.get("eval"):
            raise DataError("data.train / data.eval: an ASV manifest recipe needs both")
        train_utts = reader.read(data["train"], "train")
        eval_utts = reader.read(data["eval"], "eval")
        ids = {}
        for i, u in enumerate(eval_utts):
            if u.id in ids:
                raise DataError(f"data.eval: utterance id {u.id!r} appears twice")
            ids[u.id] = i
        trials = _trials_from_manifest(trials_path, ids)
        for u in train_utts:
            if not u.speaker:
                raise DataError(f"{u.path} (utterance {u.id}): no speaker (field 'speaker'); ASV training needs one")
    speakers = sorted({u.speaker for u in train_utts})
    if len(speakers) < 2:
        raise DataError(f"data.train: found {len(speakers)} training speaker(s); expected at least two")
    spk = {s: i for i, s in enumerate(speakers)}
    sets: dict = {}
    if "train" in splits:
        sets["train"] = reader.dataset(train_utts, [spk[u.speaker] for u in train_utts], crop=True,
                                       durations=reader.seconds(train_utts, "train"))
    score_norm = head.get("score_norm", "none")
    cohort_start, top_k = None, (None if score_norm == "s_norm" else AS_NORM_TOP_K)
    if "eval" in splits:
        utts = list(eval_utts)
        if score_norm != "none":
            cohort_start = len(utts)
            utts += cohort(train_utts, speakers, score_norm, int(head.get("cohort_size", 1000)))
        sets["eval"] = reader.dataset(utts, None, with_index=True, durations=reader.seconds(utts, "eval"))
    return TaskData("asv", sets.get("train"), sets.get("eval"), None, {"num_speakers": len(speakers)},
                    {"speakers": len(speakers), "trials": len(trials)},
                    {"eval": lambda: VerificationEvaluator(trials, cohort_start=cohort_start, top_k=top_k)})


def build_head(head: dict, in_dim: int, head_args: dict) -> SpeakerHead:
    return SpeakerHead(in_dim, head_args["num_speakers"], emb_dim=head.get("emb_dim", 256),
                       pooling=head.get("pooling", "stats"), margin=head.get("margin", 0.2),
                       scale=head.get("scale", 30.0), loss=head.get("loss", "aam"))


def predictions(output, batch: dict, labels: dict) -> list[dict]:
    emb = F.normalize(output.logits.float(), dim=-1)
    return [{"embedding": [round(v, 6) for v in e.tolist()]} for e in emb]


TASK = register_task(Task(
    name="asv", summary="speaker verification: speaker embeddings scored by cosine, EER and minDCF (VoxCeleb1)",
    recipe=Path(__file__).parent / "recipes" / "asv.yaml", corpora=("voxceleb1", "manifest"),
    prepare=prepare, build_head=build_head, predictions=predictions,
    head_fields={"emb_dim": int_at_least(1), "pooling": one_of("mean", "stats"), "loss": one_of("aam", "softmax"),
                 "margin": number_in(0, 1.5), "scale": number_in(1e-6, 1e6, closed_hi=True),
                 "score_norm": one_of(*SCORE_NORMS), "cohort_size": int_at_least(2)},
    data_keys=frozenset({"trials"}), whole_set_eval=True, module=__name__))
