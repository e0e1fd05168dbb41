"""Whole-set evaluators on fake model outputs with hand-computed results (one process: gather is
the identity; the engine tests run them across processes)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from elp_fast.tasks.asr import CharVocab, CTCEvaluator
from elp_fast.tasks.asv import VerificationEvaluator
from elp_fast.tasks.evaluators import ClassificationEvaluator
from elp_fast.tasks.sic import SlotEvaluator


class Fake:
    """A model whose outputs are given in advance, one per call."""

    def __init__(self, outputs):
        self.outputs = list(outputs)

    def __call__(self, x, attention_mask=None):
        return self.outputs.pop(0)


def identity(rows):
    return rows


def run(evaluator, outputs, batches, keeps=None):
    evaluator.reset()
    model = Fake(outputs)
    for b, keep in zip(batches, keeps or [True] * len(batches)):
        evaluator.update(model, b, keep)
    return evaluator.result(identity)


def test_classification_ua_wa_and_padding_batches_left_out():
    x = torch.zeros(2, 10)
    out = [SimpleNamespace(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]])),
           SimpleNamespace(logits=torch.tensor([[0.0, 1.0], [0.0, 1.0]])),
           SimpleNamespace(logits=torch.tensor([[5.0, 0.0], [5.0, 0.0]]))]  # a padding batch
    batches = [{"input_values": x, "labels": torch.tensor([0, 1])},
               {"input_values": x, "labels": torch.tensor([0, 1])},
               {"input_values": x, "labels": torch.tensor([1, 1])}]
    # class 0: 1 of 2 right, class 1: 2 of 2 -> UA 0.75, WA 3/4
    assert run(ClassificationEvaluator(2), out, batches, [True, True, False]) == {"UA": 0.75, "WA": 0.75}


def test_slot_accuracy():
    x = torch.zeros(2, 10)
    logits = [torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])]
    got = run(SlotEvaluator(), [SimpleNamespace(logits=logits)],
              [{"input_values": x, "labels": torch.tensor([[0, 1], [0, 2]])}])
    assert got == {"accuracy": 0.5}


def test_ctc_wer_cer():
    v = CharVocab()
    path = [v.index[c] if c != " " else 1 for c in "HI THERE"]  # the model says "HI THERE"
    out = SimpleNamespace(logits=F.one_hot(torch.tensor([path]), len(v)).float(),
                          attention_mask=torch.ones(1, len(path), dtype=torch.long))
    ref = F.pad(v.encode("HI HERE"), (0, 1), value=-100)  # padded label row
    got = run(CTCEvaluator(v), [out], [{"input_values": torch.zeros(1, 10), "labels": ref[None]}])
    # words: 1 of 2 wrong; characters: 1 insertion ("T") over the reference's 7
    assert got == {"WER": pytest.approx(0.5), "CER": pytest.approx(1 / 7)}


def test_verification_eer_on_known_embeddings():
    # utterances 0, 1 (speaker A, similar), 2 (speaker B, orthogonal), 3 (between A and B)
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.8]])
    trials = [(1, 0, 1), (0, 0, 2), (1, 2, 3), (0, 1, 3)]
    out = [SimpleNamespace(logits=emb[:2]), SimpleNamespace(logits=emb[2:])]
    batches = [{"input_values": torch.zeros(2, 10), "index": torch.tensor([0, 1])},
               {"input_values": torch.zeros(2, 10), "index": torch.tensor([2, 3])}]
    got = run(VerificationEvaluator(trials), out, batches)
    # target scores 0.994, 0.8; non-target 0, 0.61: separable -> EER 0, minDCF 0
    assert got == {"EER%": 0.0, "minDCF": 0.0}
    with pytest.raises(ValueError, match=r"trial utterances \[7\] were not in the evaluation set"):
        run(VerificationEvaluator([(1, 0, 7)]), out[:1], batches[:1])


def test_verification_with_as_norm_against_a_cohort():
    from elp_fast.tasks import metrics
    from elp_fast.tasks.asv import as_norm

    torch.manual_seed(0)
    emb = F.normalize(torch.randn(10, 4), dim=-1)  # 0-5: trial utterances, 6-9: the cohort
    trials = [(1, 0, 1), (0, 0, 2), (1, 3, 4), (0, 1, 5), (0, 2, 3), (1, 4, 5)]
    out = [SimpleNamespace(logits=emb[:5]), SimpleNamespace(logits=emb[5:])]
    batches = [{"input_values": torch.zeros(5, 10), "index": torch.arange(5)},
               {"input_values": torch.zeros(5, 10), "index": torch.arange(5, 10)}]
    got = run(VerificationEvaluator(trials, cohort_start=6, top_k=3), out, batches)
    a, b = emb[[t[1] for t in trials]], emb[[t[2] for t in trials]]
    raw = (a * b).sum(-1)
    labels = [t[0] for t in trials]
    normed = as_norm(raw, a, b, emb[6:], top_k=3)
    assert got["EER%_raw"] == pytest.approx(100 * metrics.eer(raw.numpy(), labels))
    assert got["EER%"] == pytest.approx(100 * metrics.eer(normed.numpy(), labels))
    assert got["minDCF"] == pytest.approx(metrics.min_dcf(normed.numpy(), labels))
