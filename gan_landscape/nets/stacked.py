"""S independent copies of one net trained as one computation: `stack(nets)`.

Layout: inside a stacked net, seed s owns the s-th block of channels (features), batch first:
activations are [B, S*C, H, W] and flat features [B, S*F]. Then a conv is a grouped conv
(groups=S), BatchNorm2d over S*C channels is per-seed BN (batch and running statistics per seed),
and activations, bilinear upsampling, pooling and sums over H, W never mix seeds. A linear layer is
a batched matmul over seeds. The single nets' forward code runs unchanged on this layout, because
its reshapes keep the batch dimension first and never name a channel count (`view(B, -1, h, w)`,
`flatten(1)`); stacking replaces only the leaf layers and keeps the containers, their names and
their forward code, so the architecture has one definition.

Every parameter and buffer of a stacked layer is the S single ones concatenated along dim 0 (S
equal leading blocks; BatchNorm's num_batches_tracked, a scalar, is shared: the seeds step
together), under the single layer's name: conv weights are the grouped conv's [S*out, in, k, k]
(4-D, so `.to(memory_format=torch.channels_last)` works), and `seed_state_dict` is a slice that
loads strictly into the single net.
Spectral norm follows torch.nn.utils.spectral_norm exactly: in train mode every forward call runs
its power iterations and updates u, v in place; sigma = u^T W v with u, v held constant.
No host syncs and no Python-side randomness: a stacked step can be captured in a CUDA graph.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.spectral_norm import SpectralNorm


def _cat(tensors) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors])


def _spectral_norm_of(layer: nn.Module) -> SpectralNorm | None:
    hooks = [h for h in layer._forward_pre_hooks.values() if isinstance(h, SpectralNorm)]
    if not hooks:
        return None
    (sn,) = hooks
    if sn.name != "weight" or sn.dim != 0:
        raise NotImplementedError(f"stacking supports spectral norm of `weight` along dim 0, "
                                  f"got {sn.name!r} along dim {sn.dim}")
    return sn


class _StackedWeights(nn.Module):
    """S layers' weight (plain or spectral-normed) and bias, each the S tensors concatenated."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.num_seeds = len(layers)
        sn = _spectral_norm_of(layers[0])
        self.power_iterations = None if sn is None else sn.n_power_iterations
        self.eps = None if sn is None else sn.eps
        # Registered in the single layer's order, so the state dict keys come in the same order.
        if sn is None:
            self.weight = nn.Parameter(_cat(l.weight for l in layers))
        bias = layers[0].bias
        self.bias = None if bias is None else nn.Parameter(_cat(l.bias for l in layers))
        if sn is not None:
            self.weight_orig = nn.Parameter(_cat(l.weight_orig for l in layers))
            self.register_buffer("weight_u", _cat(l.weight_u for l in layers))
            self.register_buffer("weight_v", _cat(l.weight_v for l in layers))

    def stacked_weight(self) -> torch.Tensor:
        """The weights, each divided by its spectral-norm estimate when spectral-normed."""
        if self.power_iterations is None:
            return self.weight
        w, S, eps = self.weight_orig, self.num_seeds, self.eps
        mat = w.reshape(S, w.shape[0] // S, -1)  # [S, out, in * k * k], a copy if channels_last
        u, v = self.weight_u.view(S, -1), self.weight_v.view(S, -1)
        if self.training and self.power_iterations > 0:
            with torch.no_grad():
                u, v = power_iteration(mat, u, v, self.power_iterations, eps)
                self.weight_v.view(S, -1).copy_(v)
                self.weight_u.view(S, -1).copy_(u)
            # u, v are now fresh tensors, not the buffers (as torch's clones): a second forward
            # before backward may update the buffers without breaking this one's graph.
        sigma = (u * torch.bmm(mat, v.unsqueeze(2)).squeeze(2)).sum(1)
        return (w.unflatten(0, (S, -1)) / sigma.view(S, *[1] * w.dim())).flatten(0, 1)


@torch.no_grad()
def power_iteration(mat: torch.Tensor, u: torch.Tensor, v: torch.Tensor, iters: int, eps: float):
    """Spectral norm's power iteration for S matrices at once: mat [S, out, in], u [S, out],
    v [S, in]; returns new (u, v) (torch.nn.utils.spectral_norm's update, seed by seed)."""
    for _ in range(iters):
        v = F.normalize(torch.bmm(u.unsqueeze(1), mat).squeeze(1), dim=1, eps=eps)
        u = F.normalize(torch.bmm(mat, v.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
    return u, v


class StackedLinear(_StackedWeights):
    """[B, S*in] -> [B, S*out]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = self.num_seeds
        w = self.stacked_weight().unflatten(0, (S, -1))  # [S, out, in]
        x = x.unflatten(1, (S, -1)).transpose(0, 1)  # [S, B, in]
        y = torch.bmm(x, w.transpose(1, 2)) if self.bias is None else \
            torch.baddbmm(self.bias.view(S, 1, -1), x, w.transpose(1, 2))
        return y.transpose(0, 1).contiguous().flatten(1)


class StackedConv2d(_StackedWeights):
    """A grouped convolution (groups=S): weight [S*out, in, k, k]."""

    def __init__(self, layers: list[nn.Conv2d]):
        super().__init__(layers)
        c = layers[0]
        if c.groups != 1 or c.padding_mode != "zeros" or isinstance(c.padding, str):
            raise NotImplementedError("stacking supports ungrouped, zero-padded convolutions")
        self.stride, self.padding, self.dilation = c.stride, c.padding, c.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.stacked_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.num_seeds)


class StackedConvTranspose2d(_StackedWeights):
    """A grouped transposed convolution (groups=S): weight [S*in, out, k, k]."""

    def __init__(self, layers: list[nn.ConvTranspose2d]):
        super().__init__(layers)
        c = layers[0]
        if c.groups != 1 or c.padding_mode != "zeros":
            raise NotImplementedError("stacking supports ungrouped, zero-padded convolutions")
        self.stride, self.padding, self.dilation = c.stride, c.padding, c.dilation
        self.output_padding = c.output_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.stacked_weight(), self.bias, self.stride, self.padding,
                                  self.output_padding, self.num_seeds, self.dilation)


def stacked_batch_norm(layers: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    """S BatchNorm2d(C) are one BatchNorm2d(S*C): its statistics are per channel, so per seed."""
    b = layers[0]
    if type(b) is not nn.BatchNorm2d or not (b.affine and b.track_running_stats) \
            or b.momentum is None:
        raise NotImplementedError("stacking supports affine BatchNorm2d with running stats and "
                                  "a fixed momentum")
    stacked = nn.BatchNorm2d(len(layers) * b.num_features, b.eps, b.momentum)
    states = [l.state_dict() for l in layers]
    stacked.load_state_dict({k: t if t.dim() == 0 else _cat(s[k] for s in states)
                             for k, t in states[0].items()})  # num_batches_tracked: shared
    return stacked


LAYERS = {nn.Linear: StackedLinear, nn.Conv2d: StackedConv2d,
          nn.ConvTranspose2d: StackedConvTranspose2d, nn.BatchNorm2d: stacked_batch_norm}


def stack(nets: list[nn.Module]) -> nn.Module:
    """Nets of one architecture as one net on the stacked layout: a copy of the first with every
    leaf layer replaced by its stacked version, so names, attributes and forward code are kept."""
    stacked, replaced = copy.deepcopy(nets[0]), set()
    for name, layer in list(stacked.named_modules()):
        if type(layer) in LAYERS:
            parent, _, leaf = name.rpartition(".")
            new = LAYERS[type(layer)]([net.get_submodule(name) for net in nets])
            setattr(stacked.get_submodule(parent), leaf, new)
            replaced.add(new)
    for name, m in stacked.named_modules():
        own = [k for k, t in [*m._parameters.items(), *m._buffers.items()] if t is not None]
        if own and m not in replaced:
            raise NotImplementedError(f"cannot stack {name or 'the net'} ({type(m).__name__}): "
                                      f"it holds {', '.join(own)}")
    return stacked


class _Stack(nn.Module):
    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.num_seeds = len(nets)
        self.net = stack(nets)

    def _seeds_batch(self, x: torch.Tensor, dims: int) -> tuple[int, int]:
        if x.dim() != dims or x.shape[0] != self.num_seeds:
            raise ValueError(f"expected {dims} dims with {self.num_seeds} seeds first, "
                             f"got shape {tuple(x.shape)}")
        return x.shape[0], x.shape[1]


class StackedGenerator(_Stack):
    """S generators as one: z [S, B, z_dim] -> images [S, B, 3, H, W] (a transposed view of the
    stacked layout's [B, S*3, H, W]; `StackedDiscriminator` reads it back without a copy)."""

    def __init__(self, gens: list[nn.Module]):
        super().__init__(gens)
        self.z_dim = gens[0].z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        seeds, batch = self._seeds_batch(z, 3)
        x = self.net(z.transpose(0, 1).reshape(batch, -1))
        return x.unflatten(1, (seeds, -1)).transpose(0, 1)


class StackedDiscriminator(_Stack):
    """S discriminators as one: images [S, B, C, H, W] -> logits [S, B]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seeds, batch = self._seeds_batch(x, 5)
        logits = self.net(x.transpose(0, 1).flatten(1, 2))  # the single D's view(-1): [B * S]
        return logits.view(batch, seeds).t()


def _seed(t: torch.Tensor, num_seeds: int, seed: int) -> torch.Tensor:
    return t.unflatten(0, (num_seeds, -1))[seed]  # a view, whatever the memory format


def seed_state_dict(stacked: _Stack, seed: int) -> dict:
    """Seed `seed`'s (an index into the stack) state dict, as the single net's state_dict() (same
    keys and shapes: it loads with strict=True). Copies, so saving it saves one seed only."""
    return {k: (t if t.dim() == 0 else _seed(t, stacked.num_seeds, seed))
            .clone(memory_format=torch.contiguous_format)
            for k, t in stacked.net.state_dict().items()}


def load_seed_state_dict(stacked: _Stack, seed: int, state: dict) -> None:
    """Load a single net's state dict into seed `seed` of the stack (the inverse of
    seed_state_dict). Raises RuntimeError, as load_state_dict does, on missing, unexpected or
    mis-shaped keys, before changing anything."""
    own = stacked.net.state_dict()  # tensors sharing storage with the stack's
    targets = {k: t if t.dim() == 0 else _seed(t, stacked.num_seeds, seed) for k, t in own.items()}
    errors = [f"missing key {k}" for k in own if k not in state]
    errors += [f"unexpected key {k}" for k in state if k not in own]
    errors += [f"size mismatch for {k}: {tuple(state[k].shape)} in the state dict, "
               f"{tuple(t.shape)} in the net" for k, t in targets.items()
               if k in state and state[k].shape != t.shape]
    if errors:
        raise RuntimeError(f"error(s) loading seed {seed} of the stack: " + "; ".join(errors))
    with torch.no_grad():
        for k, t in targets.items():
            t.copy_(state[k])
