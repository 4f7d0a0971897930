"""Exact 2x bilinear upsampling (align_corners=False) from elementwise GPU-friendly kernels.

On CUDA, `F.interpolate(mode="bilinear")` on NCHW tensors runs one thread per output pixel that
loops over every batch item and channel, which made it 63% of a ResNet iteration. At a factor of 2
the interpolation weights are fixed, so each axis is two phases on an edge-replicated input:

    out[2i]     = 0.75 x[i] + 0.25 x[i-1]
    out[2i + 1] = 0.75 x[i] + 0.25 x[i+1]     (x[-1] = x[0], x[n] = x[n-1])

i.e. a handful of bandwidth-bound elementwise kernels over all elements. The backward is the exact
adjoint written the same way: 10 kernels, where autograd's slice and pad bookkeeping takes 26.
Equal to `F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)` up to rounding.
"""
import torch
import torch.nn.functional as F


def _up_axis(xp: torch.Tensor, dim: int) -> torch.Tensor:
    """2x along `dim` of a tensor already padded by one replicated element on each side there."""
    n = xp.shape[dim] - 2
    mid = xp.narrow(dim, 1, n)
    even = torch.lerp(mid, xp.narrow(dim, 0, n), 0.25)
    odd = torch.lerp(mid, xp.narrow(dim, 2, n), 0.25)
    return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)


def _up_axis_adjoint(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Transpose of the 2x upsampling along `dim` (unpadded): sums each input's four taps."""
    g = g.unflatten(dim, (-1, 2))
    even, odd = g.select(dim + 1, 0), g.select(dim + 1, 1)
    n = even.shape[dim]
    # x[i] feeds out[2i-1] and out[2i+2] with weight 0.25; at the borders the clamped tap feeds
    # x[0] from out[0] and x[n-1] from out[2n-1] instead.
    before = torch.cat([even.narrow(dim, 0, 1), odd.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([even.narrow(dim, 1, n - 1), odd.narrow(dim, n - 1, 1)], dim)
    return torch.lerp(even + odd, before + after, 0.25)


class _Up2x(torch.autograd.Function):
    """2x along dims h then w (2, 3 for NCHW, 1, 2 for NHWC) of a 4-D tensor."""

    @staticmethod
    def forward(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        pad = (1, 1, 1, 1) if (h, w) == (2, 3) else (0, 0, 1, 1, 1, 1)
        xp = F.pad(x, pad, mode="replicate")
        return _up_axis(_up_axis(xp, w), h)  # along w (on all padded rows), then along h

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.dims = inputs[1:]  # linear: the backward needs no tensors

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, w = ctx.dims
        return _up_axis_adjoint(_up_axis_adjoint(g, h), w), None, None


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W], as F.interpolate's bilinear with align_corners=False.
    A channels_last input is upsampled in that layout and gives a channels_last output."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return _Up2x.apply(x.permute(0, 2, 3, 1), 1, 2).permute(0, 3, 1, 2)
    return _Up2x.apply(x, 2, 3)
