"""The paper's image nets at any width: build_generator / build_discriminator / build_nets.

cfg is the full run config; the nets read cfg.model (name, base, z_dim, ...), cfg.width and
cfg.dataset.image_size. Channel counts are round(base * width), so width 1.0 is the paper's
"regular" net, 0.5 its "half" and 0.25 its "quarter" net.

Every generator has `z_dim` and maps z [B, z_dim] to images [B, 3, H, W] in [-1, 1]; every
discriminator maps images to raw logits [B]. Forward passes do no host syncs and draw no random
numbers on the Python side, so a training step can be captured in a CUDA graph.
"""
import torch.nn as nn

from . import cnn, dcgan256, resnet

NETS = {"cnn": cnn, "resnet": resnet, "cnn256": dcgan256}


def _net(cfg):
    name = cfg.model.name
    if name not in NETS:
        raise ValueError(f"unknown image model '{name}'; choose one of: {', '.join(NETS)}")
    size = cfg.dataset.image_size
    sizes = tuple(NETS[name].SIZES)
    if size not in sizes:
        raise ValueError(f"model '{name}' supports image sizes {', '.join(map(str, sizes))} "
                         f"px; got {size}")
    return NETS[name]


def build_generator(cfg) -> nn.Module:
    return _net(cfg).generator(cfg.model, float(cfg.width), cfg.dataset.image_size)


def build_discriminator(cfg) -> nn.Module:
    return _net(cfg).discriminator(cfg.model, float(cfg.width), cfg.dataset.image_size)


def build_nets(cfg) -> tuple[nn.Module, nn.Module]:
    return build_generator(cfg), build_discriminator(cfg)
