"""Task pieces: metrics (all four tasks), the CTC character vocabulary and decoding (ASR),
speaker embeddings, AAM loss and score normalisation (ASV), slot vocabularies and the
multi-slot head (SIC). SER uses the pooled classifier of the HF *ForSequenceClassification head
and the UA / WA metrics."""
from .metrics import (all_slots_accuracy, cer, confusion_matrix, edit_distance, eer, min_dcf,
                      unweighted_accuracy, weighted_accuracy, wer)

__all__ = ["all_slots_accuracy", "cer", "confusion_matrix", "edit_distance", "eer", "min_dcf",
           "unweighted_accuracy", "weighted_accuracy", "wer"]
