"""Adapter-only checkpoints: `adapter_model.safetensors` + `adapter_config.json`.

Written atomically: each file goes to a temporary name in the target folder, is fsynced and then
renamed over the old one; the weights first, the JSON last. The JSON records the SHA-256 of the
weights, so a crash between the two renames is detected at load time instead of mixing files.
Loading validates everything (backbone, config, keys, shapes, file format) before touching a
single parameter. No pickle anywhere: safetensors holds raw tensors only.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from . import files
from .config import ELPConfig, ELPConfigError
from .version import __version__

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "elp_fast.adapters"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """An adapter checkpoint cannot be loaded into this model (a ValueError); the message says why."""


def backbone_signature(elp) -> dict:
    cfg = elp.backbone.config
    sig = {
        "class": type(elp.model).__name__,
        "family": elp.family.name,
        "model_type": getattr(cfg, "model_type", ""),
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "conv_dim_last": cfg.conv_dim[-1],
        "stable_layer_norm": elp.stable_layer_norm,
        "head": elp.head_kind,
    }
    if elp.head_kind == "ctc":
        sig["vocab_size"] = cfg.vocab_size
    elif elp.head_kind == "sequence_classification":
        sig["num_labels"] = cfg.num_labels
    if elp.task_head is not None:
        sig["task_head"] = {"class": type(elp.task_head).__name__, **elp.task_head.describe()}
    return sig


def save_adapters(elp, directory: Any) -> Path:
    from safetensors.torch import save

    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"save_adapters: directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"save_adapters: {directory} exists and is not a directory")
    tensors = {}
    for name, t in elp.adapter_state_dict().items():
        # ZeRO-3 partitions parameters; the engine gathers them before calling this.
        tensors[name] = t.detach().to("cpu").contiguous()
    data = save(tensors, metadata={"format": FORMAT})
    directory.mkdir(parents=True, exist_ok=True)
    files.write_atomic(directory / WEIGHTS_NAME, data)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "elp_fast_version": __version__,
        "config": elp.config.to_dict(),
        "backbone": backbone_signature(elp),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "tensors": {n: list(t.shape) for n, t in tensors.items()},
    }
    files.write_atomic(directory / CONFIG_NAME, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    files.fsync_dir(directory)
    return directory


def read_format_json(path: Path, fmt: str, version: int, error: type, prefix: str = "") -> dict:
    """A JSON object whose "format" and "format_version" must be fmt / version; `error` (with
    `prefix`) names what is wrong otherwise."""
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{prefix}{path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise error(f"{prefix}{path} has format {meta.get('format') if isinstance(meta, dict) else meta!r}; "
                    f"expected {fmt!r}")
    if meta.get("format_version") != version:
        raise error(f"{prefix}{path} has format_version {meta.get('format_version')!r}; "
                    f"this elp_fast reads version {version}")
    return meta


def read_adapter_config(directory: Any) -> dict:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"load_adapters: directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"load_adapters: {directory} is not an existing directory")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"load_adapters: {path} is missing (not an elp_fast adapter checkpoint?)")
    meta = read_format_json(path, FORMAT, FORMAT_VERSION, CheckpointError, "load_adapters: ")
    return meta


def _check_safetensors_header(path: Path) -> None:
    """Reject anything that is not a plain safetensors file before parsing it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= min(size - 8, _MAX_HEADER) and head[8:9] == b"{":
            return
    if (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head[:4] == b"PK\x03\x04":
        raise CheckpointError(f"load_adapters: {path} is a pickle / torch.save file, not safetensors; "
                              "elp_fast never unpickles checkpoints")
    if len(head) < 9:
        raise CheckpointError(f"load_adapters: {path} is truncated ({size} bytes); expected a safetensors file")
    raise CheckpointError(f"load_adapters: {path} is not a valid safetensors file (its header does not "
                          f"fit in the {size}-byte file)")


def load_tensors(directory: Path, meta: dict) -> dict:
    from safetensors.torch import load

    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"load_adapters: {path} is missing")
    _check_safetensors_header(path)
    data = path.read_bytes()  # read once: hashed, then parsed from memory
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise CheckpointError(f"load_adapters: {path} does not match {CONFIG_NAME} (sha256 {digest[:12]}… "
                              f"vs recorded {str(meta.get('weights_sha256'))[:12]}…): the files come from "
                              "different saves or the weights were truncated or edited")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"load_adapters: {path} could not be parsed as safetensors ({exc})") from None


def load_adapters(elp, directory: Any) -> None:
    meta = read_adapter_config(directory)
    directory = Path(directory)
    try:
        saved_cfg = ELPConfig.from_dict(meta.get("config"))
    except ELPConfigError as exc:
        raise CheckpointError(f"load_adapters: the checkpoint's config is invalid: {exc}") from None
    if saved_cfg != elp.config:
        diff = {k: (v, getattr(elp.config, k)) for k, v in saved_cfg.to_dict().items()
                if v != getattr(elp.config, k)}
        raise CheckpointError(f"load_adapters: adapter config differs from this model's "
                              f"(field: (checkpoint, model)) {diff}; wrap the backbone with the "
                              f"checkpoint's config (ELPConfig.from_dict(read_adapter_config(dir)['config']))")
    mine, theirs = backbone_signature(elp), meta.get("backbone", {})
    mismatch = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if mismatch:
        raise CheckpointError(f"load_adapters: checkpoint was saved for another backbone "
                              f"(field: (checkpoint, model)) {mismatch}")
    tensors = load_tensors(directory, meta)
    params = dict(elp.named_parameters())
    expected = elp.adapter_state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = {n: (tuple(tensors[n].shape), tuple(expected[n].shape))
                 for n in sorted(set(tensors) & set(expected)) if tensors[n].shape != expected[n].shape}
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if misshaped:
            parts.append(f"mis-shaped keys (checkpoint, model) {misshaped}")
        raise CheckpointError(f"load_adapters: {directory / WEIGHTS_NAME} does not fit this model: " + "; ".join(parts))
    with torch.no_grad():
        for name, t in tensors.items():
            params[name].copy_(t.to(device=params[name].device, dtype=params[name].dtype))
