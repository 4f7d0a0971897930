import os
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

pytest_plugins = ["fid_fixtures"]  # FID fixtures shared by test_fid.py and test_eval.py
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_cfg(*overrides, config_name="config"):
    """The composed config exactly as gl-train would see it (without the hydra node)."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))
