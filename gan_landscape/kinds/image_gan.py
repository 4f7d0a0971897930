"""The image GAN: S seeds of one config trained as one computation (S = train.num_seeds, often 1).

`step()` is one iteration as in the authors' rsgan.py / vanillaGAN.py, for every seed at once: one
G step, then `n_dis` D steps (a pairing loss's G step draws its own real batch). D is called
separately on fakes and reals, as theirs: in train mode each call runs one spectral-norm power
iteration, so a batched call would halve D's power iterations.

Seeds are independent: each has its own nets (nets.build_stacked), Adam moments, EMA, spectral-norm
vectors and BatchNorm statistics, and draws its latents, real batches and noise from its own
generators; seed s of a stack equals seed s trained alone (to float rounding). Deliberate differences
from the authors: reals are drawn with replacement from the resident dataset (theirs: a shuffled
loader), the linear lr decay ends at lr0 / span (theirs steps one past zero), and their RS-only
`F.normalize(netD.proj.weight.data)` is left out: under spectral norm `proj.weight` is recomputed
from `weight_orig` at every forward, so it is a no-op.

Everything a step touches lives on the device (lr schedule, loss accumulators, step counter), so
the same `_iteration` runs eagerly or as a replayed CUDA graph (cuda_graph.py) without host syncs.
"""
import copy
import logging

import torch
from omegaconf import OmegaConf

from gan_landscape.kinds import cuda_graph
from gan_landscape.data import load_images
from gan_landscape.losses import get_loss
from gan_landscape.nets import build_stacked, load_seed_state_dict, seed_state_dict
from gan_landscape.rng import load_generator_state, seed_generator
from gan_landscape.data.samplers import ResidentSampler, StreamSampler

log = logging.getLogger(__name__)
Z_SALT, DATA_SALT, FIXED_Z_SALT = 1, 2, 3


def make_adam(params, lr, opt, device, captured: bool):
    """For a CUDA graph (`captured`), capturable Adam: its step counters stay on the device and
    the learning rate is a device tensor that the schedule rewrites in place. Eagerly, plain Adam
    (a float lr): capturable's extra kernels would slow every eager figure down."""
    if captured:
        return torch.optim.Adam(params, lr=torch.tensor(float(lr), device=device),
                                betas=tuple(opt.betas), foreach=True, capturable=True)
    return torch.optim.Adam(params, lr=lr, betas=tuple(opt.betas), foreach=True)


def set_precision(precision: str, device) -> None:
    """fp32 is strict fp32 (PyTorch lets cuDNN convolutions use TF32 by default: not here)."""
    if device.type == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True


class ImageGAN:
    def __init__(self, cfg, device, seeds: list[int]):
        self.cfg, self.device, self.seeds, t = cfg, device, list(seeds), cfg.train
        self.loss = get_loss(cfg.loss.name)
        set_precision(t.precision, device)
        self.G, self.D = (m.to(device) for m in build_stacked(cfg, self.seeds))
        if t.channels_last:
            self.G, self.D = (m.to(memory_format=torch.channels_last) for m in (self.G, self.D))
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema else None
        self.g_params, self.d_params = list(self.G.parameters()), list(self.D.parameters())
        graph = bool(t.cuda_graph) and device.type == "cuda"
        self.g_opt = make_adam(self.g_params, cfg.optim.g_lr, cfg.optim, device, captured=graph)
        self.d_opt = make_adam(self.d_params, cfg.optim.d_lr, cfg.optim, device, captured=graph)
        self.z_gens = [seed_generator(s, Z_SALT, device) for s in self.seeds]
        self.sampler = self._sampler()
        self.S, self.batch, self.z_dim = len(self.seeds), t.batch_size, self.G.z_dim
        self.step_t = torch.zeros((), device=device)                 # iterations done, on the device
        self.acc = torch.zeros(self.S, 3, device=device)             # per seed: sum d, sum g, count
        self.autocast = t.precision == "bf16"
        self.step_count = 0
        self._z_fixed = None
        self.graph = cuda_graph.Stepper(self._iteration, self.device, self.z_gens + self.sampler.gens,
                                        enabled=graph, host_state=(self.sampler.host_state,
                                                                   self.sampler.load_host_state))

    def _sampler(self):
        ds, t = self.cfg.dataset, self.cfg.train
        if ds.get("resident", True):
            gens = [seed_generator(s, DATA_SALT, self.device) for s in self.seeds]
            return ResidentSampler(load_images(ds, "train"), gens, self.device)
        slots = t.n_dis + int(self.loss.needs_real_for_g)
        return StreamSampler(ds, t.batch_size, self.seeds, slots, self.device, DATA_SALT)

    # ---------------------------------------------------------------- one iteration
    def _z(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.batch, self.z_dim, device=self.device, generator=g)
                            for g in self.z_gens])

    def _real(self) -> torch.Tensor:
        x = self.sampler.sample(self.batch)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
        return x

    def _amp(self):
        # autocast's weight-cast cache cannot live across CUDA graph replays
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast,
                              cache_enabled=False)

    @staticmethod
    def _full(x: torch.Tensor) -> torch.Tensor:
        """Logits out of bf16 autocast back to float32 for the loss (others stay as they are)."""
        return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x

    def g_step(self) -> torch.Tensor:
        with self._amp():
            real = self._real() if self.loss.needs_real_for_g else None
            f_fake = self._full(self.D(self.G(self._z())))
            f_real = self._full(self.D(real)) if real is not None else None
            loss = self.loss.g(f_real, f_fake)  # [S]: each seed's own mean
        # Gradients for G only; summing over seeds keeps each seed's gradient its own.
        for p, g in zip(self.g_params, torch.autograd.grad(loss.sum(), self.g_params)):
            p.grad = g
        self.g_opt.step()
        return loss.detach()

    def d_step(self) -> torch.Tensor:
        with self._amp():
            real = self._real()
            with torch.no_grad():
                fake = self.G(self._z())
            f_fake = self._full(self.D(fake))
            loss = self.loss.d(self._full(self.D(real)), f_fake)
        for p, g in zip(self.d_params, torch.autograd.grad(loss.sum(), self.d_params)):
            p.grad = g
        self.d_opt.step()
        return loss.detach()

    def _iteration(self) -> None:
        self._schedule_lr()
        g_loss = self.g_step()
        for _ in range(self.cfg.train.n_dis):
            d_loss = self.d_step()
        if self.G_ema is not None:
            self._update_ema()
        self.step_t += 1
        self.acc += torch.stack([d_loss, g_loss, torch.ones_like(g_loss)], 1).to(self.acc.dtype)

    def step(self) -> None:
        self.sampler.refill()  # outside the graph: streamed batches enter a static buffer
        self.graph.step()
        self.step_count += 1

    def _schedule_lr(self):
        """Linear decay to 0 from `lr_decay_start` to the last iteration, as the authors' utils.py."""
        t = self.cfg.train
        if t.lr_decay_start is None:
            return
        span = max(1, t.iters - t.lr_decay_start)
        for opt, lr0 in ((self.g_opt, self.cfg.optim.g_lr), (self.d_opt, self.cfg.optim.d_lr)):
            group = opt.param_groups[0]
            if torch.is_tensor(group["lr"]):
                group["lr"].copy_(lr0 * ((t.iters - self.step_t) / span).clamp(0.0, 1.0))
            else:  # eager: the host's count (equal to step_t here) needs no device read
                group["lr"] = lr0 * min(1.0, max(0.0, (t.iters - self.step_count) / span))

    @torch.no_grad()
    def _update_ema(self):
        """ema <- beta * ema + (1 - beta) * G, per parameter; buffers (BN, SN) are copied."""
        beta = self.cfg.train.ema
        torch._foreach_lerp_(list(self.G_ema.parameters()), [p.detach() for p in self.g_params], 1 - beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ---------------------------------------------------------------- host-side reads (sync)
    def metrics(self) -> list[dict]:
        """Per seed: mean losses since the last call, the learning rates, and whether all is finite."""
        acc = self.acc.tolist()
        self.acc.zero_()
        g_lr, d_lr = (float(o.param_groups[0]["lr"]) for o in (self.g_opt, self.d_opt))
        out = []
        for d, g, n in acc:
            rec = {"d_loss": d / max(n, 1), "g_loss": g / max(n, 1), "g_lr": g_lr, "d_lr": d_lr}
            rec["finite"] = all(x == x and abs(x) != float("inf") for x in (rec["d_loss"], rec["g_loss"]))
            out.append(rec)
        return out

    def weights_finite(self) -> list[bool]:
        ok = torch.ones(self.S, dtype=torch.bool, device=self.device)
        for p in self.g_params + self.d_params:
            ok &= torch.isfinite(p.detach().reshape(self.S, -1)).all(1)
        return ok.tolist()

    @torch.no_grad()
    def generate(self, z: torch.Tensor, ema=False, train_mode=False) -> torch.Tensor:
        """Images [S, B, 3, H, W] from latents [S, B, z_dim]."""
        G = self.G_ema if ema and self.G_ema is not None else self.G
        was = G.training
        G.train(train_mode)
        out = self._full(G(z))
        G.train(was)
        return out

    def fixed_z(self, n: int = 64) -> torch.Tensor:
        return torch.stack([torch.randn(n, self.z_dim, generator=seed_generator(s, FIXED_Z_SALT, "cpu"))
                            for s in self.seeds]).to(self.device)

    # ---------------------------------------------------------------- checkpoints, one per seed
    def seed_state(self, k: int) -> dict:
        return {"G": seed_state_dict(self.G, k), "D": seed_state_dict(self.D, k),
                "G_ema": seed_state_dict(self.G_ema, k) if self.G_ema is not None else None,
                "g_opt": _seed_opt_state(self.g_opt, self.S, k),
                "d_opt": _seed_opt_state(self.d_opt, self.S, k),
                "rng": {"z": self.z_gens[k].get_state(), "data": self.sampler.state_dict()[k]},
                "step": self.step_count}

    def load_seed_state(self, k: int, state: dict) -> None:
        load_seed_state_dict(self.G, k, state["G"])
        load_seed_state_dict(self.D, k, state["D"])
        if self.G_ema is not None and state.get("G_ema") is not None:
            load_seed_state_dict(self.G_ema, k, state["G_ema"])
        _load_seed_opt_state(self.g_opt, self.S, k, state["g_opt"])
        _load_seed_opt_state(self.d_opt, self.S, k, state["d_opt"])
        load_generator_state(self.z_gens[k], state["rng"]["z"])
        states = self.sampler.state_dict()
        states[k] = state["rng"]["data"]
        self.sampler.load_state_dict(states)

    # ---------------------------------------------------------------- the Trainable protocol (job.py)
    @property
    def label(self) -> str:
        c = self.cfg
        return f"{c.loss.name} {c.model.name} w{c.width:g}" + (f" x{self.S} seeds" if self.S > 1 else "")

    def state_dicts(self) -> list[dict]:
        return [self.seed_state(k) for k in range(self.S)]

    def load_state_dicts(self, states: list, step: int) -> None:
        for k, state in enumerate(states):
            if state is not None:
                self.load_seed_state(k, state)
        self.step_count = step
        self.step_t.fill_(step)

    def artifacts(self, step: int, final: bool) -> list[dict]:
        """Per seed: the sample grid(s) of the fixed latents, and a small FID at `train.fid_every`."""
        if final:
            return [{} for _ in range(self.S)]
        if self._z_fixed is None:
            self._z_fixed = self.fixed_z()
        grids = [("", self.generate(self._z_fixed))]
        if self.G_ema is not None:
            grids.append(("ema_", self.generate(self._z_fixed, ema=True)))
        out = [{f"samples/{prefix}step_{step:07d}.png": x[k] for prefix, x in grids} for k in range(self.S)]
        if self.cfg.train.fid_every and step % self.cfg.train.fid_every == 0:
            for k, rec in enumerate(self._fids(step)):
                out[k]["metrics.jsonl"] = rec
        return out

    def outcome(self) -> list[dict]:
        return [{"precision": self.cfg.train.precision, "cuda_graph": self.graph.status,
                 **({"stack": self.seeds} if self.S > 1 else {})} for _ in range(self.S)]

    def _fids(self, step) -> list[dict]:
        from gan_landscape.metrics.fid import score_generator
        from gan_landscape.nets import build_generator
        n, recs = self.cfg.train.fid_samples, []
        cfg = OmegaConf.merge(self.cfg, {"fid": {"metrics": [], "inception_score": False}})  # the FID alone
        for k in range(self.S):
            G = build_generator(self.cfg).to(self.device)
            G.load_state_dict(seed_state_dict(self.G, k))
            res = score_generator(G, cfg, n_fake=n)
            recs.append({"step": step, "fid": res["fid"], "fid_n_fake": n})
        return recs


# ---------------------------------------------------------------- Adam state, sliced per seed
# A stacked tensor holds its seeds as S equal leading blocks (nets.build_stacked's layout), and the
# stacked nets list their parameters in the single nets' order, so seed k's Adam state is
# state_dict()-shaped for a single net: it loads into a lone run of that seed, and back.

def _block(t: torch.Tensor, S: int, k: int) -> torch.Tensor:
    return t.contiguous().view(S, -1)[k]


def _set_block(t: torch.Tensor, S: int, k: int, value: torch.Tensor) -> None:
    if t.is_contiguous():
        t.view(S, -1)[k].copy_(value.reshape(-1))
    else:  # channels_last: no flat view of the tensor itself
        flat = t.contiguous()
        flat.view(S, -1)[k].copy_(value.reshape(-1))
        t.copy_(flat)


def _seed_opt_state(opt, S: int, k: int) -> dict:
    group = opt.param_groups[0]
    state = {}
    for i, p in enumerate(group["params"]):
        st = opt.state.get(p)
        if st:
            state[i] = {"step": torch.as_tensor(st["step"], dtype=torch.float32).detach().cpu().clone(),
                        "exp_avg": _block(st["exp_avg"], S, k).clone(),
                        "exp_avg_sq": _block(st["exp_avg_sq"], S, k).clone()}
    groups = [{**{n: v for n, v in group.items() if n != "params"}, "lr": float(group["lr"]),
               "params": list(range(len(group["params"])))}]
    return {"state": state, "param_groups": groups}


def _load_seed_opt_state(opt, S: int, k: int, saved: dict) -> None:
    """Seed k's moments into the stack; the step counter and lr (shared) from the saved state."""
    group = opt.param_groups[0]
    lr = float(saved["param_groups"][0]["lr"])
    if torch.is_tensor(group["lr"]):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr
    for i, p in enumerate(group["params"]):
        src = saved["state"].get(i)
        if src is None:
            continue
        st = opt.state[p]
        if not st:  # Adam creates its state lazily at the first step: create it now
            st["step"] = torch.zeros((), dtype=torch.float32, device=p.device if group["capturable"] else "cpu")
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"].fill_(float(src["step"]))
        for key in ("exp_avg", "exp_avg_sq"):
            _set_block(st[key], S, k, src[key])
