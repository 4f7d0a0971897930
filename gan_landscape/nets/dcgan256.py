"""The DCGAN for 256-px LSUN, with a spectral-norm D (DCGenerator256 / SNDCDiscriminator256 in the
authors' networks.py). Layer names follow theirs (`model.<index>`, `proj`). Like theirs, the depth
follows the image size, so 64 and 128 px give the same design, shallower, for cheaper runs.

Init as theirs: orthogonal on every D weight; G keeps PyTorch's default init, because their Xavier
init only touches nn.Linear / nn.Conv2d and this G is all ConvTranspose2d. No layer has a bias.
"""
import torch
import torch.nn as nn

from gan_landscape.nets.cnn import scale, sn_ortho

SIZES = (64, 128, 256)  # the paper uses 256


class Generator(nn.Module):
    """z as a 1x1 map -> 4x4 at (size / 8) nf channels -> x2 stages halving channels down to nf
    -> a last x2 stage to 3 channels (at 256 px: 4x4 at 32 nf, five middle stages)."""

    def __init__(self, nf: int, z_dim: int = 128, size: int = 256):
        super().__init__()
        self.z_dim = z_dim
        mult = size // 8
        layers = [nn.ConvTranspose2d(z_dim, nf * mult, 4, 1, 0, bias=False),
                  nn.BatchNorm2d(nf * mult), nn.ReLU()]
        while mult > 1:
            layers += [nn.ConvTranspose2d(nf * mult, nf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(nf * mult // 2), nn.ReLU()]
            mult //= 2
        layers += [nn.ConvTranspose2d(nf, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.view(z.shape[0], z.shape[1], 1, 1))


class Discriminator(nn.Module):
    """Stride-2 4x4 SN convs doubling channels from nf down to 4x4 (32 nf at 256 px) -> SN linear."""

    def __init__(self, nf: int, size: int = 256):
        super().__init__()
        layers = [sn_ortho(nn.Conv2d(3, nf, 4, 2, 1, bias=False)), nn.LeakyReLU(0.1)]
        side, mult = size // 2, 1
        while side > 4:
            layers += [sn_ortho(nn.Conv2d(nf * mult, nf * mult * 2, 4, 2, 1, bias=False)),
                       nn.LeakyReLU(0.1)]
            side, mult = side // 2, mult * 2
        self.model = nn.Sequential(*layers)
        self.proj = sn_ortho(nn.Linear(nf * mult * 16, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.model(x).flatten(1)).view(-1)


def generator(m, width: float, size: int) -> Generator:
    return Generator(scale(m.base, width), m.z_dim, size)


def discriminator(m, width: float, size: int) -> Discriminator:
    return Discriminator(scale(m.base, width), size)
