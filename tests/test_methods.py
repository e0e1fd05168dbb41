"""The baselines `--method` selects: parameter counts against the published table, what
trains and what runs without autograd, and the placement of the extra pieces (attention
adapters, the plain weighted sum, full fine-tuning)."""
import pytest
import torch
import transformers

import elp_fast
from conftest import audio_batch, tiny_model
from elp_fast.ops import weighted_layer_sum
from elp_fast.tasks.methods import METHODS


def base_plus():
    with torch.device("meta"):
        return transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))


def test_trainable_counts_match_the_published_table():
    model = base_plus()
    layers = sum(p.numel() for p in model.encoder.layers.parameters())
    adapter = 768 * 256 + 256 + 256 * 768 + 768 + 2 * 768  # bottleneck + its LayerNorm
    l_bank = 12 * (768 * 512 + 3 * 512) + 12
    norms = 12 * 2 * 2 * 768
    expected = {"elp": 11 * adapter + l_bank + norms + 8 * 512,  # + 8 pseudo frames of the 512-d CNN features
                "el": 11 * adapter + l_bank + norms,   # 9,127,436 (published 9.13 M)
                "adapters": 24 * adapter + norms,      # 9.54 M (published 9.53 M)
                "l_only": l_bank + norms,              # 4,773,900: published 4.74 M leaves the norms out
                "e_only": 12 * adapter + norms,        # 4.79 M
                "full": layers,                        # 85.1 M
                "weighted_sum": 13 + norms,            # X^0..X^12 and the layer norms
                "head_only": 0}
    got = {m: elp_fast.wrap(model, **METHODS[m][1]).trainable_parameter_counts()["trainable_no_head"]
           for m in expected}
    assert got == expected
    assert got["el"] == 9_127_436 and got["elp"] == 9_131_532 and round(got["full"] / 1e6, 1) == 85.1
    assert got["l_only"] - norms == 4_737_036 and got["l_only"] == 4_773_900


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_trainable_tensor_gets_a_gradient_and_frozen_layers_run_without_autograd(method, backbone_key):
    overrides = METHODS[method][1]
    elp = elp_fast.wrap(tiny_model(backbone_key, head="ForSequenceClassification"),
                        **{"e_bottleneck": 8, "l_dim": 16, "p_len": 2, **overrides})
    x, mask = audio_batch()
    elp(x, attention_mask=mask, labels=torch.tensor([0, 1])).loss.backward()
    trainable = [n for n, p in elp.named_parameters() if p.requires_grad]
    missing = [n for n, p in elp.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert trainable and missing == []
    assert all(p.grad is None for p in elp.parameters() if not p.requires_grad)
    frozen_backbone = method == "head_only"
    assert (elp.first_backward_layer() == elp.num_layers) == frozen_backbone
    groups = {elp.parameter_group(n) for n in trainable}
    assert ("encoder" in groups) == (method == "full")
    if method == "full":
        assert not any(p.requires_grad for p in elp.backbone.feature_extractor.parameters())


@pytest.mark.parametrize("method", ["adapters", "e_only"])
def test_zero_initialised_adapters_are_identities_in_their_places(method, backbone_key):
    """With zero weights a bottleneck's branch is LN(0) = 0: the model must then compute the
    original encoder exactly, which fails if an adapter sat in the wrong place of the layer."""
    elp = elp_fast.wrap(tiny_model(backbone_key), init_std=0.0, e_bottleneck=8, **METHODS[method][1]).eval()
    x, mask = audio_batch()
    with torch.no_grad():
        got = elp(x, attention_mask=mask).last_hidden_state
        with elp.disable_adapters():
            want = elp(x, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # and they do act once their weights move
        for p in elp.a_adapters.parameters() if method == "adapters" else elp.e_adapters.parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(elp(x, attention_mask=mask).last_hidden_state, want, atol=1e-3)


def test_weighted_sum_is_the_softmax_weighted_sum_of_x0_to_xl():
    """SUPERB's featurizer (and the published code's HF use_weighted_layer_sum): L + 1 weights,
    X^0 (the encoder input) included, over the unchanged backbone's hidden states."""
    model = tiny_model("wavlm-postln")
    x, mask = audio_batch()
    with torch.no_grad():
        hf_states = model(x, attention_mask=mask, output_hidden_states=True).hidden_states
    elp = elp_fast.wrap(model, **METHODS["weighted_sum"][1]).eval()
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    assert elp.l_adapters.layer_logits.shape == (elp.num_layers + 1,)
    with torch.no_grad():
        elp.l_adapters.layer_logits.copy_(logits)
        out = elp(x, attention_mask=mask, output_hidden_states=True)
        want = weighted_layer_sum(list(out.hidden_states), logits, backend="reference")
    assert elp.output_dim == elp.backbone.config.hidden_size
    torch.testing.assert_close(out.last_hidden_state, want)
    hf_sum = sum(w * h for w, h in zip(torch.softmax(logits, 0), hf_states))
    torch.testing.assert_close(out.last_hidden_state, hf_sum)
    torch.testing.assert_close(elp.l_adapters.layer_weights(), torch.softmax(logits, 0))


def test_adapters_above_the_top_tap_are_refused():
    with pytest.raises(elp_fast.ELPConfigError, match="attention-adapter in layer 2 above the highest L-adapter tap 0"):
        elp_fast.wrap(tiny_model("wavlm-postln"), l_layers=[0], e_layers="none", a_layers="all")
    with pytest.raises(elp_fast.ELPConfigError, match="ELPConfig.l_mode: got 'sum'"):
        elp_fast.ELPConfig(l_mode="sum")
