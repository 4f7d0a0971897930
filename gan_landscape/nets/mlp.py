"""MLPs for the synthetic experiments, stacked along a leading seed axis.

S independent networks are one module whose weights have shape [S, in, out]; a forward pass is a
batched matmul. Seed s is initialised as the authors' script initialises with that seed, so seed 7
inside a stack of 100 gets the same weights as seed 7 trained alone, and element-wise optimisers
(SGD, Adam) keep the seeds independent: the per-seed results of a stack equal those of single-seed
runs. `pair_kernel.py` holds a fused CPU training iteration for a (G, D) pair of them.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from gan_landscape.cli import ConfigError

ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
}


def scaled(hidden, width: float) -> list[int]:
    return [max(1, round(h * width)) for h in hidden]


def torch_linear_init(sizes: list[int], last_bias: bool) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Weights [in, out] and biases [1, out] drawn exactly as nn.Linear draws them from the global RNG."""
    out = []
    for n, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = nn.Linear(i, o, bias=last_bias or n < len(sizes) - 2)
        out.append((layer.weight.detach().t().contiguous(),
                    None if layer.bias is None else layer.bias.detach()[None]))
    return out


class StackedMLP(nn.Module):
    def __init__(self, sizes: list[int], act: str, per_seed: list):
        """per_seed: for each seed, the layers' (weight [in, out], bias [1, out] or None)."""
        super().__init__()
        if act not in ACTIVATIONS:
            raise ConfigError(f"activation {act}: expected one of {', '.join(ACTIVATIONS)} "
                              f"(model.g_act, model.d_act)")
        self.act, self.act_name = ACTIVATIONS[act], act
        self.sizes = sizes
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([seed[n][0] for seed in per_seed])) for n in range(len(sizes) - 1)])
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([seed[n][1] for seed in per_seed]))
             for n in range(len(sizes) - 1) if per_seed[0][n][1] is not None])

    @property
    def num_seeds(self) -> int:
        return self.weights[0].shape[0]

    @property
    def has_last_bias(self) -> bool:
        return len(self.biases) == len(self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [S, N, in] -> [S, N, out]."""
        last = len(self.weights) - 1
        for n, w in enumerate(self.weights):
            if n < len(self.biases):
                x = torch.baddbmm(self.biases[n], x, w)
            else:
                x = torch.bmm(x, w)
            if n < last:
                x = self.act(x)
        return x

    def to_sequential(self, k: int) -> nn.Sequential:
        """The k-th seed's network as a plain nn.Sequential (for tools that want one net)."""
        layers = []
        for n, w in enumerate(self.weights):
            has_bias = n < len(self.biases)
            lin = nn.Linear(w.shape[1], w.shape[2], bias=has_bias)
            with torch.no_grad():
                lin.weight.copy_(w[k].t())
                if has_bias:
                    lin.bias.copy_(self.biases[n][k, 0])
            layers += [lin, Activation(self.act, self.act_name)] if n < len(self.weights) - 1 else [lin]
        return nn.Sequential(*layers)

    @classmethod
    def copies_of(cls, seq: nn.Sequential, n: int) -> "StackedMLP":
        """n stacked copies of one plain MLP (a `to_sequential` net), each trainable on its own."""
        layers = [m for m in seq if isinstance(m, nn.Linear)]
        act = next(m.name for m in seq if isinstance(m, Activation))
        one = [(m.weight.detach().t(), None if m.bias is None else m.bias.detach()[None]) for m in layers]
        return cls([layers[0].in_features] + [m.out_features for m in layers], act, [one] * n)


class Activation(nn.Module):
    def __init__(self, fn, name: str):
        super().__init__()
        self.fn, self.name = fn, name

    def forward(self, x):
        return self.fn(x)


def build_pair(cfg, seeds: list[int]) -> tuple[StackedMLP, StackedMLP]:
    """G and D for each seed, initialised as the authors' scripts do: torch.manual_seed(seed), then
    nn.Linear's default init, in the order their script builds the nets (`dataset.init_order`)."""
    m, w = cfg.model, cfg.width
    sizes = {"g": ([m.z_dim, *scaled(m.g_hidden, w), m.x_dim], True),
             "d": ([m.x_dim, *scaled(m.d_hidden, w), 1], m.d_last_bias)}
    layers = {"g": [], "d": []}
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for net in cfg.dataset.init_order:
                layers[net].append(torch_linear_init(*sizes[net]))
    return (StackedMLP(sizes["g"][0], m.g_act, layers["g"]),
            StackedMLP(sizes["d"][0], m.d_act, layers["d"]))

