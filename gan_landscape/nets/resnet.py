"""The paper's SN-ResNet G/D for 32 px (CIFAR-10) and 48 px (STL-10).

Follows networks.py, gen_resblocks.py and disc_resblocks.py of the authors' code, including their
departures from Miyato's SNGAN: at 32 px D has half G's width, G ends in a 1x1 conv, and every D
block downsamples (32 -> 16 -> 8 -> 4 -> 2). `bottleneck` halves the hidden channels of every block.
Init as theirs: PyTorch defaults in G, orthogonal on every (spectral-normed) D weight.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from gan_landscape.nets.cnn import scale, sn_ortho
from gan_landscape.nets.upsample import upsample2x

SIZES = (32, 48)
PAPER_BASE = {32: 256, 48: 64}     # the scripts' --num_features
PAPER_D_RATIO = {32: 0.5, 48: 1.0}  # getGD_SN builds D32 with num_features // 2
BOTTOM = {32: 4, 48: 6}


def _up(x: torch.Tensor) -> torch.Tensor:
    # The authors' bilinear F.interpolate ran with PyTorch 1.1's default, align_corners=False;
    # upsample2x computes the same in elementwise kernels (see upsample.py for why).
    return upsample2x(x)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class GenBlock(nn.Module):
    def __init__(self, cin: int, cout: int, bottleneck: bool):
        super().__init__()
        h = cout // 2 if bottleneck else cout
        self.c1 = nn.Conv2d(cin, h, 3, 1, 1)
        self.c2 = nn.Conv2d(h, cout, 3, 1, 1)
        self.b1 = nn.BatchNorm2d(cin)
        self.b2 = nn.BatchNorm2d(h)
        self.c_sc = nn.Conv2d(cin, cout, 1)  # every G block upsamples, so the shortcut is learnt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(_up(F.relu(self.b1(x))))
        h = self.c2(F.relu(self.b2(h)))
        return self.c_sc(_up(x)) + h


class DiscBlock(nn.Module):
    """Pre-activation block that always downsamples; hidden width follows the *input* width."""

    def __init__(self, cin: int, cout: int, bottleneck: bool):
        super().__init__()
        h = cin // 2 if bottleneck else cin
        self.c1 = sn_ortho(nn.Conv2d(cin, h, 3, 1, 1))
        self.c2 = sn_ortho(nn.Conv2d(h, cout, 3, 1, 1))
        self.c_sc = sn_ortho(nn.Conv2d(cin, cout, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(_lrelu(self.c1(_lrelu(x))))
        return F.avg_pool2d(self.c_sc(x), 2) + F.avg_pool2d(h, 2)


class OptimizedBlock(nn.Module):
    """D's first block: no activation on the raw image, pool before the shortcut conv."""

    def __init__(self, cin: int, cout: int, bottleneck: bool):
        super().__init__()
        h = cout // 2 if bottleneck else cout
        self.c1 = sn_ortho(nn.Conv2d(cin, h, 3, 1, 1))
        self.c2 = sn_ortho(nn.Conv2d(h, cout, 3, 1, 1))
        self.c_sc = sn_ortho(nn.Conv2d(cin, cout, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(_lrelu(self.c1(x))), 2)
        return self.c_sc(F.avg_pool2d(x, 2)) + h


class Generator(nn.Module):
    """l1 -> block2..block4 (each x2 upsampling) -> b5 -> ReLU -> 1x1 conv5 -> tanh."""

    def __init__(self, chans: list[int], z_dim: int, bottom: int, bottleneck: bool):
        super().__init__()
        self.z_dim, self.bottom = z_dim, bottom
        self.l1 = nn.Linear(z_dim, chans[0] * bottom * bottom)
        for i in range(3):
            setattr(self, f"block{i + 2}", GenBlock(chans[i], chans[i + 1], bottleneck))
        self.b5 = nn.BatchNorm2d(chans[-1])
        self.conv5 = nn.Conv2d(chans[-1], 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.l1(z).view(z.shape[0], -1, self.bottom, self.bottom)
        h = self.block4(self.block3(self.block2(h)))
        return torch.tanh(self.conv5(F.relu(self.b5(h))))


class Discriminator(nn.Module):
    """block1 (optimized) -> block2... (all downsample) -> LReLU -> global sum pool -> SN linear."""

    def __init__(self, chans: list[int], bottleneck: bool):
        super().__init__()
        self.n_blocks = len(chans)
        self.block1 = OptimizedBlock(3, chans[0], bottleneck)
        for i in range(1, len(chans)):
            setattr(self, f"block{i + 1}", DiscBlock(chans[i - 1], chans[i], bottleneck))
        self.proj = sn_ortho(nn.Linear(chans[-1], 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return self.proj(_lrelu(x).sum(dim=(2, 3))).view(-1)


def _nf(m, width: float, size: int) -> int:
    return scale(PAPER_BASE[size] if m.base is None else m.base, width)


def generator(m, width: float, size: int) -> Generator:
    nf = _nf(m, width, size)
    chans = [nf] * 4 if size == 32 else [8 * nf, 4 * nf, 2 * nf, nf]
    return Generator(chans, m.z_dim, BOTTOM[size], m.bottleneck)


def discriminator(m, width: float, size: int) -> Discriminator:
    ratio = PAPER_D_RATIO[size] if m.d_ratio is None else m.d_ratio
    nf = max(1, int(_nf(m, width, size) * ratio))
    chans = [nf] * 4 if size == 32 else [nf * 2**k for k in range(5)]
    return Discriminator(chans, m.bottleneck)
