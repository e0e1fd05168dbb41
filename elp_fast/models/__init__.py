"""wrap(): turn a HF speech encoder (or its CTC / classification head model) into an ELPModel."""
from __future__ import annotations

from typing import Any, Optional

from torch import nn

from ..config import ELPConfig, ELPConfigError
from .elp_model import ELPModel, ELPOutput
from .registry import SUPPORTED, UnsupportedModelError, resolve


def wrap(model: nn.Module, config: Optional[ELPConfig] = None, *, task_head: Optional[nn.Module] = None,
         **overrides: Any) -> ELPModel:
    """Freeze `model` and add ELP adapters. `overrides` replace fields of `config` (or of the
    default ELPConfig). The model is adopted, not copied: its parameters are frozen in place and
    a resized head input layer replaces the old one. `task_head` (on a bare encoder) is a head of
    elp_fast.tasks, e.g. SpeakerHead or MultiSlotHead, fed H and trained with the adapters."""
    if config is None:
        config = ELPConfig()
    elif not isinstance(config, ELPConfig):
        raise TypeError(f"wrap(): config must be an ELPConfig or None, got {type(config).__name__}")
    if overrides:
        config = config.replace(**overrides)
    if isinstance(model, ELPModel):
        raise UnsupportedModelError("wrap(): model is already an ELPModel; wrap the original HF model")
    resolved = resolve(model)
    return ELPModel(model, config, resolved, task_head=task_head)


__all__ = ["wrap", "ELPModel", "ELPOutput", "UnsupportedModelError", "SUPPORTED", "ELPConfigError"]
