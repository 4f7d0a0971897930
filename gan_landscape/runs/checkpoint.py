"""Checkpoints: `<run>/checkpoints/step_0001000.pt`, written atomically.

A checkpoint is a dict with at least `step` and `config` (the run's resolved config as a plain
container), plus whatever the trainable saves (nets, optimisers, RNG states). Step 0 is always kept:
the landscape tools measure paths from the initial parameters. A checkpoint that does not load (a
disk fault, a kill on a filesystem without atomic rename) is skipped on resume, saying so, and the
newest one that loads is used.

Loading never runs code a file carries (`torch.load(weights_only=True)`): tensors, plain containers
and numbers load, and the numeric numpy arrays some trainables keep (first_order.py); a file whose
pickle names anything else (a function, a class) is refused, naming the file and what it asks for.
Checkpoints from others and the authors' released generators are plain weights files.
"""
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from gan_landscape.cli import UserError
from gan_landscape.files import atomic_write_bytes, remove_stale_temps

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^step_(\d{7,})\.pt$")


class CheckpointError(UserError):
    pass


class UnsafeCheckpointError(UserError):
    """Not a CheckpointError: a resume must not fall back past it to an older checkpoint."""


# numpy's numeric arrays unpickle through these: no code of the file's choosing runs
NUMPY_ARRAYS = [(getattr(np, "_core", None) or np.core).multiarray._reconstruct, np.ndarray, np.dtype,
                *{type(np.dtype(t)) for t in ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "?")}]


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
    if keep:  # step 0, this step and the newest others: `keep` steps besides step 0
        older = [s for s in list_steps(run_dir) if s not in (0, step)]
        for old in older[:max(0, len(older) - (keep - 1))]:
            path_for(run_dir, old).unlink(missing_ok=True)
    return path


def load(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(NUMPY_ARRAYS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on a foreign pickle protocol: the error says it
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one, not a pickle traceback
        names = _unsafe_globals(path, e)
        if names:
            raise UnsafeCheckpointError(f"refused {path}: loading it would run code it names "
                                        f"({', '.join(names[:3])}); only plain weights files load") from None
        raise CheckpointError(f"corrupt checkpoint {path}: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    """The line of torch's error that says what is wrong (its weights-only message is 8 lines)."""
    found = re.search(r"WeightsUnpickler error: \s*(.+)", str(e))
    text = found.group(1) if found else str(e)
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".strip()


def _unsafe_globals(path: Path, e: Exception) -> list[str]:
    """What a file that failed to load would have imported beyond the allowed plain types."""
    allowed = {f"{g.__module__}.{g.__name__}" for g in NUMPY_ARRAYS}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)  # reads, runs nothing
    except Exception:  # not a zip checkpoint: torch's message names the global, if that was it
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        names = [found.group(1)] if found else []
    return [n for n in names if n not in allowed]


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

