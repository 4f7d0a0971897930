"""Content digests of data files, cached so that a 100 GB LSUN lmdb is not re-read by every run."""
import hashlib
import json
import logging
from pathlib import Path

from gan_landscape.files import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

FULL_HASH_BYTES = 256 << 20   # files up to this size are hashed whole
SAMPLE_BYTES = 4 << 20        # bigger ones: size + this much from the start, middle and end


def file_digest(path: Path) -> str:
    """sha256 of a file's size and bytes (sampled past FULL_HASH_BYTES), cached per (path, size, mtime)."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    cache_file = cache_dir() / "fingerprints.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256(str(st.st_size).encode())
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:  # a 2.6 GB STL-10 or a 100 GB LSUN lmdb: sampled, or every run would wait minutes
            for offset in (0, st.st_size // 2, st.st_size - SAMPLE_BYTES):
                f.seek(offset)
                h.update(f.read(SAMPLE_BYTES))
    cache[key] = h.hexdigest()
    try:
        atomic_write_bytes(cache_file, json.dumps(cache).encode())
    except OSError as e:
        log.warning("could not write %s (%s)", cache_file, e)
    return cache[key]

