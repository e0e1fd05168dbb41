"""The corpus readers on tiny fixtures laid out exactly like the real corpora."""
import json

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from elp_fast.data import corpora  # noqa: E402


def wav(path, seconds=0.1, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 5), 16000, format=fmt)
    return path


def test_librispeech(tmp_path):
    ch = tmp_path / "dev-clean" / "84" / "121123"
    for i in range(2):
        wav(ch / f"84-121123-000{i}.flac", fmt="FLAC")
    (ch / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    utts = corpora.librispeech(tmp_path, "dev-clean")
    assert [(u.id, u.text, u.speaker) for u in utts] == [
        ("84-121123-0000", "GO DO YOU HEAR", "84"), ("84-121123-0001", "BUT IN LESS THAN FIVE MINUTES", "84")]
    (ch / "84-121123.trans.txt").write_text("84-121123-0000 GO\n84-121123-0002 MISSING FILE\n")
    with pytest.raises(FileNotFoundError, match=r"84-121123-0002.flac: listed in .*trans.txt:2 but missing"):
        corpora.librispeech(tmp_path, "dev-clean")
    with pytest.raises(FileNotFoundError, match="LibriSpeech split folder 'test-other'"):
        corpora.librispeech(tmp_path, "test-other")


def test_voxceleb1_and_trials(tmp_path):
    for spk, vid, n in [("id10270", "5r0dWxy17C8", 1), ("id10270", "5r0dWxy17C8", 2), ("id10271", "1gtz-CUIygI", 1)]:
        wav(tmp_path / "wav" / spk / vid / f"{n:05d}.wav")
    utts = corpora.voxceleb1(tmp_path)
    assert [u.label for u in utts] == ["id10270", "id10270", "id10271"]
    assert [u.id for u in corpora.voxceleb1(tmp_path, speakers=["id10271"])] == ["id10271/1gtz-CUIygI/00001.wav"]
    trials = tmp_path / "veri_test2.txt"
    trials.write_text("1 id10270/5r0dWxy17C8/00001.wav id10270/5r0dWxy17C8/00002.wav\n"
                      "0 id10270/5r0dWxy17C8/00001.wav id10271/1gtz-CUIygI/00001.wav\n")
    got = corpora.voxceleb1_trials(trials, tmp_path)
    assert [t[0] for t in got] == [1, 0] and got[1][2].name == "00001.wav"
    trials.write_text("yes a.wav b.wav\n")
    with pytest.raises(ValueError, match=r"veri_test2.txt:1: expected '<1\|0>"):
        corpora.voxceleb1_trials(trials, tmp_path)


def test_iemocap_four_classes_with_excited_as_happy(tmp_path):
    sess = tmp_path / "Session1"
    labels = {"Ses01F_impro01_F000": "neu", "Ses01F_impro01_M001": "exc", "Ses01F_impro01_F002": "fru",
              "Ses01F_impro01_M003": "ang"}
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for uid, emo in labels.items():
        wav(sess / "sentences" / "wav" / "Ses01F_impro01" / f"{uid}.wav")
        lines.append(f"[6.2901 - 8.2357]\t{uid}\t{emo}\t[2.5000, 2.5000, 2.5000]")
        lines.append("C-E2:\tNeutral;\t()")
    (sess / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (sess / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text("\n".join(lines) + "\n")
    utts = corpora.iemocap(tmp_path, sessions=[1])
    assert [(u.id, u.label, u.session, u.speaker) for u in utts] == [
        ("Ses01F_impro01_F000", "neu", 1, "1F"), ("Ses01F_impro01_M001", "hap", 1, "1M"),
        ("Ses01F_impro01_M003", "ang", 1, "1M")]
    with pytest.raises(FileNotFoundError, match="IEMOCAP's Session2/"):
        corpora.iemocap(tmp_path, sessions=[1, 2])


def test_fluent_speech_commands(tmp_path):
    rows = [("wavs/speakers/2BqVo8kVB2Skwgyb/0a3129c0.wav", "2BqVo8kVB2Skwgyb", "Turn on the lights",
             "activate", "lights", "none"),
            ("wavs/speakers/2BqVo8kVB2Skwgyb/0a312a00.wav", "2BqVo8kVB2Skwgyb", "Bring me my shoes",
             "bring", "shoes", "none")]
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "test_data.csv", "w") as f:
        f.write(",path,speakerId,transcription,action,object,location\n")
        for i, r in enumerate(rows):
            wav(tmp_path / r[0])
            f.write(f"{i}," + ",".join(r) + "\n")
    utts = corpora.fluent_speech_commands(tmp_path, "test")
    assert [u.slots for u in utts] == [("activate", "lights", "none"), ("bring", "shoes", "none")]
    assert utts[0].text == "Turn on the lights" and utts[0].speaker == "2BqVo8kVB2Skwgyb"
    with pytest.raises(ValueError, match="split must be 'train', 'valid' or 'test'"):
        corpora.fluent_speech_commands(tmp_path, "dev")


def test_manifest(tmp_path):
    wav(tmp_path / "a" / "x.wav")
    m = tmp_path / "a" / "train.jsonl"
    m.write_text(json.dumps({"audio": "x.wav", "label": "happy"}) + "\n\n"
                 + json.dumps({"audio": str(tmp_path / "a" / "x.wav"), "id": "u2", "slots": ["a", "b", "c"]}) + "\n")
    utts = corpora.manifest(m)
    assert [(u.id, u.label, u.slots) for u in utts] == [("x", "happy", None), ("u2", None, ("a", "b", "c"))]
    for bad, message in [('{"audio": "x.wav", "lable": 1}', r"train.jsonl:1: unknown keys \['lable'\]"),
                         ("{not json", "train.jsonl:1: not valid JSON"),
                         ('{"text": "hi"}', 'expected an object with an "audio" path'),
                         ('{"audio": "nope.wav"}', r"nope.wav: named in .*train.jsonl:1 but missing")]:
        m.write_text(bad + "\n")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            corpora.manifest(m)


def test_audio_dataset_and_padding(tmp_path):
    import torch

    from elp_fast.data import AudioDataset, Utterance, pad_collate

    utts = [Utterance("a", wav(tmp_path / "a.wav", 0.1), label="x"), Utterance("b", wav(tmp_path / "b.wav", 0.05), label="y")]
    ds = AudioDataset(utts, target=lambda u: {"x": 0, "y": 1}[u.label])
    batch = pad_collate([ds[0], ds[1]])
    assert batch["input_values"].shape == (2, 1600) and batch["attention_mask"].sum(1).tolist() == [1600, 800]
    assert batch["labels"].tolist() == [0, 1] and float(batch["input_values"][1, 800:].abs().sum()) == 0
    seqs = pad_collate([{"input_values": torch.ones(5), "labels": torch.tensor([3, 4])},
                        {"input_values": torch.ones(3), "labels": torch.tensor([5])}])
    assert seqs["labels"].tolist() == [[3, 4], [5, -100]]
    with pytest.raises(ValueError, match="no utterances"):
        AudioDataset([])
