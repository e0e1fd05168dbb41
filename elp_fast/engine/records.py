"""What a run shows and keeps: a progress bar (rank 0), metrics as JSON lines, peak memory."""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..files import write_atomic
from ..config import SAMPLING_RATE



def audio_seconds(batch: dict) -> float:
    """Seconds of real audio in a batch (the attention mask counts, padding does not)."""
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if isinstance(mask, torch.Tensor):
        return float(mask.sum()) / SAMPLING_RATE
    x = batch.get("input_values") if isinstance(batch, dict) else None
    return x.numel() / SAMPLING_RATE if isinstance(x, torch.Tensor) else 0.0


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated memory of the training device: CUDA's allocator peak, or on CPU the
    process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: drop their old records."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a crash
                continue
            if rec.get("step", 0) <= step and rec.get("type") != "summary":
                kept.append(line)
        write_atomic(self.path, "".join(line + "\n" for line in kept).encode())

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()


class Progress:
    """A tqdm bar with loss, audio seconds per second and ETA; plain lines when stderr is not a
    terminal (logs of batch jobs stay readable)."""

    def __init__(self, total: int, start: int, enabled: bool, log_every: int) -> None:
        self.enabled, self.total, self.log_every = enabled, total, log_every
        self.bar = None
        self.t0, self.start = time.time(), start
        if enabled and sys.stderr.isatty() and not os.environ.get("ELP_FAST_PLAIN_PROGRESS"):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float, audio_per_s: float, extra: Optional[str] = None) -> None:
        if not self.enabled:
            return
        text = f"loss {loss:.4f}  {audio_per_s:,.1f} audio-s/s" + (f"  {extra}" if extra else "")
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(text, refresh=False)
        elif step % self.log_every == 0 or step == self.total:
            done = step - self.start
            rate = done / max(time.time() - self.t0, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            print(f"step {step}/{self.total}  {text}  ETA {format_seconds(eta)}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_seconds(s: float) -> str:
    if s == float("inf"):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
