"""The standard on-disk layouts of the four tasks' corpora, read into lists of `Utterance`s.

Nothing is downloaded: each reader takes the corpus root as distributed and fails, naming the
path and the layout it expected, when something is missing. Audio is not opened here (see
`AudioDataset`), so listing a corpus is quick.

- LibriSpeech (ASR): <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with
  <speaker>-<chapter>.trans.txt beside them ("<id> <TRANSCRIPT>" lines). The LibriLight 10 h
  subset (librispeech_finetuning/) has the same layout below its 1h/ and 9h/ folders.
- VoxCeleb1 (ASV): <root>/wav/<speaker id>/<video>/<nnnnn>.wav; trial lists hold
  "<1|0> <id/video/nnnnn.wav> <id/video/nnnnn.wav>" lines.
- IEMOCAP (SER): <root>/Session<n>/sentences/wav/<dialog>/<utt>.wav, labels in
  <root>/Session<n>/dialog/EmoEvaluation/<dialog>.txt; the usual 4 classes (neutral, happy with
  excited merged in, angry, sad), sessions as folds.
- Fluent Speech Commands (SIC): <root>/data/<split>_data.csv (path, speakerId, transcription,
  action, object, location), paths relative to <root>.
- A JSON-lines manifest: one object per line with "audio" (a path, relative to the manifest's
  folder unless absolute) and any of "id", "text", "label", "speaker", "slots".
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

PathLike = Union[str, Path]

IEMOCAP_CLASSES = ("neu", "hap", "ang", "sad")  # "exc" is read as "hap"
FSC_SLOTS = ("action", "object", "location")


@dataclass(frozen=True)
class Utterance:
    id: str
    path: Path
    text: Optional[str] = None       # ASR transcript
    label: Optional[str] = None      # SER emotion, ASV speaker id, or a manifest's label
    slots: Optional[tuple] = None    # SIC (action, object, location)
    speaker: Optional[str] = None
    session: Optional[int] = None    # IEMOCAP session (fold)


def _dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not found; expected {what}")
    return path


def librispeech(root: PathLike, split: str) -> list[Utterance]:
    """Every utterance of a LibriSpeech split (e.g. "train-clean-100", "test-clean"), or of a
    LibriLight fine-tuning folder (split "1h" or "9h" below librispeech_finetuning/)."""
    base = _dir(Path(root) / split, f"the LibriSpeech split folder {split!r} below {root}")
    out = []
    for trans in sorted(base.rglob("*.trans.txt")):
        for n, line in enumerate(trans.read_text().splitlines(), 1):
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            if not text.strip() or uid.count("-") != 2:
                raise ValueError(f"{trans}:{n}: expected '<speaker>-<chapter>-<utt> <TRANSCRIPT>', got {line!r}")
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                raise FileNotFoundError(f"{audio}: listed in {trans}:{n} but missing")
            out.append(Utterance(uid, audio, text=text.strip(), speaker=uid.split("-")[0]))
    if not out:
        raise FileNotFoundError(f"{base}: no *.trans.txt transcripts found (not a LibriSpeech split?)")
    return out


def voxceleb1(root: PathLike, speakers: Optional[Iterable[str]] = None) -> list[Utterance]:
    """VoxCeleb1 utterances below <root>/wav, labelled with their speaker id; `speakers`
    restricts them (e.g. to the development speakers)."""
    base = _dir(Path(root) / "wav", f"VoxCeleb1's wav/ folder below {root}")
    keep = set(speakers) if speakers is not None else None
    out = []
    for audio in sorted(base.glob("*/*/*.wav")):
        spk, video = audio.parent.parent.name, audio.parent.name
        if keep is None or spk in keep:
            out.append(Utterance(f"{spk}/{video}/{audio.name}", audio, label=spk, speaker=spk))
    if not out:
        raise FileNotFoundError(f"{base}: no <speaker>/<video>/<n>.wav files found")
    return out


def trial_lines(path: PathLike, item: str = "id/video/n.wav") -> list[tuple[int, int, str, str]]:
    """(line number, 1 target / 0 non-target, first item, second item) per line of a trial list
    ("<1|0> <item> <item>"); `item` names the items' form in error messages."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trial list")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{n}: expected '<1|0> <{item}> <{item}>', got {line!r}")
        out.append((n, int(parts[0]), parts[1], parts[2]))
    if not out:
        raise ValueError(f"{path}: holds no trials")
    return out


def voxceleb1_trials(path: PathLike, root: PathLike) -> list[tuple[int, Path, Path]]:
    """(1 target / 0 non-target, enrolment audio, test audio) per line of a trial list."""
    wav = Path(root) / "wav"
    trials = []
    for n, label, a, b in trial_lines(path):
        for p in (wav / a, wav / b):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: named in {path}:{n} but missing")
        trials.append((label, wav / a, wav / b))
    return trials


_IEMOCAP_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(\S+)\t(\w+)\t")


def iemocap(root: PathLike, sessions: Iterable[int] = (1, 2, 3, 4, 5)) -> list[Utterance]:
    """IEMOCAP's 4-class set (neutral, happy + excited, angry, sad) from the given sessions;
    utterances of other emotions are left out, as in the usual protocol."""
    root = Path(root)
    out = []
    for s in sessions:
        if s not in (1, 2, 3, 4, 5):
            raise ValueError(f"iemocap: sessions must be among 1..5, got {s!r}")
        sess = _dir(root / f"Session{s}", f"IEMOCAP's Session{s}/ below {root}")
        labels_dir = _dir(sess / "dialog" / "EmoEvaluation", "dialog/EmoEvaluation/ with the label files")
        for labels in sorted(labels_dir.glob("*.txt")):
            for line in labels.read_text().splitlines():
                m = _IEMOCAP_LINE.match(line)
                if not m:
                    continue
                uid, emotion = m.groups()
                emotion = "hap" if emotion == "exc" else emotion
                if emotion not in IEMOCAP_CLASSES:
                    continue
                dialog = uid.rsplit("_", 1)[0]
                audio = sess / "sentences" / "wav" / dialog / f"{uid}.wav"
                if not audio.is_file():
                    raise FileNotFoundError(f"{audio}: labelled in {labels} but missing")
                out.append(Utterance(uid, audio, label=emotion, speaker=f"{s}{uid.split('_')[-1][0]}", session=s))
    if not out:
        raise FileNotFoundError(f"{root}: no 4-class IEMOCAP utterances found in sessions {list(sessions)}")
    return out


def fluent_speech_commands(root: PathLike, split: str) -> list[Utterance]:
    """Fluent Speech Commands' train / valid / test split, with its three slots."""
    root = Path(root)
    if split not in ("train", "valid", "test"):
        raise ValueError(f"fluent_speech_commands: split must be 'train', 'valid' or 'test', got {split!r}")
    table = root / "data" / f"{split}_data.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: not found; expected Fluent Speech Commands' data/{split}_data.csv")
    out = []
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        need = {"path", "speakerId", "transcription", *FSC_SLOTS}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{table}: lacks the columns {sorted(missing)}")
        for n, row in enumerate(reader, 2):
            audio = root / row["path"]
            if not audio.is_file():
                raise FileNotFoundError(f"{audio}: listed in {table}:{n} but missing")
            out.append(Utterance(Path(row["path"]).stem, audio, text=row["transcription"],
                                 slots=tuple(row[s] for s in FSC_SLOTS), speaker=row["speakerId"]))
    if not out:
        raise ValueError(f"{table}: holds no utterances")
    return out


def manifest(path: PathLike) -> list[Utterance]:
    """A JSON-lines manifest (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str):
            raise ValueError(f"{path}:{n}: expected an object with an \"audio\" path")
        unknown = set(rec) - {"audio", "id", "text", "label", "speaker", "slots", "duration"}
        if unknown:
            raise ValueError(f"{path}:{n}: unknown keys {sorted(unknown)}")
        audio = Path(rec["audio"])
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise FileNotFoundError(f"{audio}: named in {path}:{n} but missing")
        slots = rec.get("slots")
        out.append(Utterance(str(rec.get("id", audio.stem)), audio, text=rec.get("text"), label=rec.get("label"),
                             slots=tuple(slots) if slots is not None else None, speaker=rec.get("speaker")))
    if not out:
        raise ValueError(f"{path}: holds no utterances")
    return out
