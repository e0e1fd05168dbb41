"""The end-to-end benchmark's models: random-initialised backbones with real shapes, the training
methods compared on them, and the optimizer step they all share.

Backbones (shapes of the public checkpoints; weights random, since no model hub is reachable):
  wavlm-base-plus   12 layers, d = 768, post-LN, group-norm CNN       (95 M)
  wav2vec2-base     12 layers, d = 768, post-LN, group-norm CNN       (95 M; where LoRA can be compared)
  wavlm-large       24 layers, d = 1024, pre-LN, layer-norm CNN       (316 M)
  wav2vec2-large    24 layers, d = 1024, pre-LN (the LV-60 model)     (316 M)
  xls-r-1b          48 layers, d = 1280, pre-LN                       (963 M)
  tiny-wavlm, tiny-wav2vec2   4 layers, d = 64 (the CPU smoke mode)
Layer drop, SpecAugment masking and dropout are off, so every step does the same work and the
ELP variants' first losses are comparable (the end-to-end gate; Inductor draws its own dropout
masks). A step's dropout would add a few elementwise passes, the same for every method.

Variants (each a sequence-classification model: mean-pooled features, projector, classifier):
  elp-eager       ELP adapters (docs/design.md defaults) run as the eager module compositions a user
                  writes (bench_ops.py's baselines: F.linear, F.layer_norm, stack/mul/sum) in the
                  working dtype: the "HF eager + unfused adapters" baseline of docs/performance.md 2
  elp-reference   the same model, every op on elp_fast's reference backend (the spec: fp32
                  accumulation, so slower than elp-eager in bf16)
  elp-fused       the same model and weights, ops on the automatic backend (Triton or CUDA on a
                  GPU, the compiled CPU ops on a CPU)
  elp-compile     elp-fused under torch.compile (the fused ops stay opaque custom ops)
  weighted-sum    the SUPERB weighted sum of X^0..X^L over a frozen backbone (tasks.methods
                  "weighted_sum" with its encoder layer norms frozen: SUPERB's setting)
  full            full fine-tuning of the encoder layers (tasks.methods "full")
  lora            PEFT LoRA (r = 8, alpha = 16) on q/k/v/out projections of every attention
                  block, the HF head on the top layer, CNN frozen, no elp_fast code involved.
                  On HF WavLM it is inert (its attention reads the projection weights directly,
                  so the LoRA matrices get no gradient): the benchmark reports it, untimed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

NUM_LABELS = 8
DROPOUTS = ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout", "final_dropout")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
VARIANTS = ("elp-eager", "elp-reference", "elp-fused", "elp-compile", "weighted-sum", "full", "lora")
ELP_VARIANTS = ("elp-eager", "elp-reference", "elp-fused", "elp-compile")

_TINY = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
             conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
             num_conv_pos_embedding_groups=4)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
              do_stable_layer_norm=True, feat_extract_norm="layer")
BACKBONES = {  # name -> (transformers config class, fields)
    "wavlm-base-plus": ("WavLMConfig", {}),
    "wav2vec2-base": ("Wav2Vec2Config", {}),
    "wavlm-large": ("WavLMConfig", dict(_LARGE)),
    "wav2vec2-large": ("Wav2Vec2Config", dict(_LARGE, conv_bias=True)),
    "xls-r-1b": ("Wav2Vec2Config", dict(_LARGE, hidden_size=1280, num_hidden_layers=48, intermediate_size=5120,
                                        conv_bias=True)),
    "tiny-wavlm": ("WavLMConfig", dict(_TINY)),
    "tiny-wav2vec2": ("Wav2Vec2Config", dict(_TINY, do_stable_layer_norm=True, feat_extract_norm="layer")),
}


def backbone_config(name: str, num_labels: int = NUM_LABELS):
    import transformers

    if name not in BACKBONES:
        raise ValueError(f"backbone: got {name!r}; expected one of {sorted(BACKBONES)}")
    cls, fields = BACKBONES[name]
    return getattr(transformers, cls)(**fields, num_labels=num_labels, mask_time_prob=0.0, layerdrop=0.0,
                                      **{f: 0.0 for f in DROPOUTS})


def hf_classifier(name: str, device: torch.device, seed: int, num_labels: int = NUM_LABELS) -> torch.nn.Module:
    """A random HF *ForSequenceClassification of this shape, initialised on `device` (fast)."""
    import transformers

    cfg = backbone_config(name, num_labels)
    cls = transformers.WavLMForSequenceClassification if cfg.model_type == "wavlm" else \
        transformers.Wav2Vec2ForSequenceClassification
    torch.manual_seed(seed)
    with torch.device(device):
        return cls(cfg)


@dataclass
class Variant:
    name: str
    model: torch.nn.Module  # what the step calls: model(input_values, labels=...) -> .loss
    params: list            # trainable parameters
    backend: Optional[str]  # forced elp_fast backend for the whole step (None: automatic; "eager")
    total_params: int
    optimizer: Optional["MasterAdamW"] = None  # AdamW, on fp32 master copies of bf16 weights

    def context(self):
        if self.backend is None:
            return contextlib.nullcontext()
        if self.backend == "eager":
            return eager_ops()
        import elp_fast
        return elp_fast.use_backend(self.backend)


@contextlib.contextmanager
def eager_ops():
    """Run elp_fast's three ops as the eager compositions of bench_ops.py for the block: the
    reference backend's registered functions are swapped for them (same signatures) and
    restored afterwards. Benchmark-only: elp_fast itself has no such backend."""
    import bench_ops
    import elp_fast
    import elp_fast.ops  # noqa: F401  (registers the ops)
    from elp_fast import backends

    swaps = {"bottleneck_adapter": bench_ops.eager_bottleneck, "layer_aggregate": bench_ops.eager_aggregate,
             "weighted_layer_sum": bench_ops.eager_wsum}
    impls = {op: backends._OPS[op].impls["reference"] for op in swaps}
    saved = {op: impl.fn for op, impl in impls.items()}
    try:
        for op, fn in swaps.items():
            impls[op].fn = fn
        with elp_fast.use_backend("reference"):
            yield
    finally:
        for op, fn in saved.items():
            impls[op].fn = fn


def build_variant(name: str, backbone: str, device: torch.device, dtype: torch.dtype, checkpointing: bool,
                  seed: int = 0, compile_backend: str = "inductor") -> Variant:
    """One variant on a fresh backbone (same seed, so every ELP variant starts from the same
    weights and their first losses must agree: the end-to-end correctness gate)."""
    if name not in VARIANTS:
        raise ValueError(f"variant: got {name!r}; expected one of {VARIANTS}")
    hf = hf_classifier(backbone, device, seed)
    if name == "lora":
        from peft import LoraConfig, get_peft_model

        hf.freeze_feature_encoder()  # as fine-tuning recipes do: no backward through the CNN
        model = get_peft_model(hf, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS))
        for n, p in model.named_parameters():  # the task head trains too, as in every other variant
            if ".projector." in n or ".classifier." in n:
                p.requires_grad_(True)
        if checkpointing:
            hf_checkpointing(model.base_model.model)
        backend = None
    else:
        import elp_fast
        from elp_fast.tasks.methods import method_overrides

        method = {"weighted-sum": "weighted_sum", "full": "full"}.get(name, "elp")
        torch.manual_seed(seed + 1)
        overrides = method_overrides(method)
        if name == "weighted-sum":
            overrides["train_layer_norms"] = False  # the featurizer alone: no backward through the backbone
        model = elp_fast.wrap(hf, **overrides)
        model.to(device)
        model.set_activation_checkpointing("all" if checkpointing else "none")
        backend = {"elp-reference": "reference", "elp-eager": "eager"}.get(name)
    model.to(dtype)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    if name == "elp-compile":
        model = torch.compile(model, backend=compile_backend)
    return Variant(name, model, params, backend, total, MasterAdamW(params, lr=1e-4))


def hf_checkpointing(model) -> None:
    """HF activation checkpointing, non-reentrant (transformers renamed the method in 5.2x)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


class MasterAdamW:
    """AdamW on fp32 master copies of low-precision parameters (DeepSpeed's bf16 scheme, which
    the training engine uses): gradients are copied up, the step runs in fp32, and the result is
    copied back into the working parameters. fp32 parameters are stepped in place."""

    def __init__(self, params: list, lr: float) -> None:
        self.params = params
        self.low = params and params[0].dtype != torch.float32
        self.master = [p.detach().float().clone() for p in params] if self.low else params
        fused = bool(params) and params[0].is_cuda
        self.opt = torch.optim.AdamW(self.master, lr=lr, fused=fused) if fused else \
            torch.optim.AdamW(self.master, lr=lr, foreach=True)

    @torch.no_grad()
    def step(self) -> None:
        if self.low:
            for p, m in zip(self.params, self.master):
                m.grad = p.grad.float() if p.grad is not None else None
        self.opt.step()
        if self.low:
            torch._foreach_copy_(self.params, self.master)
        for p in self.params:
            p.grad = None
        if self.low:
            for m in self.master:
                m.grad = None


def make_step(variant: Variant, batch: dict, scope: Callable = contextlib.nullcontext,
              after_backward: Optional[Callable] = None) -> Callable[[], torch.Tensor]:
    """One training step: forward, backward and the optimizer (inside `scope`); returns the
    detached loss (not synchronised). `after_backward()` runs before the optimizer."""
    def step() -> torch.Tensor:
        with variant.context():
            loss = variant.model(batch["input_values"], labels=batch["labels"]).loss
            loss.backward()
        if after_backward is not None:
            after_backward()
        with scope():
            variant.optimizer.step()
        return loss.detach()
    return step
