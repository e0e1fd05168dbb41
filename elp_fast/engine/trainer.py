"""Trainer: trains a wrapped ELP model through DeepSpeed, saves adapters only, resumes exactly.

One optimizer step = grad_accum_steps micro-steps on every process. After step s the loop logs,
evaluates (every eval_every), saves a resume checkpoint (every save_every) and honours SIGTERM
(save, then stop). A resumed run restores the adapters, fp32 master weights, optimizer moments,
schedule, loss scaler, data position and every RNG, so it continues bit for bit.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..files import write_atomic
from . import checkpoints as ckpt
from . import distributed as dist
from . import state as train_state
from ..config import PARAMETER_GROUPS
from .config import EngineConfig, EngineConfigError
from .data import BatchPlan, as_dataset, eval_batches, train_batches
from .records import MetricsLog, Progress, audio_seconds, format_seconds, peak_memory_bytes

log = logging.getLogger("elp_fast.engine")

_DECAYED = ("down_w", "up_w", "proj_w", "weight")  # weight matrices; norms, biases, frames, logits are not
CRASH_ENV = "ELP_FAST_CRASH_AT"  # fault injection for the crash tests: "<step>:<phase>"


def default_loss(model, batch) -> torch.Tensor:
    if not isinstance(batch, dict):
        raise TypeError(f"Trainer: batches are {type(batch).__name__}; the default loss needs dicts of "
                        "model arguments (input_values, attention_mask, labels), or pass loss_fn")
    out = model(**model_inputs(batch))
    if out.loss is None:
        raise ValueError("Trainer: the model returned no loss; give batches 'labels' and a model with a "
                         "task head, or pass loss_fn(model, batch) -> scalar tensor")
    return out.loss


MODEL_KEYS = ("input_values", "attention_mask", "labels")


def model_inputs(batch: dict) -> dict:
    """The model's arguments in a batch (batches may carry more, e.g. utterance indices)."""
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _crash_point(step: int, phase: str) -> None:
    """SIGKILL this process at a named point of a checkpoint write (tests only)."""
    if os.environ.get(CRASH_ENV) == f"{step}:{phase}":
        os.kill(os.getpid(), signal.SIGKILL)


class Trainer:
    def __init__(self, model, config: EngineConfig | dict, train_data, eval_data=None, *,
                 collate_fn: Optional[Callable] = None,
                 loss_fn: Optional[Callable] = None,
                 eval_fn: Optional[Callable] = None, evaluator: Any = None) -> None:
        """model: an ELPModel (elp_fast.wrap). train_data / eval_data: map-style Datasets or
        DataLoaders over one (their collate_fn is kept; batching is the engine's). loss_fn(model,
        batch) -> scalar loss; default: model(**batch).loss. eval_fn(model, batch) -> {name:
        (sum, count)} extra evaluation metrics, summed over processes. evaluator: whole-set
        metrics (UA, EER, ...): reset(), update(model, batch, keep) on every evaluation batch
        (keep is False for a process's padding batch) and result(gather) -> {name: value}, where
        gather(rows) concatenates every process's numpy rows (elp_fast.tasks.evaluators)."""
        from ..models import ELPModel

        if not isinstance(model, ELPModel):
            raise TypeError(f"Trainer: model must be an ELPModel (from elp_fast.wrap), got {type(model).__name__}")
        if isinstance(config, dict):
            config = EngineConfig.from_dict(config)
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Trainer: config must be an EngineConfig or a dict, got {type(config).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("Trainer: the model has no trainable parameters")
        for name, fn in (("collate_fn", collate_fn), ("loss_fn", loss_fn), ("eval_fn", eval_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Trainer: {name} must be callable, got {type(fn).__name__}")
        self.model, self.config = model, config
        self.dataset, collate = as_dataset(train_data, "train_data")
        if len(self.dataset) == 0:
            raise ValueError("train_data: the dataset is empty")
        self.collate = collate_fn or collate
        self.eval_dataset, eval_collate = (as_dataset(eval_data, "eval_data") if eval_data is not None
                                           else (None, None))
        self.eval_collate = collate_fn or eval_collate
        self.loss_fn = loss_fn or default_loss
        self.eval_fn = eval_fn
        if evaluator is not None and not all(callable(getattr(evaluator, m, None)) for m in ("reset", "update", "result")):
            raise TypeError(f"Trainer: evaluator must have reset(), update(model, batch, keep) and result(gather), "
                            f"got {type(evaluator).__name__}")
        self.evaluator = evaluator
        if config.precision == "fp16" and dist.device().type != "cuda":
            raise EngineConfigError("EngineConfig.precision: got 'fp16' on a machine without CUDA; expected "
                                    "'fp32' or 'bf16' (DeepSpeed supports fp16 on GPUs only)")
        if config.batch_seconds and not callable(getattr(self.dataset, "durations", None)):
            raise EngineConfigError(
                f"EngineConfig.batch_seconds: got {config.batch_seconds}, but train_data "
                f"({type(self.dataset).__name__}) has no durations() method giving each item's seconds; "
                "expected 0 (fixed micro_batch_size batches) for such a dataset")
        model.set_activation_checkpointing(config.activation_checkpointing)  # range-checked here
        self.out = Path(config.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.engine = None
        self.step = 0
        self._stop_signal = False
        self._rng: Optional[dict] = None  # RNG states to restore when a resumed run starts

    # -- set-up ------------------------------------------------------------------------------

    def _named_trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _param_groups(self) -> list[dict]:
        groups: dict[tuple, list] = {}
        for name, p in self._named_trainable():
            key = self.model.parameter_group(name)
            key = key if key in PARAMETER_GROUPS else "head"  # a backbone parameter the user unfroze
            decay = p.ndim >= 2 and name.rsplit(".", 1)[-1] in _DECAYED
            groups.setdefault((key, decay), []).append(p)
        out = []
        for (key, decay), params in sorted(groups.items()):
            out.append({"params": params, "name": f"{key}{'' if decay else '/no_decay'}",
                        "lr": self.config.lr_of(key), "weight_decay": self.config.weight_decay if decay else 0.0})
        return out

    def _batch_plan(self, world: int) -> BatchPlan:
        cfg = self.config
        durations = None
        if cfg.batch_seconds:
            durations = list(self.dataset.durations())
            if len(durations) != len(self.dataset):
                raise ValueError(f"train_data.durations(): got {len(durations)} values for {len(self.dataset)} items")
        plan = BatchPlan(len(self.dataset), cfg.micro_batch_size, cfg.seed, durations, cfg.batch_seconds)
        per_step = cfg.grad_accum_steps * world
        if len(plan.epoch(0)) < per_step:
            what = (f"{cfg.batch_seconds} s batches" if cfg.batch_seconds
                    else f"micro_batch_size {cfg.micro_batch_size}")
            raise EngineConfigError(
                f"EngineConfig.micro_batch_size: {what} x grad_accum_steps {cfg.grad_accum_steps} x {world} "
                f"process(es) need more than the {len(self.dataset)} utterances in train_data for one step; "
                "expected smaller batches")
        return plan

    def _register_external_parameters(self) -> None:
        """ZeRO-3 gathers a module's parameters when its forward runs; parameters that the ELP
        forward reads from outside their module's forward must be named to DeepSpeed."""
        from deepspeed.runtime.zero import register_external_parameter

        for module, p in self.model.external_parameters():
            register_external_parameter(module, p)

    def setup(self) -> None:
        """Start DeepSpeed and, when resuming, check and load the checkpoint (train() and
        evaluate() call it; call it first to know that a run can start before writing anything
        of your own beside it)."""
        self._setup()

    def _setup(self) -> None:
        if self.engine is not None:
            return
        import deepspeed

        cfg = self.config
        dist.init()
        self.rank, self.world = dist.rank(), dist.world_size()
        self.device = dist.device()
        self._plan = self._batch_plan(self.world)
        resume = self._resume_dir()
        resume_state = ckpt.read_state(resume) if resume is not None else None
        if resume is not None:
            self._check_compatible(resume, resume_state)
            self.model.load_adapters(resume / ckpt.ADAPTERS_DIR)  # before DeepSpeed copies weights
        # Only a run that goes ahead touches the folder (a refused resume leaves it as it was).
        if self.rank == 0:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
            for p in ckpt.clean_stale(self.ckpt_root):
                log.warning("removed an incomplete checkpoint left by an interrupted run: %s", p)
        dist.barrier()
        # Each process draws its own dropout / SpecAugment masks.
        train_state.seed_everything(cfg.seed + self.rank)
        self._groups = self._param_groups()
        self._base_lrs = [g["lr"] for g in self._groups]
        optimizer = torch.optim.AdamW(self._groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
        if cfg.zero_stage == 3:
            self._register_external_parameters()
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=self.model, optimizer=optimizer, config=cfg.deepspeed_config(self.world),
            dist_init_required=False)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", self.rank == 0)
        if resume_state is not None:
            self._restore(resume, resume_state)
        self.metrics.truncate_after(self.step)  # a fresh start (step 0) keeps no old records
        if resume_state is not None and self.rank == 0:
            self._say(f"resumed from {resume} at step {self.step}")

    def _resume_dir(self) -> Optional[Path]:
        cfg = self.config
        if cfg.resume not in ("auto", "never"):
            path = Path(cfg.resume)
            if not path.is_dir():
                raise FileNotFoundError(f"EngineConfig.resume: {path} is not an existing checkpoint directory")
            return path
        found, error = None, None
        if self.rank == 0:
            found = ckpt.find_resume(self.ckpt_root) if cfg.resume == "auto" else None
            existing = ckpt.list_checkpoints(self.ckpt_root)
            if found is None and existing:
                # Starting afresh here would mix two runs' checkpoints (and keep-last-N would prune
                # the new ones first): refuse rather than delete anything.
                why = ("resume='never'" if cfg.resume == "never"
                       else "none of them is complete (see the warnings above)")
                error = (f"{self.ckpt_root} already holds checkpoints {[p.name for p in existing]} but "
                         f"{why}; choose another output_dir, or move them away to start afresh")
        found, error = dist.broadcast_json([str(found) if found else None, error])
        if error:
            raise ckpt.ResumeError(error)
        return Path(found) if found else None

    def _check_compatible(self, directory: Path, saved: dict) -> None:
        before = saved.get("engine_config", {})
        now = self.config.to_dict()
        # These change which batch a step sees or its arithmetic: resuming would not continue the run.
        fixed = ("micro_batch_size", "batch_seconds", "grad_accum_steps", "seed", "lr", "group_lr", "weight_decay", "betas",
                 "adam_eps", "schedule", "lr_points", "warmup_steps", "min_lr_ratio", "grad_clip", "precision")
        diff = {k: (before.get(k), now[k]) for k in fixed if k in before and before.get(k) != now[k]}
        if saved.get("world_size") != self.world:
            diff["world_size"] = (saved.get("world_size"), self.world)
        if saved.get("dataset_size") != len(self.dataset):
            diff["dataset_size"] = (saved.get("dataset_size"), len(self.dataset))
        if diff:
            raise ckpt.ResumeError(
                f"resume: {directory} was written by a run with other settings (field: (checkpoint, now)) "
                f"{diff}; resuming would not continue that run. Restore the settings, or set "
                f"output_dir elsewhere / resume='never' to start afresh")
        if saved["step"] > self.config.max_steps:
            raise ckpt.ResumeError(f"resume: {directory} is at step {saved['step']}, beyond max_steps "
                                   f"{self.config.max_steps}")

    def _restore(self, directory: Path, saved: dict) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(directory / ckpt.OPTIMIZER_NAME))
        train_state.restore(self.optimizer, self._named_trainable(), tensors, saved["optimizer_step"])
        train_state.restore_loss_scaler(self.optimizer, saved.get("loss_scaler", {}))
        self.step = int(saved["step"])
        rng = directory / ckpt.RNG_DIR / ckpt.rng_name(self.rank)
        if rng.is_file():
            self._rng = json.loads(rng.read_text())
        else:
            log.warning("%s has no RNG state for rank %d: random draws will differ from the original run",
                        directory, self.rank)

    # -- saving ----------------------------------------------------------------------------------

    def save_checkpoint(self) -> Optional[Path]:
        """Write a resume checkpoint of the current step (every process must call this)."""
        import deepspeed
        from safetensors.torch import save_file

        step = self.step
        named = self._named_trainable()
        tensors = train_state.gather(self.optimizer, named)  # collective under ZeRO-3
        tmp_name = dist.broadcast_json(f".tmp-{ckpt.step_dir_name(step)}-{os.getpid()}-{os.urandom(4).hex()}"
                                       if self.rank == 0 else None)
        tmp = self.ckpt_root / tmp_name
        params = [p for _, p in named]
        gather = (deepspeed.runtime.zero.GatheredParameters(params, modifier_rank=None) if self.config.zero_stage == 3
                  else contextlib.nullcontext())
        with gather:
            if self.rank == 0:
                tmp.mkdir(parents=True)
                self.model.save_adapters(tmp / ckpt.ADAPTERS_DIR)
                _crash_point(step, "adapters")
                save_file(tensors, str(tmp / ckpt.OPTIMIZER_NAME), metadata={"format": ckpt.FORMAT})
        dist.barrier()
        (tmp / ckpt.RNG_DIR).mkdir(exist_ok=True)
        rng_path = tmp / ckpt.RNG_DIR / ckpt.rng_name(self.rank)
        rng_path.write_text(json.dumps(train_state.rng_state()))
        dist.barrier()
        final = None
        if self.rank == 0:
            ckpt.write_state(tmp, self._state_record())
            _crash_point(step, "sealed")
            final = ckpt.commit(tmp, self.ckpt_root, step, self.config.keep_last,
                                after_rename=lambda: _crash_point(step, "renamed"))
        dist.barrier()
        return final

    def _state_record(self) -> dict:
        from ..version import __version__

        cfg = self.config
        return {
            "step": self.step,
            "optimizer_step": train_state.optimizer_step_count(self.optimizer),
            "loss_scaler": train_state.loss_scaler_state(self.optimizer),
            "schedule": {"name": cfg.schedule, "factor": cfg.lr_factor(self.step),
                         "base_lrs": {g["name"]: lr for g, lr in zip(self._groups, self._base_lrs)}},
            "data": {"micro_batches_per_step": cfg.grad_accum_steps * self.world, "position": self.step},
            "dataset_size": len(self.dataset),
            "world_size": self.world,
            "zero_stage": cfg.zero_stage,
            "engine_config": cfg.to_dict(),
            "elp_fast_version": __version__,
            "saved_at": time.time(),
        }

    # -- training --------------------------------------------------------------------------------

    def _set_lr(self, step: int) -> None:
        factor = self.config.lr_factor(step)
        for g, base in zip(self.optimizer.param_groups, self._base_lrs):
            g["lr"] = base * factor

    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
        self._stop_signal = signal.Signals(signum).name

    def train(self) -> dict:
        """Train to max_steps (or until SIGTERM); returns the run summary (also summary.json)."""
        self._setup()
        cfg = self.config
        restore_rng = self._rng
        previous = {}
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (pre-emption) or a first Ctrl-C: finish the step, save, stop cleanly.
            previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        progress = Progress(cfg.max_steps, self.step, cfg.progress and self.rank == 0, cfg.log_every)
        batches = train_batches(self.dataset, self.collate, plan=self._plan, accum=cfg.grad_accum_steps,
                                world=self.world, rank=self.rank, seed=cfg.seed, start_step=self.step,
                                num_workers=cfg.num_workers)
        if restore_rng is not None:
            train_state.set_rng_state(restore_rng)  # last: nothing may draw between this and step 1
            self._rng = None
        start_step, t0 = self.step, time.time()
        window = {"loss": 0.0, "steps": 0, "audio": 0.0, "t": time.time()}
        audio_total, last_loss, stopped = 0.0, None, None
        last_eval: dict = {}
        try:
            self.engine.train()
            while self.step < cfg.max_steps:
                self._set_lr(self.step)
                loss_sum, audio = 0.0, 0.0
                for batch in next(batches):
                    batch = _to_device(batch, self.device)
                    loss = self.loss_fn(self.engine, batch)
                    value = float(loss.detach())
                    if not math.isfinite(value) and cfg.precision != "fp16":
                        raise FloatingPointError(
                            f"step {self.step + 1}: the loss is {value} (lr {self._base_lrs[0] * cfg.lr_factor(self.step):g}); "
                            f"the last complete checkpoint is in {self.ckpt_root}. Lower the learning rate "
                            "or check the data")
                    self.engine.backward(loss)
                    self.engine.step()
                    loss_sum += value
                    audio += audio_seconds(batch)
                self.step += 1
                total_loss, micro, audio, stop = dist.all_sum(
                    [loss_sum, cfg.grad_accum_steps, audio, float(bool(self._stop_signal))])
                last_loss = total_loss / micro
                audio_total += audio
                window["loss"] += last_loss
                window["steps"] += 1
                window["audio"] += audio
                elapsed = max(time.time() - window["t"], 1e-9)
                progress.update(self.step, last_loss, window["audio"] / elapsed)
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    self._log_train(window, elapsed)
                    window = {"loss": 0.0, "steps": 0, "audio": 0.0, "t": time.time()}
                if self.eval_dataset is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                    last_eval = self.evaluate()
                    progress.message(f"eval @ step {self.step}: " + _fmt(last_eval))
                final = self.step == cfg.max_steps
                if stop or final or (cfg.save_every and self.step % cfg.save_every == 0):
                    path = self.save_checkpoint()
                    if path is not None and not final:
                        progress.message(f"saved {path}")
                if stop:
                    stopped = self._stop_signal or "a signal to another process"
                    break
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stopped is None and self.eval_dataset is not None and (not cfg.eval_every or self.step % cfg.eval_every):
            last_eval = self.evaluate()
        return self._finish(start_step, time.time() - t0, audio_total, last_loss, last_eval, stopped)

    def _log_train(self, window: dict, elapsed: float) -> None:
        rec = {"type": "train", "step": self.step, "loss": window["loss"] / window["steps"],
               "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups} if self.rank == 0 else {},
               "audio_s_per_s": window["audio"] / elapsed, "steps_per_s": window["steps"] / elapsed}
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            rec["grad_norm"] = float(norm)
        self.metrics.write(rec)

    def evaluate(self, max_batches: Optional[int] = None, *, dataset=None, evaluator: Any = None,
                 split: str = "eval") -> dict:
        """Mean loss (and eval_fn metrics) over eval_data, on every process's share; the RNGs of
        the training run are left untouched. dataset / evaluator: another split (e.g. the test
        set) and its evaluator; records carry the split's name. Batches without labels (e.g.
        speaker-verification trials) give no loss."""
        collate = self.eval_collate or self.collate
        if dataset is None:
            dataset = self.eval_dataset
        else:
            dataset, own = as_dataset(dataset, "dataset")
            collate = own or collate
        evaluator = self.evaluator if evaluator is None else evaluator
        if dataset is None:
            raise ValueError("evaluate: the Trainer was built without eval_data")
        self._setup()
        cfg = self.config
        saved_rng = train_state.rng_state()
        was_training = self.engine.training
        self.engine.eval()
        sums: dict[str, list[float]] = {"loss": [0.0, 0.0]}
        if evaluator is not None:
            evaluator.reset()
        try:
            with torch.no_grad():
                for batch, real in eval_batches(dataset, collate, micro=cfg.micro_batch_size,
                                                world=self.world, rank=self.rank,
                                                limit=cfg.eval_batches if max_batches is None else max_batches):
                    batch = _to_device(batch, self.device)
                    n = _batch_len(batch)
                    labelled = not isinstance(batch, dict) or "labels" in batch
                    loss = float(self.loss_fn(self.engine, batch)) if labelled else 0.0
                    extra = self.eval_fn(self.engine, batch) if self.eval_fn is not None else {}
                    if evaluator is not None:  # on padding batches too: ZeRO-3 needs equal forwards
                        evaluator.update(self.engine, batch, real)
                    if not real:
                        continue
                    sums["loss"][0] += loss * n
                    sums["loss"][1] += n if labelled else 0
                    for k, (s, c) in extra.items():
                        acc = sums.setdefault(k, [0.0, 0.0])
                        acc[0] += float(s)
                        acc[1] += float(c)
        finally:
            train_state.set_rng_state(saved_rng)
            self.engine.train(was_training)
        keys = sorted(sums)
        flat = dist.all_sum([v for k in keys for v in sums[k]])
        result = {k: flat[2 * i] / flat[2 * i + 1] for i, k in enumerate(keys) if flat[2 * i + 1]}
        if evaluator is not None:
            result.update(evaluator.result(dist.gather_rows))
        self.metrics.write({"type": "eval", "split": split, "step": self.step, **result})
        return result

    def _finish(self, start_step: int, seconds: float, audio: float, last_loss: Optional[float], last_eval: dict,
                stopped: Optional[str]) -> dict:
        peaks = [0.0] * self.world
        peaks[self.rank] = float(peak_memory_bytes(self.device))
        peaks = dist.all_sum(peaks)
        steps = self.step - start_step
        summary = {
            "type": "summary", "step": self.step, "max_steps": self.config.max_steps,
            "steps_this_run": steps, "stopped": stopped, "final_loss": last_loss, "eval": last_eval,
            "seconds": seconds, "steps_per_s": steps / seconds if seconds > 0 else 0.0,
            "audio_s_per_s": audio / seconds if seconds > 0 else 0.0,
            "peak_memory_bytes": {f"{self.device.type}:{r}": int(b) for r, b in enumerate(peaks)},
            "world_size": self.world, "zero_stage": self.config.zero_stage, "precision": self.config.precision,
            "trainable_parameters": self.model.trainable_parameter_counts()["trainable"],
            "checkpoint": str(ckpt.find_latest_name(self.ckpt_root) or ""),
        }
        if self.rank == 0:
            self.metrics.write(summary)
            write_atomic(self.out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
            peak = max(peaks) / 2 ** 20
            loss = "no step run" if last_loss is None else f"loss {last_loss:.4f}"
            self._say(f"{'stopped by ' + stopped if stopped else 'done'}: step {self.step}/{self.config.max_steps}, "
                      f"{loss}" + (f", eval {_fmt(last_eval)}" if last_eval else "")
                      + f", {summary['audio_s_per_s']:,.1f} audio-s/s over {format_seconds(seconds)}, "
                      f"peak memory {peak:,.0f} MiB per process; checkpoint {summary['checkpoint']}")
        return summary

    def _say(self, text: str) -> None:
        if self.config.progress:
            print(text, flush=True)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                return int(v.shape[0])
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return int(batch[0].shape[0])
    return 1


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
