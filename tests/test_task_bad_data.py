"""Bad audio and bad labels through `elp-fast train --task ...`: each is a clear error (exit
status 2) naming the file or field, and nothing is written: the run directory never appears."""
import json

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("yaml")

import task_fixtures as fx  # noqa: E402
from elp_fast import cli  # noqa: E402


def fsc_first_wav(root, split="train"):
    return root / "wavs/speakers/spk00" / f"{split}000.wav" if split == "train" else \
        next((root / "wavs/speakers").glob(f"*/{split}000.wav"))


def ls_first(root):
    return next((root / "librispeech_finetuning/1h").rglob("*-0000.flac"))


def ser_manifests(root, labels=("neu", "ang"), eval_label="ang", eval_line=None):
    lines = []
    for i, lab in enumerate(labels * 3):
        fx.tone(root / f"a{i}.wav", 0.5, 200 + 50 * i)
        lines.append(json.dumps({"audio": f"a{i}.wav", "label": lab}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    fx.tone(root / "e0.wav", 0.5)
    (root / "eval.jsonl").write_text((eval_line or json.dumps({"audio": "e0.wav", "label": eval_label})) + "\n")
    return ["--set", "data.corpus=manifest", "--set", "data.train=train.jsonl", "--set", "data.eval=eval.jsonl"]


def edit_csv(path, old, new):
    path.write_text(path.read_text().replace(old, new))


# (task, how to break the fixture -> extra CLI args, what the message must say)
CASES = {
    # -- audio ------------------------------------------------------------------------------
    "missing file": ("sic", lambda r: fsc_first_wav(r).unlink(), r"train000.wav: listed in .*train_data.csv:2 but missing"),
    "8 kHz audio": ("sic", lambda r: fx.tone(fsc_first_wav(r), rate=8000), r"train000.wav: sampled at 8000 Hz; expected 16000 Hz"),
    "stereo": ("sic", lambda r: fx.tone(fsc_first_wav(r), channels=2), r"train000.wav: has 2 channels; expected mono"),
    "no samples": ("sic", lambda r: sf.write(fsc_first_wav(r), np.zeros(0, np.float32), 16000), r"train000.wav: holds no samples"),
    "shorter than the receptive field": ("sic", lambda r: fx.tone(fsc_first_wav(r), seconds=0.003),
                                         r"train000.wav: 48 samples .*expected at least 105"),
    "NaN samples": ("sic", lambda r: sf.write(fsc_first_wav(r), np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT"),
                    r"train000.wav: contains NaN or Inf samples"),
    "not audio": ("sic", lambda r: fsc_first_wav(r).write_text("hello"), r"train000.wav: not a readable audio file"),
    "a folder named .wav": ("sic", lambda r: (fsc_first_wav(r).unlink(), fsc_first_wav(r).mkdir()),
                            r"train000.wav: listed in .*train_data.csv:2 but missing"),
    "truncated FLAC": ("asr", lambda r: ls_first(r).write_bytes(ls_first(r).read_bytes()[:300]),
                       r"100-2000-0000.flac: not a readable audio file"),
    "8 kHz header check": ("sic", lambda r: (fx.tone(fsc_first_wav(r), rate=8000), ["--set", "data.verify=header"])[1],
                           r"train000.wav: sampled at 8000 Hz"),
    # -- labels -----------------------------------------------------------------------------
    "transcript character": ("asr", lambda r: edit_csv(ls_first(r).parent / "100-2000.trans.txt", "100-2000-0000 GO",
                                                       "100-2000-0000 GO 2"),
                             r"100-2000-0000.flac \(utterance 100-2000-0000\): character '2'"),
    "transcript longer than the audio": ("asr", lambda r: edit_csv(ls_first(r).parent / "100-2000.trans.txt",
                                                                   "100-2000-0000 GO", "100-2000-0000 " + "GO " * 60),
                                         r"100-2000-0000.flac \(utterance 100-2000-0000\): the transcript needs 179 frames"),
    "transcript line without text": ("asr", lambda r: edit_csv(ls_first(r).parent / "100-2000.trans.txt",
                                                               "100-2000-0000 GO", "100-2000-0000"),
                                     r"100-2000.trans.txt:1: expected '<speaker>-<chapter>-<utt> <TRANSCRIPT>'"),
    "slot value unseen in training": ("sic", lambda r: edit_csv(r / "data/valid_data.csv", ",shoes,", ",socks,"),
                                      r"valid00[37]\.wav \(utterance valid00[37]\): object 'socks' was not seen in training"),
    "slot column missing": ("sic", lambda r: edit_csv(r / "data/train_data.csv", ",location\n", "\n"),
                            r"train_data.csv: lacks the columns \['location'\]"),
    "emotion outside the training classes": ("ser", lambda r: ser_manifests(r, eval_label="bored"),
                                             r"e0.wav \(utterance e0\): label 'bored' is not among the training classes"),
    "emotion missing": ("ser", lambda r: ser_manifests(r, eval_line=json.dumps({"audio": "e0.wav"})),
                        r"e0.wav \(utterance e0\): no emotion label \(field 'label'\)"),
    "manifest line not JSON": ("ser", lambda r: ser_manifests(r, eval_line='{"audio": "e0.wav",'),
                               r"eval.jsonl:1: not valid JSON"),
    "IEMOCAP session outside 1..5": ("ser", lambda r: ["--set", "data.test_session=7"], r"data.test_session: got 7"),
    "trial line malformed": ("asv", lambda r: (r / "veri_test2.txt").write_text("yes a.wav b.wav\n"),
                             r"veri_test2.txt:1: expected '<1\|0> <id/video/n.wav> <id/video/n.wav>'"),
    "trial names a missing file": ("asv", lambda r: (r / "veri_test2.txt").write_text("1 id10274/vid0/00009.wav id10275/vid1/00002.wav\n"),
                                   r"id10274/vid0/00009.wav: named in .*veri_test2.txt:1 but missing"),
    "cut ASR audio": ("asr", lambda r: ["--set", "data.max_seconds=2"], r"data.max_seconds: ASR audio cannot be cut"),
    "negative max_seconds": ("sic", lambda r: ["--set", "data.max_seconds=-1"], r"data.max_seconds: got -1"),
    "unknown verify level": ("sic", lambda r: ["--set", "data.verify=quick"], r"data.verify: got 'quick'"),
    "unknown data key": ("sic", lambda r: ["--set", "data.trainn=train"], r"data: unknown key\(s\) \['trainn'\]"),
    "no such corpus root": ("sic", lambda r: ["--data", str(r / "nowhere")], r"--data: .*nowhere is not a directory"),
    "manifest split missing": ("ser", lambda r: ser_manifests(r) + ["--set", "data.test=test.jsonl"],
                               r"data.test: .*test.jsonl: no such manifest"),
    "unknown head loss": ("asv", lambda r: ["--set", "head.loss=arcface"], r"head.loss: got 'arcface'; expected 'aam' or 'softmax'"),
    "bad cohort size": ("asv", lambda r: ["--set", "head.cohort_size=abc"], r"head.cohort_size: got 'abc'; expected an integer >= 2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_named_and_nothing_is_written(case, tmp_path, capsys):
    task, breaker, message = CASES[case]
    root = fx.BUILDERS[task](tmp_path / "corpus")
    extra = breaker(root)
    extra = extra if isinstance(extra, list) else []
    out = tmp_path / "run"
    args = ["train", "--task", task, "--data", str(root), "--output", str(out), "--micro-batch-size", "2", *extra]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("elp-fast train: ") and __import__("re").search(message, err), err
    assert not out.exists()
