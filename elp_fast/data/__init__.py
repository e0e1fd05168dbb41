"""Datasets and audio: file loading with its checks, the corpora's on-disk layouts
(`elp_fast.data.corpora`), a dataset + padding collate over them, and synthetic demo data."""
from .audio import AudioError, load_audio, resample
from .corpora import Utterance
from .dataset import AudioDataset, pad_collate
from .synthetic import ToneDataset

__all__ = ["AudioDataset", "AudioError", "ToneDataset", "Utterance", "load_audio", "pad_collate", "resample"]
