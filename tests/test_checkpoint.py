"""Adapter checkpoints: exact round trip into a fresh backbone, and every way loading must refuse."""
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import elp_fast
from elp_fast.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError
from conftest import audio_batch, tiny_model

KW = dict(e_bottleneck=8, l_dim=16, p_len=2)


def _trained(key="wavlm-postln", head="ForCTC", **kw):
    elp = elp_fast.wrap(tiny_model(key, head=head), **{**KW, **kw})
    with torch.no_grad():  # move every trainable tensor away from its initial value
        for p in elp.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    return elp.eval()


def _state(elp):
    return {n: t.clone() for n, t in elp.state_dict().items()}


@pytest.mark.parametrize("key,head", [("wavlm-postln", "ForCTC"), ("wav2vec2-preln", None),
                                      ("data2vec-audio", "ForSequenceClassification")])
def test_round_trip_reproduces_outputs_in_fresh_model(tmp_path, key, head):
    elp = _trained(key, head)
    elp.save_adapters(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left
    fresh = elp_fast.wrap(tiny_model(key, head=head), **KW).eval()
    x, mask = audio_batch()
    with torch.no_grad():
        before = fresh(x, attention_mask=mask).last_hidden_state
        fresh.load_adapters(tmp_path / "ckpt")
        a, b = elp(x, attention_mask=mask), fresh(x, attention_mask=mask)
    assert not torch.equal(before, b.last_hidden_state)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    if head:
        assert torch.equal(a.logits, b.logits)
    meta = json.loads((tmp_path / "ckpt" / CONFIG_NAME).read_text())
    assert meta["backbone"]["class"] == type(elp.model).__name__ and meta["config"]["l_dim"] == 16
    assert set(meta["tensors"]) == set(elp.adapter_state_dict())  # adapter tensors only


def test_save_overwrites_atomically(tmp_path):
    elp = _trained()
    elp.save_adapters(tmp_path)
    with torch.no_grad():
        elp.l_adapters.layer_logits.add_(1.0)
    elp.save_adapters(tmp_path)
    fresh = elp_fast.wrap(tiny_model("wavlm-postln", head="ForCTC"), **KW)
    fresh.load_adapters(tmp_path)
    assert torch.equal(fresh.l_adapters.layer_logits, elp.l_adapters.layer_logits)
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]


@pytest.fixture
def saved(tmp_path):
    _trained().save_adapters(tmp_path)
    return tmp_path


def _rewrite_weights(path, tensors):
    """Replace the weights and re-record their hash, as a consistent but wrong checkpoint."""
    import hashlib

    save_file(tensors, path / WEIGHTS_NAME)
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta["weights_sha256"] = hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    (path / CONFIG_NAME).write_text(json.dumps(meta))


def _load_weights(path):
    from safetensors.torch import load_file

    return load_file(path / WEIGHTS_NAME)


def _case_missing_dir(p):
    return p / "nope", FileNotFoundError, "is not an existing directory"


def _case_missing_config(p):
    (p / CONFIG_NAME).unlink()
    return p, FileNotFoundError, "adapter_config.json is missing"


def _case_missing_weights(p):
    (p / WEIGHTS_NAME).unlink()
    return p, FileNotFoundError, "adapter_model.safetensors is missing"


def _case_truncated(p):
    data = (p / WEIGHTS_NAME).read_bytes()
    (p / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    return p, CheckpointError, "does not match adapter_config.json"


def _case_truncated_header(p):
    (p / WEIGHTS_NAME).write_bytes(b"\x10\x00")
    return p, CheckpointError, "is truncated"


def _case_pickle(p):
    (p / WEIGHTS_NAME).write_bytes(pickle.dumps({"x": 1}))
    return p, CheckpointError, "is a pickle / torch.save file, not safetensors"


def _case_torch_save(p):
    torch.save({"x": torch.ones(1)}, p / WEIGHTS_NAME)
    return p, CheckpointError, "is a pickle / torch.save file"


def _case_bad_json(p):
    (p / CONFIG_NAME).write_text("{not json")
    return p, CheckpointError, "is not valid JSON"


def _case_not_ours(p):
    (p / CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA"}))
    return p, CheckpointError, "has format None; expected 'elp_fast.adapters'"


def _case_other_config(p):
    meta = json.loads((p / CONFIG_NAME).read_text())
    meta["config"]["e_bottleneck"] = 4
    (p / CONFIG_NAME).write_text(json.dumps(meta))
    return p, CheckpointError, r"adapter config differs from this model's .*'e_bottleneck': \(4, 8\)"


def _case_other_backbone(p):
    meta = json.loads((p / CONFIG_NAME).read_text())
    meta["backbone"].update({"class": "HubertForCTC", "hidden_size": 64})
    (p / CONFIG_NAME).write_text(json.dumps(meta))
    return p, CheckpointError, r"saved for another backbone .*'class': \('HubertForCTC', 'WavLMForCTC'\)"


def _case_missing_key(p):
    t = _load_weights(p)
    t.pop("l_adapters.layer_logits")
    _rewrite_weights(p, t)
    return p, CheckpointError, r"missing keys \['l_adapters.layer_logits'\]"


def _case_extra_key(p):
    t = _load_weights(p)
    t["e_adapters.9.down_w"] = torch.zeros(1)
    _rewrite_weights(p, t)
    return p, CheckpointError, r"unexpected keys \['e_adapters.9.down_w'\]"


def _case_misshaped(p):
    t = _load_weights(p)
    t["l_adapters.layer_logits"] = torch.zeros(5)
    _rewrite_weights(p, t)
    return p, CheckpointError, r"mis-shaped keys .*'l_adapters.layer_logits': \(\(5,\), \(3,\)\)"


def _case_not_a_path(p):
    return 42, TypeError, "directory must be a path, got int"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("_case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[6:] for c in CASES])
def test_bad_checkpoints_are_refused_and_change_nothing(saved, case):
    target, error, message = case(saved)
    elp = _trained()
    before = _state(elp)
    with pytest.raises(error, match=message):
        elp.load_adapters(target)
    after = _state(elp)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_pickle_posing_as_safetensors_never_executes(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (saved / WEIGHTS_NAME).write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError):
        _trained().load_adapters(saved)
    assert not marker.exists()


def test_interrupted_save_is_never_loaded_silently(tmp_path, monkeypatch):
    from elp_fast import files

    elp = _trained()
    elp.save_adapters(tmp_path)
    with torch.no_grad():
        elp.l_adapters.layer_logits.add_(1.0)
    real_write = files.write_atomic

    def crash_before_config(path, data):
        if path.name == CONFIG_NAME:
            raise KeyboardInterrupt("killed between the two renames")
        real_write(path, data)

    monkeypatch.setattr(files, "write_atomic", crash_before_config)
    with pytest.raises(KeyboardInterrupt):
        elp.save_adapters(tmp_path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left behind
    with pytest.raises(CheckpointError, match="does not match adapter_config.json"):
        _trained().load_adapters(tmp_path)


def test_save_into_a_file_path_is_refused(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        _trained().save_adapters(target)
    assert target.read_text() == "keep me"
