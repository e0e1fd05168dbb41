"""EngineConfig validation, files, schedules and the Trainer's early checks (no DeepSpeed
process group needed: everything here fails before the engine starts)."""
import json

import pytest
import torch

import elp_fast
from conftest import tiny_model
from elp_fast.data import ToneDataset
from elp_fast.engine import EngineConfig, EngineConfigError, ResumeError, Trainer
from elp_fast.engine import checkpoints as ckpt

BAD = [
    ("max_steps", 0, "an integer >= 1"),
    ("max_steps", 2.5, "an integer >= 1"),
    ("micro_batch_size", -1, "an integer >= 1"),
    ("batch_seconds", -1.0, "a finite number >= 0"),
    ("grad_accum_steps", True, "an integer >= 1"),
    ("precision", "fp8", "'fp32' or 'bf16' or 'fp16'"),
    ("zero_stage", 4, "0, 1, 2 or 3"),
    ("lr", 0.0, "> 0"),
    ("lr", float("nan"), "> 0"),
    ("group_lr", {"x_adapters": 1e-3}, "unknown group 'x_adapters'"),
    ("group_lr", {"head": -1.0}, ">= 0"),
    ("group_lr", [1e-3], "a dict"),
    ("weight_decay", -0.1, ">= 0"),
    ("betas", (0.9,), "two numbers in [0, 1)"),
    ("betas", (0.9, 1.0), "two numbers in [0, 1)"),
    ("adam_eps", 0, "> 0"),
    ("schedule", "step", "'linear' or 'cosine' or 'constant'"),
    ("warmup_steps", 2000, "at most max_steps"),
    ("min_lr_ratio", 1.5, "in [0, 1]"),
    ("grad_clip", -1.0, ">= 0"),
    ("activation_checkpointing", "some", "'all' or 'none' or a list"),
    ("activation_checkpointing", [0, -1], "'all' or 'none' or a list"),
    ("keep_last", 0, "an integer >= 1"),
    ("offload_optimizer", "yes", "True or False"),
    ("resume", "", "'auto', 'never' or the path"),
    ("deepspeed", {"zero_optimization": {"stage": 2}}, "no entries the engine sets itself"),
    ("output_dir", "", "a non-empty path"),
]


@pytest.mark.parametrize("field,value,expected", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_values_are_rejected_naming_the_field(field, value, expected):
    with pytest.raises(EngineConfigError) as info:
        EngineConfig(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"EngineConfig.{field}") and expected in msg, msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("kw,field", [
    ({"offload_optimizer": True, "zero_stage": 0}, "offload_optimizer"),
    ({"offload_params": True, "zero_stage": 2}, "offload_params"),
    ({"precision": "fp16", "zero_stage": 0}, "precision"),
])
def test_inconsistent_combinations_are_rejected(kw, field):
    with pytest.raises(EngineConfigError, match=rf"^EngineConfig\.{field}"):
        EngineConfig(**kw)


def test_unknown_keys_and_files(tmp_path):
    with pytest.raises(EngineConfigError, match=r"unknown field\(s\) \['max_step'\]"):
        EngineConfig.from_dict({"max_step": 3})
    good = {"max_steps": 7, "zero_stage": 2, "precision": "bf16", "group_lr": {"head": 1e-3}, "lr": 5e-4,
            "activation_checkpointing": [2, 0]}
    (tmp_path / "c.yaml").write_text("max_steps: 7\nzero_stage: 2\nprecision: bf16\ngroup_lr: {head: 0.001}\nlr: 5e-4\n"
                                      "activation_checkpointing: [2, 0]\n")
    (tmp_path / "c.json").write_text(json.dumps(good))
    a, b = EngineConfig.from_file(tmp_path / "c.yaml"), EngineConfig.from_file(tmp_path / "c.json")
    assert a == b == EngineConfig(**good)
    assert a.activation_checkpointing == [0, 2]
    assert EngineConfig.from_dict(a.to_dict()) == a
    (tmp_path / "bad.yaml").write_text("max_steps: [\n")
    with pytest.raises(EngineConfigError, match="not valid YAML"):
        EngineConfig.from_file(tmp_path / "bad.yaml")
    (tmp_path / "c.toml").write_text("")
    with pytest.raises(EngineConfigError, match="expected .json, .yaml or .yml"):
        EngineConfig.from_file(tmp_path / "c.toml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        EngineConfig.from_file(tmp_path / "missing.yaml")


def test_schedule_shapes():
    cfg = EngineConfig(max_steps=10, warmup_steps=2, schedule="linear", min_lr_ratio=0.1)
    f = [cfg.lr_factor(s) for s in range(10)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0) and f[2] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(f[1:], f[2:])) and f[-1] > 0.1
    cos = EngineConfig(max_steps=10, schedule="cosine")
    assert cos.lr_factor(0) == pytest.approx(1.0) and cos.lr_factor(5) == pytest.approx(0.5)
    assert EngineConfig(max_steps=10, schedule="constant").lr_factor(9) == 1.0
    assert EngineConfig(group_lr={"head": 2e-3}).lr_of("head") == 2e-3
    assert EngineConfig(lr=1e-4).lr_of("e_adapters") == 1e-4
    # a recipe's per-epoch multipliers, here 3 steps per epoch, after a 1-step warm-up
    pw = EngineConfig(max_steps=9, warmup_steps=1, schedule="piecewise", lr_points=[[0, 0.3], [3, 1.0], [6, 0.1]])
    assert [pw.lr_factor(s) for s in range(9)] == [1.0, 0.3, 0.3, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1]
    for bad in ([], [[1, 1.0]], [[0, 1.0], [0, 2.0]], [[0, -1.0]], [[0, 1.0, 2.0]]):
        with pytest.raises(EngineConfigError, match="EngineConfig.lr_points"):
            EngineConfig(schedule="piecewise", lr_points=bad)
    with pytest.raises(EngineConfigError, match="lr_points.*only then"):
        EngineConfig(lr_points=[[0, 1.0]])


def test_deepspeed_config_mapping():
    cfg = EngineConfig(micro_batch_size=3, grad_accum_steps=2, zero_stage=3, offload_params=True,
                       offload_optimizer=True, precision="bf16", grad_clip=0.5, deepspeed={"wall_clock_breakdown": True})
    ds = cfg.deepspeed_config(world_size=4)
    assert ds["train_batch_size"] == 24 and ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"},
                                       "offload_param": {"device": "cpu"}}
    assert ds["bf16"] == {"enabled": True} and "fp16" not in ds and ds["gradient_clipping"] == 0.5
    assert ds["wall_clock_breakdown"] is True
    fp16 = EngineConfig(precision="fp16", zero_stage=1).deepspeed_config(1)
    assert fp16["fp16"]["enabled"] and fp16["fp16"]["loss_scale"] == 0  # dynamic loss scaling


@pytest.fixture
def elp():
    return elp_fast.wrap(tiny_model("wavlm-postln", head="ForSequenceClassification", num_labels=2),
                         e_bottleneck=8, l_dim=16, p_len=2)


def test_trainer_rejects_bad_arguments(elp, tmp_path):
    data = ToneDataset(8, 0.25)
    cfg = EngineConfig(output_dir=str(tmp_path / "run"))
    with pytest.raises(TypeError, match="model must be an ELPModel"):
        Trainer(torch.nn.Linear(2, 2), cfg, data)
    with pytest.raises(TypeError, match="config must be an EngineConfig"):
        Trainer(elp, "cfg.yaml", data)
    with pytest.raises(EngineConfigError, match="unknown field"):
        Trainer(elp, {"steps": 3}, data)
    with pytest.raises(TypeError, match="train_data: got int"):
        Trainer(elp, cfg, 5)
    with pytest.raises(EngineConfigError, match=r"batch_seconds: got 4.0, but train_data \(TensorDataset\) has no durations"):
        Trainer(elp, cfg.replace(batch_seconds=4.0), torch.utils.data.TensorDataset(torch.zeros(4, 8)))
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        Trainer(elp, cfg, data, loss_fn="ce")
    with pytest.raises(ValueError, match=r"activation_checkpointing: got layer indices \[7\]"):
        Trainer(elp, cfg.replace(activation_checkpointing=[0, 7]), data)
    if not torch.cuda.is_available():
        with pytest.raises(EngineConfigError, match="EngineConfig.precision: got 'fp16' on a machine without CUDA"):
            Trainer(elp, cfg.replace(precision="fp16", zero_stage=1), data)
    for p in elp.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(elp, cfg, data)
    assert not (tmp_path / "run").exists(), "nothing is written for a rejected set-up"


def test_resume_state_validation(tmp_path):
    root = tmp_path / "checkpoints"
    good = root / ckpt.step_dir_name(4)
    tmp = root / ".tmp-x"
    (tmp / "adapters").mkdir(parents=True)
    (tmp / ckpt.OPTIMIZER_NAME).write_bytes(b"opt")
    (tmp / "adapters" / "w").write_bytes(b"w")
    ckpt.write_state(tmp, {"step": 4})
    ckpt.commit(tmp, root, 4, keep_last=2)
    assert ckpt.find_resume(root) == good and (root / ckpt.LATEST).read_text().strip() == good.name
    # A newer directory with a torn file is skipped; a stale temporary directory is removed.
    newer = root / ckpt.step_dir_name(6)
    import shutil
    shutil.copytree(good, newer)
    (newer / ckpt.OPTIMIZER_NAME).write_bytes(b"op")
    assert ckpt.find_resume(root) == good
    with pytest.raises(ResumeError, match="does not match its recorded SHA-256"):
        ckpt.read_state(newer)
    (root / ".tmp-step-00000008-1-ab").mkdir()
    assert [p.name for p in ckpt.clean_stale(root)] == [".tmp-step-00000008-1-ab"]
    (good / ckpt.STATE_NAME).write_text("{not json")
    with pytest.raises(ResumeError, match="not valid JSON"):
        ckpt.read_state(good)
    assert ckpt.find_resume(root) is None
