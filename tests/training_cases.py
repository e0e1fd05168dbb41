"""A short training run of a tiny wrapped model, shared by the backend convergence tests."""
import torch

import elp_fast
from conftest import audio_batch, tiny_model


def train_tiny(key, backend, steps, seed=0):
    """Train a tiny CTC model with E+L+P adapters; per-step losses and final adapter weights."""
    # SpecAugment draws from numpy's global RNG: off, so both runs see the same inputs.
    elp = elp_fast.wrap(tiny_model(key, head="ForCTC", seed=seed, mask_time_prob=0.0), e_bottleneck=8,
                        l_dim=16, p_len=2, p_mode="conditioned", p_bottleneck=4)
    elp.train()
    opt = torch.optim.AdamW([p for p in elp.parameters() if p.requires_grad], lr=1e-3)
    x, mask = audio_batch()
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, -100, -100]])
    losses = []
    torch.manual_seed(seed)  # the same dropout draws for both backends
    with elp_fast.use_backend(backend):
        for _ in range(steps):
            opt.zero_grad()
            loss = elp(x, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses, {n: p.detach().clone() for n, p in elp.adapter_state_dict().items()}
