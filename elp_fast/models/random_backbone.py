"""Randomly initialised WavLM backbones of fixed shapes: what the demo, the synthetic tone task,
the tests and `--backbone small|mini|base` train when no pretrained checkpoint is given. The one
place these shapes are defined."""
from __future__ import annotations

from typing import Any, Optional

import torch

SIZES = ("small", "mini", "base")


def random_wavlm_config(size: str, **overrides: Any):
    """small: 4 layers, d=64 and a 3-layer CNN (tests, the tone task); mini: WavLM-shaped (the
    standard 7-layer CNN with 64 channels, 50 frames/s), 4 layers, d=128 (the demo); base: WavLM
    Base+ sizes. SpecAugment and LayerDrop off; `overrides` set further config fields."""
    import transformers

    if size == "base":
        fields = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      mask_time_prob=0.0, layerdrop=0.0)
    elif size == "mini":
        fields = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                      conv_dim=(64,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
                      mask_time_prob=0.0, layerdrop=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
    elif size == "small":
        fields = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                      conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.0,
                      layerdrop=0.0)
    else:
        raise ValueError(f"random_wavlm_config: size got {size!r}; expected one of {SIZES}")
    return transformers.WavLMConfig(**{**fields, **overrides})


def random_wavlm(size: str, seed: int, head: Optional[str] = None, **overrides: Any) -> torch.nn.Module:
    """A WavLM of `size` drawn after torch.manual_seed(seed): the bare encoder (head None) or a
    WavLMForSequenceClassification (head "sequence_classification"; set num_labels in
    `overrides`)."""
    import transformers

    config = random_wavlm_config(size, **overrides)
    torch.manual_seed(seed)
    if head is None:
        return transformers.WavLMModel(config)
    if head == "sequence_classification":
        return transformers.WavLMForSequenceClassification(config)
    raise ValueError(f"random_wavlm: head got {head!r}; expected None or 'sequence_classification'")
