"""`elp-fast train --task TASK` (any registered task) and `elp-fast eval`: a recipe, a corpus
root and a backbone become one run directory:

    <output>/config.yaml      everything the run used (recipe after overrides, method, backbone,
                              data root, the resolved ELPConfig and EngineConfig)
    <output>/metrics.jsonl    train / eval records per step (the engine's)
    <output>/checkpoints/     resume checkpoints; step-*/adapters holds the adapter weights
    <output>/summary.json     the engine's summary plus the test split's metrics
    <output>/eval-<split>.json  written by `elp-fast eval`
    <output>/predictions-<split>.jsonl  written by `elp-fast eval --predictions`: one line per
                              utterance (id, audio, the task's prediction and label)

Everything (recipe, data, labels, backbone) is checked before the directory is touched."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..config import ELPConfig
from ..files import write_atomic
from ..models.random_backbone import SIZES as RANDOM_SIZES, random_wavlm
from .datasets import DataError, prepare
from .recipe import RecipeError, apply_overrides, as_plain, dump, load_recipe, resolve_engine, resolve_model
from .registry import Task, get_task

CONFIG_NAME = "config.yaml"
BUILTIN_PREFIX = __package__ + "."  # tasks defined in elp_fast need no task_module in config.yaml
# What must agree for a run directory to be continued (the engine checks its own settings).
SAME_RUN_KEYS = ("task", "method", "backbone", "data", "model", "head", "labels")


def build_backbone(spec: str, seed: int) -> tuple[torch.nn.Module, str]:
    """A bare encoder: a random WavLM (random_backbone.SIZES) or a local HF checkpoint directory."""
    import transformers

    if spec in RANDOM_SIZES:
        return random_wavlm(spec, seed), (
            f"random initialisation ({spec} WavLM shape, seed {seed}): no pretrained weights, so expect far lower "
            "accuracy than from a pretrained checkpoint (--backbone DIR)")
    path = Path(spec)
    if not path.is_dir():
        raise RecipeError(f"--backbone: got {spec!r}; expected {', '.join(RANDOM_SIZES)} or a local directory holding a "
                          "HF checkpoint (config.json + weights)")
    if not (path / "config.json").is_file():
        raise RecipeError(f"--backbone: {path} holds no config.json; expected a HF checkpoint directory")
    model = transformers.AutoModel.from_pretrained(path)
    return model, f"pretrained weights from {path.resolve()}"


def check_head(task: Task, head: dict) -> None:
    unknown = sorted(set(head) - set(task.head_fields))
    if unknown:
        raise RecipeError(f"head: unknown key(s) {unknown} for task {task.name}; expected {sorted(task.head_fields)}")
    for key, value in head.items():
        task.head_fields[key].check(f"head.{key}", value, RecipeError)


def head_input_dim(cfg: ELPConfig, backbone) -> int:
    taps = cfg.l_layers not in ("none", []) or cfg.l_input
    return cfg.l_dim if taps and cfg.l_mode == "adapter" else backbone.config.hidden_size


def _steps_per_epoch(dataset, engine: dict, seed: int) -> int:
    from ..engine.data import BatchPlan, steps_in_epoch

    micro = engine.get("micro_batch_size", 8)
    budget = engine.get("batch_seconds", 0) or 0
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = engine.get("grad_accum_steps", 1) * world
    plan = BatchPlan(len(dataset), micro, seed, list(dataset.durations()) if budget else None, budget)
    try:
        return steps_in_epoch(plan, per_step, 0)
    except ValueError:
        raise RecipeError(f"engine: batches of {f'{budget} s' if budget else micro} x {per_step} per step need more "
                          f"than the {len(dataset)} training utterances for one step; expected smaller batches") from None


def build(task: str, recipe: dict, method: str, backbone_spec: str, data_root: Any, splits) -> tuple:
    """(model, data, backbone description, ELPConfig): everything checked, nothing written."""
    spec = get_task(task)
    model_cfg = resolve_model(recipe, method)
    check_head(spec, recipe["head"])
    seed = recipe["engine"].get("seed", 0)
    backbone, description = build_backbone(backbone_spec, seed)
    hf = backbone.config
    data = prepare(task, recipe["data"], data_root, conv_kernel=hf.conv_kernel, conv_stride=hf.conv_stride,
                   head=recipe["head"], splits=splits)
    from ..models import wrap

    torch.manual_seed(seed)
    head = spec.build_head(recipe["head"], head_input_dim(model_cfg, backbone), data.head_args)
    model = wrap(backbone, model_cfg, task_head=head)
    return model, data, description, model_cfg


def _check_run_dir(out: Path, config: dict) -> None:
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    import yaml

    saved = yaml.safe_load(path.read_text()) or {}
    differ = [k for k in SAME_RUN_KEYS if saved.get(k) != config.get(k)]
    if differ:
        raise RecipeError(f"--output: {out} holds a run with other settings ({', '.join(differ)} differ); choose "
                          "another --output, or delete that folder to start over")


def train(args, engine_flags: dict) -> int:
    recipe = apply_overrides(load_recipe(args.task, args.config), args.set)
    train_recipe(recipe, args.method, args.backbone, args.data, engine_flags)
    return 0


def train_recipe(recipe: dict, method: str, backbone_spec: str, data_root: Any, engine_flags: dict,
                 quiet: bool = False) -> tuple[dict, Any]:
    """Check everything, write the run directory's config.yaml, train, evaluate the test split;
    returns (summary, model)."""
    from ..data import pad_collate
    from ..engine import Trainer

    task = recipe["task"]
    model, data, description, model_cfg = build(task, recipe, method, backbone_spec, data_root,
                                                ("train", "eval", "test"))
    if data.train is None:
        raise DataError("data.train: the recipe names no training split")
    seed = recipe["engine"].get("seed", 0)
    fixed = dict(engine_flags)
    fixed.setdefault("output_dir", recipe["engine"].get("output_dir", f"runs/{task}-{method}"))
    steps_per_epoch = _steps_per_epoch(data.train, {**recipe["engine"], **fixed}, seed)
    engine_cfg = resolve_engine(recipe, method, steps_per_epoch, fixed)
    spec = get_task(task)
    if spec.whole_set_eval and engine_cfg.eval_batches:
        raise RecipeError(f"engine.eval_batches: got {engine_cfg.eval_batches}; the {task} metric needs the whole "
                          "evaluation set, expected 0")
    backbone = backbone_spec if backbone_spec in RANDOM_SIZES else str(Path(backbone_spec).resolve())
    plugin = {} if spec.module.startswith(BUILTIN_PREFIX) else {"task_module": spec.module}
    config = as_plain({"task": task, **plugin, "method": method, "backbone": backbone,
                       "data_root": str(Path(data_root).resolve()), "data": recipe["data"],
                       "model": model_cfg.to_dict(), "head": recipe["head"], "train": recipe["train"],
                       "labels": data.labels, "engine": engine_cfg.to_dict()})
    out = Path(engine_cfg.output_dir)
    _check_run_dir(out, config)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0 and not quiet:
        print(f"task {task}, method {method}: {description}")
        model.print_trainable_parameters()
        sizes = ", ".join(f"{s} {len(d)}" for s, d in (("train", data.train), ("eval", data.eval),
                                                         ("test", data.test)) if d is not None)
        print(f"data: {sizes} utterances; {engine_cfg.max_steps} steps; run directory {out}")
    trainer = Trainer(model, engine_cfg, data.train, data.eval, collate_fn=pad_collate,
                      evaluator=data.evaluator("eval") if data.eval is not None else None)
    trainer.setup()  # a checkpoint it cannot resume is refused here, before config.yaml changes
    if rank0:
        write_atomic(out / CONFIG_NAME, dump(config).encode())
    summary = trainer.train()
    if data.test is not None and summary["stopped"] is None:
        summary["test"] = trainer.evaluate(max_batches=0, dataset=data.test, evaluator=data.evaluator("test"),
                                           split="test")
        if rank0:
            write_atomic(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
            print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in summary["test"].items()))
    return summary, model


def evaluate(args) -> int:
    """Evaluate a run's adapters (its newest checkpoint, or --checkpoint) on one split, in this
    process; writes <run>/eval-<split>.json."""
    import yaml

    from ..data import pad_collate
    from ..engine import checkpoints as ckpt
    from .recipe import SECTIONS

    run = Path(args.run)
    path = run / CONFIG_NAME
    if not path.is_file():
        raise RecipeError(f"--run: {run} holds no {CONFIG_NAME} (not a run directory of `elp-fast train --task`)")
    config = yaml.safe_load(path.read_text())
    task = config["task"]
    spec = get_task(task, config.get("task_module"))
    recipe = {k: config.get(k, {}) for k in SECTIONS if k != "methods"}
    recipe["methods"] = {config["method"]: config["engine"].get("group_lr", {})}
    recipe["model"] = {k: v for k, v in config["model"].items()}
    split = args.split or ("test" if config["data"].get("test") else "eval")  # e.g. ASV, SER: the eval split
    if args.checkpoint:
        source = Path(args.checkpoint)
    else:
        found = ckpt.find_resume(run / "checkpoints")
        if found is None:
            raise RecipeError(f"--run: {run / 'checkpoints'} holds no complete checkpoint")
        source = found
    adapters = source / ckpt.ADAPTERS_DIR if (source / ckpt.ADAPTERS_DIR).is_dir() else source
    model, data, description, _ = build(task, recipe, config["method"], args.backbone or config["backbone"],
                                        args.data or config["data_root"], (split,))
    dataset = getattr(data, split)
    if dataset is None:
        raise DataError(f"--split: the {task} recipe of this run has no {split!r} split")
    changed = [k for k in config.get("labels", {}) if config["labels"][k] != as_plain(data.labels.get(k))]
    if changed:
        raise DataError(f"--data: the labels read now differ from the run's ({', '.join(changed)}: see "
                        f"{path}); the adapters' head would be read with other classes")
    model.load_adapters(adapters)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # fp32 on either
    model.to(device).eval()
    evaluator = data.evaluator(split)
    evaluator.reset()
    batch_size = args.batch_size or config["engine"].get("micro_batch_size", 8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=pad_collate)
    rows: list = []  # --predictions: one JSON object per utterance, in dataset order
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch["input_values"], attention_mask=batch["attention_mask"])
            evaluator.update(lambda *_, **__: out, batch, True)  # one forward serves both
            if args.predictions:
                for row in spec.predictions(out, batch, data.labels):
                    u = dataset.utterances[len(rows)]
                    rows.append({"id": u.id, "audio": str(u.path), **row})
    if args.predictions:
        write_atomic(run / f"predictions-{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    result = evaluator.result(lambda rows: rows)
    record = {"split": split, "checkpoint": str(adapters), "utterances": len(dataset), **result}
    write_atomic(run / f"eval-{split}.json", (json.dumps(record, indent=2) + "\n").encode())
    print(f"{task} {split} ({len(dataset)} utterances, {adapters}): "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return 0
