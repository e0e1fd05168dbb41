"""WavLM family: attention takes the 0/1 frame mask and a relative position bias that the first
layer computes and every later layer reuses; layers return (hidden, position_bias)."""
from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import nn

# transformers' WavLM attention combines a bool padding mask with its float position bias, which
# makes torch warn on every masked forward. The result is correct; the warning is noise.
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask",
                        category=UserWarning)


class WavLMFamily:
    name = "wavlm"
    model_types = ("wavlm",)
    first_droppable_layer = 1  # LayerDrop never skips layer 0: it computes the position bias all reuse

    @staticmethod
    def prepare_attention_mask(encoder: nn.Module, hidden: torch.Tensor,
                               frame_mask: Optional[torch.Tensor]) -> Any:
        return frame_mask

    @staticmethod
    def attention(layer: nn.Module, hidden: torch.Tensor, mask: Any, state: Any, index: int):
        out, _, position_bias = layer.attention(hidden, attention_mask=mask, position_bias=state,
                                                index=index)
        return out, position_bias

    @staticmethod
    def matches(model: nn.Module) -> bool:
        return hasattr(model.encoder.layers[0].attention, "gru_rel_pos_linear")
