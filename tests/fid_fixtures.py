"""Fixtures of the FID tests (test_fid.py, test_eval.py): random-valued Inception weights where torch
hub looks for them, private caches, and a spy on the real-image loader."""
from pathlib import Path

import pytest
import torch

from gan_landscape import data
from gan_landscape.metrics import fid


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub holds random FID weights, where pytorch-fid's own loader finds them."""
    home = tmp_path_factory.mktemp("torch_home")
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(home / "hub"))
    fid.random_weights(fid.hub_weights_path())
    yield home
    torch.hub.set_dir(old)


@pytest.fixture(scope="session")
def weights(torch_home) -> Path:
    return Path(torch_home) / "hub" / "checkpoints" / fid.WEIGHTS_FILE


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Fingerprint and FID caches under tmp_path; a fresh process's memory of references."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fid._REFS.clear()


@pytest.fixture
def reads(monkeypatch):
    """Counts how often real images are read (the real loader still does the reading)."""
    calls, real = [], data.load_images

    def spy(ds, split="train", limit=None):
        calls.append((ds.name, split, limit))
        return real(ds, split, limit)
    monkeypatch.setattr(data, "load_images", spy)
    return calls
