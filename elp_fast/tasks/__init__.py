"""The tasks: a registry of `Task` specs (registry.py) with one file per task (asr.py, asv.py,
ser.py, sic.py: heads, data, evaluators, registration; tones.py: the synthetic tone task), the
recipes that train them (recipe.py, recipes/*.yaml, methods.py), the data checks (datasets.py),
the runs behind `elp-fast train --task` and `elp-fast eval` (run.py) and the metrics."""
from .metrics import (all_slots_accuracy, cer, confusion_matrix, edit_distance, eer, min_dcf,
                      unweighted_accuracy, weighted_accuracy, wer)

__all__ = ["all_slots_accuracy", "cer", "confusion_matrix", "edit_distance", "eer", "min_dcf",
           "unweighted_accuracy", "weighted_accuracy", "wer"]
