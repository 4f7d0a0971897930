"""What a run leaves in its directory: config.yaml, metrics.jsonl, summary.json, and its status.

summary.json says `status` (running, finished, diverged or failed) and `identity`, the hash of the
config that defines the run (identity.py). It is rewritten whole at every status change, so no
field of an earlier state (an old error) survives. A finished or diverged run is never retrained or
overwritten; a running or failed one resumes from its last good checkpoint. A dir bound to another
identity is refused, never resumed into.
"""
import json
import os
import tempfile
from pathlib import Path

from .cli import UserError
from .identity import differences

RUNNING, FINISHED, DIVERGED, FAILED = "running", "finished", "diverged", "failed"
FINAL = (FINISHED, DIVERGED)


class RunDirError(UserError):
    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same dir, then rename: a reader never sees half a file. The file
    gets the mode a plain open() would (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temp files left by writes that a kill interrupted (`.<name>.<random>`)."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.*") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_plain) + "\n").encode())


def read_json(path: Path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def _plain(x):
    """json.dumps fallback for tensors, numpy scalars and arrays."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


class RunDir:
    """A run's folder. Creating the object touches nothing on disk; `create` does."""

    def __init__(self, path):
        self.path = Path(path)

    def create(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def summary(self) -> dict:
        try:
            return read_json(self.summary_path, {})
        except ValueError:  # a summary cut short by a kill before atomic writes: start over
            return {}

    @property
    def status(self) -> str | None:
        return self.summary().get("status")

    def is_final(self) -> bool:
        return self.status in FINAL

    def check_identity(self, identity: str, defining: dict) -> None:
        """Refuse a dir that holds another run, naming both and what differs."""
        held = self.summary().get("identity")
        if held is None or held == identity:
            return
        old = read_json(self.path / "identity.json", {}) or {}
        diff = "; ".join(differences(old, defining)[:4]) or "see its config.yaml"
        raise RunDirError(f"{self.path} holds another run (identity {held}, this config is {identity}: "
                          f"{diff}); delete it or choose another dir")

    def write_summary(self, **fields) -> dict:
        """Rewrite summary.json whole: status changes never inherit an old state's fields."""
        write_json(self.summary_path, fields)
        return fields

    def add_to_summary(self, **fields) -> dict:
        """Add results to the current state (gl-eval's FIDs), keeping its status."""
        summary = {**self.summary(), **fields}
        write_json(self.summary_path, summary)
        return summary

    def log_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_plain) + "\n")

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past a resumed checkpoint's step (and a line a kill cut short)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        keep = []
        for ln in path.read_text().splitlines():
            try:
                if json.loads(ln).get("step", 0) <= after_step:
                    keep.append(ln)
            except ValueError:
                continue
        atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
