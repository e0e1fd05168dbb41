"""The resume state that is not the adapters: fp32 master weights and optimizer moments per
parameter name, and the RNG states of every generator a step draws from.

The optimizer state is read and written through DeepSpeed's tensor-fragment API, so it is the
same full, named tensors whatever the ZeRO stage or the number of processes (under ZeRO-3 every
process must take part: the calls gather). Everything is plain tensors and JSON: no pickle.
"""
from __future__ import annotations

import random
from typing import Iterable

import numpy as np
import torch

from . import distributed


def base_optimizer(optimizer) -> torch.optim.Optimizer:
    """The client torch optimizer inside DeepSpeed's wrappers (ZeRO, bf16)."""
    opt, seen = optimizer, 0
    while not type(opt).__module__.startswith("torch.optim") and hasattr(opt, "optimizer") and seen < 4:
        opt, seen = opt.optimizer, seen + 1
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"cannot find the torch optimizer inside {type(optimizer).__name__}")
    return opt


def _sharded(param: torch.nn.Parameter) -> bool:
    # ZeRO-3 params carry ds_id; ZeRO-1/2 and the bf16 optimizer map params to fp32 fragments.
    return hasattr(param, "ds_id") or hasattr(param, "_hp_mapping")


def _optimizer_tensors(optimizer) -> list[list[torch.Tensor]]:
    """Per parameter group of the torch optimizer, the tensors it actually steps. ZeRO-3 fills a
    group's params with one fp32 partition at a time (they are empty between steps)."""
    base = base_optimizer(optimizer)
    flats = getattr(optimizer, "fp32_partitioned_groups_flat", None)
    if flats is None:
        return [list(g["params"]) for g in base.param_groups]
    out: list[list[torch.Tensor]] = [[] for _ in base.param_groups]
    for i, flat in enumerate(flats):
        out[optimizer.sub_group_to_group_id[i]].append(flat)
    return out


def materialise_optimizer_state(optimizer) -> None:
    """Create the optimizer's lazily made state (moments, step) without changing any weight:
    one step with zero gradients and learning rate 0. Run before restoring saved moments."""
    base = base_optimizer(optimizer)
    per_group = _optimizer_tensors(optimizer)
    tensors = [t for ts in per_group for t in ts]
    if all(base.state.get(t) for t in tensors):
        return
    saved = [(g["lr"], g["params"]) for g in base.param_groups]
    saved_grad = [t.grad for t in tensors]
    try:
        for g, ts in zip(base.param_groups, per_group):
            g["lr"], g["params"] = 0.0, ts
        for t in tensors:
            t.grad = torch.zeros_like(t)
        base.step()
    finally:
        for g, (lr, params) in zip(base.param_groups, saved):
            g["lr"], g["params"] = lr, params
        for t, grad in zip(tensors, saved_grad):
            t.grad = grad


def _fp32_copies(optimizer) -> dict:
    """Low-precision parameter -> the fp32 copy the torch optimizer steps, for DeepSpeed's
    unfused mixed-precision optimizer (bf16 without ZeRO); empty otherwise."""
    lp_groups, hp_groups = getattr(optimizer, "fp16_groups", None), getattr(optimizer, "fp32_groups", None)
    if not lp_groups or not hp_groups or isinstance(hp_groups[0], torch.Tensor):
        return {}
    return {lp: hp for lps, hps in zip(lp_groups, hp_groups) for lp, hp in zip(lps, hps)}


def _relink(optimizer) -> None:
    """Point every ZeRO-1/2 / bf16 parameter fragment at its optimizer state. DeepSpeed links
    them once, after stepping the first parameter group only, so with several groups the
    others stay unlinked (DeepSpeed 0.16-0.19); linking again is idempotent."""
    if hasattr(optimizer, "_lazy_init_hp_params_optimizer_state"):
        optimizer._hp_optimizer_states_linked = False
        optimizer._lazy_init_hp_params_optimizer_state()


def optimizer_state_keys(optimizer) -> list[str]:
    base = base_optimizer(optimizer)
    for state in base.state.values():
        return sorted(k for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor))
    return []


def optimizer_step_count(optimizer) -> int:
    base = base_optimizer(optimizer)
    for state in base.state.values():
        step = state.get("step")
        return int(step.item() if isinstance(step, torch.Tensor) else step or 0)
    return 0


def gather(optimizer, named: Iterable[tuple[str, torch.nn.Parameter]]) -> dict:
    """Full fp32 master weights and optimizer moments by parameter name: {"master/<name>",
    "<key>/<name>"} -> CPU tensor. Collective under ZeRO-3 (call on every process)."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    base = base_optimizer(optimizer)
    keys = optimizer_state_keys(optimizer)
    if keys:
        _relink(optimizer)
    copies = _fp32_copies(optimizer)
    out = {}
    for name, p in named:
        if _sharded(p):
            master = safe_get_full_fp32_param(p)
            moments = {k: safe_get_full_optimizer_state(p, k) for k in keys}
        else:  # no ZeRO: the torch optimizer steps the parameter itself or its fp32 copy
            hp = copies.get(p, p)
            master = hp.detach()
            moments = {k: base.state[hp][k] for k in keys} if hp in base.state else {}
        out[f"master/{name}"] = master.detach().float().cpu().clone()
        for k, v in moments.items():
            out[f"{k}/{name}"] = v.detach().float().cpu().clone()
    return out


def restore(optimizer, named: Iterable[tuple[str, torch.nn.Parameter]], tensors: dict, step: int) -> None:
    """Inverse of gather(); `step` is the optimizer's own step count (Adam's bias correction)."""
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    named = list(named)
    keys = sorted({k.split("/", 1)[0] for k in tensors} - {"master"})
    if keys:
        materialise_optimizer_state(optimizer)
        _relink(optimizer)
    base = base_optimizer(optimizer)
    copies = _fp32_copies(optimizer)
    for name, p in named:
        master = tensors[f"master/{name}"]
        if _sharded(p):
            safe_set_full_fp32_param(p, master.to(p.device))
            for k in keys:
                safe_set_full_optimizer_state(p, tensors[f"{k}/{name}"].to(p.device), k)
        else:
            hp = copies.get(p, p)
            with torch.no_grad():
                hp.copy_(master.to(device=hp.device, dtype=hp.dtype))
                p.copy_(master.to(device=p.device, dtype=p.dtype))
            for k in keys:
                base.state[hp][k].copy_(tensors[f"{k}/{name}"].to(base.state[hp][k].device))
    for state in base.state.values():
        if "step" in state:
            if isinstance(state["step"], torch.Tensor):
                state["step"].fill_(step)
            else:
                state["step"] = step


def loss_scaler_state(optimizer) -> dict:
    """fp16 dynamic loss scaler (empty for fp32 / bf16)."""
    scaler = getattr(optimizer, "loss_scaler", None)
    if scaler is None or not getattr(scaler, "dynamic", False):
        return {}
    fields = ("cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis")
    return {f: float(getattr(scaler, f)) for f in fields if hasattr(scaler, f)}


def restore_loss_scaler(optimizer, state: dict) -> None:
    scaler = getattr(optimizer, "loss_scaler", None)
    if scaler is None or not state:
        return
    for f, v in state.items():
        current = getattr(scaler, f)
        setattr(scaler, f, type(current)(v) if not isinstance(current, torch.Tensor) else current.fill_(v))


# -- random number generators ------------------------------------------------------------------

def rng_state() -> dict:
    """Python, numpy, torch CPU and (this process's) CUDA generator states, as JSON."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(distributed.device()).tolist()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), distributed.device())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
