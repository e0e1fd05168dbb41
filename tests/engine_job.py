"""Engine runs for the tests, each in a fresh process (alone or under torchrun).

    python tests/engine_job.py '<json: one job or a list of jobs>'

A job: {"out": dir, "stage": 0-3, "steps": N, ...EngineConfig overrides}. Besides the engine's
own records, rank 0 writes <out>/job.json: frozen-weight hashes before and after, which
trainable parameters changed, and the final model's logits on a fixed batch (to check that the
saved adapters reproduce it in a fresh backbone).
"""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

import elp_fast  # noqa: E402
from conftest import tiny_model  # noqa: E402
from elp_fast.data import ToneDataset  # noqa: E402
from elp_fast.engine import EngineConfig, Trainer  # noqa: E402
from elp_fast.tasks.evaluators import ClassificationEvaluator  # noqa: E402

ELP = dict(e_bottleneck=8, l_dim=16, p_len=2)
TRAIN_SIZE, EVAL_SIZE, SECONDS = 48, 9, 0.25  # 9: two processes get unequal shares


def build_model(seed=0, dropout=0.1, spec_augment=0.0, backbone="wavlm-postln", **elp):
    # Dropout and SpecAugment draw from the global RNGs (torch, numpy), which resume restores;
    # runs compared across process counts turn them off (each process draws its own masks).
    backbone = tiny_model(backbone, head="ForSequenceClassification", seed=seed, num_labels=2,
                          mask_time_prob=spec_augment, mask_time_length=2, hidden_dropout=dropout,
                          attention_dropout=dropout, activation_dropout=dropout, feat_proj_dropout=dropout)
    return elp_fast.wrap(backbone, **{**ELP, **elp})


def fixed_batch():
    items = [ToneDataset(4, SECONDS, seed=99)[i] for i in range(4)]
    return {k: torch.stack([it[k] for it in items]) for k in ("input_values", "attention_mask")}


def frozen_hash(model):
    h = hashlib.sha256()
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not getattr(t, "requires_grad", False):
            h.update(n.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def gathered(model, stage):
    if stage == 3:
        from deepspeed.runtime.zero import GatheredParameters

        return GatheredParameters(list(model.parameters()), modifier_rank=None)
    import contextlib

    return contextlib.nullcontext()


def run(job):
    job = dict(job)
    out, stage = job.pop("out"), job.pop("stage", 0)
    steps = job.pop("steps", 6)
    model = build_model(dropout=job.pop("dropout", 0.1), spec_augment=job.pop("spec_augment", 0.0),
                        backbone=job.pop("backbone", "wavlm-postln"),
                        **job.pop("elp", {}))
    before = frozen_hash(model)
    initial = {n: p.detach().clone() for n, p in model.adapter_state_dict().items()}
    cfg = dict(output_dir=out, max_steps=steps, micro_batch_size=4, zero_stage=stage, lr=5e-3,
               warmup_steps=2, save_every=3, log_every=1, progress=True, resume="never")
    cfg.update(job)
    trainer = Trainer(model, EngineConfig(**cfg), ToneDataset(TRAIN_SIZE, SECONDS),
                      ToneDataset(EVAL_SIZE, SECONDS, seed=1), evaluator=ClassificationEvaluator(2))
    summary = trainer.train()
    model.eval()
    with torch.no_grad():
        batch = fixed_batch()
        logits = model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
    with gathered(model, stage):
        after = frozen_hash(model)
        changed = {n: not torch.equal(initial[n], p.detach().to(initial[n].dtype))
                   for n, p in model.adapter_state_dict().items()}
    if trainer.rank == 0:
        record = {"frozen_before": before, "frozen_after": after, "changed": changed,
                  "logits": logits.float().tolist(), "summary": summary}
        with open(os.path.join(out, "job.json"), "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    jobs = json.loads(sys.argv[1])
    for job in jobs if isinstance(jobs, list) else [jobs]:
        run(job)
