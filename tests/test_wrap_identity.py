"""With adapters disabled the wrapped model computes exactly what the original model computes."""
import copy

import pytest
import torch

import elp_fast
from conftest import BACKBONES, audio_batch, match_grad_flags, tiny_model


@pytest.mark.parametrize("masked", [False, True])
def test_base_model_identity(backbone_key, masked):
    model = tiny_model(backbone_key)
    ref = copy.deepcopy(model)
    elp = elp_fast.wrap(model, e_bottleneck=8, l_dim=16, p_len=3).eval()
    match_grad_flags(ref, elp)
    x, mask = audio_batch()
    mask = mask if masked else None
    with torch.no_grad():
        expect = ref(x, attention_mask=mask).last_hidden_state
        with elp.disable_adapters():
            got = elp(x, attention_mask=mask)
        enabled = elp(x, attention_mask=mask).last_hidden_state
    assert torch.equal(got.last_hidden_state, expect)
    assert enabled.shape == (*expect.shape[:2], 16)  # pseudo frames removed again
    assert not torch.allclose(enabled[..., :1], expect[..., :1])


@pytest.mark.parametrize("head", ["ForCTC", "ForSequenceClassification"])
@pytest.mark.parametrize("key", ["wavlm-postln", "wav2vec2-preln", "hubert-postln", "data2vec-audio"])
def test_head_model_identity_with_resized_head(key, head):
    model = tiny_model(key, head=head, use_weighted_layer_sum=(head != "ForCTC"))
    ref = copy.deepcopy(model)
    elp = elp_fast.wrap(model, e_bottleneck=8, l_dim=16).eval()
    match_grad_flags(ref, elp)
    x, mask = audio_batch()
    with torch.no_grad():
        expect = ref(x, attention_mask=mask).logits
        with elp.disable_adapters():
            got = elp(x, attention_mask=mask).logits
        enabled = elp(x, attention_mask=mask).logits
    assert torch.equal(got, expect)
    assert enabled.shape == expect.shape
    first = elp.model.lm_head if head == "ForCTC" else elp.model.projector
    assert first.in_features == 16 and elp.original_head_input.in_features == 32


def test_hidden_states_on_request_and_layers_skipped_when_not_needed(backbone_key):
    elp = elp_fast.wrap(tiny_model(backbone_key), e_bottleneck=8, l_dim=16, l_layers=[0], e_layers=[0]).eval()
    x, mask = audio_batch()
    seen = []
    hooks = [layer.feed_forward.register_forward_hook(lambda *a, i=i: seen.append(i))
             for i, layer in enumerate(elp.backbone.encoder.layers)]
    with torch.no_grad():
        out = elp(x, attention_mask=mask)
        assert seen == [0]  # layers above the highest L tap cannot change H
        full = elp(x, attention_mask=mask, output_hidden_states=True)
    for h in hooks:
        h.remove()
    assert len(full.hidden_states) == 4 and full.hidden_states[0].shape[1] == out.last_hidden_state.shape[1]
    assert torch.equal(full.last_hidden_state, out.last_hidden_state)
    assert out.attention_mask.dtype == torch.bool and out.attention_mask.shape == out.last_hidden_state.shape[:2]


def test_every_family_is_covered():
    families = {elp_fast.wrap(tiny_model(k)).family.name for k in BACKBONES}
    assert families == {"wavlm", "wav2vec2", "hubert", "data2vec-audio"}


def test_mms_attention_adapters_are_kept():
    """MMS checkpoints (pre-LN wav2vec2 with adapter_attn_dim) carry per-layer adapters of their own."""
    model = tiny_model("wav2vec2-preln", adapter_attn_dim=8)
    assert model.encoder.layers[0].adapter_layer is not None
    ref = copy.deepcopy(model)
    elp = elp_fast.wrap(model, e_bottleneck=8, l_dim=16).eval()
    match_grad_flags(ref, elp)
    x, mask = audio_batch()
    with torch.no_grad(), elp.disable_adapters():
        assert torch.equal(elp(x, attention_mask=mask).last_hidden_state,
                           ref(x, attention_mask=mask).last_hidden_state)
