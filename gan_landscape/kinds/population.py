"""The population kind: Li et al.'s exact first-order dynamics of a GAN on two point masses
(first_order.py), every D setting from the same random starts; no batches, no GAN loss or width."""
from gan_landscape.config import POS_INT, nullable

NAME = "{dataset}-{model}-{seeds}"
REPORT = "population"  # its section in gl-report (report.py SECTIONS)
RULES = {"train.batch_size": nullable(POS_INT)}


def check(cfg) -> None:
    pass


def build(cfg, device):
    from gan_landscape.kinds.first_order import FirstOrderRun
    return FirstOrderRun(cfg)
