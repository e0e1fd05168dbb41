"""Datasets: synthetic demo data (more loaders arrive with the task recipes)."""
from .synthetic import ToneDataset

__all__ = ["ToneDataset"]
