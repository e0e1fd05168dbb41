"""Checks on what a user feeds the model: fail early, name the argument, say what is expected."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import SAMPLING_RATE

# Normalised audio is within [-1, 1], or has unit variance when the HF feature extractor
# normalises it; values this large mean raw integer PCM cast to float.
MAX_ABS_AMPLITUDE = 100.0


def checking_values() -> bool:
    """Checks that read tensor values (NaN, range, label ids) run eagerly only: under
    torch.compile they would be data-dependent branches. Shape and dtype checks always run."""
    return not torch.compiler.is_compiling()


def min_samples(backbone: nn.Module) -> int:
    """Fewest samples that give the CNN feature encoder one output frame."""
    n = 1
    for kernel, stride in reversed(list(zip(backbone.config.conv_kernel, backbone.config.conv_stride))):
        n = (n - 1) * stride + kernel
    return n


def check_input_values(x: object, backbone: nn.Module, sampling_rate: Optional[int]) -> torch.Tensor:
    if sampling_rate is not None and sampling_rate != SAMPLING_RATE:
        raise ValueError(f"sampling_rate: got {sampling_rate} Hz; expected {SAMPLING_RATE} Hz "
                         "(resample the audio first)")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input_values: got {type(x).__name__}; expected a float torch.Tensor (batch, samples)")
    if not x.is_floating_point():
        hint = " (integer PCM: convert with x.float() / 32768)" if x.dtype in (torch.int16, torch.int32) else ""
        raise TypeError(f"input_values: got dtype {x.dtype}; expected a floating dtype{hint}")
    if x.dim() != 2:
        hint = {1: " (one utterance: use input_values[None])",
                3: " (multi-channel audio: mix down to mono, e.g. x.mean(dim=1))"}.get(x.dim(), "")
        raise ValueError(f"input_values: got shape {tuple(x.shape)} (rank {x.dim()}); "
                         f"expected rank 2 (batch, samples) of mono audio{hint}")
    need = min_samples(backbone)
    if x.shape[0] == 0 or x.shape[1] < need:
        raise ValueError(f"input_values: got shape {tuple(x.shape)}; expected a non-empty batch of at "
                         f"least {need} samples ({need / SAMPLING_RATE * 1000:.0f} ms at 16 kHz), the "
                         "feature encoder's receptive field")
    ref = next(backbone.feature_extractor.parameters())
    if x.device != ref.device:
        raise ValueError(f"input_values: on {x.device}; the model is on {ref.device}")
    if checking_values():
        if not bool(torch.isfinite(x).all()):
            raise ValueError("input_values: contains NaN or Inf samples; expected finite audio")
        peak = float(x.detach().abs().max())
        if peak > MAX_ABS_AMPLITUDE:
            raise ValueError(f"input_values: peak |sample| is {peak:g}; expected normalised audio "
                             f"(|x| <= {MAX_ABS_AMPLITUDE:g}). Integer PCM must be divided by its "
                             "full scale (32768 for int16)")
    return x.to(ref.dtype)


def check_attention_mask(mask: object, x: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"attention_mask: got {type(mask).__name__}; expected a torch.Tensor or None")
    if mask.shape != x.shape:
        raise ValueError(f"attention_mask: got shape {tuple(mask.shape)}; expected {tuple(x.shape)} "
                         "like input_values (1 = real sample, 0 = padding)")
    if mask.device != x.device:
        raise ValueError(f"attention_mask: on {mask.device}; input_values is on {x.device}")
    if not checking_values():
        return mask.long()
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask: expected only 0 and 1 values")
    lengths = mask.long().sum(-1)
    if bool((lengths == 0).any()):
        raise ValueError(f"attention_mask: rows {(lengths == 0).nonzero().flatten().tolist()} are all "
                         "padding; expected at least one real sample per utterance")
    return mask.long()
