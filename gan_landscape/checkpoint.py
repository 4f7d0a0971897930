"""Checkpoints: `<run>/checkpoints/step_0001000.pt`, written atomically.

A checkpoint is a dict with at least `step` and `config` (the run's resolved config as a plain
container), plus whatever the trainer saves (nets, optimisers, RNG states). Step 0 is always kept:
the landscape tools measure paths from the initial parameters.
"""
import io
import random
import re
from pathlib import Path

import numpy as np
import torch

from .rundir import atomic_write_bytes

PATTERN = re.compile(r"step_(\d{7,})\.pt$")


class CheckpointError(RuntimeError):
    pass


def ckpt_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def path_for(run_dir, step: int) -> Path:
    return ckpt_dir(run_dir) / f"step_{step:07d}.pt"


def list_steps(run_dir) -> list[int]:
    d = ckpt_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := PATTERN.search(p.name)))


def save(run_dir, step: int, state: dict, keep: int | None = None) -> Path:
    buf = io.BytesIO()
    torch.save({**state, "step": step}, buf)
    path = path_for(run_dir, step)
    atomic_write_bytes(path, buf.getvalue())
    if keep:
        for old in [s for s in list_steps(run_dir) if s not in (0, step)][:-keep]:
            path_for(run_dir, old).unlink(missing_ok=True)
    return path


def load(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which one, not a pickle traceback
        raise CheckpointError(f"corrupt checkpoint {path}: {type(e).__name__}: {e}") from None


def latest(run_dir, map_location="cpu") -> dict | None:
    """The newest readable checkpoint; a corrupt newest one is reported, never silently skipped."""
    steps = list_steps(run_dir)
    return load(path_for(run_dir, steps[-1]), map_location) if steps else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
