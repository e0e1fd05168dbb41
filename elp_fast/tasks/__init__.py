"""Task heads, losses and metrics (ASR-CTC, ASV, SER, SIC). So far: the metrics."""
from .metrics import (all_slots_accuracy, cer, confusion_matrix, edit_distance, eer, min_dcf,
                      unweighted_accuracy, weighted_accuracy, wer)

__all__ = ["all_slots_accuracy", "cer", "confusion_matrix", "edit_distance", "eer", "min_dcf",
           "unweighted_accuracy", "weighted_accuracy", "wer"]
