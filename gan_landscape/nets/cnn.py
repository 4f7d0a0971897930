"""The paper's spectral-norm DCGAN for 32 px (CIFAR-10) and 48 px (STL-10).

Follows DCGenerator32 / SNDCDiscriminator32 in the authors' networks.py. Layer names match their
released generators (l1, deconv{1,2,3}, deconv{1,2,3}_bn, conv4), so those load with strict=True.
The 48-px nets are the same classes with a 6x6 instead of a 4x4 bottom feature map.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

SIZES = {32: 4, 48: 6}  # image size -> side of G's first (and D's last) feature map


def scale(base: int, width: float) -> int:
    """Channel count of a net `width` times as wide as the paper's base."""
    return max(1, round(base * width))


def sn_ortho(layer: nn.Module) -> nn.Module:
    """Orthogonal init then spectral norm (1 power iteration), as every D in networks.py.

    The authors initialise after wrapping, through `weight.data`, which shares storage with
    `weight_orig`; initialising first is the same thing, as the SN vectors u, v do not depend on it.
    """
    nn.init.orthogonal_(layer.weight)
    return spectral_norm(layer)


class Generator(nn.Module):
    def __init__(self, nf: int, z_dim: int = 128, bottom: int = 4):
        super().__init__()
        self.z_dim, self.nf, self.bottom = z_dim, nf, bottom
        self.l1 = nn.Linear(z_dim, 8 * nf * bottom * bottom)
        for i, (cin, cout) in enumerate([(8 * nf, 4 * nf), (4 * nf, 2 * nf), (2 * nf, nf)], 1):
            setattr(self, f"deconv{i}", nn.ConvTranspose2d(cin, cout, 4, 2, 1))
            setattr(self, f"deconv{i}_bn", nn.BatchNorm2d(cout))
        self.conv4 = nn.Conv2d(nf, 3, 3, 1, 1)
        # The authors apply Xavier to nn.Linear / nn.Conv2d by exact type, so the transposed convs
        # keep PyTorch's default init.
        for layer in (self.l1, self.conv4):
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.l1(z).view(z.shape[0], -1, self.bottom, self.bottom)
        for i in range(1, 4):
            x = getattr(self, f"deconv{i}")(x)
            x = F.relu(getattr(self, f"deconv{i}_bn")(x))
        return torch.tanh(self.conv4(x))


class Discriminator(nn.Module):
    def __init__(self, nf: int, bottom: int = 4):
        super().__init__()
        # (in, out, kernel, stride): a 3x3 conv then a stride-2 4x4 conv at each of three scales.
        chans = [3, nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf]
        for i in range(1, 8):
            k, s = (3, 1) if i % 2 else (4, 2)
            setattr(self, f"conv{i}", sn_ortho(nn.Conv2d(chans[i - 1], chans[i], k, s, 1)))
        self.proj = sn_ortho(nn.Linear(8 * nf * bottom * bottom, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 8):
            x = F.leaky_relu(getattr(self, f"conv{i}")(x), 0.1)
        return self.proj(x.flatten(1)).view(-1)


def generator(m, width: float, size: int) -> Generator:
    return Generator(scale(m.base, width), m.z_dim, SIZES[size])


def discriminator(m, width: float, size: int) -> Discriminator:
    return Discriminator(scale(m.base, width), SIZES[size])
