"""Task recipes: one YAML per task (its Task.recipe, elp_fast/tasks/recipes/ for the built-in
ones) holding the data splits, adapter settings, head, epochs and engine settings, and the
learning rates of every method. A recipe is loaded, overridden from the command line
(`--set section.key=value`), resolved for one method into an ELPConfig and an EngineConfig, and
saved as the run directory's config.yaml. Per-epoch learning-rate multipliers are given as a
list (`train.epoch_lr_factors`) or as the published ASR curve (`train.epoch_lr_curve`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import ELPConfig
from ..engine.config import EngineConfig, load_yaml
from ..validation import int_at_least, is_number, number_at_least
from .methods import METHODS, method_overrides
from .registry import get_task, task_names

SECTIONS = ("task", "data", "model", "head", "train", "engine", "methods")
TRAIN_KEYS = ("epochs", "warmup_epochs", "epoch_lr_factors", "epoch_lr_curve", "eval_every_epochs",
              "save_every_epochs")
CURVE_KEYS = {"warmup": 0.2, "hold": 0.03, "start": 0.1, "end": 1.0, "scale": 10.0}


class RecipeError(ValueError):
    """A recipe, or an override of it, is invalid (a ValueError); the message names the key."""


def recipe_path(task: str) -> Path:
    try:
        return get_task(task).recipe
    except ValueError as exc:
        raise RecipeError(str(exc)) from None


def load_recipe(task: Optional[str] = None, path: Optional[str] = None) -> dict:
    """The recipe of `task`, or the YAML file at `path` (whose task must agree when both given)."""
    if path is None and task is None:
        raise RecipeError("recipe: give --task or --config")
    file = Path(path) if path is not None else recipe_path(task)
    if not file.is_file():
        raise RecipeError(f"--config: {file} does not exist")
    try:
        data = load_yaml(file.read_text())
    except Exception as exc:  # yaml.YAMLError and friends
        raise RecipeError(f"{file}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{file}: expected a mapping with the sections {SECTIONS}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise RecipeError(f"{file}: unknown section(s) {unknown}; expected {SECTIONS}")
    if task is not None and data.get("task") not in (None, task):
        raise RecipeError(f"{file}: is a recipe for task {data.get('task')!r}, not {task!r}")
    data.setdefault("task", task)
    if data["task"] not in task_names():
        raise RecipeError(f"{file}: task must be one of {task_names()}, got {data['task']!r}")
    for name in SECTIONS[1:]:
        data.setdefault(name, {})
        if not isinstance(data[name], dict):
            raise RecipeError(f"{file}: section {name!r} must be a mapping, got {data[name]!r}")
    return data


def apply_overrides(recipe: dict, items: Sequence[str]) -> dict:
    """`section.key=value` (VALUE in YAML syntax; deeper keys reach into mappings, e.g.
    methods.elp.head=1e-3 or engine.group_lr.head=1e-3); a bare `key=value` names an engine
    field."""
    import copy

    out = copy.deepcopy(recipe)
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecipeError(f"--set: got {item!r}; expected SECTION.KEY=VALUE (e.g. engine.lr=1e-3)")
        path = key.split(".")
        if len(path) == 1:
            path = ["engine", key]
        if path[0] not in SECTIONS[1:] or not all(path):
            raise RecipeError(f"--set {item!r}: unknown section {path[0]!r}; expected one of {SECTIONS[1:]}")
        try:
            parsed = load_yaml(value)
        except Exception as exc:
            raise RecipeError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
        node = out
        for depth, name in enumerate(path[:-1]):
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {item!r}: {'.'.join(path[:depth + 1])} is not a mapping")
        node[path[-1]] = parsed
    return out


def resolve_model(recipe: dict, method: str) -> ELPConfig:
    """The recipe's adapter settings with the method's overrides on top."""
    data = dict(recipe["model"])
    data.update(method_overrides(method))
    return ELPConfig.from_dict(data)


def hyperbolic_epoch_factors(epochs: int, warmup: float = 0.2, hold: float = 0.03, start: float = 0.1,
                             end: float = 1.0, scale: float = 10.0) -> list[float]:
    """The per-epoch learning-rate multipliers of the published E/L-adapter ASR code (a LambdaLR
    stepped once per epoch): a linear warm-up from start to 1 over int(epochs * warmup) epochs,
    1 for int(epochs * hold) epochs, then the hyperbolic decay (E - (E - end) t) / (E + (E scale
    - E) t), t from 0 to 1, with E = epochs. For 100 epochs: x0.1 at epoch 0, x1 over epochs
    19-23, x0.50 at 30, x0.16 at 50, x0.0023 at 99."""
    n_warm, n_hold = int(epochs * warmup), int(epochs * hold)
    n_decay = epochs - n_warm - n_hold + 1  # as published: one point more than the epochs left
    ramp = [(start * epochs + (epochs - start * epochs) * i / max(1, n_warm - 1)) / epochs for i in range(n_warm)]
    decay = [(epochs - (epochs - end) * i / max(1, n_decay - 1)) / (epochs + (epochs * scale - epochs) * i /
                                                                       max(1, n_decay - 1)) for i in range(n_decay)]
    return (ramp + [1.0] * n_hold + decay)[:epochs]


def _epoch_factors(train: dict, epochs: int) -> Optional[list]:
    curve = train.get("epoch_lr_curve")
    if curve is None:
        return train.get("epoch_lr_factors")
    if train.get("epoch_lr_factors") is not None:
        raise RecipeError("train: give epoch_lr_factors or epoch_lr_curve, not both")
    if not isinstance(curve, dict) or set(curve) - set(CURVE_KEYS) or not all(
            is_number(v) and v >= 0 for v in curve.values()):
        raise RecipeError(f"train.epoch_lr_curve: got {curve!r}; expected a mapping of numbers >= 0 with keys among "
                          f"{sorted(CURVE_KEYS)}")
    return hyperbolic_epoch_factors(epochs, **{**CURVE_KEYS, **curve})


def check_train(recipe: dict) -> dict:
    train = recipe["train"]
    unknown = sorted(set(train) - set(TRAIN_KEYS))
    if unknown:
        raise RecipeError(f"train: unknown key(s) {unknown}; expected {TRAIN_KEYS}")
    epochs = int_at_least(1).check("train.epochs", train.get("epochs", 1), RecipeError)
    factors = train.get("epoch_lr_factors")
    if factors is not None and (not isinstance(factors, list) or len(factors) < epochs or not all(
            is_number(f) and f >= 0 for f in factors)):
        raise RecipeError(f"train.epoch_lr_factors: got {factors!r}; expected a list of >= {epochs} numbers >= 0 "
                          "(one learning-rate multiplier per epoch)")
    for key in ("warmup_epochs", "eval_every_epochs", "save_every_epochs"):
        number_at_least(0).check(f"train.{key}", train.get(key, 0), RecipeError)
    return train


def resolve_engine(recipe: dict, method: str, steps_per_epoch: int, fixed: dict) -> EngineConfig:
    """EngineConfig from the recipe's engine section, its epochs (in optimizer steps, from the
    data) and the method's learning rates; `fixed` (command-line flags) wins over all of it. A
    run shortened or lengthened by max_steps keeps its schedule's shape: epochs are scaled to
    max_steps / epochs steps each."""
    if method not in recipe["methods"]:
        raise RecipeError(f"methods: the recipe gives no learning rates for method {method!r} "
                          f"(it has {sorted(recipe['methods'])}); known methods: {sorted(METHODS)}")
    train = check_train(recipe)
    data = {**recipe["engine"], **fixed}
    data["group_lr"] = {**recipe["methods"][method], **data.get("group_lr", {})}
    epochs = train.get("epochs", 1)
    data.setdefault("max_steps", epochs * steps_per_epoch)
    total = data["max_steps"]
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        return EngineConfig.from_dict(data)  # EngineConfig names the bad max_steps
    per_epoch = total / epochs
    factors = _epoch_factors(train, epochs)
    if factors is not None and data.setdefault("schedule", "piecewise") == "piecewise":
        points: list = []
        for step in range(total):  # the factor of the epoch each step falls in
            f = float(factors[min(epochs - 1, int(step / per_epoch))])
            if not points or points[-1][1] != f:
                points.append([step, f])
        data.setdefault("lr_points", points)
    if train.get("warmup_epochs"):
        data.setdefault("warmup_steps", min(total, int(train["warmup_epochs"] * per_epoch)))
    for key, name in (("eval_every_epochs", "eval_every"), ("save_every_epochs", "save_every")):
        if train.get(key):
            data.setdefault(name, max(1, int(train[key] * per_epoch)))
    return EngineConfig.from_dict(data)


def dump(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110)


def as_plain(value: Any) -> Any:
    """Tuples -> lists, recursively (what YAML round-trips)."""
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    return value
