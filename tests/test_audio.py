"""Audio loading: every check names the file; resampling only when asked, and band-limited."""
import math
import pickle

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from elp_fast.data.audio import AudioError, audio_seconds, load_audio, resample  # noqa: E402


def tone(rate, seconds=0.5, freq=440.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def test_reads_mono_16k_and_int_pcm(tmp_path):
    sf.write(tmp_path / "a.wav", tone(16000), 16000, subtype="PCM_16")
    x = load_audio(tmp_path / "a.wav")
    assert x.dtype == torch.float32 and x.shape == (8000,)
    assert float(x.abs().max()) == pytest.approx(0.5, abs=1e-3)  # int16 scaled to [-1, 1]
    sf.write(tmp_path / "b.flac", tone(16000), 16000)
    assert torch.allclose(load_audio(tmp_path / "b.flac"), x, atol=1e-4)


def test_resampling_when_asked(tmp_path):
    sf.write(tmp_path / "a.wav", tone(44100), 44100, subtype="FLOAT")
    x = load_audio(tmp_path / "a.wav", allow_resample=True)
    assert x.shape == (8000,)
    want = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(8000) / 16000)
    assert float((x - want)[200:-200].abs().max()) < 2e-3
    sf.write(tmp_path / "s.wav", tone(16000, channels=2), 16000)
    assert load_audio(tmp_path / "s.wav", downmix=True).shape == (8000,)


def test_resample_is_band_limited():
    # 7 kHz is above the 4 kHz Nyquist of 8 kHz output: it must vanish, 1 kHz must pass.
    t = torch.arange(16000, dtype=torch.float64) / 16000
    hi = resample(torch.sin(2 * math.pi * 7000 * t), 16000, 8000)
    lo = resample(torch.sin(2 * math.pi * 1000 * t), 16000, 8000)
    assert hi.shape == lo.shape == (8000,)
    assert float(hi[100:-100].abs().max()) < 0.01
    want = torch.sin(2 * math.pi * 1000 * torch.arange(8000, dtype=torch.float64) / 8000)
    assert float((lo - want)[100:-100].abs().max()) < 0.01
    batch = torch.randn(3, 2, 1000)
    assert resample(batch, 16000, 22050).shape == (3, 2, math.ceil(1000 * 22050 / 16000))
    assert resample(batch, 16000, 16000) is batch


def write_bad(tmp_path, kind):
    p = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return p
    if kind == "directory":
        p.mkdir()
    elif kind == "text":
        p.write_text("not audio at all")
    elif kind == "pickle":
        p.write_bytes(pickle.dumps({"samples": [0.1, 0.2]}))
    elif kind == "truncated":
        sf.write(p, tone(16000), 16000)
        p.write_bytes(p.read_bytes()[:30])
    elif kind == "rate":
        sf.write(p, tone(8000), 8000)
    elif kind == "stereo":
        sf.write(p, tone(16000, channels=2), 16000)
    elif kind == "empty":
        sf.write(p, np.zeros(0), 16000)
    elif kind == "short":
        sf.write(p, tone(16000, seconds=0.01), 16000)
    elif kind in ("nan", "inf"):
        x = tone(16000)
        x[100] = np.nan if kind == "nan" else np.inf
        sf.write(p, x, 16000, subtype="FLOAT")
    return p


@pytest.mark.parametrize("kind,error,message", [
    ("missing", FileNotFoundError, "no such audio file"),
    ("directory", AudioError, "not a file"),
    ("text", AudioError, "not a readable audio file"),
    ("pickle", AudioError, "not a readable audio file"),
    ("truncated", AudioError, "not a readable audio file"),
    ("rate", AudioError, "sampled at 8000 Hz; expected 16000 Hz"),
    ("stereo", AudioError, "has 2 channels; expected mono"),
    ("empty", AudioError, "holds no samples"),
    ("short", AudioError, "160 samples (10.0 ms); expected at least 400"),
    ("nan", AudioError, "NaN or Inf"),
    ("inf", AudioError, "NaN or Inf"),
])
def test_bad_audio_is_named(tmp_path, kind, error, message):
    path = write_bad(tmp_path, kind)
    with pytest.raises(error) as info:
        load_audio(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


def test_bad_resample_rates():
    with pytest.raises(ValueError, match="orig must be a positive integer"):
        resample(torch.zeros(10), 0, 16000)


def test_header_checks_agree_with_loading(tmp_path):
    """audio_seconds (data.verify=header) applies load_audio's header checks without decoding."""
    sf.write(tmp_path / "a.wav", tone(16000, 0.75), 16000)
    assert audio_seconds(tmp_path / "a.wav") == pytest.approx(0.75)
    assert audio_seconds(tmp_path / "a.wav") == load_audio(tmp_path / "a.wav").numel() / 16000
    sf.write(tmp_path / "b.wav", tone(8000, 0.5), 8000)
    assert audio_seconds(tmp_path / "b.wav", allow_resample=True) == pytest.approx(0.5)
    sf.write(tmp_path / "s.wav", tone(16000, channels=2), 16000)
    sf.write(tmp_path / "short.wav", tone(16000, 0.01), 16000)
    (tmp_path / "t.wav").write_text("not audio")
    for name, message in (("b.wav", "sampled at 8000 Hz"), ("s.wav", "has 2 channels"),
                          ("short.wav", "160 samples"), ("t.wav", "not a readable audio file")):
        with pytest.raises(AudioError, match=message):
            audio_seconds(tmp_path / name)
        with pytest.raises(AudioError, match=message):
            load_audio(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        audio_seconds(tmp_path / "missing.wav")
