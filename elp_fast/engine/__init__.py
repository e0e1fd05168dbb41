"""The training engine: DeepSpeed (ZeRO 0-3, fp32 / bf16 / fp16), activation checkpointing,
adapter-only resume checkpoints written atomically, exact resume.

    from elp_fast.engine import EngineConfig, Trainer
    summary = Trainer(elp_model, EngineConfig(output_dir="runs/x", max_steps=1000), train_set).train()

Importing this package does not import DeepSpeed; building a Trainer's engine does.
"""
from .checkpoints import ResumeError
from .config import EngineConfig, EngineConfigError
from .trainer import Trainer

__all__ = ["EngineConfig", "EngineConfigError", "ResumeError", "Trainer"]
