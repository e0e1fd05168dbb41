"""Every task also reads JSON-lines manifests: labels, trial indices and evaluators come out as
from the corpus layouts."""
import json

import pytest
import torch

pytest.importorskip("soundfile")

import task_fixtures as fx  # noqa: E402
from elp_fast.tasks.datasets import DataError, prepare, receptive_field  # noqa: E402

SMALL = dict(conv_kernel=(10, 8, 4), conv_stride=(5, 4, 4))


def manifest(root, name, rows):
    for i, row in enumerate(rows):
        fx.tone(root / f"{name}{i}.wav", 0.5, 200 + 40 * i)
        row["audio"] = f"{name}{i}.wav"
        row.setdefault("id", f"{name}{i}")
    (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f"{name}.jsonl"


def test_receptive_field_of_the_standard_cnn():
    assert receptive_field((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == 400
    assert receptive_field(**SMALL) == 105


def test_asr_manifest(tmp_path):
    data = {"corpus": "manifest", "train": manifest(tmp_path, "tr", [{"text": "GO HOME"}, {"text": "SEE"}])}
    d = prepare("asr", data, tmp_path, **SMALL)
    assert len(d.train) == 2 and d.eval is None and d.head_args == {"vocab_size": 29}
    assert d.train[0]["labels"].tolist() == [8, 16, 1, 9, 16, 14, 6]  # G O | H O M E (blank 0, | 1, A 2)
    assert d.train.durations() == pytest.approx([0.5, 0.5])


def test_ser_and_sic_manifests(tmp_path):
    data = {"corpus": "manifest", "train": manifest(tmp_path, "tr", [{"label": "sad"}, {"label": "ang"}]),
            "eval": manifest(tmp_path, "ev", [{"label": "sad"}])}
    d = prepare("ser", data, tmp_path, **SMALL)
    assert d.labels["classes"] == ["ang", "sad"] and d.eval[0]["labels"] == 1
    slots = {"corpus": "manifest", "train": manifest(tmp_path, "st", [{"slots": ["a", "x", "none"]},
                                                                      {"slots": ["b", "y", "none"]}])}
    d = prepare("sic", slots, tmp_path, **SMALL)
    assert d.head_args == {"slot_sizes": [2, 2, 1]} and torch.equal(d.train[1]["labels"], torch.tensor([1, 1, 0]))
    bad = {"corpus": "manifest", "train": manifest(tmp_path, "sb", [{"slots": ["a", "x"]}])}
    with pytest.raises(DataError, match=r"sb0.wav \(utterance sb0\): slots \('a', 'x'\); expected 3"):
        prepare("sic", bad, tmp_path, **SMALL)


def test_asv_manifest_with_trials_and_cohort(tmp_path):
    train = manifest(tmp_path, "tr", [{"speaker": s} for s in ("a", "a", "b", "c")])
    ev = manifest(tmp_path, "ev", [{}, {}, {}])
    (tmp_path / "trials.txt").write_text("1 ev0 ev1\n0 ev0 ev2\n")
    data = {"corpus": "manifest", "train": train, "eval": ev, "trials": "trials.txt"}
    d = prepare("asv", data, tmp_path, head={"score_norm": "as_norm", "cohort_size": 2}, **SMALL)
    assert d.head_args == {"num_speakers": 3} and [d.train[i]["labels"] for i in range(4)] == [0, 0, 1, 2]
    # the eval set: the 3 trial utterances, then one utterance of each of the first 2 speakers
    assert len(d.eval) == 5 and d.eval[4]["index"] == 4
    ev_ = d.evaluator("eval")
    assert ev_.cohort_start == 3 and ev_.trials.tolist() == [[1, 0, 1], [0, 0, 2]]
    (tmp_path / "trials.txt").write_text("1 ev0 ev9\n")
    with pytest.raises(DataError, match=r"trials.txt:1: utterance id 'ev9' is not in the evaluation manifest"):
        prepare("asv", data, tmp_path, **SMALL)
    (tmp_path / "trials.txt").write_text("1 ev0\n")
    with pytest.raises(DataError, match=r"trials.txt:1: expected '<1\|0> <id> <id>'"):
        prepare("asv", data, tmp_path, **SMALL)
