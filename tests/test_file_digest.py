"""file_digest: content, not place, names a data file; big files are sampled; digests are cached."""
import json
import os

from gan_landscape.data import file_digest as fd


def _digest(path):
    return fd.file_digest(path)


def test_same_bytes_elsewhere_same_digest_other_bytes_other_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a, b, c = tmp_path / "a.bin", tmp_path / "moved" / "a.bin", tmp_path / "c.bin"
    b.parent.mkdir()
    a.write_bytes(b"cifar" * 100)
    b.write_bytes(b"cifar" * 100)
    c.write_bytes(b"cifar" * 99 + b"cifaR")
    assert _digest(a) == _digest(b) != _digest(c)


def test_big_files_are_hashed_by_size_and_three_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fd, "FULL_HASH_BYTES", 64)
    monkeypatch.setattr(fd, "SAMPLE_BYTES", 8)
    base = bytes(range(200))
    sampled, between = tmp_path / "s.bin", tmp_path / "b.bin"
    sampled.write_bytes(base[:100] + b"\xff" + base[101:])  # byte 100 lies in the middle sample
    between.write_bytes(base[:50] + b"\xff" + base[51:])    # byte 50 lies between samples
    ref = tmp_path / "ref.bin"
    ref.write_bytes(base)
    assert _digest(sampled) != _digest(ref)
    assert _digest(between) == _digest(ref)  # the price of not reading 100 GB each run


def test_digests_are_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "data.bin"
    f.write_bytes(b"x" * 10)
    first = _digest(f)
    cache = tmp_path / "cache" / "gan-landscape" / "fingerprints.json"
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [first]
    entries = {k: "from-cache" for k in entries}
    cache.write_text(json.dumps(entries))
    assert _digest(f) == "from-cache"
    os.utime(f, ns=(1, 1))  # touched: the cache entry no longer applies
    assert _digest(f) == first
