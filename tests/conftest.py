"""Shared fixtures: tiny random backbones of every supported family (no downloads)."""
import os

# Must be set before any Triton kernel module is imported (docs/design.md 6). The GPU run sets
# TRITON_INTERPRET=0 itself and selects `-m gpu` (benchmarks/device_check.sh).
os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ["TRITON_INTERPRET"] not in ("", "0")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2, layerdrop=0.0)

# (family config class, base model class, extra config): both layer-norm placements where the
# family has them (data2vec-audio is post-LN only).
BACKBONES = {
    "wavlm-postln": ("WavLMConfig", "WavLMModel", {}),
    "wavlm-preln": ("WavLMConfig", "WavLMModel", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "wav2vec2-postln": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
    "wav2vec2-preln": ("Wav2Vec2Config", "Wav2Vec2Model", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "hubert-postln": ("HubertConfig", "HubertModel", {}),
    "hubert-preln": ("HubertConfig", "HubertModel", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel", {}),
}


def tiny_config(key, **extra):
    cfg_name, _, kw = BACKBONES[key]
    return getattr(transformers, cfg_name)(**{**TINY, **kw, **extra})


def tiny_model(key, head=None, seed=0, **extra):
    """head: None, 'ForCTC' or 'ForSequenceClassification'."""
    _, cls_name, _ = BACKBONES[key]
    if head is not None:
        cls_name = cls_name.replace("Model", head)
        extra = {"vocab_size": 12, "num_labels": 4, "classifier_proj_size": 24, **extra}
    torch.manual_seed(seed)
    return getattr(transformers, cls_name)(tiny_config(key, **extra)).eval()


def match_grad_flags(ref, elp):
    """Give an untouched copy of the original model the wrapped model's requires_grad flags.
    Some CPU kernels take another code path for weights that require grad (changing the last
    bits), so "the original model" is compared in the same state as the wrapped one."""
    wrapped = dict(elp.model.named_parameters())
    for n, p in ref.named_parameters():
        same = n in wrapped and wrapped[n].shape == p.shape
        p.requires_grad_(same and wrapped[n].requires_grad)
    return ref


def audio_batch(batch=2, samples=4000, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(batch, samples, generator=g)
    mask = torch.ones(batch, samples, dtype=torch.long)
    if batch > 1:
        mask[-1, samples * 3 // 4:] = 0
        x[-1, samples * 3 // 4:] = 0.0
    return x, mask


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need a CUDA device and compiled kernels; say why when they cannot run."""
    if not torch.cuda.is_available():
        reason = "needs a CUDA device"
    elif INTERPRET:
        reason = "compiled kernels only: run with TRITON_INTERPRET=0"
    else:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(params=sorted(BACKBONES))
def backbone_key(request):
    return request.param
