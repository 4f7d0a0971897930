"""The paper's image nets at any width: build_generator / build_discriminator / build_nets, and
S independent seeds of them as one computation: build_stacked.

cfg is the full run config; the nets read cfg.model (name, base, z_dim, ...), cfg.width and
cfg.dataset.image_size. Channel counts are round(base * width), so width 1.0 is the paper's
"regular" net, 0.5 its "half" and 0.25 its "quarter" net.

Every generator has `z_dim` and maps z [B, z_dim] to images [B, 3, H, W] in [-1, 1]; every
discriminator maps images to raw logits [B]. Forward passes do no host syncs and draw no random
numbers on the Python side, so a training step can be captured in a CUDA graph. The forward code
also runs on stacked activations (stacked.py): it keeps the batch dimension first in every reshape
and mixes no channels outside the layers.
"""
import torch
import torch.nn as nn

from gan_landscape.cli import ConfigError
from gan_landscape.nets import cnn, dcgan256, resnet
from gan_landscape.nets.stacked import StackedDiscriminator, StackedGenerator, load_seed_state_dict, seed_state_dict

NETS = {"cnn": cnn, "resnet": resnet, "cnn256": dcgan256}

__all__ = ["NETS", "build_generator", "build_discriminator", "build_nets", "build_stacked",
           "seed_state_dict", "load_seed_state_dict", "StackedGenerator", "StackedDiscriminator"]


def _net(cfg):
    name = cfg.model.name
    if name not in NETS:
        raise ConfigError(f"model={name}: not an image model; choose one of: {', '.join(NETS)}")
    size = cfg.dataset.image_size
    sizes = tuple(NETS[name].SIZES)
    if size not in sizes:
        raise ConfigError(f"model '{name}' supports image sizes {', '.join(map(str, sizes))} "
                          f"px; got dataset.image_size={size}")
    return NETS[name]


def build_generator(cfg) -> nn.Module:
    return _net(cfg).generator(cfg.model, float(cfg.width), cfg.dataset.image_size)


def build_discriminator(cfg) -> nn.Module:
    return _net(cfg).discriminator(cfg.model, float(cfg.width), cfg.dataset.image_size)


def build_nets(cfg) -> tuple[nn.Module, nn.Module]:
    return build_generator(cfg), build_discriminator(cfg)


def build_stacked(cfg, seeds: list[int]) -> tuple[StackedGenerator, StackedDiscriminator]:
    """G and D of len(seeds) independent GANs, on the CPU: seed s of the stack starts as the nets
    build_nets(cfg) makes right after torch.manual_seed(s). The caller's RNG state is untouched."""
    gens, discs = [], []
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        for seed in seeds:
            torch.default_generator.manual_seed(seed)  # the CPU generator: it draws every init
            g, d = build_nets(cfg)
            gens.append(g)
            discs.append(d)
    return StackedGenerator(gens), StackedDiscriminator(discs)
