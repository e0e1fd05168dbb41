"""Activation checkpointing of encoder layers and the backward savings of docs/design.md 2.6."""
import pytest
import torch

import elp_fast
from conftest import audio_batch, tiny_model

KEYS = ["wavlm-postln", "wav2vec2-preln"]


def wrapped(key, **kw):
    # Dropout on: checkpointing must replay the same masks in its recomputation.
    model = tiny_model(key, head="ForSequenceClassification", hidden_dropout=0.1, attention_dropout=0.1,
                       activation_dropout=0.1, mask_time_prob=0.0)
    return elp_fast.wrap(model, **{"e_bottleneck": 8, "l_dim": 16, "p_len": 2, **kw}).train()


def grads_and_saved_bytes(elp, layers):
    elp.set_activation_checkpointing(layers)
    elp.zero_grad(set_to_none=True)
    x, mask = audio_batch()
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = elp(x, attention_mask=mask, labels=torch.tensor([1, 2])).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in elp.named_parameters() if p.requires_grad
                           and p.grad is not None}, sum(saved)


@pytest.mark.parametrize("key", KEYS)
def test_checkpointing_gives_identical_gradients_and_trains_everything(key):
    elp = wrapped(key)
    loss0, g0, bytes0 = grads_and_saved_bytes(elp, "none")
    loss1, g1, bytes1 = grads_and_saved_bytes(elp, "all")
    trainable = [n for n, p in elp.named_parameters() if p.requires_grad]
    assert sorted(g1) == sorted(trainable), "a trainable tensor got no gradient with checkpointing on"
    assert all(bool(g.abs().sum() > 0) for g in g1.values()), [n for n, g in g1.items() if not g.any()]
    assert torch.equal(loss0, loss1)
    for n in g0:
        assert torch.equal(g0[n], g1[n]), n
    assert bytes1 < 0.7 * bytes0, (bytes1, bytes0)
    _, _, bytes_some = grads_and_saved_bytes(elp, [1])
    assert bytes1 < bytes_some < bytes0


def test_layers_below_the_first_trained_one_run_without_autograd():
    # E-adapter in layer 1 only, encoder norms frozen, no P: layer 0 needs no backward.
    elp = wrapped("wavlm-postln", e_layers=[1], p_len=0, train_layer_norms=False)
    assert elp.first_backward_layer() == 1
    x, mask = audio_batch()
    out = elp(x, attention_mask=mask, output_hidden_states=True)
    assert [h.requires_grad for h in out.hidden_states] == [False, False, True, True]
    # Only L-adapters (and the head): the whole backbone runs without autograd.
    l_only = wrapped("wavlm-postln", e_layers="none", p_len=0, train_layer_norms=False)
    assert l_only.first_backward_layer() == l_only.num_layers
    out = l_only(x, attention_mask=mask, labels=torch.tensor([0, 1]), output_hidden_states=True)
    assert not any(h.requires_grad for h in out.hidden_states)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in l_only.l_adapters.parameters())
    # A trainable P-adapter needs backward from the encoder input on.
    assert wrapped("wavlm-postln").first_backward_layer() == -1


def test_no_grad_prefix_does_not_change_results():
    elp = wrapped("hubert-postln", e_layers=[2], p_len=0, train_layer_norms=False).eval()
    x, mask = audio_batch()
    with_prefix = elp(x, attention_mask=mask).logits
    with torch.no_grad():
        plain = elp(x, attention_mask=mask).logits
    assert torch.equal(with_prefix.detach(), plain)


def test_bad_checkpointing_arguments():
    elp = wrapped("wavlm-postln")
    with pytest.raises(ValueError, match=r"got layer indices \[3\]; this backbone has 3 encoder layers"):
        elp.set_activation_checkpointing([0, 3])
    with pytest.raises(ValueError, match="expected 'all' or 'none'"):
        elp.set_activation_checkpointing("most")
    with pytest.raises(ValueError, match="list of 0-based layer indices"):
        elp.set_activation_checkpointing([0.5])
    assert elp.set_activation_checkpointing([2, 0]) == [0, 2] and elp.checkpointed_layers == [0, 2]
    assert elp.set_activation_checkpointing(False) == []
