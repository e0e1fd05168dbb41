"""Task pieces: CTC vocabulary and decoding, speaker embeddings and AAM loss, score
normalisation, slot vocabularies and the multi-slot head."""
import math

import pytest
import torch
import torch.nn.functional as F

from elp_fast.tasks.asr import CharVocab, check_ctc_target, frames_for_samples
from elp_fast.tasks.asv import AAMSoftmax, SpeakerEmbedding, as_norm
from elp_fast.tasks.pooling import masked_mean_std
from elp_fast.tasks.sic import MultiSlotHead, SlotVocab

W2V_KERNEL, W2V_STRIDE = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)


def test_char_vocab_round_trip_and_greedy_decoding():
    v = CharVocab()
    assert len(v) == 29 and v.blank == 0
    ids = v.encode("it's  ok")
    assert v.tokens[ids[0]] == "I" and ids.tolist().count(1) == 1
    assert v.decode_ids(ids.tolist()) == "IT'S OK"
    # frames: O O <blank> K | <blank> K <pad-frame>: repeats merge, a blank separates the two K
    o, k = v.index["O"], v.index["K"]
    path = [o, o, 0, k, 1, 0, k, o]
    logits = F.one_hot(torch.tensor([path, path]), len(v)).float()
    mask = torch.tensor([[1] * 7 + [0], [1] * 8])
    assert v.greedy_decode(logits, mask) == ["OK K", "OK KO"]
    with pytest.raises(ValueError, match="u1: character '3' in 'x3' is not in the vocabulary"):
        v.encode("x3", utterance="u1")
    with pytest.raises(ValueError, match="u2: the transcript is empty"):
        v.encode("  ", utterance="u2")


def test_ctc_frames_and_target_check():
    assert frames_for_samples(16000, W2V_KERNEL, W2V_STRIDE) == 49  # wav2vec 2.0: 20 ms frames
    assert frames_for_samples(300, W2V_KERNEL, W2V_STRIDE) == 0
    check_ctc_target(torch.tensor([3, 4, 5]), 1600, W2V_KERNEL, W2V_STRIDE, "ok")  # 4 frames >= 3
    with pytest.raises(ValueError, match=r"spk-1: the transcript needs 5 frames \(4 tokens, 1 repeated\), but its "
                                         r"0.10 s of audio give 4"):
        check_ctc_target(torch.tensor([3, 3, 4, 5]), 1600, W2V_KERNEL, W2V_STRIDE, "spk-1")


def test_pooling_and_speaker_embedding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mean, std = masked_mean_std(h, torch.tensor([[1, 1, 0]]))
    assert mean.tolist() == [[2.0, 4.0]] and std.tolist() == [[1.0, 2.0]]
    emb = SpeakerEmbedding(2, 5, pooling="stats")(h, torch.tensor([[1, 1, 0]]))
    assert emb.shape == (1, 5)
    with pytest.raises(ValueError, match="pooling must be 'mean' or 'stats'"):
        SpeakerEmbedding(2, 5, pooling="max")


def test_aam_softmax():
    aam = AAMSoftmax(2, 3, margin=0.3, scale=10.0)
    with torch.no_grad():
        aam.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    emb = torch.tensor([[1.0, math.sqrt(3.0)]])  # 60 degrees from class 0, 30 from class 1
    plain = aam.logits(emb)
    margin = aam.logits(emb, torch.tensor([0]))
    assert plain[0].tolist() == pytest.approx([5.0, 10 * math.sqrt(3) / 2, -5.0], abs=1e-5)
    assert margin[0, 0].item() == pytest.approx(10 * math.cos(math.pi / 3 + 0.3), abs=1e-5)  # s cos(theta + m)
    assert margin[0, 1:].tolist() == pytest.approx(plain[0, 1:].tolist())
    loss = aam(emb.requires_grad_(), torch.tensor([0]))
    loss.backward()
    assert loss.item() > F.cross_entropy(plain, torch.tensor([0])).item() and aam.weight.grad.abs().sum() > 0


def test_as_norm_and_s_norm():
    e, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    s = F.cosine_similarity(e, t)
    assert s.tolist() == pytest.approx([0.0])
    # cohort scores of both sides are [1, 0]: mean 0.5, std 0.7071 -> (0 - 0.5) / 0.7071
    cohort = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert as_norm(s, e, t, cohort, top_k=2).tolist() == pytest.approx([-0.5 / math.sqrt(0.5)])
    # S-norm: the whole cohort; AS-norm with top_k 1: only the closest cohort score (1), std clamped
    assert as_norm(s, e, t, cohort, top_k=None).tolist() == pytest.approx([-0.5 / math.sqrt(0.5)])
    big = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert as_norm(s, e, t, big, top_k=None).tolist() != as_norm(s, e, t, big, top_k=2).tolist()
    with pytest.raises(ValueError, match="cohort must be"):
        as_norm(s, e, t, torch.zeros(1, 2))


def test_slots_and_multi_slot_head():
    examples = [("activate", "lights", "kitchen"), ("bring", "shoes", "none"), ("activate", "music", "none")]
    vocab = SlotVocab(["action", "object", "location"], examples)
    assert vocab.sizes == [2, 3, 2]
    ids = vocab.encode(("bring", "music", "kitchen"))
    assert vocab.decode(ids.tolist()) == ("bring", "music", "kitchen")
    with pytest.raises(ValueError, match="u9: object 'socks' was not seen in training"):
        vocab.encode(("bring", "socks", "none"), utterance="u9")
    head = MultiSlotHead(4, vocab.sizes, hidden=8)
    h = torch.randn(3, 5, 4)
    labels = torch.stack([vocab.encode(e) for e in examples])
    logits, loss = head(h, torch.ones(3, 5, dtype=torch.long), labels)
    assert [lg.shape for lg in logits] == [(3, 2), (3, 3), (3, 2)]
    want = sum(F.cross_entropy(lg, labels[:, s]) for s, lg in enumerate(logits))
    assert loss.item() == pytest.approx(want.item())
    assert head.predict(logits).shape == (3, 3)
    with pytest.raises(ValueError, match=r"expected \(batch, 3 slots\)"):
        head.loss(logits, labels[:, :2])
