"""The task registry: one `Task` spec per task, which the command line, the recipes, the data
checks and the runs all read. A task is a file that builds its `Task` and calls `register_task`
(the built-in ones: asr, asv, ser, sic); nothing else in elp_fast names a task.

Tasks from outside elp_fast register the same way: a module that calls `register_task` is
imported when it is named in the ELP_FAST_TASK_MODULES environment variable (comma-separated
module names) or in an installed package's `elp_fast.tasks` entry points. A run records the
module its task came from, so `elp-fast eval` finds the task again.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..validation import Rule

BUILTIN = ("asr", "asv", "ser", "sic")  # modules elp_fast.tasks.<name>, each registering its Task
MODULES_ENV = "ELP_FAST_TASK_MODULES"
ENTRY_POINTS = "elp_fast.tasks"
# Keys every task's data section accepts (how audio is read and checked; datasets.py).
COMMON_DATA_KEYS = frozenset({"corpus", "train", "eval", "test", "max_seconds", "verify", "allow_resample",
                              "downmix"})


class TaskError(ValueError):
    """A task cannot be found or registered (a ValueError); the message says which and why."""


@dataclass(frozen=True)
class Task:
    """What elp_fast needs to know to train and evaluate one task.

    name, summary: the `--task` value and its one-line description.
    recipe: the default recipe YAML (data splits, adapters, head, epochs, learning rates per method).
    corpora: values of the recipe's data.corpus this task reads ("manifest" for JSON lines).
    data_keys: keys of the data section beyond COMMON_DATA_KEYS.
    head_fields: head setting -> Rule; checked before any data is read.
    prepare(data_section, reader, head_settings, splits) -> TaskData: reads, checks and labels
        the splits named in `splits` (reader: datasets.CorpusReader over the corpus root; raise
        DataError naming the file or field).
    build_head(head_settings, in_dim, head_args) -> nn.Module: the task head fed H; head_args
        come from TaskData (classes, vocabulary, ...).
    predictions(output, batch, labels) -> list of dicts, one per utterance of the batch: what
        `elp-fast eval --predictions` writes (labels: TaskData.labels, names for the ids).
    can_crop: whether data.max_seconds may cut training audio (not for transcribed speech).
    whole_set_eval: the metric needs every evaluation utterance (engine.eval_batches must be 0).
    module: where the Task was defined (recorded in a run's config.yaml).
    """

    name: str
    summary: str
    recipe: Path
    corpora: tuple
    prepare: Callable[..., Any]
    build_head: Callable[[dict, int, dict], Any]
    predictions: Callable[[Any, dict, dict], list]
    head_fields: dict = field(default_factory=dict)
    data_keys: frozenset = frozenset()
    can_crop: bool = True
    whole_set_eval: bool = False
    module: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name == "tones":
            raise ValueError(f"Task.name: got {self.name!r}; expected an identifier other than 'tones' (the "
                             "built-in synthetic task)")
        if not all(isinstance(r, Rule) for r in self.head_fields.values()):
            raise TypeError(f"Task {self.name}: head_fields must map setting names to validation.Rule")
        for name in ("prepare", "build_head", "predictions"):
            if not callable(getattr(self, name)):
                raise TypeError(f"Task {self.name}: {name} must be callable")

    @property
    def all_data_keys(self) -> frozenset:
        return COMMON_DATA_KEYS | self.data_keys


_TASKS: dict[str, Task] = {}
_loaded = False


def register_task(task: Task) -> Task:
    """Add `task` to the registry (registering the same name from the same module again replaces
    it, so a module may be reloaded); returns it."""
    if not isinstance(task, Task):
        raise TypeError(f"register_task: got {type(task).__name__}; expected a Task")
    old = _TASKS.get(task.name)
    if old is not None and old.module != task.module:
        raise TaskError(f"register_task: task {task.name!r} is already registered by {old.module}")
    _TASKS[task.name] = task
    return task


def load_task_modules(extra: Optional[str] = None) -> None:
    """Import the built-in tasks and the installed entry points (once), the modules named in
    ELP_FAST_TASK_MODULES now, and `extra` (a module recorded by a run). Importing a module
    that is imported already costs nothing."""
    global _loaded
    if not _loaded:
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(f"{__package__}.{name}")
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINTS):
            _import(ep.module, f"entry point {ep.name!r}")
    for name in filter(None, (m.strip() for m in os.environ.get(MODULES_ENV, "").split(","))):
        _import(name, MODULES_ENV)
    if extra:
        _import(extra, "the run's task_module")


def _import(module: str, source: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise TaskError(f"{source}: cannot import task module {module!r} ({exc})") from None


def task_names() -> list[str]:
    load_task_modules()
    return sorted(_TASKS)


def get_task(name: Any, module: Optional[str] = None) -> Task:
    """The registered task `name` (`module`: import it first, e.g. the one a run recorded)."""
    load_task_modules(module)
    if name not in _TASKS:
        raise TaskError(f"--task: got {name!r}; expected one of {sorted(_TASKS)} (a task of another package "
                         f"registers when its module is named in {MODULES_ENV})")
    return _TASKS[name]
