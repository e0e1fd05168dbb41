"""Malformed input fails early with a message naming the argument, and changes nothing."""
import pytest
import torch
import transformers

import elp_fast
from elp_fast import ELPConfig, ELPConfigError, UnsupportedModelError
from conftest import audio_batch, tiny_model


@pytest.fixture(scope="module")
def ctc():
    return elp_fast.wrap(tiny_model("wavlm-postln", head="ForCTC"), e_bottleneck=8, l_dim=16, p_len=2)


@pytest.fixture(scope="module")
def cls():
    return elp_fast.wrap(tiny_model("hubert-postln", head="ForSequenceClassification"), e_bottleneck=8, l_dim=16)


X, MASK = audio_batch()
CTC_LABELS = torch.tensor([[1, 2], [3, -100]])

FORWARD_CASES = {
    "sampling_rate": (dict(input_values=X, sampling_rate=8000), ValueError, r"sampling_rate: got 8000 Hz; expected 16000 Hz"),
    "stereo": (dict(input_values=X.unsqueeze(1).repeat(1, 2, 1)), ValueError, r"input_values: got shape \(2, 2, 4000\) \(rank 3\).*mix down"),
    "rank1": (dict(input_values=X[0]), ValueError, r"rank 1\); expected rank 2 .* input_values\[None\]"),
    "empty_batch": (dict(input_values=X[:0]), ValueError, r"got shape \(0, 4000\); expected a non-empty batch"),
    "too_short": (dict(input_values=X[:, :20]), ValueError, r"got shape \(2, 20\); expected .* at least 45 samples"),
    "nan": (dict(input_values=X.clone().index_fill_(1, torch.tensor([5]), float("nan"))), ValueError, "contains NaN or Inf"),
    "inf": (dict(input_values=X.clone().index_fill_(1, torch.tensor([5]), float("inf"))), ValueError, "contains NaN or Inf"),
    "int16": (dict(input_values=(X * 32767).to(torch.int16)), TypeError, r"dtype torch.int16; .*x.float\(\) / 32768"),
    "unnormalised": (dict(input_values=X * 32767), ValueError, r"peak \|sample\| is .*; expected normalised audio"),
    "not_a_tensor": (dict(input_values=X.tolist()), TypeError, r"input_values: got list; expected a float torch.Tensor"),
    "mask_shape": (dict(input_values=X, attention_mask=MASK[:, :100]), ValueError, r"attention_mask: got shape \(2, 100\); expected \(2, 4000\)"),
    "mask_values": (dict(input_values=X, attention_mask=MASK * 2), ValueError, "attention_mask: expected only 0 and 1"),
    "mask_all_padding": (dict(input_values=X, attention_mask=torch.zeros_like(MASK)), ValueError, r"rows \[0, 1\] are all padding"),
    "ctc_label_range": (dict(input_values=X, labels=torch.tensor([[1, 12], [3, -100]])), ValueError, r"labels: got token ids \[12\]; expected ids in 0..11"),
    "ctc_label_rank": (dict(input_values=X, labels=torch.tensor([1, 2])), ValueError, r"labels: got shape \(2,\); expected \(2, max_target_length\)"),
    "ctc_too_long": (dict(input_values=X, attention_mask=MASK, labels=torch.ones(2, 160, dtype=torch.long)), ValueError,
                     r"CTC targets of utterances \[1\] have lengths \[160\], longer than their frame counts \[148\]"),
    "float_labels": (dict(input_values=X, labels=CTC_LABELS.float()), TypeError, "labels: got torch.float32; expected an integer tensor"),
}


@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_forward_rejects(ctc, name):
    kwargs, error, message = FORWARD_CASES[name]
    before = {n: p.clone() for n, p in ctc.state_dict().items()}
    with pytest.raises(error, match=message):
        ctc(**kwargs)
    assert all(torch.equal(before[n], p) for n, p in ctc.state_dict().items())


def test_classification_labels_out_of_range(cls):
    with pytest.raises(ValueError, match=r"labels: got values \[0, 4\]; expected class ids in 0..3"):
        cls(X, labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"labels: got shape \(2, 1\); expected \(2,\)"):
        cls(X, labels=torch.tensor([[0], [1]]))


def test_labels_without_head():
    elp = elp_fast.wrap(tiny_model("wav2vec2-postln"))
    with pytest.raises(ValueError, match="labels: given, but the wrapped model has no task head"):
        elp(X, labels=torch.tensor([0, 1]))


def test_unsupported_models_name_class_and_families():
    with pytest.raises(UnsupportedModelError, match=r"model class Linear is not supported: it lacks feature_extractor.*supported: WavLM, Wav2Vec2"):
        elp_fast.wrap(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedModelError, match=r"model must be a torch.nn.Module, got str"):
        elp_fast.wrap("microsoft/wavlm-base-plus")
    torch.manual_seed(0)
    xvec = transformers.WavLMForXVector(tiny_model("wavlm-postln").config)
    with pytest.raises(UnsupportedModelError, match=r"head model WavLMForXVector is not supported .* wrap model.wavlm"):
        elp_fast.wrap(xvec)
    conformer = transformers.Wav2Vec2ConformerModel(transformers.Wav2Vec2ConformerConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16,),
        conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2))
    with pytest.raises(UnsupportedModelError, match=r"Wav2Vec2ConformerModel is not supported: it lacks encoder.layers\[0\]"):
        elp_fast.wrap(conformer)
    added = tiny_model("wav2vec2-postln", add_adapter=True, output_hidden_size=32)
    with pytest.raises(UnsupportedModelError, match="config.add_adapter=True"):
        elp_fast.wrap(added)
    elp = elp_fast.wrap(tiny_model("wav2vec2-postln"))
    with pytest.raises(UnsupportedModelError, match="already an ELPModel"):
        elp_fast.wrap(elp)


def test_bad_wrap_config_changes_nothing():
    model = tiny_model("wavlm-postln", head="ForCTC")
    flags = [p.requires_grad for p in model.parameters()]
    head = model.lm_head
    with pytest.raises(ELPConfigError, match=r"e_layers: got layer indices \[7\]; this backbone has 3 encoder layers, so indices must be in 0..2"):
        elp_fast.wrap(model, e_layers=[0, 7])
    with pytest.raises(ELPConfigError, match=r"ELPConfig.e_bottleneck: got 0; expected an integer >= 1"):
        elp_fast.wrap(model, e_bottleneck=0)
    with pytest.raises(ELPConfigError, match=r"unknown field\(s\) \['bottleneck'\]"):
        elp_fast.wrap(model, bottleneck=64)
    with pytest.raises(TypeError, match="config must be an ELPConfig or None, got dict"):
        elp_fast.wrap(model, {"e_bottleneck": 8})
    assert [p.requires_grad for p in model.parameters()] == flags and model.lm_head is head
    assert isinstance(ELPConfig(), ELPConfig)
