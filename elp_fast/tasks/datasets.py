"""From a recipe's data section and a corpus root to checked datasets, label tables and
evaluators for each task. Everything is verified before anything is written: every file's
header (rate, channels, length against the encoder's receptive field) or its full decode
(`verify: full`, also NaN/Inf and truncation), and every label (transcript characters and CTC
length, emotion classes, slot values, speakers, trial lists), each error naming the file or
field."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import SAMPLING_RATE
from ..data import corpora
from ..data.audio import AudioError, audio_seconds, load_audio
from ..data.corpora import Utterance
from ..data.dataset import AudioDataset
from . import evaluators
from .asr import CharVocab, check_ctc_target
from .sic import SlotVocab

DATA_KEYS = {
    "asr": {"corpus", "train", "eval", "test", "max_seconds", "verify", "allow_resample", "downmix"},
    "asv": {"corpus", "train", "eval", "trials", "max_seconds", "verify", "allow_resample", "downmix"},
    "ser": {"corpus", "train", "eval", "test", "test_session", "max_seconds", "verify", "allow_resample",
            "downmix"},
    "sic": {"corpus", "train", "eval", "test", "slot_names", "max_seconds", "verify", "allow_resample", "downmix"},
}
CORPORA = {"asr": ("librispeech", "manifest"), "asv": ("voxceleb1", "manifest"),
           "ser": ("iemocap", "manifest"), "sic": ("fluent_speech_commands", "manifest")}


class DataError(ValueError):
    """The data cannot be used as it is (a ValueError); the message names the file or field."""


@dataclass
class TaskData:
    task: str
    train: Optional[AudioDataset]
    eval: Optional[AudioDataset]
    test: Optional[AudioDataset]
    head_args: dict                      # what the head needs from the data (classes, vocabulary, ...)
    labels: dict = field(default_factory=dict)  # label names, for reports
    _evaluators: dict = field(default_factory=dict)

    def evaluator(self, split: str):
        return self._evaluators[split]()


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Input samples one output frame of the CNN feature encoder sees (400 for the standard one)."""
    field_, jump = conv_kernel[0], conv_stride[0]
    for k, s in zip(conv_kernel[1:], conv_stride[1:]):
        field_ += (k - 1) * jump
        jump *= s
    return field_


class _Checker:
    """Reads every file's header (or all of it) once: checks, and seconds per file."""

    def __init__(self, data: dict, min_samples: int) -> None:
        self.level = data.get("verify", "full")
        if self.level not in ("full", "header"):
            raise DataError(f"data.verify: got {self.level!r}; expected 'full' or 'header'")
        self.load = {"allow_resample": bool(data.get("allow_resample", False)),
                     "downmix": bool(data.get("downmix", False)), "min_samples": min_samples}

    def seconds(self, utterances: Sequence[Utterance], what: str) -> list[float]:
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


def _splits(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise DataError(f"data.{key}: got {value!r}; expected a split name / path or a list of them")


def _read(corpus: str, root: Path, split: Any, key: str) -> list[Utterance]:
    out: list[Utterance] = []
    for name in _splits(split, key):
        try:
            if corpus == "librispeech":
                out += corpora.librispeech(root, name)
            elif corpus == "fluent_speech_commands":
                out += corpora.fluent_speech_commands(root, name)
            else:
                out += corpora.manifest(root / name)
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"data.{key}: {exc}") from None
    return out


def prepare(task: str, data: dict, root: Any, *, conv_kernel: Sequence[int], conv_stride: Sequence[int],
            head: Optional[dict] = None, splits: Sequence[str] = ("train", "eval", "test")) -> TaskData:
    """Read, check and label the splits of `task` below `root`; raises DataError naming the
    file or field at the first problem."""
    unknown = sorted(set(data) - DATA_KEYS[task])
    if unknown:
        raise DataError(f"data: unknown key(s) {unknown} for task {task}; expected {sorted(DATA_KEYS[task])}")
    corpus = data.get("corpus")
    if corpus not in CORPORA[task]:
        raise DataError(f"data.corpus: got {corpus!r}; expected one of {CORPORA[task]} for task {task}")
    if root is None:
        raise DataError("--data: no corpus root given")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: {root} is not a directory")
    max_seconds = data.get("max_seconds", 0) or 0
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or max_seconds < 0:
        raise DataError(f"data.max_seconds: got {max_seconds!r}; expected a number of seconds >= 0 (0: no cut)")
    if task == "asr" and max_seconds:
        raise DataError("data.max_seconds: ASR audio cannot be cut (its transcript would no longer match); "
                        "expected 0")
    checker = _Checker(data, receptive_field(conv_kernel, conv_stride))
    builder = {"asr": _asr, "asv": _asv, "ser": _ser, "sic": _sic}[task]
    try:
        return builder(data, root, corpus, checker, float(max_seconds), head or {}, set(splits),
                       conv_kernel, conv_stride)
    except (AudioError, FileNotFoundError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(str(exc)) from None


def _dataset(utts, checker, labels=None, max_seconds=0.0, with_index=False, durations=None):
    return AudioDataset(utts, labels=labels, max_seconds=max_seconds, with_index=with_index,
                        durations=durations, **checker.load)


# -- ASR ---------------------------------------------------------------------------------------

def _asr(data, root, corpus, checker, max_seconds, head, splits, kernel, stride) -> TaskData:
    vocab = CharVocab()
    sets = {}
    for split in ("train", "eval", "test"):
        if split not in splits or not data.get(split):
            continue
        utts = _read(corpus, root, data[split], split)
        seconds = checker.seconds(utts, split)
        labels = []
        for u, s in zip(utts, seconds):
            if not u.text:
                raise DataError(f"{u.path} (utterance {u.id}): no transcript (field 'text'); ASR needs one")
            target = vocab.encode(u.text, f"{u.path} (utterance {u.id})")
            check_ctc_target(target, round(s * SAMPLING_RATE), kernel, stride, f"{u.path} (utterance {u.id})")
            labels.append(target)
        sets[split] = _dataset(utts, checker, labels, durations=seconds)
    return TaskData("asr", sets.get("train"), sets.get("eval"), sets.get("test"), {"vocab_size": len(vocab)},
                    {"vocabulary": vocab.tokens},
                    {s: (lambda: evaluators.CTCEvaluator(vocab)) for s in sets})


# -- SER ---------------------------------------------------------------------------------------

def _ser(data, root, corpus, checker, max_seconds, head, splits, kernel, stride) -> TaskData:
    if corpus == "iemocap":
        test_session = data.get("test_session", 5)
        if test_session not in (1, 2, 3, 4, 5):
            raise DataError(f"data.test_session: got {test_session!r}; expected an IEMOCAP session 1..5")
        lists = {"train": lambda: corpora.iemocap(root, [s for s in range(1, 6) if s != test_session]),
                 "eval": lambda: corpora.iemocap(root, [test_session])}
        classes = list(corpora.IEMOCAP_CLASSES)
    else:
        lists = {s: (lambda s=s: _read(corpus, root, data[s], s)) for s in ("train", "eval", "test") if data.get(s)}
        classes = None
    read = {s: fn() for s, fn in lists.items() if s in splits or s == "train"}
    for s, utts in read.items():
        for u in utts:
            if not u.label:
                raise DataError(f"{u.path} (utterance {u.id}): no emotion label (field 'label'); SER needs one")
    if classes is None:
        if "train" not in read:
            raise DataError("data.train: SER needs the training split to know its classes")
        classes = sorted({u.label for u in read["train"]})
    if len(classes) < 2:
        raise DataError(f"data.train: found the classes {classes}; expected at least two")
    ids = {c: i for i, c in enumerate(classes)}
    sets = {}
    for s, utts in read.items():
        if s not in splits:
            continue
        bad = next((u for u in utts if u.label not in ids), None)
        if bad is not None:
            raise DataError(f"{bad.path} (utterance {bad.id}): label {bad.label!r} is not among the training "
                            f"classes {classes}")
        sets[s] = _dataset(utts, checker, [ids[u.label] for u in utts], max_seconds if s == "train" else 0.0,
                           durations=checker.seconds(utts, s))
    return TaskData("ser", sets.get("train"), sets.get("eval"), sets.get("test"), {"num_classes": len(classes)},
                    {"classes": classes},
                    {s: (lambda: evaluators.ClassificationEvaluator(len(classes))) for s in sets})


# -- SIC ---------------------------------------------------------------------------------------

def _sic(data, root, corpus, checker, max_seconds, head, splits, kernel, stride) -> TaskData:
    names = data.get("slot_names", list(corpora.FSC_SLOTS))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"data.slot_names: got {names!r}; expected a list of slot names")
    read = {s: _read(corpus, root, data[s], s) for s in ("train", "eval", "test")
            if data.get(s) and (s in splits or s == "train")}
    if "train" not in read:
        raise DataError("data.train: SIC needs the training split to know its slot values")
    for utts in read.values():
        for u in utts:
            if u.slots is None or len(u.slots) != len(names) or not all(isinstance(v, str) for v in u.slots):
                raise DataError(f"{u.path} (utterance {u.id}): slots {u.slots!r}; expected {len(names)} string "
                                f"values {names} (field 'slots')")
    vocab = SlotVocab(names, [u.slots for u in read["train"]])
    sets = {}
    for s, utts in read.items():
        if s in splits:
            labels = [vocab.encode(u.slots, f"{u.path} (utterance {u.id})") for u in utts]
            sets[s] = _dataset(utts, checker, labels, max_seconds if s == "train" else 0.0,
                               durations=checker.seconds(utts, s))
    return TaskData("sic", sets.get("train"), sets.get("eval"), sets.get("test"), {"slot_sizes": vocab.sizes},
                    {"slots": dict(zip(names, vocab.values))},
                    {s: evaluators.SlotEvaluator for s in sets})


# -- ASV ---------------------------------------------------------------------------------------

def _trials_from_manifest(path: Path, ids: dict) -> list[tuple[int, int, int]]:
    trials = []
    for n, label, a, b in corpora.trial_lines(path, item="id"):
        for p in (a, b):
            if p not in ids:
                raise DataError(f"{path}:{n}: utterance id {p!r} is not in the evaluation manifest")
        trials.append((label, ids[a], ids[b]))
    return trials


def _asv(data, root, corpus, checker, max_seconds, head, splits, kernel, stride) -> TaskData:
    if not data.get("trials"):
        raise DataError("data.trials: ASV needs a trial list")
    trials_path = root / data["trials"]
    if corpus == "voxceleb1":
        raw = corpora.voxceleb1_trials(trials_path, root)
        eval_paths = sorted({p for _, a, b in raw for p in (a, b)})
        index = {p: i for i, p in enumerate(eval_paths)}
        eval_utts = [Utterance(str(p.relative_to(root / "wav")), p) for p in eval_paths]
        trials = [(t, index[a], index[b]) for t, a, b in raw]
        test_speakers = {u.id.split("/")[0] for u in eval_utts}
        train_utts = [u for u in corpora.voxceleb1(root) if u.speaker not in test_speakers]
        if not train_utts:
            raise DataError(f"{root / 'wav'}: every speaker appears in the trial list; no training speakers left")
    else:
        if not data.get("train") or not data.get("eval"):
            raise DataError("data.train / data.eval: an ASV manifest recipe needs both")
        train_utts = _read(corpus, root, data["train"], "train")
        eval_utts = _read(corpus, root, data["eval"], "eval")
        ids = {}
        for i, u in enumerate(eval_utts):
            if u.id in ids:
                raise DataError(f"data.eval: utterance id {u.id!r} appears twice")
            ids[u.id] = i
        trials = _trials_from_manifest(trials_path, ids)
        for u in train_utts:
            if not u.speaker:
                raise DataError(f"{u.path} (utterance {u.id}): no speaker (field 'speaker'); ASV training needs one")
    speakers = sorted({u.speaker for u in train_utts})
    if len(speakers) < 2:
        raise DataError(f"data.train: found {len(speakers)} training speaker(s); expected at least two")
    spk = {s: i for i, s in enumerate(speakers)}
    sets: dict[str, AudioDataset] = {}
    if "train" in splits:
        sets["train"] = _dataset(train_utts, checker, [spk[u.speaker] for u in train_utts], max_seconds,
                                 durations=checker.seconds(train_utts, "train"))
    cohort_start = None
    if "eval" in splits:
        utts = list(eval_utts)
        if head.get("score_norm", "none") == "as_norm":
            first = {}
            for u in train_utts:
                first.setdefault(u.speaker, u)
            cohort = [first[s] for s in speakers][:int(head.get("cohort_size", 1000))]
            cohort_start = len(utts)
            utts += cohort
        elif head.get("score_norm", "none") != "none":
            raise DataError(f"head.score_norm: got {head.get('score_norm')!r}; expected 'none' or 'as_norm'")
        sets["eval"] = _dataset(utts, checker, None, 0.0, with_index=True, durations=checker.seconds(utts, "eval"))
    return TaskData("asv", sets.get("train"), sets.get("eval"), None, {"num_speakers": len(speakers)},
                    {"speakers": len(speakers), "trials": len(trials)},
                    {"eval": lambda: evaluators.VerificationEvaluator(trials, cohort_start=cohort_start)})
