"""The engine end to end on CPU (gloo), each run in a fresh process (tests/engine_job.py):
ZeRO stages agree, 1 vs 2 processes agree, exact resume, kill -9 / SIGTERM at any point,
frozen weights untouched, every adapter trained with activation checkpointing on, checkpoints
hold adapter tensors only and reload into a fresh backbone."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from safetensors.torch import load_file  # noqa: E402

import engine_job  # noqa: E402
from elp_fast.engine import checkpoints as ckpt  # noqa: E402

JOB = str(Path(__file__).with_name("engine_job.py"))
STAGES = (0, 1, 2, 3)
# Resume variants: the four stages, plus optimizer (ZeRO-2) and parameter (ZeRO-3) offload.
VARIANTS = {**{str(s): {"stage": s} for s in STAGES},
            "2-offload": {"stage": 2, "offload_optimizer": True},
            "3-offload": {"stage": 3, "offload_optimizer": True, "offload_params": True},
            # bf16: DeepSpeed keeps fp32 masters apart from the bf16 weights (without ZeRO in its
            # unfused optimizer's own copies); resume restores them, not the rounded weights.
            "0-bf16": {"stage": 0, "precision": "bf16"}, "2-bf16": {"stage": 2, "precision": "bf16"},
            # Micro-batches of up to 16 utterances packed by length under 2 s of padded audio: 5 per
            # epoch here, so the replay of steps 4-6 crosses into the second epoch.
            "1-budget": {"stage": 1, "batch_seconds": 2.0, "micro_batch_size": 16}}
# The variants that compute the same thing as ZeRO 0 (fp32, fixed-size batches).
SAME_AS_ZERO0 = [v for v, kw in VARIANTS.items() if "precision" not in kw and "batch_seconds" not in kw]
# Dropout and SpecAugment on (their RNG draws must be replayed exactly), every layer checkpointed.
BASE = {"steps": 6, "save_every": 3, "activation_checkpointing": "all", "spec_augment": 0.1}
CRASH = {"steps": 16, "save_every": 2, "stage": 1}


def run_jobs(jobs, *, procs=1, env=None, check=True, wait=True):
    cmd = [sys.executable, JOB, json.dumps(jobs)]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               JOB, json.dumps(jobs)]
    full_env = {k: v for k, v in os.environ.items() if k != "ELP_FAST_CRASH_AT"}
    full_env.update({"TRITON_INTERPRET": "1", **(env or {})})
    p = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return p
    out, _ = p.communicate(timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"engine job failed ({p.returncode}):\n{out[-6000:]}")
    return p.returncode, out


def losses(out_dir):
    recs = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["type"] == "train"}


def ckpt_dir(out_dir, step):
    return Path(out_dir) / "checkpoints" / ckpt.step_dir_name(step)


def adapters(out_dir, step):
    return load_file(str(ckpt_dir(out_dir, step) / "adapters" / "adapter_model.safetensors"))


def optimizer_state(out_dir, step):
    return load_file(str(ckpt_dir(out_dir, step) / "optimizer.safetensors"))


def job_record(out_dir):
    return json.loads((Path(out_dir) / "job.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A per ZeRO stage (6 steps, checkpoint at 3 and 6); run B per stage in a fresh
    process, resumed from A's step-3 checkpoint; a dropout-free reference for the 2-process run;
    and the uninterrupted reference of the crash test."""
    root = tmp_path_factory.mktemp("engine")
    a = [{"out": str(root / f"A{v}"), **kw, **BASE} for v, kw in VARIANTS.items()]
    nodrop = {"stage": 0, "steps": 6, "save_every": 3, "dropout": 0.0}
    extra = [{"out": str(root / "nodrop"), **nodrop},
             {"out": str(root / "accum"), **nodrop, "micro_batch_size": 2, "grad_accum_steps": 2},
             {"out": str(root / "crash-ref"), **CRASH}]
    # Pre-LN layers (no post-LN inside the E-adapter) under ZeRO-3 against ZeRO 0.
    extra += [{"out": str(root / f"preln{s}"), "stage": s, "backbone": "wav2vec2-preln", **BASE} for s in (0, 3)]
    run_jobs(a + extra)
    b = [{"out": str(root / f"B{v}"), **kw, **BASE, "resume": str(ckpt_dir(root / f"A{v}", 3))}
         for v, kw in VARIANTS.items()]
    run_jobs(b)
    return root


@pytest.mark.parametrize("variant", VARIANTS)
def test_resume_replays_bit_identically(runs, variant):
    a, b = runs / f"A{variant}", runs / f"B{variant}"
    la, lb = losses(a), losses(b)
    assert sorted(lb) == [4, 5, 6], "run B starts after the step-3 checkpoint"
    assert [la[s] for s in (4, 5, 6)] == [lb[s] for s in (4, 5, 6)], (la, lb)
    for name, t in adapters(a, 6).items():
        assert torch.equal(t, adapters(b, 6)[name]), name
    oa, ob = optimizer_state(a, 6), optimizer_state(b, 6)
    assert sorted(oa) == sorted(ob) and all(torch.equal(oa[k], ob[k]) for k in oa)
    assert job_record(a)["logits"] == job_record(b)["logits"]


def test_zero_stages_agree(runs):
    ref_losses, ref_w = losses(runs / "A0"), adapters(runs / "A0", 6)
    for stage in SAME_AS_ZERO0[1:]:
        got = losses(runs / f"A{stage}")
        torch.testing.assert_close(torch.tensor([got[s] for s in range(1, 7)]),
                                   torch.tensor([ref_losses[s] for s in range(1, 7)]), rtol=2e-5, atol=1e-6)
        for name, t in adapters(runs / f"A{stage}", 6).items():
            torch.testing.assert_close(t, ref_w[name], rtol=1e-4, atol=1e-6, msg=f"stage {stage}: {name}")


def test_zero3_agrees_on_a_pre_ln_backbone(runs):
    a, b = losses(runs / "preln0"), losses(runs / "preln3")
    torch.testing.assert_close(torch.tensor([b[s] for s in range(1, 7)]), torch.tensor([a[s] for s in range(1, 7)]),
                               rtol=2e-5, atol=1e-6)
    ref = adapters(runs / "preln0", 6)
    for name, t in adapters(runs / "preln3", 6).items():
        torch.testing.assert_close(t, ref[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("stage", STAGES)
def test_frozen_untouched_and_every_adapter_trained(runs, stage):
    """Gradient audit with activation checkpointing on every layer: each trainable tensor moved
    (nothing was cut out of the graph), while every frozen parameter and buffer is bit-identical."""
    rec = job_record(runs / f"A{stage}")
    assert rec["frozen_before"] == rec["frozen_after"]
    unchanged = [n for n, moved in rec["changed"].items() if not moved]
    assert not unchanged and len(rec["changed"]) > 20, unchanged


def test_checkpoint_holds_adapters_only_and_reloads_exactly(runs):
    out = runs / "A0"
    directory = ckpt_dir(out, 6)
    model = engine_job.build_model(spec_augment=BASE["spec_augment"])
    trainable = set(model.adapter_state_dict())
    saved = adapters(out, 6)
    assert set(saved) == trainable
    assert not any(n.startswith("model.") and "layer_norm" not in n and "projector" not in n
                   and "classifier" not in n for n in saved), "a frozen backbone tensor was saved"
    opt = optimizer_state(out, 6)
    assert {k.split("/", 1)[1] for k in opt} == trainable
    assert {k.split("/", 1)[0] for k in opt} == {"master", "exp_avg", "exp_avg_sq"}
    files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert files == {"adapters/adapter_model.safetensors", "adapters/adapter_config.json",
                     "optimizer.safetensors", "rng/rank-00000.json", "trainer_state.json"}
    fresh = engine_job.build_model(spec_augment=BASE["spec_augment"])  # the same random backbone
    fresh.load_adapters(directory / "adapters")
    fresh.eval()
    batch = engine_job.fixed_batch()
    with torch.no_grad():
        logits = fresh(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    assert logits.tolist() == job_record(out)["logits"]


def test_gradient_accumulation_matches_one_big_batch(runs):
    """micro batch 2 x 2 accumulation steps = micro batch 4 (same utterances per step)."""
    one, accum = losses(runs / "nodrop"), losses(runs / "accum")
    torch.testing.assert_close(torch.tensor([accum[s] for s in range(1, 7)]),
                               torch.tensor([one[s] for s in range(1, 7)]), rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(job_record(runs / "accum")["logits"]),
                               torch.tensor(job_record(runs / "nodrop")["logits"]), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("stage", [2, 3])
def test_two_processes_agree_with_one(runs, tmp_path, stage):
    """Two gloo processes with micro batch 2 = one process with micro batch 4 (dropout off: each
    process draws its own masks). Gradients are averaged in another order across processes, and
    Adam's normalisation amplifies those last-bit differences in parameters whose gradients
    nearly cancel (one L-adapter bias moves 2e-4 of its scale), so weights are held to 1e-3 of
    each tensor's scale while losses and outputs are held to 2e-5 / 1e-4."""
    out = tmp_path / "two"
    run_jobs([{"out": str(out), "stage": stage, "steps": 6, "save_every": 3, "dropout": 0.0,
               "micro_batch_size": 2}], procs=2)
    one, two = losses(runs / "nodrop"), losses(out)
    torch.testing.assert_close(torch.tensor([two[s] for s in range(1, 7)]),
                               torch.tensor([one[s] for s in range(1, 7)]), rtol=2e-5, atol=1e-6)
    ref = adapters(runs / "nodrop", 6)
    for name, t in adapters(out, 6).items():
        scale = float(ref[name].abs().max())
        assert float((t - ref[name]).abs().max()) <= 1e-3 * scale, name
    torch.testing.assert_close(torch.tensor(job_record(out)["logits"]), torch.tensor(job_record(runs / "nodrop")["logits"]),
                               rtol=1e-4, atol=1e-7)
    assert sorted(p.name for p in (ckpt_dir(out, 6) / "rng").iterdir()) == ["rank-00000.json", "rank-00001.json"]
    # Whole-set evaluation (UA / WA of the final model over the 9 eval utterances, split 4 + 4 + a
    # padding batch between the processes) gathers every process's rows.
    evals = [[r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if r["type"] == "eval"][-1]
             for d in (runs / "nodrop", out)]
    assert evals[0]["UA"] == pytest.approx(evals[1]["UA"]) and evals[0]["WA"] == pytest.approx(evals[1]["WA"])
    assert 0 <= evals[0]["UA"] <= 1


def _wait_for_step(out_dir, proc, step, timeout=300):
    path = Path(out_dir) / "metrics.jsonl"
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if path.is_file() and any(s >= step for s in losses_tolerant(path)):
            return True
        time.sleep(0.01)
    return False


def losses_tolerant(path):
    steps = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("type") == "train":
            steps.append(rec["step"])
    return steps


def test_kill9_and_sigterm_at_any_point_resume_bit_identically(runs, tmp_path):
    """Interrupt one run six times: SIGKILL inside a checkpoint write (after the adapters, after
    sealing, after the rename but before `latest`), SIGTERM, and SIGKILL at a random step.
    Each restart resumes from the newest complete checkpoint; the run ends bit-identical to an
    uninterrupted one."""
    rng = random.Random(int(os.environ.get("ELP_FAST_TEST_SEED", "1234")))
    out = tmp_path / "crash"
    job = [{"out": str(out), **CRASH, "resume": "auto"}]
    root = out / "checkpoints"

    for at, previous in (("4:adapters", 2), ("6:sealed", 4), ("6:renamed", 4)):
        code, log = run_jobs(job, env={"ELP_FAST_CRASH_AT": at}, check=False)
        assert code == -signal.SIGKILL, log[-3000:]
        assert (root / ckpt.LATEST).read_text().strip() == ckpt.step_dir_name(previous)
        if at.endswith("renamed"):  # committed by the rename, though `latest` still names step 4
            assert ckpt.find_resume(root) == root / ckpt.step_dir_name(6)
        else:
            assert any(p.name.startswith(".tmp-") for p in root.iterdir()), "the write was interrupted"

    # SIGTERM: the run saves the step it is on and exits cleanly.
    p = run_jobs(job, wait=False)
    assert _wait_for_step(out, p, 7 + rng.randrange(2)), "run ended before it could be signalled"
    p.send_signal(signal.SIGTERM)
    log, _ = p.communicate(timeout=300)
    assert p.returncode == 0, log[-3000:]
    assert "resumed from" in log and ckpt.step_dir_name(6) in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "SIGTERM" and summary["step"] < CRASH["steps"]
    stopped_at = summary["step"]
    assert (root / ckpt.LATEST).read_text().strip() == ckpt.step_dir_name(stopped_at)

    # SIGKILL at a random later step (possibly inside a checkpoint write).
    p = run_jobs(job, wait=False)
    assert _wait_for_step(out, p, stopped_at + 1 + rng.randrange(3)), "run ended before it could be killed"
    p.kill()
    p.communicate(timeout=60)

    run_jobs(job)  # to the end
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir()), "stale temporary directories remain"
    assert len(ckpt.list_checkpoints(root)) == 3, "keep_last"
    ref = runs / "crash-ref"
    assert losses(out) == losses(ref), "metrics.jsonl: every step once, with the uninterrupted run's loss"
    last = CRASH["steps"]
    for name, t in adapters(ref, last).items():
        assert torch.equal(t, adapters(out, last)[name]), name
    oa, ob = optimizer_state(ref, last), optimizer_state(out, last)
    assert all(torch.equal(oa[k], ob[k]) for k in oa)


def test_fresh_start_over_existing_checkpoints_is_refused(runs, tmp_path):
    """resume='never' into a folder holding another run's checkpoints fails before writing."""
    import shutil

    out = tmp_path / "used"
    shutil.copytree(runs / "A0", out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, log = run_jobs([{"out": str(out), "stage": 0, **BASE}], check=False)
    assert code != 0 and "already holds checkpoints ['step-00000006', 'step-00000003']" in log, log[-3000:]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
