"""gan-landscape: reproduce and extend 'Towards a Better Global Loss Landscape of GANs'."""

__version__ = "0.1.0"

from omegaconf import OmegaConf

# configs/recipe: the image runs' lr_decay_start is half of train.iters (the paper: 50k of 100k), for
# any train.iters. Registered on import of the package, before any config is composed.
OmegaConf.register_new_resolver("gl_fraction_of", lambda n, f: int(n * f), replace=True)

# The structured configs the YAML's defaults lists name (`config_schema`, ...): in Hydra's
# ConfigStore before any config is composed, by whichever module of the package came first.
from gan_landscape.config import schema  # noqa: E402,F401
