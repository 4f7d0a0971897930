"""The image kind: SN-CNN, SN-ResNet and DCGAN-256 GANs on CIFAR-10, STL-10 and LSUN (ImageGAN).

A stack of S seeds is one computation but S run dirs (`<job>/s<seed>/`): each seed's checkpoints,
samples and FID are its own. The data's fingerprint is part of each run's identity.
"""
from gan_landscape.config import BOOL, NONNEG_INT, POS_INT

NAME = "{dataset}-{model}-w{width}-{loss}-{seeds}"
REPORT = "image"  # its section in gl-report (report.py SECTIONS)
LANDSCAPE = "image"  # how gl-landscape sets up its game (landscape.py)
SPLIT_SEEDS = True
IMAGES = True
CPU_THREADS = None  # torch's default
RULES = {"dataset.image_size": POS_INT, "dataset.num_workers": NONNEG_INT, "dataset.download": BOOL,
         "dataset.check_integrity": BOOL, "dataset.resident": BOOL, "train.batch_size": POS_INT}


def check(cfg) -> None:
    from gan_landscape import data  # torchvision: 3 s of imports the other kinds do not need
    data.image_data(cfg.dataset)


def fingerprint(cfg) -> str | None:
    """None while the data is not on disk (the trainable downloads it, then it is asked again)."""
    from gan_landscape import data
    try:
        return data.fingerprint(cfg.dataset)
    except data.DataError:
        return None


def build(cfg, device):
    from gan_landscape.kinds.image_gan import ImageGAN
    return ImageGAN(cfg, device, [cfg.seed + k for k in range(cfg.train.num_seeds)])
