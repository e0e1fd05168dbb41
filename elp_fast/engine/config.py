"""EngineConfig: every training-run setting, validated on construction (no DeepSpeed import).

Loadable from a dict, a JSON or a YAML file; unknown keys are rejected. `deepspeed_config()`
turns it into the DeepSpeed JSON config for a given world size.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..config import PARAMETER_GROUPS as GROUPS
from ..validation import fail, is_int, is_number, parse_layer_spec

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine", "constant", "piecewise")


class EngineConfigError(ValueError):
    """An EngineConfig field holds an invalid value (a ValueError); the message names it."""


def _fail(name: str, value: Any, expected: str) -> None:
    fail(f"EngineConfig.{name}", value, expected, EngineConfigError)



@dataclass(frozen=True)
class EngineConfig:
    output_dir: str = "runs/elp"            # checkpoints/, metrics.jsonl, summary.json
    max_steps: int = 1000                   # optimizer steps
    micro_batch_size: int = 8               # utterances per process per micro-step (a cap with batch_seconds)
    batch_seconds: float = 0.0              # > 0: pack micro-batches by length under this much padded audio
    grad_accum_steps: int = 1
    precision: str = "fp32"                 # fp32 | bf16 | fp16 (fp16: GPU only, dynamic loss scaling)
    zero_stage: int = 0                     # 0, 1, 2, 3
    offload_optimizer: bool = False         # ZeRO >= 1: optimizer states in CPU memory
    offload_params: bool = False            # ZeRO 3: parameters in CPU memory
    lr: float = 5e-4
    group_lr: dict = field(default_factory=dict)  # per-group learning rates, keys from GROUPS
    weight_decay: float = 0.0               # applied to weight matrices only
    betas: tuple = (0.9, 0.98)
    adam_eps: float = 1e-8
    schedule: str = "linear"                # decay after warm-up: linear | cosine | constant | piecewise
    lr_points: list = field(default_factory=list)  # piecewise: [[step, factor], ...], factor from step on
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0               # the decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0                  # max global gradient norm; 0 turns clipping off
    activation_checkpointing: Union[str, list] = "none"  # "all", "none" or encoder layer indices
    eval_every: int = 0                     # optimizer steps between evaluations; 0: only at the end
    eval_batches: int = 0                   # batches per evaluation; 0: the whole eval set
    log_every: int = 10
    save_every: int = 500                   # optimizer steps between resume checkpoints; 0: only at the end
    keep_last: int = 3                      # resume checkpoints kept (the newest ones)
    resume: str = "auto"                    # auto (newest complete checkpoint) | never | a checkpoint path
    seed: int = 0
    num_workers: int = 0                    # DataLoader workers
    progress: bool = True                   # progress bar on rank 0
    deepspeed: dict = field(default_factory=dict)  # extra DeepSpeed config, merged last

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir):
            _fail("output_dir", self.output_dir, "a non-empty path")
        object.__setattr__(self, "output_dir", str(self.output_dir))
        for name, minimum in (("max_steps", 1), ("micro_batch_size", 1), ("grad_accum_steps", 1),
                              ("warmup_steps", 0), ("eval_every", 0), ("eval_batches", 0), ("log_every", 1),
                              ("save_every", 0), ("keep_last", 1), ("seed", 0), ("num_workers", 0)):
            v = getattr(self, name)
            if not is_int(v) or v < minimum:
                _fail(name, v, f"an integer >= {minimum}")
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, " or ".join(map(repr, PRECISIONS)))
        if self.zero_stage not in (0, 1, 2, 3) or not is_int(self.zero_stage):
            _fail("zero_stage", self.zero_stage, "0, 1, 2 or 3")
        for name in ("offload_optimizer", "offload_params", "progress"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "True or False")
        if self.offload_optimizer and self.zero_stage == 0:
            _fail("offload_optimizer", True, "False with zero_stage 0 (offloading needs ZeRO stage >= 1)")
        if self.offload_params and self.zero_stage != 3:
            _fail("offload_params", True, f"False with zero_stage {self.zero_stage} (parameter offload "
                  "needs ZeRO stage 3)")
        if self.precision == "fp16" and self.zero_stage == 0:
            _fail("precision", "fp16", "'bf16' or 'fp32' with zero_stage 0 (fp16 needs ZeRO stage >= 1 here, "
                  "whose optimizer keeps fp32 master weights with dynamic loss scaling)")
        if not is_number(self.batch_seconds) or self.batch_seconds < 0:
            _fail("batch_seconds", self.batch_seconds, "a finite number >= 0 (0: fixed micro_batch_size batches)")
        if not is_number(self.lr) or self.lr <= 0:
            _fail("lr", self.lr, "a finite number > 0")
        if not isinstance(self.group_lr, dict):
            _fail("group_lr", self.group_lr, f"a dict from group name {GROUPS} to a learning rate")
        for k, v in self.group_lr.items():
            if k not in GROUPS:
                _fail("group_lr", self.group_lr, f"keys among {GROUPS} (unknown group {k!r})")
            if not is_number(v) or v < 0:
                _fail(f"group_lr[{k!r}]", v, "a finite number >= 0")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "a finite number >= 0")
        betas = self.betas
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(is_number(b) and 0 <= b < 1 for b in betas)):
            _fail("betas", betas, "two numbers in [0, 1)")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if not is_number(self.adam_eps) or self.adam_eps <= 0:
            _fail("adam_eps", self.adam_eps, "a finite number > 0")
        if self.schedule not in SCHEDULES:
            _fail("schedule", self.schedule, " or ".join(map(repr, SCHEDULES)))
        if self.schedule == "piecewise" or self.lr_points:
            pts = self.lr_points
            ok = (self.schedule == "piecewise" and isinstance(pts, (list, tuple)) and len(pts) > 0
                  and all(isinstance(q, (list, tuple)) and len(q) == 2 and is_int(q[0]) and q[0] >= 0
                          and is_number(q[1]) and q[1] >= 0 for q in pts)
                  and pts[0][0] == 0 and all(a[0] < b[0] for a, b in zip(pts, pts[1:])))
            if not ok:
                _fail("lr_points", pts, "with schedule 'piecewise' (and only then), a non-empty list of "
                      "[step, factor] pairs, steps increasing from 0, factors >= 0")
            object.__setattr__(self, "lr_points", [[int(a), float(b)] for a, b in pts])
        if self.warmup_steps > self.max_steps:
            _fail("warmup_steps", self.warmup_steps, f"at most max_steps ({self.max_steps})")
        if not is_number(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            _fail("min_lr_ratio", self.min_lr_ratio, "a number in [0, 1]")
        if not is_number(self.grad_clip) or self.grad_clip < 0:
            _fail("grad_clip", self.grad_clip, "a finite number >= 0 (0 turns clipping off)")
        object.__setattr__(self, "activation_checkpointing", parse_layer_spec(
            "EngineConfig.activation_checkpointing", self.activation_checkpointing, EngineConfigError,
            keywords=("all", "none")))
        if not isinstance(self.resume, (str, Path)) or not str(self.resume):
            _fail("resume", self.resume, "'auto', 'never' or the path of a checkpoint directory")
        object.__setattr__(self, "resume", str(self.resume))
        if not isinstance(self.deepspeed, dict):
            _fail("deepspeed", self.deepspeed, "a dict of DeepSpeed config entries")
        owned = sorted(set(self.deepspeed) & OWNED_DS_KEYS)
        if owned:
            _fail("deepspeed", self.deepspeed, f"no entries the engine sets itself ({owned}); use the "
                  "matching EngineConfig fields")

    # -- learning rates ----------------------------------------------------------------------

    def lr_of(self, group: str) -> float:
        return float(self.group_lr.get(group, self.lr))

    def lr_factor(self, step: int) -> float:
        """Multiplier of every group's learning rate at optimizer step `step` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "piecewise":  # e.g. a recipe's per-epoch multipliers
            return next(f for s, f in reversed(self.lr_points) if s <= step)
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        lo = self.min_lr_ratio
        if self.schedule == "linear":
            return lo + (1 - lo) * (1 - progress)
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * progress))

    # -- DeepSpeed -----------------------------------------------------------------------------

    def deepspeed_config(self, world_size: int) -> dict:
        zero: dict[str, Any] = {"stage": self.zero_stage}
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        if self.offload_params:
            zero["offload_param"] = {"device": "cpu"}
        cfg: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": self.micro_batch_size,
            "gradient_accumulation_steps": self.grad_accum_steps,
            "train_batch_size": self.micro_batch_size * self.grad_accum_steps * world_size,
            "gradient_clipping": float(self.grad_clip),
            "zero_optimization": zero,
            # The client torch AdamW also serves offloading (DeepSpeed's CPU Adam would compile).
            "zero_force_ds_cpu_optimizer": False,
            "steps_per_print": 10 ** 9,  # the engine prints its own progress
            "wall_clock_breakdown": False,
        }
        if self.precision == "bf16":
            cfg["bf16"] = {"enabled": True}
        elif self.precision == "fp16":
            cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                           "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}
        cfg.update(self.deepspeed)
        return cfg

    # -- (de)serialisation -----------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Any) -> "EngineConfig":
        if not isinstance(data, dict):
            raise EngineConfigError(f"EngineConfig.from_dict: got {type(data).__name__}; expected a dict")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise EngineConfigError(f"EngineConfig: unknown field(s) {unknown}; allowed fields are "
                                    f"{cls.field_names()}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "EngineConfig":
        """A .json, .yaml or .yml file holding a mapping of EngineConfig fields."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"EngineConfig.from_file: {path} does not exist")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                data = load_yaml(text)
            except yaml.YAMLError as exc:
                raise EngineConfigError(f"EngineConfig.from_file: {path} is not valid YAML ({exc})") from None
        elif path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise EngineConfigError(f"EngineConfig.from_file: {path} is not valid JSON ({exc})") from None
        else:
            raise EngineConfigError(f"EngineConfig.from_file: {path} has suffix {path.suffix!r}; "
                                    "expected .json, .yaml or .yml")
        return cls.from_dict({} if data is None else data)

    def replace(self, **overrides: Any) -> "EngineConfig":
        return EngineConfig.from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in self.field_names()}
        d["betas"] = list(self.betas)
        return d


def load_yaml(text: str) -> Any:
    """yaml.safe_load, except that 5e-4 is a float (YAML 1.1 wants 5.0e-4 and reads a string)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return yaml.load(text, Loader=Loader)


OWNED_DS_KEYS = {"train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                 "gradient_clipping", "zero_optimization", "bf16", "fp16", "optimizer", "scheduler"}

