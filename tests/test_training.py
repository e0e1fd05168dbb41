"""Gradient audit, frozen weights, trainable-parameter counts, P-adapter behaviour."""
import pytest
import torch
import transformers

import elp_fast
from elp_fast import ELPConfigError
from conftest import audio_batch, tiny_model


@pytest.mark.parametrize("p_mode", ["static", "conditioned"])
def test_gradient_audit_and_frozen_weights_stay_bit_identical(backbone_key, p_mode):
    elp = elp_fast.wrap(tiny_model(backbone_key, head="ForCTC"), e_bottleneck=8, l_dim=16, p_len=2,
                        p_mode=p_mode, p_bottleneck=4)
    elp.train()
    frozen = {n: p.detach().clone() for n, p in elp.named_parameters() if not p.requires_grad}
    buffers = {n: b.clone() for n, b in elp.named_buffers()}
    trainable = {n: p.detach().clone() for n, p in elp.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in elp.parameters() if p.requires_grad], lr=1e-3)
    x, mask = audio_batch()
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, -100, -100]])
    for step in range(3):
        opt.zero_grad()
        loss = elp(x, attention_mask=mask, labels=labels).loss
        loss.backward()
        if step == 0:
            no_grad = [n for n, p in elp.named_parameters()
                       if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
            assert no_grad == [], f"trainable parameters without gradient: {no_grad}"
            assert all(p.grad is None for p in elp.parameters() if not p.requires_grad)
        opt.step()
    for n, p in elp.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, trainable[n]), f"{n} did not change"
    for n, b in elp.named_buffers():
        assert torch.equal(b, buffers[n]), n
    groups = {elp.parameter_group(n) for n in trainable}
    assert groups == {"e_adapters", "l_adapters", "layer_weights", "p_adapter", "layer_norms", "head"}


def test_parameter_figure_for_wavlm_base_plus_dimensions():
    with torch.device("meta"):  # shapes only: no 95M-parameter initialisation
        model = transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
    elp = elp_fast.wrap(model, p_len=0)
    counts = elp.trainable_parameter_counts()
    assert counts["trainable_no_head"] == 9_127_436  # the published count (Otake et al.)
    assert counts["e_adapters"] == 11 * (2 * 768 * 256 + 256 + 768 + 2 * 768)
    assert counts["l_adapters"] == 12 * (768 * 512 + 3 * 512) and counts["layer_weights"] == 12
    assert counts["layer_norms"] == 12 * 2 * 2 * 768 and counts["p_adapter"] == 0
    report = elp.parameter_report()
    assert "9,127,436" in report and "e_adapters" in report and "%" in report


def test_switches_change_what_trains():
    elp = elp_fast.wrap(tiny_model("wav2vec2-postln", head="ForSequenceClassification"),
                        train_layer_norms=False, train_head=False, e_layers="none", p_len=0)
    c = elp.trainable_parameter_counts()
    assert c["layer_norms"] == c["head"] == c["e_adapters"] == c["p_adapter"] == 0
    assert c["trainable"] == c["l_adapters"] + c["layer_weights"] > 0
    only_e = elp_fast.wrap(tiny_model("wavlm-postln"), l_layers="none", e_layers="all", p_len=0)
    out = only_e(*audio_batch())
    assert out.last_hidden_state.shape[-1] == 32 and only_e.l_adapters is None


def test_e_adapter_above_highest_l_tap_is_rejected():
    with pytest.raises(ELPConfigError, match=r"E-adapter in layer 2 above the highest L-adapter tap 1"):
        elp_fast.wrap(tiny_model("wavlm-postln"), e_layers="all", l_layers=[0, 1])


@pytest.mark.parametrize("p_mode", ["static", "conditioned"])
def test_p_adapter_results_do_not_depend_on_padding(p_mode):
    elp = elp_fast.wrap(tiny_model("wav2vec2-preln"), e_bottleneck=8, l_dim=16, p_len=4, p_mode=p_mode).eval()
    x, _ = audio_batch(batch=1, samples=3000)
    padded = torch.cat([x, torch.zeros(1, 1000)], dim=1)
    mask = torch.cat([torch.ones(1, 3000), torch.zeros(1, 1000)], dim=1).long()
    with torch.no_grad():
        alone = elp(x).last_hidden_state
        batched = elp(padded, attention_mask=mask)
    frames = alone.shape[1]
    assert int(batched.attention_mask.sum()) == frames
    torch.testing.assert_close(batched.last_hidden_state[:, :frames], alone, rtol=1e-4, atol=1e-5)
