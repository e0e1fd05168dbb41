"""The demo's data set: spoken commands in the style of Fluent Speech Commands (action, object,
location), synthesised with espeak-ng by many voices (an accent and a voice variant each) at
varied speed and pitch, written in the Fluent Speech Commands layout so the SIC recipe reads
it like the real corpus. Some voices are held out: their variants never occur in training.
The same seed and espeak-ng version give the same files."""
from __future__ import annotations

import io
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import SAMPLING_RATE
from .audio import resample

# (action, object, location) -> ways of saying it
INTENTS = {
    ("activate", "lights", "kitchen"): ["turn on the kitchen lights", "switch on the lights in the kitchen"],
    ("deactivate", "lights", "kitchen"): ["turn off the kitchen lights", "switch off the lights in the kitchen"],
    ("activate", "lights", "bedroom"): ["turn on the bedroom lights", "switch on the lights in the bedroom"],
    ("deactivate", "lights", "bedroom"): ["turn off the bedroom lights", "switch off the lights in the bedroom"],
    ("increase", "volume", "none"): ["turn up the volume", "make it louder"],
    ("decrease", "volume", "none"): ["turn down the volume", "make it quieter"],
    ("increase", "heat", "kitchen"): ["make the kitchen warmer", "turn the heat up in the kitchen"],
    ("decrease", "heat", "kitchen"): ["make the kitchen cooler", "turn the heat down in the kitchen"],
    ("activate", "music", "none"): ["play some music", "start the music"],
    ("deactivate", "music", "none"): ["stop the music", "turn the music off"],
    ("bring", "shoes", "none"): ["bring me my shoes", "fetch my shoes"],
    ("bring", "newspaper", "none"): ["bring me the newspaper", "fetch the newspaper"],
}
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan")
_SKIP_VARIANTS = {"Demonic", "fast"}  # not speech-like / a test voice


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class Voice:
    accent: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"


def espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SynthesisError("espeak-ng is not installed (Debian: apt-get install espeak-ng; scripts/demo.sh "
                             "installs it)")
    return path


def variants() -> list[str]:
    """The voice variants this espeak-ng offers (the file names below espeak-ng-data/voices/!v)."""
    lines = subprocess.run([espeak(), "--voices=variant"], capture_output=True, text=True, check=True).stdout.splitlines()
    column = lines[0].index("File")  # the table is fixed-width; one file name has a space in it
    names = {line[column:].strip().split("/", 1)[-1] for line in lines[1:] if line[column:].strip()}
    # A name with a space cannot follow "+" in a voice name: espeak-ng would silently use the plain
    # accent voice, which is not a variant of its own.
    return sorted(n for n in names - _SKIP_VARIANTS if " " not in n)


def synthesise(text: str, voice: Voice, speed: int, pitch: int) -> torch.Tensor:
    """Mono float32 samples at 16 kHz (espeak-ng speaks at 22.05 kHz; resampled here)."""
    import soundfile as sf

    p = subprocess.run([espeak(), "-v", voice.name, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                       capture_output=True, check=False)
    if p.returncode != 0 or not p.stdout:
        raise SynthesisError(f"espeak-ng -v {voice.name} failed: {p.stderr.decode(errors='replace').strip()}")
    data, rate = sf.read(io.BytesIO(p.stdout), dtype="float32")
    x = resample(torch.from_numpy(np.ascontiguousarray(data)), rate, SAMPLING_RATE)
    return x / max(float(x.abs().max()), 1e-3) * 0.5  # espeak's loudness varies by voice


def choose_voices(n_voices: int, n_held_out: int, seed: int) -> tuple[list[Voice], list[Voice]]:
    """(training voices, held-out voices); the held-out voices' variants never train."""
    names = variants()
    rng = random.Random(seed)
    rng.shuffle(names)
    if len(names) < n_voices:
        raise SynthesisError(f"espeak-ng offers {len(names)} voice variants; the demo needs {n_voices}")
    voices = [Voice(rng.choice(ACCENTS), v) for v in names[:n_voices]]
    return voices[n_held_out:], voices[:n_held_out]


def build(root: Path, *, train_voices: int = 36, valid_voices: int = 4, test_voices: int = 8,
          takes: int = 2, seed: int = 0, workers: int = 4) -> dict:
    """Write the data set below `root` (Fluent Speech Commands layout); returns counts and the
    voices of each split. Every voice says every intent `takes` times, each with a random
    phrasing, speed (130-210 words/min) and pitch (25-75)."""
    import soundfile as sf

    train, held = choose_voices(train_voices + valid_voices + test_voices, valid_voices + test_voices, seed)
    splits = {"train": train, "valid": held[:valid_voices], "test": held[valid_voices:]}
    rng = random.Random(seed + 1)
    jobs = []
    for split, voices in splits.items():
        for voice in voices:
            for k, (slots, phrases) in enumerate(sorted(INTENTS.items())):
                for take in range(takes):
                    text = rng.choice(phrases)
                    rel = f"wavs/speakers/{voice.name}/{k:02d}-{take}.wav"
                    jobs.append((split, rel, voice, text, slots, rng.randint(130, 210), rng.randint(25, 75)))

    def one(job):
        split, rel, voice, text, slots, speed, pitch = job
        x = synthesise(text, voice, speed, pitch)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x.numpy(), SAMPLING_RATE, subtype="PCM_16")
        return x.numel() / SAMPLING_RATE

    with ThreadPoolExecutor(workers) as pool:  # espeak-ng runs as separate processes
        seconds = list(pool.map(one, jobs))
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in splits:
        rows = [",path,speakerId,transcription,action,object,location"]
        rows += [f"{i},{rel},{voice.name},{text},{','.join(slots)}"
                 for i, (s, rel, voice, text, slots, _, _) in enumerate(j for j in jobs if j[0] == split)]
        (root / "data" / f"{split}_data.csv").write_text("\n".join(rows) + "\n")
    return {"utterances": {s: sum(j[0] == s for j in jobs) for s in splits},
            "seconds": {s: sum(sec for j, sec in zip(jobs, seconds) if j[0] == s) for s in splits},
            "voices": {s: [v.name for v in vs] for s, vs in splits.items()}, "intents": len(INTENTS)}
