"""Which HF models wrap() accepts, and how to find their pieces.

Accepted: a bare encoder (WavLMModel, Wav2Vec2Model, HubertModel, Data2VecAudioModel, or any
model with the same encoder-layer layout) in either layer-norm placement, or a *ForCTC /
*ForSequenceClassification head model built on one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from .data2vec_audio import Data2VecAudioFamily
from .hubert import HubertFamily
from .wav2vec2 import Wav2Vec2Family
from .wavlm import WavLMFamily

FAMILIES = (WavLMFamily, Wav2Vec2Family, HubertFamily, Data2VecAudioFamily)
SUPPORTED = ("WavLM, Wav2Vec2, Hubert and Data2VecAudio as *Model, *ForCTC or "
             "*ForSequenceClassification, or any model with the same encoder-layer layout")

_BASE_ATTRS = ("feature_extractor", "feature_projection", "encoder", "config")
_ENCODER_ATTRS = ("pos_conv_embed", "layer_norm", "dropout", "layers")
_LAYER_ATTRS = ("attention", "dropout", "layer_norm", "feed_forward", "final_layer_norm")


class UnsupportedModelError(TypeError):
    """wrap() was given a model it cannot adapt (a TypeError)."""


@dataclass
class Resolved:
    family: type
    base: nn.Module
    head_kind: Optional[str]  # None, "ctc" or "sequence_classification"
    stable_layer_norm: bool


def _missing_layout(base: nn.Module) -> list[str]:
    missing = [a for a in _BASE_ATTRS if not hasattr(base, a)]
    if missing:
        return missing
    enc = base.encoder
    missing = [f"encoder.{a}" for a in _ENCODER_ATTRS if not hasattr(enc, a)]
    if missing:
        return missing
    if not isinstance(enc.layers, nn.ModuleList) or len(enc.layers) == 0:
        return ["encoder.layers (a non-empty ModuleList)"]
    missing = [f"encoder.layers[0].{a}" for a in _LAYER_ATTRS if not hasattr(enc.layers[0], a)]
    if not callable(getattr(base, "_get_feature_vector_attention_mask", None)):
        missing.append("_get_feature_vector_attention_mask()")
    return missing


def _head_kind(model: nn.Module) -> Optional[str]:
    if isinstance(getattr(model, "lm_head", None), nn.Linear):
        return "ctc"
    if isinstance(getattr(model, "projector", None), nn.Linear) and isinstance(
            getattr(model, "classifier", None), nn.Linear) and not hasattr(model, "tdnn"):
        return "sequence_classification"
    return None


def resolve(model: object) -> Resolved:
    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"wrap(): model must be a torch.nn.Module, got {name}; supported: {SUPPORTED}")
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    if isinstance(inner, nn.Module) and inner is not model:
        base, head_kind = inner, _head_kind(model)
        if head_kind is None:
            raise UnsupportedModelError(
                f"wrap(): head model {name} is not supported (only *ForCTC and "
                f"*ForSequenceClassification heads are); supported: {SUPPORTED}. To adapt its "
                f"encoder alone, wrap model.{prefix}")
    else:
        base, head_kind = model, None
    missing = _missing_layout(base)
    if missing:
        raise UnsupportedModelError(
            f"wrap(): model class {name} is not supported: it lacks {', '.join(missing)}; supported: {SUPPORTED}")
    cfg = base.config
    if getattr(cfg, "add_adapter", False):
        raise UnsupportedModelError(
            f"wrap(): {name} has config.add_adapter=True (HF's convolutional output adapter); "
            "ELP replaces the encoder output, so build the model with add_adapter=False")
    model_type = getattr(cfg, "model_type", "")
    family = next((f for f in FAMILIES if model_type in f.model_types), None)
    if family is None:
        family = WavLMFamily if WavLMFamily.matches(base) else Wav2Vec2Family
    stable = bool(getattr(cfg, "do_stable_layer_norm", False))
    return Resolved(family, base, head_kind, stable)
