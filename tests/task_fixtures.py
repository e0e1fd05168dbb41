"""Tiny corpora in each real on-disk layout (LibriSpeech + LibriLight, VoxCeleb1 + trials,
IEMOCAP, Fluent Speech Commands) with synthesised audio: a tone whose pitch depends on the
label, in noise, so the files are real audio of realistic format."""
from __future__ import annotations

import numpy as np
import soundfile as sf

RATE = 16000


def tone(path, seconds=0.5, pitch=300.0, seed=0, fmt=None, rate=RATE, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(t.size)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate, format=fmt)
    return path


def librispeech(root, n_per_split=8):
    """<root>/librispeech_finetuning/{1h,9h}/... and <root>/LibriSpeech/{dev,test}-clean/..."""
    words = ["GO", "HOME", "NOW", "SEE", "THE", "SUN", "RUN", "FAST", "IT'S", "DAY"]
    splits = ["librispeech_finetuning/1h/0/clean", "librispeech_finetuning/9h/clean",
              "LibriSpeech/dev-clean", "LibriSpeech/test-clean"]
    for s, split in enumerate(splits):
        spk, chapter = 100 + s, 2000 + s
        folder = root / split / str(spk) / str(chapter)
        lines = []
        for i in range(n_per_split):
            uid = f"{spk}-{chapter}-{i:04d}"
            text = " ".join(words[(i + k) % len(words)] for k in range(1 + i % 3))
            tone(folder / f"{uid}.flac", 0.5 + 0.05 * i, 200 + 40 * i, seed=i, fmt="FLAC")
            lines.append(f"{uid} {text}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def voxceleb1(root, speakers=6, per_speaker=4, test_speakers=2):
    """<root>/wav/<id>/<video>/<n>.wav and <root>/veri_test2.txt over the last speakers."""
    ids = [f"id{10270 + s}" for s in range(speakers)]
    for s, spk in enumerate(ids):
        for n in range(per_speaker):
            tone(root / "wav" / spk / f"vid{n % 2}" / f"{n + 1:05d}.wav", 0.6, 150 + 80 * s, seed=10 * s + n)
    test = ids[-test_speakers:]
    lines = []
    for a in test:
        for b in test:
            lines.append(f"{int(a == b)} {a}/vid0/00001.wav {b}/vid1/00002.wav")
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return root


def iemocap(root, per_session=6):
    emotions = ["neu", "exc", "ang", "sad", "hap", "fru"]
    for s in range(1, 6):
        sess = root / f"Session{s}"
        dialog = f"Ses0{s}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i in range(per_session):
            uid = f"{dialog}_{'FM'[i % 2]}{i:03d}"
            emo = emotions[i % len(emotions)]
            tone(sess / "sentences" / "wav" / dialog / f"{uid}.wav", 0.5, 150 + 60 * (i % 4), seed=s * 100 + i)
            lines.append(f"[1.0 - 2.0]\t{uid}\t{emo}\t[2.5000, 2.5000, 2.5000]")
        (sess / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (sess / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


FSC_INTENTS = [("activate", "lights", "kitchen", "Turn on the kitchen lights"),
               ("deactivate", "lights", "none", "Turn off the lights"),
               ("increase", "volume", "none", "Louder please"),
               ("bring", "shoes", "none", "Bring me my shoes")]


def fluent_speech_commands(root, per_split=8):
    (root / "data").mkdir(parents=True, exist_ok=True)
    for k, split in enumerate(("train", "valid", "test")):
        rows = [",path,speakerId,transcription,action,object,location"]
        for i in range(per_split):
            action, obj, loc, text = FSC_INTENTS[i % len(FSC_INTENTS)]
            spk = f"spk{k}{i % 2}"
            rel = f"wavs/speakers/{spk}/{split}{i:03d}.wav"
            tone(root / rel, 0.5, 200 + 100 * (i % 4), seed=k * 100 + i)
            rows.append(f"{i},{rel},{spk},{text},{action},{obj},{loc}")
        (root / "data" / f"{split}_data.csv").write_text("\n".join(rows) + "\n")
    return root


BUILDERS = {"asr": librispeech, "asv": voxceleb1, "ser": iemocap, "sic": fluent_speech_commands}
