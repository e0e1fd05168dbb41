"""The embedded demo: the parameter figure of WavLM Base+ and a short ELP training run.

Nothing is downloaded: the Base+ sized model is built on the meta device (shapes only) for the
parameter report, and the training run uses a small randomly initialised WavLM on a synthetic
two-class task (low vs high tones in noise), then saves the adapters, reloads them into a fresh
backbone and checks the outputs are identical.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch


def base_plus_report() -> str:
    import transformers

    from . import wrap

    with torch.device("meta"):
        model = transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
    return wrap(model, p_len=0).parameter_report()


def small_wavlm(seed: int):
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.WavLMConfig(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_labels=2,
        classifier_proj_size=32, mask_time_prob=0.0, layerdrop=0.0)
    return transformers.WavLMForSequenceClassification(cfg)


def tone_batch(batch: int, seconds: float, generator: torch.Generator):
    """Label 0: a 200-400 Hz tone, label 1: a 1.5-3 kHz tone, both in noise, random lengths."""
    n = int(16_000 * seconds)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    lengths = torch.randint(n // 2, n + 1, (batch,), generator=generator)
    t = torch.arange(n) / 16_000
    low = 200 + 200 * torch.rand(batch, 1, generator=generator)
    high = 1500 + 1500 * torch.rand(batch, 1, generator=generator)
    freq = torch.where(labels[:, None] == 0, low, high)
    x = 0.5 * torch.sin(2 * math.pi * freq * t) + 0.1 * torch.randn(batch, n, generator=generator)
    mask = (torch.arange(n)[None] < lengths[:, None]).long()
    return x * mask, mask, labels


def run_demo(steps: int = 60, output: str | Path = "demo_output", seed: int = 0) -> dict:
    from . import ELPConfig, wrap

    print("== Parameter report: WavLM Base+ dimensions, E (r=256, layers 1-11) + L (m=512) + layer norms, no P")
    print(base_plus_report())

    cfg = ELPConfig(e_bottleneck=32, l_dim=48, p_len=4)
    print(f"\n== Training a small random WavLM with ELP adapters for {steps} steps (synthetic tones)")
    model = wrap(small_wavlm(seed), cfg)
    model.print_trainable_parameters()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, losses = time.time(), []
    for step in range(1, steps + 1):
        x, mask, labels = tone_batch(8, 0.5, gen)
        out = model(x, attention_mask=mask, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
        if step == 1 or step % 5 == 0 or step == steps:
            acc = (out.logits.argmax(-1) == labels).float().mean().item()
            print(f"step {step:4d}/{steps}  loss {losses[-1]:.4f}  batch accuracy {acc:.2f}  "
                  f"({time.time() - start:.1f} s)", flush=True)

    model.eval()
    x, mask, labels = tone_batch(64, 0.5, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        logits = model(x, attention_mask=mask).logits
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    print(f"held-out accuracy on 64 new utterances: {accuracy:.2f}")

    output = Path(output)
    model.save_adapters(output)
    fresh = wrap(small_wavlm(seed), cfg).eval()
    fresh.load_adapters(output)
    with torch.no_grad():
        same = torch.equal(fresh(x, attention_mask=mask).logits, logits)
    size = (output / "adapter_model.safetensors").stat().st_size
    print(f"adapters saved to {output}/ ({size / 1024:.0f} KiB); reloaded into a fresh backbone: "
          f"outputs {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise RuntimeError("reloaded adapters do not reproduce the trained model's outputs")
    return {"losses": losses, "accuracy": accuracy, "reload_identical": same}
