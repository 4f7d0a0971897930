import os
from pathlib import Path

import pytest
import torch

import gan_landscape  # noqa: F401  (first: it keeps CPU-only torch off triton)
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
SHARED = ROOT.parent / "shared"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_cfg(*overrides, config_name="config"):
    """The composed config exactly as gl-train would see it (without the hydra node)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture
def cfg_factory():
    return make_cfg
