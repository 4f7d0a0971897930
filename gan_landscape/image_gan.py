"""The image GAN's state and its training iteration: G, D, EMA G, optimisers and the data sampler.

`train_step()` is one iteration as in the authors' rsgan.py / vanillaGAN.py: one G step, then
`n_dis` D steps (a pairing loss's G step draws its own real batch). Two deliberate differences:
reals are drawn with replacement from the resident dataset (theirs: a shuffled loader), and the
linear lr decay ends at lr0 / span on the last iteration (theirs steps one past zero). Their RS-only
`F.normalize(netD.proj.weight.data)` is left out: under spectral norm `proj.weight` is recomputed
from `weight_orig` at every forward, so it is a no-op. Everything it touches lives on
the device, including the learning-rate schedule and the loss accumulators, so the same function
runs eagerly or captured in a CUDA graph (`fast.py`) and never syncs with the host.
"""
import copy

import torch
from omegaconf import OmegaConf

from .data import build_sampler
from .losses import get_loss
from .nets import build_nets


def make_adam(params, lr, opt, device):
    # capturable keeps Adam's step counters on the device, which CUDA graphs need; the learning
    # rate is a device tensor that the schedule rewrites in place.
    cuda = device.type == "cuda"
    return torch.optim.Adam(params, lr=torch.tensor(lr, device=device) if cuda else lr,
                            betas=tuple(opt.betas), foreach=True, capturable=cuda)


class ImageGAN:
    def __init__(self, cfg, device):
        self.cfg, self.device, t = cfg, device, cfg.train
        if cfg.optim.name != "adam":
            raise ValueError(f"image GANs train with Adam (optim.name=adam), got '{cfg.optim.name}'")
        self.loss = get_loss(cfg.loss.name)
        self.G, self.D = (m.to(device) for m in build_nets(cfg))
        if t.channels_last:
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema else None
        self.g_params, self.d_params = list(self.G.parameters()), list(self.D.parameters())
        self.g_opt = make_adam(self.g_params, cfg.optim.g_lr, cfg.optim, device)
        self.d_opt = make_adam(self.d_params, cfg.optim.d_lr, cfg.optim, device)
        self.sampler = build_sampler(cfg.dataset, t.batch_size, device)
        self.z_dim, self.batch = self.G.z_dim, t.batch_size
        self.step = torch.zeros((), device=device)           # iterations done, on the device
        self.acc = torch.zeros(3, device=device)             # sum of d_loss, g_loss, count since last log
        self.autocast = t.precision == "bf16"
        if t.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision must be fp32 or bf16, got '{t.precision}'")

    # ---------------------------------------------------------------- one iteration
    def _z(self):
        return torch.randn(self.batch, self.z_dim, device=self.device)

    def _real(self):
        x = self.sampler.sample(self.batch)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x

    def _amp(self):
        # autocast's weight-cast cache cannot live across CUDA graph replays
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast,
                              cache_enabled=False)

    # D is called separately on fakes and reals, as the authors do: each call in train mode runs
    # one spectral-norm power iteration, so a batched call would halve D's power iterations.
    def g_step(self):
        with self._amp():
            real = self._real() if self.loss.needs_real_for_g else None
            f_fake = self.D(self.G(self._z())).float()
            f_real = self.D(real).float() if real is not None else None
            loss = self.loss.g(f_real, f_fake)
        # Gradients for G only: D's parameters are not G's to update.
        for p, g in zip(self.g_params, torch.autograd.grad(loss, self.g_params)):
            p.grad = g
        self.g_opt.step()
        return loss.detach()

    def d_step(self):
        with self._amp():
            real = self._real()
            with torch.no_grad():
                fake = self.G(self._z())
            f_fake = self.D(fake).float()
            loss = self.loss.d(self.D(real).float(), f_fake)
        for p, g in zip(self.d_params, torch.autograd.grad(loss, self.d_params)):
            p.grad = g
        self.d_opt.step()
        return loss.detach()

    def train_step(self):
        self._schedule_lr()
        g_loss = self.g_step()
        for _ in range(self.cfg.train.n_dis):
            d_loss = self.d_step()
        if self.G_ema is not None:
            self._update_ema()
        self.step += 1
        self.acc += torch.stack([d_loss.float(), g_loss.float(), torch.ones_like(d_loss, dtype=torch.float)])

    def _schedule_lr(self):
        """Linear decay to 0 from `lr_decay_start` to the last iteration, as the authors' utils.py."""
        t = self.cfg.train
        if t.lr_decay_start is None:
            return
        span = max(1, t.iters - t.lr_decay_start)
        for opt, lr0 in ((self.g_opt, self.cfg.optim.g_lr), (self.d_opt, self.cfg.optim.d_lr)):
            group = opt.param_groups[0]
            if torch.is_tensor(group["lr"]):
                frac = ((t.iters - self.step) / span).clamp(0.0, 1.0)
                group["lr"].copy_(lr0 * frac)
            else:  # CPU: the step is read once per iteration; a sync on the CPU costs nothing
                group["lr"] = lr0 * min(1.0, max(0.0, (t.iters - self.step.item()) / span))

    @torch.no_grad()
    def _update_ema(self):
        beta = self.cfg.train.ema
        ema_p = list(self.G_ema.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in self.g_params], 1 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---------------------------------------------------------------- host-side reads (sync)
    def pop_losses(self) -> dict:
        d, g, n = self.acc.tolist()
        self.acc.zero_()
        return {"d_loss": d / max(n, 1), "g_loss": g / max(n, 1)}

    def lrs(self) -> tuple[float, float]:
        return tuple(float(o.param_groups[0]["lr"]) for o in (self.g_opt, self.d_opt))

    @torch.no_grad()
    def sample(self, z, ema=False, train_mode=False):
        G = self.G_ema if ema and self.G_ema is not None else self.G
        was = G.training
        G.train(train_mode)
        out = G(z).float()
        G.train(was)
        return out

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for p in self.g_params + self.d_params)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
                "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
                "config": OmegaConf.to_container(self.cfg, resolve=True)}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None and state.get("G_ema") is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        for opt, key in ((self.g_opt, "g_opt"), (self.d_opt, "d_opt")):
            _load_opt(opt, state[key])
        self.step.fill_(state["step"])


def _load_opt(opt, saved):
    """Load an optimiser state saved on any device or capturable setting (eager CPU, CUDA graph):
    keep this optimiser's own lr container and `capturable`, and put Adam's step counters where
    `capturable` wants them."""
    mine = [(g["lr"], g["capturable"], g["foreach"]) for g in opt.param_groups]
    opt.load_state_dict(saved)
    for group, (lr, capturable, foreach) in zip(opt.param_groups, mine):
        saved_lr = float(group["lr"])
        if torch.is_tensor(lr):
            lr.fill_(saved_lr)
        group.update(lr=lr if torch.is_tensor(lr) else saved_lr, capturable=capturable, foreach=foreach)
        for p in group["params"]:
            st = opt.state.get(p, {})
            if "step" in st:
                step = torch.as_tensor(st["step"], dtype=torch.float32)
                st["step"] = step.to(p.device) if capturable else step.cpu()
