"""Reading audio files for training: soundfile, then every check the encoders need, each error
naming the file. Resampling happens only when asked (a windowed-sinc resampler in torch:
torchaudio does not import beside torch 2.13 CPU, docs/design.md 6)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F

from ..config import SAMPLING_RATE



class AudioError(ValueError):
    """An audio file cannot be used as it is (a ValueError); the message names the file."""


def resample(x: torch.Tensor, orig: int, new: int, *, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling along the last dimension: a Hann-windowed sinc low-pass at
    rolloff x the lower Nyquist frequency, applied as a polyphase filter bank (one conv1d)."""
    for name, v in (("orig", orig), ("new", new)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"resample: {name} must be a positive integer rate in Hz, got {v!r}")
    if orig == new:
        return x
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx) * base
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = (sinc * window * (base / orig)).to(x.dtype if x.is_floating_point() else torch.float32)
    shape, n = x.shape, x.shape[-1]
    # Windows of the padded signal, one per output block, times the filter bank: a strided
    # conv1d as a matmul (oneDNN's conv1d caches a primitive per input length and grows without
    # bound over files of varied lengths).
    frames = F.pad(x.reshape(-1, n), (width, width + orig)).unfold(-1, kernels.shape[1], orig)
    y = (frames @ kernels.T).reshape(frames.shape[0], -1)
    length = math.ceil(new * n / orig)
    return y[:, :length].reshape(*shape[:-1], length)


def _open_check(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")


def _channels_error(path: Path, channels: int) -> AudioError:
    return AudioError(f"{path}: has {channels} channels; expected mono audio (downmix=True, or "
                      "data.downmix=true in a recipe, averages the channels)")


def _rate_error(path: Path, rate: int, sampling_rate: int) -> AudioError:
    return AudioError(f"{path}: sampled at {rate} Hz; expected {sampling_rate} Hz (resample the data set, or "
                      "resample on loading with allow_resample=True, data.allow_resample=true in a recipe)")


def _check_length(path: Path, samples: int, sampling_rate: int, min_samples: int) -> None:
    if samples < min_samples:
        raise AudioError(f"{path}: {samples} samples ({1000 * samples / sampling_rate:.1f} ms); expected at "
                         f"least {min_samples} ({1000 * min_samples / sampling_rate:.0f} ms), the encoder's "
                         "receptive field")


def load_audio(path: Union[str, os.PathLike], *, sampling_rate: int = SAMPLING_RATE, allow_resample: bool = False,
               downmix: bool = False, min_samples: int = 400) -> torch.Tensor:
    """Mono float32 samples of `path` at `sampling_rate`, shape (samples,).

    A file at another rate is an error unless allow_resample=True; several channels are an error
    unless downmix=True (their mean); empty, too short (fewer than min_samples, the encoder's
    receptive field: 400 at 16 kHz for the standard CNN) or non-finite audio is always an error.
    Integer PCM is scaled to [-1, 1] by soundfile."""
    import soundfile as sf

    path = Path(path)
    _open_check(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    frames, channels = data.shape
    if channels != 1:
        if not downmix:
            raise _channels_error(path, channels)
        data = data.mean(axis=1, keepdims=True)
    if frames == 0:
        raise AudioError(f"{path}: holds no samples")
    x = torch.from_numpy(data[:, 0].copy())
    if not bool(torch.isfinite(x).all()):
        raise AudioError(f"{path}: contains NaN or Inf samples; expected finite audio")
    if rate != sampling_rate:
        if not allow_resample:
            raise _rate_error(path, rate, sampling_rate)
        x = resample(x, rate, sampling_rate)
    _check_length(path, x.numel(), sampling_rate, min_samples)
    return x


def audio_seconds(path: Union[str, os.PathLike], *, sampling_rate: int = SAMPLING_RATE,
                  allow_resample: bool = False, downmix: bool = False, min_samples: int = 400) -> float:
    """The checks of load_audio that the file's header allows (readable, rate, channels, length),
    without decoding it; returns its duration in seconds at `sampling_rate`."""
    import soundfile as sf

    path = Path(path)
    _open_check(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    if info.channels != 1 and not downmix:
        raise _channels_error(path, info.channels)
    if info.samplerate != sampling_rate and not allow_resample:
        raise _rate_error(path, info.samplerate, sampling_rate)
    samples = info.frames * sampling_rate // info.samplerate
    _check_length(path, samples, sampling_rate, min_samples)
    return samples / sampling_rate
