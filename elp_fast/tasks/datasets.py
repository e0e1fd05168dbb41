"""From a recipe's data section and a corpus root to checked datasets, label tables and
evaluators, for any registered task. Everything is verified before anything is written: every
file's header (rate, channels, length against the encoder's receptive field) or its full decode
(`verify: full`, also NaN/Inf and truncation), and every label (each task's prepare() checks
its own: transcripts, classes, slots, speakers, trial lists), each error naming the file or
field. The pieces a task's prepare() uses (CorpusReader, TaskData, DataError) live here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..config import SAMPLING_RATE
from ..data import corpora
from ..data.audio import AudioError, audio_seconds, load_audio
from ..data.corpora import Utterance
from ..data.dataset import AudioDataset
from ..validation import number_at_least
from .registry import get_task

# data.corpus values read by name from a split (the layouts with one folder or list per split);
# tasks with layouts of their own (VoxCeleb1, IEMOCAP) read those in their prepare().
SPLIT_READERS: dict[str, Callable[[Path, str], list]] = {
    "librispeech": corpora.librispeech,
    "fluent_speech_commands": corpora.fluent_speech_commands,
    "manifest": lambda root, name: corpora.manifest(root / name),
}


class DataError(ValueError):
    """The data cannot be used as it is (a ValueError); the message names the file or field."""


@dataclass
class TaskData:
    task: str
    train: Optional[AudioDataset]
    eval: Optional[AudioDataset]
    test: Optional[AudioDataset]
    head_args: dict                      # what the head needs from the data (classes, vocabulary, ...)
    labels: dict = field(default_factory=dict)  # label names: saved with the run, used by predictions
    evaluators: dict = field(default_factory=dict)  # split -> factory of the split's evaluator

    def evaluator(self, split: str):
        return self.evaluators[split]()


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Input samples one output frame of the CNN feature encoder sees (400 for the standard one)."""
    field_, jump = conv_kernel[0], conv_stride[0]
    for k, s in zip(conv_kernel[1:], conv_stride[1:]):
        field_ += (k - 1) * jump
        jump *= s
    return field_


class CorpusReader:
    """One task's view of its corpus: reads split lists, checks every file once (its header, or
    all of it) and builds the datasets, with the recipe's loading options."""

    def __init__(self, data: dict, root: Path, conv_kernel: Sequence[int], conv_stride: Sequence[int],
                 max_seconds: float) -> None:
        self.corpus, self.root, self.max_seconds = data.get("corpus"), root, max_seconds
        self.conv_kernel, self.conv_stride = tuple(conv_kernel), tuple(conv_stride)
        self.level = data.get("verify", "full")
        if self.level not in ("full", "header"):
            raise DataError(f"data.verify: got {self.level!r}; expected 'full' or 'header'")
        self.load = {"allow_resample": bool(data.get("allow_resample", False)),
                     "downmix": bool(data.get("downmix", False)),
                     "min_samples": receptive_field(conv_kernel, conv_stride)}

    def read(self, value: Any, key: str) -> list[Utterance]:
        """The utterances of data.<key>: a split name / path or a list of them."""
        names = [value] if isinstance(value, str) else value
        if not (isinstance(names, list) and names and all(isinstance(v, str) for v in names)):
            raise DataError(f"data.{key}: got {value!r}; expected a split name / path or a list of them")
        if self.corpus not in SPLIT_READERS:
            raise DataError(f"data.{key}: corpus {self.corpus!r} is not read by split name (those are "
                            f"{sorted(SPLIT_READERS)}); its task reads its own layout")
        out: list[Utterance] = []
        for name in names:
            try:
                out += SPLIT_READERS[self.corpus](self.root, name)
            except (FileNotFoundError, ValueError) as exc:
                raise DataError(f"data.{key}: {exc}") from None
        return out

    def seconds(self, utterances: Sequence[Utterance], what: str) -> list[float]:
        """Seconds per file, each file checked (and, with verify: full, decoded) once."""
        out = []
        show = len(utterances) >= 500
        if show:
            print(f"checking {len(utterances)} {what} files ({self.level})", flush=True)
        for n, u in enumerate(utterances, 1):
            if self.level == "full":
                out.append(load_audio(u.path, **self.load).numel() / SAMPLING_RATE)
            else:
                out.append(audio_seconds(u.path, **self.load))
            if show and n % 2000 == 0:
                print(f"  {n}/{len(utterances)}", flush=True)
        return out

    def dataset(self, utterances: Sequence[Utterance], labels: Optional[list] = None, *, crop: bool = False,
                with_index: bool = False, durations: Optional[list] = None) -> AudioDataset:
        """crop: cut audio to data.max_seconds (training splits)."""
        return AudioDataset(utterances, labels=labels, max_seconds=self.max_seconds if crop else 0.0,
                            with_index=with_index, durations=durations, **self.load)


def prepare(task: str, data: dict, root: Any, *, conv_kernel: Sequence[int], conv_stride: Sequence[int],
            head: Optional[dict] = None, splits: Sequence[str] = ("train", "eval", "test")) -> TaskData:
    """Read, check and label the splits of `task` below `root`; raises DataError naming the
    file or field at the first problem."""
    spec = get_task(task)
    unknown = sorted(set(data) - spec.all_data_keys)
    if unknown:
        raise DataError(f"data: unknown key(s) {unknown} for task {task}; expected {sorted(spec.all_data_keys)}")
    corpus = data.get("corpus")
    if corpus not in spec.corpora:
        raise DataError(f"data.corpus: got {corpus!r}; expected one of {spec.corpora} for task {task}")
    if root is None:
        raise DataError("--data: no corpus root given")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: {root} is not a directory")
    max_seconds = number_at_least(0, note=" (seconds; 0: no cut)").check("data.max_seconds",
                                                                          data.get("max_seconds") or 0, DataError)
    if max_seconds and not spec.can_crop:
        raise DataError(f"data.max_seconds: {task.upper()} audio cannot be cut (its labels would no longer match); "
                        "expected 0")
    reader = CorpusReader(data, root, conv_kernel, conv_stride, float(max_seconds))
    try:
        return spec.prepare(data, reader, head or {}, set(splits))
    except (AudioError, FileNotFoundError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(str(exc)) from None
