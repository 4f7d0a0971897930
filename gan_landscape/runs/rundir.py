"""What a run leaves in its directory: config.yaml, metrics.jsonl, summary.json, and its status.

summary.json says `status` (running, finished, diverged or failed) and `identity`, the hash of the
config that defines the run (identity.py). It is rewritten whole at every status change, so no
field of an earlier state (an old error) survives. A finished or diverged run is never retrained or
overwritten; a running or failed one resumes from its last good checkpoint. A dir bound to another
identity is refused, never resumed into.
"""
import os
from pathlib import Path

from omegaconf import OmegaConf

from gan_landscape.cli import UserError
from gan_landscape.files import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from gan_landscape.runs.identity import differences

RUNNING, FINISHED, DIVERGED, FAILED = "running", "finished", "diverged", "failed"
FINAL = (FINISHED, DIVERGED)


class RunDirError(UserError):
    pass


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

    def start(self, cfg, defining: dict) -> None:
        """Create the dir; config.yaml (the resolved config) and identity.json once, at creation."""
        self.create()
        if not (self.path / "config.yaml").exists():
            OmegaConf.save(cfg, self.path / "config.yaml", resolve=True)
            write_json(self.path / "identity.json", defining)

    def config(self) -> dict:
        """The run's resolved config.yaml as plain data ({} where absent)."""
        path = self.path / "config.yaml"
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.exists() else {}

    def write_artifact(self, name: str, obj) -> None:
        """What a trainable produced, at `<dir>/<name>`: an image batch in [-1, 1] as a grid, a dict
        as JSON (appended as a line for a .jsonl name), or a callable that writes the file given."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jsonl"):
            append_jsonl(path, obj)
        elif isinstance(obj, dict):
            write_json(path, obj)
        elif callable(obj):
            obj(path)
        else:
            from torchvision.utils import save_image  # torchvision: 3 s of imports, images only
            save_image(obj, path, nrow=8, normalize=True, value_range=(-1, 1))

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
        append_jsonl(self.path / "metrics.jsonl", record)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past a resumed checkpoint's step (and a line a kill cut short)."""
        if (self.path / "metrics.jsonl").exists():
            write_jsonl(self.path / "metrics.jsonl", [r for r in self.metrics() if r.get("step", 0) <= after_step])


def is_run_dir(path: Path) -> bool:
    """gl-train made it: summary.json (written at start), or checkpoints from before it was."""
    return (path / "summary.json").is_file() or (path / "checkpoints").is_dir()


def find_run_dirs(root) -> list[Path]:
    """root itself if it is a run dir, else every run dir below it, sorted. Hidden folders
    (.submitit, .venv) and the inside of a run dir are not searched."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found = []
    for folder, subdirs, _ in os.walk(root):
        path = Path(folder)
        if path != root and is_run_dir(path):
            found.append(path)
            subdirs[:] = []
        else:
            subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
    return sorted(found)
