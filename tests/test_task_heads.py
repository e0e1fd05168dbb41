"""Custom task heads on a wrapped bare encoder: trained with the adapters, saved with them,
checked on reload, refused where they cannot work."""
import pytest
import torch

import elp_fast
from conftest import audio_batch, tiny_model
from elp_fast.checkpoint import CheckpointError
from elp_fast.tasks.asv import SpeakerHead
from elp_fast.tasks.sic import MultiSlotHead

KW = dict(e_bottleneck=8, l_dim=16, p_len=2)


def sic_model(sizes=(3, 4, 2), seed=0):
    torch.manual_seed(seed + 1)
    return elp_fast.wrap(tiny_model("wavlm-postln", seed=seed), task_head=MultiSlotHead(16, sizes, hidden=8), **KW)


def test_multi_slot_head_trains_and_round_trips(tmp_path):
    elp = sic_model()
    counts = elp.trainable_parameter_counts()
    assert counts["head"] == sum(p.numel() for p in elp.task_head.parameters()) > 0
    x, mask = audio_batch()
    labels = torch.tensor([[0, 1, 1], [2, 3, 0]])
    out = elp(x, attention_mask=mask, labels=labels)
    assert [lg.shape for lg in out.logits] == [(2, 3), (2, 4), (2, 2)] and out.loss.ndim == 0
    out.loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in elp.task_head.parameters())
    with torch.no_grad():
        for p in elp.task_head.parameters():
            p.add_(0.01)
    elp.eval()
    elp.save_adapters(tmp_path)
    fresh = sic_model(seed=0)
    fresh.eval()
    fresh.load_adapters(tmp_path)
    with torch.no_grad():
        a, b = elp(x, attention_mask=mask).logits, fresh(x, attention_mask=mask).logits
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    other = sic_model(sizes=(3, 4, 5))
    with pytest.raises(CheckpointError, match="task_head"):
        other.load_adapters(tmp_path)


def test_speaker_head_gives_embeddings_and_aam_loss():
    torch.manual_seed(0)
    elp = elp_fast.wrap(tiny_model("wav2vec2-preln"), task_head=SpeakerHead(16, num_speakers=5, emb_dim=12), **KW)
    x, mask = audio_batch()
    out = elp(x, attention_mask=mask, labels=torch.tensor([4, 0]))
    assert out.logits.shape == (2, 12) and torch.isfinite(out.loss)
    out.loss.backward()
    assert elp.task_head.aam.weight.grad.abs().sum() > 0
    assert elp(x, attention_mask=mask).loss is None
    # the plain softmax variant: a linear classifier of the embedding and cross-entropy
    head = SpeakerHead(16, num_speakers=5, emb_dim=12, pooling="mean", loss="softmax")
    h, frame_mask = torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)
    emb, loss = head(h, frame_mask, torch.tensor([4, 0]))
    torch.testing.assert_close(emb, head.embedding.proj(h.mean(1)))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(head.classifier(emb), torch.tensor([4, 0])))
    with pytest.raises(ValueError, match="loss must be 'aam' or 'softmax'"):
        SpeakerHead(16, 5, loss="arcface")


@pytest.mark.parametrize("make,error,message", [
    (lambda: elp_fast.wrap(tiny_model("wavlm-postln", head="ForCTC"), task_head=MultiSlotHead(16, [2]), **KW),
     ValueError, "already has its HF ctc head"),
    (lambda: elp_fast.wrap(tiny_model("wavlm-postln"), task_head=MultiSlotHead(32, [2]), **KW),
     ValueError, "task_head.in_dim is 32; expected 16"),
    (lambda: elp_fast.wrap(tiny_model("wavlm-postln"), task_head=torch.nn.Linear(16, 2), **KW),
     TypeError, "describe()"),
])
def test_bad_task_heads(make, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("labels,message", [
    (torch.tensor([[0, 1, 1]]), r"expected \(2, 3\), one id per slot"),
    (torch.tensor([[0, 1, 1], [3, 0, 0]]), "slot 0 holds ids outside 0..2"),
    (torch.tensor([[0.0, 1, 1], [2, 0, 0]]), "expected an integer tensor"),
])
def test_bad_slot_labels(labels, message):
    elp = sic_model()
    x, mask = audio_batch()
    with pytest.raises((ValueError, TypeError), match=message):
        elp(x, attention_mask=mask, labels=labels)


def test_ctc_head_loss_is_fp32_ctc_over_real_frames():
    import torch.nn.functional as F

    from elp_fast.tasks.asr import CTCHead

    torch.manual_seed(0)
    head = CTCHead(16, 6, dropout=0.0).to(torch.bfloat16)
    h = torch.randn(2, 7, 16, dtype=torch.bfloat16)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2], dtype=torch.bool)
    labels = torch.tensor([[1, 2, 3], [4, 4, -100]])
    logits, loss = head(h, mask, labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    want = F.ctc_loss(F.log_softmax(logits.float(), -1).transpose(0, 1), torch.tensor([1, 2, 3, 4, 4]),
                      torch.tensor([7, 5]), torch.tensor([3, 2]), blank=0, zero_infinity=True)
    torch.testing.assert_close(loss, want)
    # frames past the mask do not count: changing them changes nothing
    h2 = h.clone()
    h2[1, 5:] = 9.0
    torch.testing.assert_close(head(h2, mask, labels)[1], loss)
    with pytest.raises(ValueError, match=r"utterance 1 of the batch has 4 target tokens but 3 frames"):
        head(h[:, :3], None, torch.tensor([[1, -100, -100, -100], [1, 2, 3, 4]]))
    with pytest.raises(ValueError, match=r"token ids \[0\]; expected ids in 1..5"):
        head.check_labels(torch.tensor([[0, 1]]), 1)


def test_classifier_head_pools_real_frames_only():
    from elp_fast.tasks.ser import ClassifierHead

    torch.manual_seed(0)
    head = ClassifierHead(16, 4, proj_dim=8)
    h = torch.randn(2, 6, 16)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)
    logits, loss = head(h, mask, torch.tensor([0, 3]))
    h2 = h.clone()
    h2[1, 4:] = 100.0
    torch.testing.assert_close(head(h2, mask)[0], logits)
    want = head.classifier(head.projector(h[1, :4]).mean(0))
    torch.testing.assert_close(logits[1], want)
    assert loss.ndim == 0 and loss > 0
    with pytest.raises(ValueError, match=r"class ids \[0, 4\]; expected ids in 0..3"):
        head.check_labels(torch.tensor([0, 4]), 2)
