"""The synthetic experiments: the paper's two-cluster 1-D and 5-Gaussian 2-D, and the mode-collapse
literature's ring of 8 and grid of 25 Gaussians; S seeds at once.

Each synthetic dataset is one `SYNTHETIC` entry (its data, mode centres and schedule) plus its
configs/dataset/<name>.yaml; nothing else in the package asks for a dataset by name.

Everything carries a leading seed axis: data [S, N, dim], nets from `mlp.StackedMLP`. Each seed draws
its data, weights and noise from its own generator, so any seed's result does not depend on which
other seeds were trained beside it.

Three implementations of a step compute the same thing (`step_path`): autograd's arithmetic (any
device, any dataset; `train.cpu_kernel=false`), and on the CPU two fused C++ kernels, one call per
iteration (nets/pair_kernel.py): seeds in SIMD lanes (two-cluster, and the 2-D mixtures up to 16
hidden units), or a seed at a time on MKL's GEMMs (wider minibatch nets). All keep the optimisers'
state in torch.optim's format, so a checkpoint loads on any of them.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from gan_landscape.cli import ConfigError, lookup
from gan_landscape.losses import get_loss
from gan_landscape.nets.mlp import build_pair
from gan_landscape.nets.mlp_step import minibatch_iteration
from gan_landscape.metrics.modes import mode_metrics
from gan_landscape.nets.pair_kernel import KERNEL_LOSSES, KERNEL_MAX_HIDDEN, KernelOptim, gemm_kernel, pair_kernel
from gan_landscape.rng import seed_generator


# ---------------------------------------------------------------- data

def two_cluster_data(ds, seeds):
    """Real points [S, N, 1] and the fixed z [S, N, 1], drawn as GAN2_2Cluster.py draws them with
    seed_index = seed: z from torch's RNG, point i = start[i mod 2] + width * U(0,1) from numpy's."""
    xs, zs = [], []
    starts = np.asarray(list(ds.cluster_starts), dtype=np.float64)
    for seed in seeds:
        z = ds.z_range * 2 * (torch.rand(ds.num_points, generator=torch.Generator().manual_seed(seed)) - 0.5)
        u = np.random.RandomState(seed).rand(ds.num_points)  # float64 like the script, then cast
        x = ds.cluster_width * u + starts[np.arange(ds.num_points) % len(starts)]
        xs.append(torch.from_numpy(x.astype(np.float32)))
        zs.append(z)
    return torch.stack(xs)[..., None], torch.stack(zs)[..., None]


def circle_centres(ds) -> torch.Tensor:
    angles = 2 * math.pi * torch.arange(ds.num_modes) / ds.num_modes
    return ds.radius * torch.stack([angles.cos(), angles.sin()], 1)


def grid_centres(ds) -> torch.Tensor:
    """Every (a, b) with a, b in `grid_values`, row by row."""
    v = torch.tensor(list(ds.grid_values), dtype=torch.float32)
    return torch.cartesian_prod(v, v)


def five_gaussian_data(ds, seeds) -> torch.Tensor:
    """[S, N, 2]: N / K points from each of K Gaussians on a circle, shuffled once."""
    return mixture_data(ds, seeds, circle_centres(ds))


def mixture_data(ds, seeds, centres: torch.Tensor) -> torch.Tensor:
    """[S, N, 2]: N / K points from each of K isotropic Gaussians (variance `ds.variance`) at
    `centres`, shuffled once."""
    per_mode = ds.num_points // ds.num_modes
    out = []
    for seed in seeds:
        g = seed_generator(seed, 3)
        x = centres.repeat_interleave(per_mode, 0)
        x = x + math.sqrt(ds.variance) * torch.randn(x.shape, generator=g)
        out.append(x[torch.randperm(len(x), generator=g)])
    return torch.stack(out)


@dataclass(frozen=True)
class SyntheticData:
    """One synthetic dataset, found by its configs/dataset/<name>.yaml `name`. Its numbers (sizes,
    the outcome window `mode_radius` / `cover_frac`, d_steps / g_steps, plot range, nets) live in
    that YAML; this entry holds its code:
      data(ds, seeds) -> (reals [S, N, dim], a fixed z [S, N, z_dim] or None)
      centres(ds) -> [K, dim], the point each mode's window is centred on (K = its number of modes)
      full_batch: the schedule. True: GAN2_2Cluster.py's, every real point with its fixed z in
        every iteration (d_steps D steps on one fake batch G(z), then g_steps G steps; the fused CPU
        kernel's schedule). False: minibatches of train.batch_size reals, fresh z ~ N(0, I) each.
    G is judged, and gl-landscape evaluates the game, on the fixed z; without one, on z ~ N(0, I):
    `eval_samples` per seed when judged, one per real point from gl-landscape's seed there."""
    data: Callable
    centres: Callable
    full_batch: bool


SYNTHETIC: dict[str, SyntheticData] = {
    "two_cluster": SyntheticData(
        data=two_cluster_data,
        centres=lambda ds: torch.tensor(list(ds.cluster_starts), dtype=torch.float32)[:, None],
        full_batch=True),
    "five_gaussian": SyntheticData(
        data=lambda ds, seeds: (five_gaussian_data(ds, seeds), None),
        centres=circle_centres,
        full_batch=False),
    # Metz et al. 2017 (unrolled GAN, arXiv 1611.02163, App. A): 8 Gaussians, std 0.02, means evenly
    # on a circle of radius 2 (configs/dataset/ring8.yaml).
    "ring8": SyntheticData(
        data=lambda ds, seeds: (mixture_data(ds, seeds, circle_centres(ds)), None),
        centres=circle_centres,
        full_batch=False),
    # VEEGAN / PacGAN's 2-D grid: 25 Gaussians, std 0.05, means at {-4,-2,0,2,4}^2 (PacGAN's code:
    # synthetic_data_experiments/2DGrid_GAN&PacGAN/config.py; configs/dataset/grid25.yaml).
    "grid25": SyntheticData(
        data=lambda ds, seeds: (mixture_data(ds, seeds, grid_centres(ds)), None),
        centres=grid_centres,
        full_batch=False),
}


def synthetic_data(ds) -> SyntheticData:
    return lookup(SYNTHETIC, "dataset", ds.name, "no synthetic dataset of that name",
                  "gan_landscape/data/synthetic.py")


def mode_centres(ds) -> torch.Tensor:
    """[K, dim]: where each mode is counted from."""
    return synthetic_data(ds).centres(ds)


def num_modes(ds) -> int:
    return len(mode_centres(ds))


def landscape_z(gan, k: int, n: int, seed: int, dtype) -> torch.Tensor:
    """The z gl-landscape evaluates seed index k's game on: its fixed training z, else n draws of
    z ~ N(0, I) from `seed` (Berard et al.'s MoG)."""
    if gan.z is not None:
        return gan.z[k].to(dtype)
    return torch.randn(n, gan.G.sizes[0], generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- outcome

def mode_counts(ds, y: torch.Tensor) -> torch.Tensor:
    """y [S, N, dim] -> [S, K]: generated points within `mode_radius` of each mode's centre."""
    d = torch.cdist(y.float(), mode_centres(ds).to(y.device).expand(y.shape[0], -1, -1))
    return (d < ds.mode_radius).sum(1)


def outcome(ds, y: torch.Tensor) -> dict:
    """Per seed: counts per mode window, modes covered (>= cover_frac of the samples each), the
    verdict, and the literature's metrics (modes.py)."""
    counts = mode_counts(ds, y)
    n = y.shape[1]
    covered = (counts >= ds.cover_frac * n).all(1)
    modes_covered = (counts >= ds.cover_frac * n).sum(1).tolist()
    return {
        "mode_counts": counts.tolist(),
        "modes_covered": modes_covered,
        "verdict": ["covered" if c else "collapsed" for c in covered.tolist()],
        "collapse_rate": 1 - covered.float().mean().item(),
        "metrics": mode_metrics(y, mode_centres(ds), ds.mode_radius, modes_covered),
    }


# ---------------------------------------------------------------- training


def make_optim(opt, params, lr):
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=opt.momentum, foreach=True)
    if opt.name == "adam":
        betas = tuple(float(b) for b in opt.betas)
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)
    raise ConfigError(f"optim.name={opt.name}: expected sgd or adam for the synthetic MLPs")


KERNELS = {"kernel": pair_kernel, "gemm": gemm_kernel}  # step_path's fused paths


def step_path(cfg, device, G=None, D=None) -> str:
    """How this config trains on `device`:
      "reference": autograd's arithmetic (autograd, or for minibatches mlp_step's bitwise-equal
        written-out passes); on a GPU, with train.cpu_kernel=false, or where no kernel builds.
      "kernel": pair_kernel.cpp, seeds in SIMD lanes: the full batch with SGD (two-cluster), or
        minibatches with nets of at most KERNEL_MAX_HIDDEN units.
      "gemm": gemm_kernel.cpp, a seed at a time on MKL's GEMMs: wider minibatch nets.
    Both kernels implement the losses in KERNEL_LOSSES with SGD or Adam, and round differently from
    autograd and from each other, so their minibatch runs are other runs (kinds/synthetic.py
    `arithmetic`); the two-cluster kernel is keyed by train.cpu_kernel itself."""
    if not cfg.train.get("cpu_kernel", False) or torch.device(device).type != "cpu" \
            or cfg.loss.name not in KERNEL_LOSSES:
        return "reference"
    if G is None:
        G, D = build_pair(cfg, [cfg.seed])
    if synthetic_data(cfg.dataset).full_batch:
        renorm = cfg.loss.name in (cfg.dataset.get("renorm_d_last") or [])
        fits = cfg.optim.name == "sgd" and not renorm
        return "kernel" if fits and pair_kernel(G, D) is not None else "reference"
    if cfg.optim.name not in ("sgd", "adam"):
        return "reference"
    if max(G.sizes[1:-1] + D.sizes[1:-1]) <= KERNEL_MAX_HIDDEN:
        return "kernel" if pair_kernel(G, D) is not None else "reference"
    return "gemm" if gemm_kernel(G, D) is not None else "reference"


class SyntheticGAN:
    """S seeds of one synthetic experiment; `step()` runs one outer iteration."""
    # Minibatch data: the passes written out (mlp_step.py), bitwise the autograd path's results;
    # False keeps autograd (the reference in the tests).
    manual_backward = True

    def __init__(self, cfg, seeds: list[int], device="cpu"):
        self.cfg, self.ds, self.seeds, self.device = cfg, cfg.dataset, list(seeds), device
        self.data = synthetic_data(self.ds)
        self.loss = get_loss(cfg.loss.name)
        self.G, self.D = (m.to(device) for m in build_pair(cfg, self.seeds))
        self.path = step_path(cfg, device, self.G, self.D)
        self.g_params, self.d_params = list(self.G.parameters()), list(self.D.parameters())
        self.g_opt = make_optim(cfg.optim, self.g_params, cfg.optim.g_lr)
        self.d_opt = make_optim(cfg.optim, self.d_params, cfg.optim.d_lr)
        self._kernel_optims = None  # (G's, D's) KernelOptim, rebuilt after a checkpoint loads
        self._logits = None  # the kernel's output buffer
        # plain numbers: an OmegaConf lookup costs more than a narrow net's kernel iteration
        t = cfg.train
        self._d_steps = t.d_converge_steps if t.get("optimal_d") else self.ds.get("d_steps", 1)
        self.g_steps, self.batch_size = self.ds.get("g_steps", 1), t.get("batch_size")
        self.average_d_terms = bool(self.ds.average_d_terms)
        self.renorm = self.loss.name in (self.ds.get("renorm_d_last") or [])
        self.step_count = 0
        self._last = None  # `last`, or a function that computes it
        self.x, self.z = (None if t is None else t.to(device) for t in self.data.data(self.ds, self.seeds))
        if self.data.full_batch and self.z is None:
            raise ValueError(f"synthetic dataset {self.ds.name}: a full-batch schedule needs a fixed z")
        z_dim = self.G.sizes[0]
        self.z_eval = self.z if self.z is not None else \
            self._per_seed(lambda g: torch.randn(self.ds.eval_samples, z_dim, generator=g), 4)
        self.kernel = KERNELS[self.path](self.G, self.D) if self.path in KERNELS else None

    def _per_seed(self, draw, salt_or_gens):
        gens = salt_or_gens if isinstance(salt_or_gens, list) else \
            [seed_generator(s, salt_or_gens) for s in self.seeds]
        return torch.stack([draw(g) for g in gens]).to(self.device)

    # -- one D step and one G step on given reals and latents (both [S, N, dim])
    def d_step(self, x, fake):
        n = x.shape[1]
        f = self.D(torch.cat([x, fake], 1))[..., 0]
        d_loss = self.loss.d(f[:, :n], f[:, n:], average_terms=self.average_d_terms)
        grads = torch.autograd.grad(d_loss.sum(), self.d_params)
        for p, g in zip(self.d_params, grads):
            p.grad = g
        self.d_opt.step()
        if self.renorm:
            w = self.D.weights[-1]
            with torch.no_grad():
                w.copy_(torch.nn.functional.normalize(w, dim=1))
        return d_loss.detach()

    def g_step(self, x, z):
        n = x.shape[1]
        y = self.G(z)
        if self.loss.needs_real_for_g:
            f = self.D(torch.cat([x, y], 1))[..., 0]
            f_real, f_fake = f[:, :n], f[:, n:]
        else:
            f_real, f_fake = None, self.D(y)[..., 0]
        g_loss = self.loss.g(f_real, f_fake)
        grads = torch.autograd.grad(g_loss.sum(), self.g_params)
        for p, g in zip(self.g_params, grads):
            p.grad = g
        self.g_opt.step()
        return g_loss.detach()

    def d_steps_now(self) -> int:
        return self._d_steps

    def step(self):
        if self.kernel is not None:
            x, z = (self.x, self.z) if self.data.full_batch else (t.contiguous() for t in self._next_batch())
            self._fused_step(x, z)
            return
        if not self.data.full_batch and self.manual_backward:
            with torch.no_grad():
                self._last = minibatch_iteration(self, *self._next_batch())
            self.step_count += 1
            return
        # As the authors' scripts: one fake batch for all D steps, then G steps on the same z.
        x, z = (self.x, self.z) if self.data.full_batch else self._next_batch()
        with torch.no_grad():
            fake = self.G(z)
        for _ in range(self.d_steps_now()):
            d_loss = self.d_step(x, fake)
        for _ in range(self.g_steps):
            g_loss = self.g_step(x, z)
        self.step_count += 1
        self._last = (d_loss, g_loss)

    def _fused_step(self, x, z):
        """`step` in one kernel call; the losses in `last` come from losses.py applied to the
        logits the kernel returns."""
        n = x.shape[1]
        n_terms = (2 if self.loss.family == "separable" else 1) if self.average_d_terms else 1
        pairing = self.loss.needs_real_for_g
        if self._kernel_optims is None:
            self._kernel_optims = KernelOptim.of(self.g_opt), KernelOptim.of(self.d_opt)
        if self._logits is None or self._logits.shape[2] != n:
            self._logits = torch.empty(4, len(self.seeds), n)
        d_real, d_fake, g_real, g_fake = self.kernel.iteration(
            x, z, *self._kernel_optims, d_steps=self._d_steps, g_steps=self.g_steps,
            loss=self.loss.name, pairing=pairing, renorm=self.renorm, d_scale=1 / (n * n_terms), g_scale=1 / n,
            threads=torch.get_num_threads(), out=self._logits)
        self.step_count += 1
        # computed when read (at a log step): ~100 us of small ops, a sixth of a narrow iteration
        self._last = lambda: (self.loss.d(d_real, d_fake, average_terms=self.average_d_terms),
                              self.loss.g(g_real if pairing else None, g_fake))

    @property
    def last(self):
        """(d_loss [S], g_loss [S]) of the latest step, None before the first; never synced here."""
        if callable(self._last):
            self._last = self._last()
        return self._last

    def _next_batch(self):
        """Each seed shuffles its own data every epoch (drop_last) and draws its own z; the batch
        depends only on (seed, step), so a resumed run sees the same batches."""
        b, n, dim = self.batch_size, self.x.shape[1], self.x.shape[2]
        per_epoch = n // b
        epoch, i = divmod(self.step_count, per_epoch)
        if getattr(self, "_epoch", None) != epoch:
            gens = [seed_generator(s, 10_000 + epoch) for s in self.seeds]
            perm = self._per_seed(lambda g: torch.randperm(n, generator=g)[: per_epoch * b], gens)
            z_dim = self.G.sizes[0]
            self._zs = self._per_seed(lambda g: torch.randn(per_epoch, b, z_dim, generator=g), gens)
            self._xs = torch.gather(self.x, 1, perm[..., None].expand(-1, -1, dim)).view(
                len(self.seeds), per_epoch, b, dim)
            self._epoch = epoch
        return self._xs[:, i], self._zs[:, i]

    @torch.no_grad()
    def samples(self) -> torch.Tensor:
        return self.G(self.z_eval)

    @torch.no_grad()
    def d_function(self, grid: torch.Tensor) -> torch.Tensor:
        """D's output (after a sigmoid) on a 1-D grid, per seed: [S, len(grid)]."""
        g = grid.to(self.device)[None, :, None].expand(len(self.seeds), -1, -1)
        return torch.sigmoid(self.D(g)[..., 0])

    def state_dict(self) -> dict:
        for opt in self._kernel_optims or ():
            opt.sync()
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "g_opt": self.g_opt.state_dict(),
                "d_opt": self.d_opt.state_dict(), "step": self.step_count, "seeds": self.seeds}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self._kernel_optims = None
        self.step_count = state["step"]
