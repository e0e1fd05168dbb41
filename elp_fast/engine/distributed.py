"""Process-group set-up: one process without a launcher, or many under torchrun / deepspeed.

Without a launcher's environment (RANK, WORLD_SIZE, ...) this sets up a one-process group on a
free loopback port. CUDA uses NCCL, CPU uses gloo (docs/design.md 5).
"""
from __future__ import annotations

import os
import socket
from typing import Any

import torch


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched() -> bool:
    """True when a launcher (torchrun, deepspeed, mpirun via DeepSpeed) set the process group up."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init() -> None:
    """Initialise torch.distributed through DeepSpeed, once per process."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if not launched():
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    dev = device()
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    elif os.environ.get("WORLD_SIZE") == "1":
        # DeepSpeed's shared-memory all-reduce speeds up several CPU processes; alone it has nothing
        # to do, yet a new environment compiles it first (about 30 s). DeepSpeed keeps this table
        # for such edits.
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="nccl" if dev.type == "cuda" else "gloo", verbose=False)


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """After a successful run: wait for every process, then tear the process group down. Left to
    the interpreter's exit, a torchrun worker sometimes aborted ("terminate called without an
    active exception") after its work was done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_sum(values: list[float]) -> list[float]:
    """Sum a few floats over every process (fp64 on the training device)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast_json(obj: Any) -> Any:
    """Rank 0's JSON-serialisable value on every process (sent as UTF-8 bytes, never pickled)."""
    import json

    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    dev = device()
    data = json.dumps(obj).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    dist.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=dev)
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


def gather_rows(rows):
    """Every process's rows (a numpy array, same trailing shape everywhere) concatenated in rank
    order, on every process: what whole-set metrics (UA, EER) need from sharded evaluation."""
    import numpy as np
    import torch.distributed as dist

    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return rows
    dev = device()
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([rows.shape[0]], dtype=torch.int64, device=dev))
    longest = max(int(n.item()) for n in sizes)
    padded = torch.zeros((longest, *rows.shape[1:]), dtype=torch.float64, device=dev)
    padded[:rows.shape[0]] = torch.from_numpy(rows).to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return np.concatenate([part[:int(n.item())].cpu().numpy() for part, n in zip(parts, sizes)])
