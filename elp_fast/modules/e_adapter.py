"""E-adapter: a bottleneck with its own LayerNorm on the feed-forward output (docs/design.md 2.1)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops


class EAdapter(nn.Module):
    """E(z) = z + LN_E(W_up act(W_down z + b_down) + b_up), fused with the layer's residual and,
    for post-LN layers, the layer's final LayerNorm (passed in, owned by the backbone)."""

    def __init__(self, dim: int, bottleneck: int, *, activation: str, eps: float, init_std: float,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.activation, self.eps = activation, eps
        self.down_w = nn.Parameter(torch.empty(bottleneck, dim, **kw))
        self.down_b = nn.Parameter(torch.empty(bottleneck, **kw))
        self.up_w = nn.Parameter(torch.empty(dim, bottleneck, **kw))
        self.up_b = nn.Parameter(torch.empty(dim, **kw))
        self.ln_w = nn.Parameter(torch.empty(dim, **kw))
        self.ln_b = nn.Parameter(torch.empty(dim, **kw))
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.down_w, std=self.init_std)
        nn.init.normal_(self.up_w, std=self.init_std)
        for p in (self.down_b, self.up_b, self.ln_b):
            nn.init.zeros_(p)
        nn.init.ones_(self.ln_w)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                post_ln: Optional[nn.LayerNorm] = None) -> torch.Tensor:
        # The op applies one epsilon to both norms; a backbone whose own LayerNorm epsilon
        # differs from the adapter's gets its post-LN applied separately (exact, a little slower).
        fuse_post_ln = post_ln is not None and post_ln.eps == self.eps
        y = ops.bottleneck_adapter(
            x, self.down_w, self.down_b, self.up_w, self.up_b, self.ln_w, self.ln_b,
            activation=self.activation, residual=residual,
            post_ln_w=post_ln.weight if fuse_post_ln else None,
            post_ln_b=post_ln.bias if fuse_post_ln else None,
            eps=self.eps,
        )
        if post_ln is not None and not fuse_post_ln:
            y = post_ln(y)
        return y

    def extra_repr(self) -> str:
        return f"dim={self.up_w.shape[0]}, bottleneck={self.down_w.shape[0]}, activation={self.activation}"
