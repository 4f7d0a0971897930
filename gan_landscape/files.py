"""Owns how files are written and read: atomic replaces, JSON, JSON-lines, and the one cache folder.

Every file the package writes goes through `atomic_write_bytes` (or `atomic_save` for torch and
numpy payloads): a reader, or a run started beside this one, never sees half a file. JSON-lines files
(metrics, fid records, a sweep's job list) are appended one line at a time and read back skipping
a line a kill cut short.
"""
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temp file in the same dir, then rename: a reader never sees half a file. The file
    gets the mode a plain open() would (0666 minus the umask), not mkstemp's private 0600."""
    atomic_save(path, lambda f: f.write(data))


def atomic_save(path, write) -> None:
    """`write(f)` into a temp file beside `path` (f is a binary file object), then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder) -> list[Path]:
    """Temp files left by writes that a kill interrupted (`.<name>.<random>`)."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.*") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def plain(x):
    """json.dumps fallback for tensors, numpy scalars and arrays."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=plain) + "\n").encode())


def read_json(path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def append_jsonl(path, record: dict) -> None:
    """One line, appended in one write (a line is never interleaved with another process's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, default=plain) + "\n")


def read_jsonl(path) -> list[dict]:
    """The records of a .jsonl file; a line cut short by a kill (or not a mapping) is skipped."""
    path = Path(path)
    recs = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            recs.append(rec)
    return recs


def write_jsonl(path, records: list[dict]) -> None:
    """Rewrite a .jsonl file whole (atomically): used to drop records past a resumed step."""
    text = "".join(json.dumps(r, default=plain) + "\n" for r in records)
    atomic_write_bytes(path, text.encode())


def cache_dir() -> Path:
    """The package's one cache folder: data fingerprints, compiled kernels."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gan-landscape"
