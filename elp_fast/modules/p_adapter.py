"""P-adapter: learnable pseudo frames joined in front of the CNN features (docs/design.md 2.3).

The published paper's exact parameterisation was not available to us. elp_fast implements:
  static:      P = S                                   S: (k, c) learnable
  conditioned: P = S + 1_k (W_up act(W_down mean(C) + b_down) + b_up)
               mean(C) is the masked mean of the utterance's CNN features (padding excluded),
               the same bottleneck vector is added to every pseudo frame.
No fused op is needed here: this is k x c values per utterance, negligible next to the encoder.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..ops._common import activate


class PAdapter(nn.Module):
    def __init__(self, length: int, feature_dim: int, *, mode: str, bottleneck: int,
                 activation: str, init_std: float, frame_init_std: float, device=None,
                 dtype=None) -> None:
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.mode, self.activation = mode, activation
        self.init_std, self.frame_init_std = init_std, frame_init_std
        self.frames = nn.Parameter(torch.empty(length, feature_dim, **kw))
        if mode == "conditioned":
            self.down_w = nn.Parameter(torch.empty(bottleneck, feature_dim, **kw))
            self.down_b = nn.Parameter(torch.empty(bottleneck, **kw))
            self.up_w = nn.Parameter(torch.empty(feature_dim, bottleneck, **kw))
            self.up_b = nn.Parameter(torch.empty(feature_dim, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.frames, std=self.frame_init_std)
        if self.mode == "conditioned":
            nn.init.normal_(self.down_w, std=self.init_std)
            nn.init.normal_(self.up_w, std=self.init_std)
            nn.init.zeros_(self.down_b)
            nn.init.zeros_(self.up_b)

    @property
    def length(self) -> int:
        return self.frames.shape[0]

    def forward(self, features: torch.Tensor, frame_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """features (B, T, c), frame_mask (B, T) bool or None -> pseudo frames (B, k, c)."""
        batch = features.shape[0]
        frames = self.frames.to(features.dtype).unsqueeze(0).expand(batch, -1, -1)
        if self.mode == "static":
            return frames
        if frame_mask is None:
            pooled = features.mean(dim=1)
        else:
            m = frame_mask.to(features.dtype).unsqueeze(-1)
            pooled = (features * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        z = activate(pooled @ self.down_w.to(pooled.dtype).t() + self.down_b.to(pooled.dtype), self.activation)
        cond = z @ self.up_w.to(z.dtype).t() + self.up_b.to(z.dtype)
        return frames + cond.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"length={self.frames.shape[0]}, feature_dim={self.frames.shape[1]}, mode={self.mode}"
