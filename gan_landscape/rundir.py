"""What a run leaves in its directory: metrics.jsonl, summary.json, and its status.

A run dir's summary.json says `status`: running, finished, diverged or failed. A finished run is
never retrained or overwritten; anything else resumes from its last checkpoint.
"""
import json
import os
import tempfile
from pathlib import Path

FINISHED = "finished"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same dir, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def summary(self) -> dict:
        return read_json(self.summary_path, {})

    def is_finished(self) -> bool:
        return self.summary().get("status") == FINISHED

    def update_summary(self, **fields) -> dict:
        summary = {**self.summary(), **fields}
        write_json(self.summary_path, summary)
        return summary

    def log_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, default=_plain) + "\n")

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past a resumed checkpoint's step, so a resumed run's log has no repeats."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= after_step]
        atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
