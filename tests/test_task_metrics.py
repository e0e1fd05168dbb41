"""Task metrics against hand-computed values."""
import numpy as np
import pytest

from elp_fast.tasks import metrics as M

# Targets 0.9, 0.8, 0.3; non-targets 0.7, 0.2, 0.1. Accepting scores >= t for t in (0.3, 0.7]
# misses one target (0.3) and accepts one non-target (0.7): both rates 1/3.
SCORES = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
LABELS = [1, 1, 1, 0, 0, 0]


def test_edit_distance_and_error_rates():
    assert M.edit_distance("kitten", "sitting") == 3
    assert M.edit_distance([], ["a", "b"]) == 2
    # one inserted word ("down") + one deleted ("world") over 5 reference words
    assert M.wer(["the cat sat", "hello world"], ["the cat sat down", "hello"]) == pytest.approx(2 / 5)
    assert M.wer(["a b c"], ["a b c"]) == 0.0
    # "abc" -> "abd": 1 substitution; "hi  there" normalises to "hi there" (8 chars) -> "hi the": 2 deletions
    assert M.cer(["abc", "hi  there"], ["abd", "hi the"]) == pytest.approx(3 / 11)


def test_eer_and_min_dcf_on_known_scores():
    assert M.eer(SCORES, LABELS) == pytest.approx(1 / 3)
    # Interpolated: the miss rate jumps 0 -> 1/2 while the false-alarm rate stays at 1/3.
    assert M.eer([0.9, 0.5, 0.6, 0.1, 0.2], [1, 1, 0, 0, 0]) == pytest.approx(1 / 3)
    assert M.eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0  # separable
    # p_target 0.05: best threshold 0.8 misses 1/3 of targets, no false alarm:
    # (1/3 * 0.05) / min(0.05, 0.95) = 1/3
    assert M.min_dcf(SCORES, LABELS, p_target=0.05) == pytest.approx(1 / 3)
    # p_target 0.5: accept nothing costs 0.5 -> normalised 1; threshold 0.8 costs (1/3)(0.5) -> 1/3
    assert M.min_dcf(SCORES, LABELS, p_target=0.5) == pytest.approx(1 / 3)
    assert M.min_dcf([0.9, 0.1], [1, 0]) == 0.0


def test_ua_wa_on_a_known_confusion_matrix():
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    preds = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    cm = M.confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[3, 1, 0], [2, 4, 0], [0, 0, 0]]
    assert M.unweighted_accuracy(cm) == pytest.approx((3 / 4 + 4 / 6) / 2)  # class 2 absent: not counted
    assert M.weighted_accuracy(cm) == pytest.approx(7 / 10)


def test_all_slots_accuracy():
    y = np.array([[0, 1, 2], [1, 1, 1], [2, 0, 0]])
    p = np.array([[0, 1, 2], [1, 0, 1], [2, 0, 0]])
    assert M.all_slots_accuracy(y, p) == pytest.approx(2 / 3)


@pytest.mark.parametrize("call,message", [
    (lambda: M.wer(["a"], ["a", "b"]), "1 references and 2 hypotheses"),
    (lambda: M.wer([""], ["a"]), "no words"),
    (lambda: M.cer(["a"], [3]), "must be strings"),
    (lambda: M.eer([0.1, 0.2], [1, 1]), "needs both target and non-target"),
    (lambda: M.eer([0.1, float("nan")], [1, 0]), "NaN or Inf"),
    (lambda: M.eer([0.1, 0.2], [1, 2]), "labels must be 1"),
    (lambda: M.eer([0.1, 0.2, 0.3], [1, 0]), "3 scores and 2 labels"),
    (lambda: M.min_dcf(SCORES, LABELS, p_target=1.0), "p_target must be in (0, 1)"),
    (lambda: M.confusion_matrix([0, 3], [0, 1], 3), "labels must be class ids in 0..2"),
    (lambda: M.unweighted_accuracy(np.zeros((2, 2))), "empty"),
    (lambda: M.all_slots_accuracy([[1, 2]], [[1]]), "expected equal"),
])
def test_bad_inputs_are_named(call, message):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert message in str(info.value)
