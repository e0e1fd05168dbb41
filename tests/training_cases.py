"""Tiny wrapped models in training and under torch.compile, shared by the backend tests."""
import os
import subprocess
import sys
import textwrap

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


COMPILED_FIRST_CALL = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, os.environ["TESTS_DIR"])
    import torch, elp_fast
    from conftest import tiny_model, audio_batch
    elp = elp_fast.wrap(tiny_model("wavlm-postln", head="ForSequenceClassification"),
                        e_bottleneck=8, l_dim=16, p_len=2)
    x, mask = audio_batch()
    labels = torch.tensor([1, 2])
    with elp_fast.use_backend(sys.argv[1]):
        compiled = torch.compile(elp, backend="aot_eager", fullgraph=True)
        loss_c = compiled(x, attention_mask=mask, labels=labels).loss
        loss_c.backward()
        grads_c = {n: p.grad.clone() for n, p in elp.named_parameters() if p.requires_grad}
        elp.zero_grad()
        loss_e = elp(x, attention_mask=mask, labels=labels).loss
        loss_e.backward()
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-7)
    for n, p in elp.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads_c[n], p.grad, rtol=1e-5, atol=1e-7)
    print("compiled ok", len(grads_c))
""")


def run_compiled_first_call(backend: str) -> subprocess.CompletedProcess:
    """In a fresh process, compile (fullgraph) a wrapped model whose very first call is the
    compiled one, with `backend` forced; it prints "compiled ok" when loss and gradients match
    eager."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "TESTS_DIR": os.path.dirname(__file__)}
    return subprocess.run([sys.executable, "-c", COMPILED_FIRST_CALL, backend], capture_output=True, text=True,
                          env=env)
