"""wav2vec 2.0 family: also the generic layout that HuBERT, data2vec-audio (and UniSpeech-style
models) share. Encoder layers take an attention mask prepared by transformers' own mask helper
(so eager and SDPA attention see exactly what the HF encoder gives them) and return a tensor."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn


class Wav2Vec2Family:
    name = "wav2vec2"
    model_types = ("wav2vec2",)
    first_droppable_layer = 0  # LayerDrop may skip any layer (HF's rule)

    @staticmethod
    def prepare_attention_mask(encoder: nn.Module, hidden: torch.Tensor,
                               frame_mask: Optional[torch.Tensor]) -> Any:
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden,
                                         attention_mask=frame_mask)

    @staticmethod
    def attention(layer: nn.Module, hidden: torch.Tensor, mask: Any, state: Any, index: int):
        """-> (attention output, state carried to the next layer)."""
        out, _ = layer.attention(hidden, attention_mask=mask)
        return out, None

    @staticmethod
    def matches(model: nn.Module) -> bool:
        layer = model.encoder.layers[0]
        return not hasattr(layer.attention, "gru_rel_pos_linear")
