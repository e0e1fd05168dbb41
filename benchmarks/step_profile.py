"""Where a training step's time goes: one profiled step, its device time (CPU time on a CPU)
split into categories, so the next bottleneck is visible.

  attention  the backbone's attention core: scores, softmax, position bias, SDPA
  matmul     the backbone's GEMMs: q/k/v/out projections, feed-forward, feature projection
  conv       the CNN feature encoder and the convolutional position embedding
  adapters   E-, L-, P- (and attention) adapters, LoRA matrices, the weighted layer sum
  head       projector, classifier, loss
  optimizer  the optimizer step (with the fp32 master copies)
  other      layer norms, activations, dropout, copies, anything outside the scopes

How: forward hooks open a profiler range named after the category of each module (the innermost
range wins); an op inside an attention range that is a plain GEMM (addmm, mm, linear) counts as
matmul. Backward work is attributed to the forward op that created it (autograd sequence
numbers); recomputed layers (activation checkpointing) run their forward hooks again.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

CATEGORIES = ("attention", "matmul", "conv", "adapters", "head", "optimizer", "other")
PREFIX = "elp:"
_ADAPTER_NAMES = ("e_adapters", "a_adapters", "l_adapters", "p_adapter", "lora_", "layer_weights")
_HEAD_NAMES = ("projector", "classifier", "task_head", "lm_head")
_CONV_NAMES = ("feature_extractor", "pos_conv_embed")


def module_category(name: str, module: nn.Module) -> str | None:
    parts = name.split(".")
    if any(p.startswith(a) for p in parts for a in _ADAPTER_NAMES):
        return "adapters"
    if any(p in _HEAD_NAMES for p in parts):
        return "head"
    if any(p in _CONV_NAMES for p in parts):
        return "conv"
    if type(module).__name__.endswith("Attention"):
        return "attention"
    if isinstance(module, nn.Linear):
        return "matmul"
    return None


def _is_gemm(op_name: str) -> bool:
    low = op_name.lower()
    return "bmm" not in low and any(t in low for t in ("aten::addmm", "aten::mm", "aten::linear",
                                                         "addmmbackward", "mmbackward"))


@contextlib.contextmanager
def scopes(model: nn.Module):
    """Profiler ranges around every categorised module's forward, for the duration of the block."""
    stack: list = []
    handles = []
    for name, module in model.named_modules():
        cat = module_category(name, module)
        if cat is None:
            continue

        def enter(mod, args, cat=cat):
            rf = torch.autograd.profiler.record_function(PREFIX + cat)
            rf.__enter__()
            stack.append(rf)

        def leave(mod, args, out):
            if stack:
                stack.pop().__exit__(None, None, None)
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _self_time(event, device: bool) -> float:
    if device:
        return float(getattr(event, "self_device_time_total", 0.0) or 0.0)
    return float(event.self_cpu_time_total)


def _scope_of(event, forward_cat: dict) -> str:
    """The category of one profiler event: its nearest categorised ancestor."""
    gemm = _is_gemm(event.name)
    a = event
    while a is not None:
        name = a.name
        if name.startswith(PREFIX):
            cat = name[len(PREFIX):]
            return "matmul" if cat == "attention" and gemm else cat
        if name.startswith("autograd::engine::evaluate_function:"):
            cat = forward_cat.get(a.sequence_nr, "other")
            return "matmul" if cat == "attention" and _is_gemm(name) else cat
        if name.startswith("Optimizer."):
            return "optimizer"
        gemm = gemm or _is_gemm(name)
        a = a.cpu_parent
    return "other"


def breakdown(step: Callable[[], object], model: nn.Module, device: torch.device) -> dict:
    """Profile one call of `step` (with `model`'s modules scoped); returns {category: percent}
    plus 'profiled_ms', the summed self time over all events."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with scopes(model), profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    events = prof.events()
    forward_cat: dict = {}
    for e in events:  # forward ops that recorded an autograd node, by sequence number
        seq = getattr(e, "sequence_nr", -1)
        if seq is not None and seq >= 0 and not e.name.startswith("autograd::") and seq not in forward_cat:
            cat = _scope_of(e, {})
            forward_cat[seq] = cat
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for e in events:
        if e.device_type != DeviceType.CPU:  # kernels count through the CPU op that launched them
            continue
        t = _self_time(e, cuda)
        if t > 0 and not e.name.startswith(PREFIX):
            totals[_scope_of(e, forward_cat)] += t
    all_t = sum(totals.values())
    out = {c: (100.0 * v / all_t if all_t else float("nan")) for c, v in totals.items()}
    out["profiled_ms"] = all_t / 1e3
    return out


def optimizer_scope():
    return torch.autograd.profiler.record_function(PREFIX + "optimizer")
