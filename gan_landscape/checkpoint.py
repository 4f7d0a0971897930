"""Checkpoints: `<run>/checkpoints/step_0001000.pt`, written atomically.

A checkpoint is a dict with at least `step` and `config` (the run's resolved config as a plain
container), plus whatever the trainable saves (nets, optimisers, RNG states). Step 0 is always kept:
the landscape tools measure paths from the initial parameters. A checkpoint that does not load (a
disk fault, a kill on a filesystem without atomic rename) is skipped on resume, saying so, and the
newest one that loads is used.
"""
import io
import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from .cli import UserError
from .rundir import atomic_write_bytes, remove_stale_temps

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^step_(\d{7,})\.pt$")


class CheckpointError(UserError):
    pass


def ckpt_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def path_for(run_dir, step: int) -> Path:
    return ckpt_dir(run_dir) / f"step_{step:07d}.pt"


def list_steps(run_dir) -> list[int]:
    d = ckpt_dir(run_dir)
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := PATTERN.match(p.name)))


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


def loadable(run_dir, steps=None, map_location="cpu"):
    """(step, state) of the newest checkpoint that loads, among `steps` (default: all), newest
    first; each one skipped is logged with why. (None, None) when none loads."""
    for step in sorted(list_steps(run_dir) if steps is None else steps, reverse=True):
        try:
            return step, load(path_for(run_dir, step), map_location)
        except CheckpointError as e:
            log.warning(f"skipped {e} (resuming from an older checkpoint)")
    return None, None


def latest(run_dir, map_location="cpu") -> dict | None:
    """The newest checkpoint that loads (for tools reading a finished run)."""
    return loadable(run_dir, map_location=map_location)[1]


def clean(run_dir) -> None:
    """Remove temp files that killed checkpoint writes left behind."""
    for p in remove_stale_temps(ckpt_dir(run_dir)):
        log.info(f"removed {p} (left by an interrupted write)")


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
