"""Datasets and audio: file loading with its checks, synthetic demo data (the on-disk data-set
loaders arrive with the task recipes)."""
from .audio import AudioError, load_audio, resample
from .synthetic import ToneDataset

__all__ = ["AudioError", "ToneDataset", "load_audio", "resample"]
