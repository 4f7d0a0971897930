"""gl-landscape: the game's landscape at one checkpoint of a run (synthetic or image GAN).

- Path-angle (Berard et al.): the game vector field along the straight line from the run's initial
  parameters (both players) to the checkpoint's, its norm and its cosine with the path.
- Eigenvalues at the checkpoint: top-k of the game Jacobian (complex) and of each player's own
  Hessian, matrix-free (game.py), with a verdict: local Nash equilibrium or only locally stable.
- Loss slices (synthetic runs): the value of the inner max, -min_D L_D, with D re-optimised, along
  the line from a collapsed generator to a covering one, for JS and RS (the paper's bad basin).

What the field is evaluated on, so that it is a deterministic function of the weights:
- synthetic: seed `seed_index` of the stack, in float64, on all real points; two-cluster uses its
  fixed training z, 5-Gaussian one fixed z ~ N(0, I) per real point (Berard et al.'s MoG). The RS
  5-Gaussian renormalisation of D's last layer is a projection after each step, not part of the field.
- image: `image.n_real` training images (no dequantisation noise) and as many fixed z, in chunks of
  `image.chunk`; G in train mode (BN on the chunk's statistics, as in training), D in eval mode
  (spectral norm without its per-forward power iteration). The SN vectors u, v are interpolated
  like every buffer (as Berard et al.'s code), then refined by `image.sn_power_iters` power
  iterations at each evaluated point: the step-0 vectors were never iterated, and an interpolated
  u is not a unit vector. The trained G is used, not its EMA.

Cost: nearly all of it is Hessian- and Jacobian-vector products, one forward and two backward
passes over `image.n_real` images each, ~40-70 per eigen-solve, six solves (three when the top-k
already hold the smallest eigenvalues). Progress goes to the log: every path point at least every
PROGRESS_S, each solve's start and end with its products and seconds, a line every 30 s inside it.
"""
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_landscape.runs import checkpoint, interrupt
from gan_landscape.analysis import game as gm
from gan_landscape import kinds
from gan_landscape.report import plots
from gan_landscape.config import rules, schema
from gan_landscape.cli import CONFIG_DIR, UserError, exit_on_user_error, resolve_device
from gan_landscape.losses import get_loss
from gan_landscape.nets.mlp import StackedMLP
from gan_landscape.nets.stacked import power_iteration
from gan_landscape.files import write_json

log = logging.getLogger("gl-landscape")
PROGRESS_S = 10.0


class LandscapeError(UserError):
    pass


@dataclass
class Setup:
    game: gm.Game
    w_start: torch.Tensor
    w_end: torch.Tensor
    info: dict
    on_point: Callable[[float], None] | None = None
    slices: Callable[[], dict] | None = None


# ---------------------------------------------------------------- run dir and checkpoints

def open_run(cfg):
    """(run path, run config, start state, end state) or a LandscapeError saying what is missing."""
    if OmegaConf.is_missing(cfg, "run_dir"):
        raise LandscapeError("run_dir=... is required (a gl-train run dir)")
    run = Path(cfg.run_dir)
    if not run.is_dir():
        raise LandscapeError(f"no run dir at {run}")
    if not (run / "config.yaml").exists():
        raise LandscapeError(f"{run} is not a gl-train run dir (no config.yaml)")
    steps = checkpoint.list_steps(run)
    if not steps:
        raise LandscapeError(f"{run} has no checkpoints")
    end = steps[-1] if cfg.step is None else int(cfg.step)
    for s in (cfg.start_step, end):
        if s not in steps:
            raise LandscapeError(f"no checkpoint for step {s} in {run} (have: {', '.join(map(str, steps))})")
    load = lambda s: checkpoint.load(checkpoint.path_for(run, s))  # noqa: E731
    return run, OmegaConf.load(run / "config.yaml"), load(cfg.start_step), load(end)


# ---------------------------------------------------------------- synthetic runs

def synthetic_setup(cfg, run_cfg, start, end) -> Setup:
    from gan_landscape.data.synthetic import SyntheticGAN, landscape_z
    k, dtype = cfg.seed_index, getattr(torch, cfg.synthetic.dtype)
    if not 0 <= k < len(end["seeds"]):
        raise LandscapeError(f"seed_index={k} but the run has {len(end['seeds'])} seeds")
    gan = SyntheticGAN(run_cfg, end["seeds"], "cpu")
    nets = []
    for state in (start, end):
        gan.load_state_dict(state)
        nets.append([net.to_sequential(k).to(dtype) for net in (gan.G, gan.D)])
    (G0, D0), (G, D) = nets
    x = gan.x[k][: cfg.synthetic.max_points].to(dtype)
    z = landscape_z(gan, k, len(x), cfg.seed, dtype)
    loss, avg = get_loss(run_cfg.loss.name), bool(run_cfg.dataset.get("average_d_terms", False))

    def pieces():
        f_real, f_fake = D(x)[:, 0], D(G(z))[:, 0]
        yield 1.0, loss.g(f_real, f_fake), loss.d(f_real, f_fake, average_terms=avg)

    game = gm.Game(list(G.parameters()), list(D.parameters()), pieces)
    w_start = gm.flat(list(G0.parameters()) + list(D0.parameters())).detach()
    info = {"kind": "synthetic", "seed": end["seeds"][k], "seed_index": k, "n_real": len(x)}
    return Setup(game, w_start, game.get_flat(), info,
                 slices=lambda: loss_slices(cfg.slices, run_cfg.dataset, D, x))


def collapse_pair(ds, x: torch.Tensor):
    """(collapsed Y, covering Y) for reals x [N, dim]. Covering: y_i = x_i, a global minimum of
    both losses. Collapsed: every y_i on a real point of x_0's mode (y_i = x_i there, else a point
    of that mode), the theorem's sub-optimal strict local minimum of separable GANs."""
    from gan_landscape.data.synthetic import mode_centres
    mode = torch.cdist(x, mode_centres(ds).to(x)).argmin(1)
    home = torch.nonzero(mode == mode[0]).flatten()
    i = torch.arange(len(x))
    return x[torch.where(mode == mode[0], i, home[i % len(home)])], x.clone()


def loss_slices(s, ds, D, x) -> dict:
    """-min_D L_D along Y(t) = (1 - t) Y_collapsed + t Y_cover, for each loss in `s.losses`, in
    the generator's output space where the theorems live (an expressive G realises any Y). Every
    point starts from the checkpoint's D and runs `s.d_steps` Adam steps; the value is the best
    D loss seen, so each point is a lower bound on the true inner max."""
    n = min(len(x), s.max_points or len(x))
    x = x[:n].float()
    y0, y1 = collapse_pair(ds, x)
    t = torch.linspace(0, 1, s.points)
    ys = (1 - t)[:, None, None] * y0 + t[:, None, None] * y1
    avg = bool(ds.get("average_d_terms", False))  # as the run trained (halves separable losses)
    losses = [(name, get_loss(name), avg) for name in s.losses]
    value, g_loss = inner_max(D, losses, x, ys, s.d_steps, s.d_lr)
    out = {"t": t.tolist(), "n_points": n, "space": "generator outputs on the fixed z"}
    for i, (name, _, _) in enumerate(losses):
        v = value[i].tolist()
        out[name] = {"value": v, "g_loss_at_max": g_loss[i].tolist(),
                     "barrier": max(v) - v[0],    # > 0: the collapsed Y sits in a basin
                     "drop": v[0] - v[-1]}
    return out


def inner_max(D, losses, x, ys, steps: int, lr: float):
    """Every (loss, point) pair at once: one float32 copy of D each, all trained as one stacked
    MLP (batched matmuls), from the checkpoint's D. Returns -best L_D and L_G, [losses, points]."""
    L, (T, n) = len(losses), ys.shape[:2]
    nets = StackedMLP.copies_of(D, L * T).float()
    inp = torch.cat([x.expand(T, -1, -1), ys], 1).repeat(L, 1, 1)
    opt = torch.optim.Adam(nets.parameters(), lr=lr)
    best = torch.full((L, T), float("inf"))
    for _ in range(steps + 1):
        f = nets(inp)[..., 0].view(L, T, 2 * n)
        ld = torch.stack([lo.d(f[i, :, :n], f[i, :, n:], average_terms=avg)
                          for i, (_, lo, avg) in enumerate(losses)])
        best = torch.minimum(best, ld.detach())
        opt.zero_grad(set_to_none=True)
        ld.sum().backward()
        opt.step()
    lg = torch.stack([lo.g(f[i, :, :n], f[i, :, n:]) for i, (_, lo, _) in enumerate(losses)])
    return -best, lg.detach()


# ---------------------------------------------------------------- image runs

def image_setup(cfg, run_cfg, start, end, device) -> Setup:
    from gan_landscape.data import load_images, to_model_range
    from gan_landscape.nets import build_nets
    ic = cfg.image
    if ic.data_root:
        run_cfg.dataset.root = ic.data_root
    G, D = (m.to(device) for m in build_nets(run_cfg))
    G.train()
    D.eval()
    x = to_model_range(load_images(run_cfg.dataset, "train", ic.n_real)).to(device)
    z = torch.randn(len(x), G.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    loss, chunk = get_loss(run_cfg.loss.name), ic.chunk or run_cfg.train.batch_size

    def pieces():
        for i in range(0, len(x), chunk):
            xb, zb = x[i:i + chunk], z[i:i + chunk]
            f_fake, f_real = D(G(zb)), D(xb)
            yield len(xb) / len(x), loss.g(f_real, f_fake), loss.d(f_real, f_fake)

    game = gm.Game(list(G.parameters()), list(D.parameters()), pieces, single_piece=len(x) <= chunk)
    names = [n for n, _ in G.named_parameters()], [n for n, _ in D.named_parameters()]
    w_start = gm.flat([start[net][n] for net, ns in zip("GD", names) for n in ns]).to(device)
    w_end = gm.flat([end[net][n] for net, ns in zip("GD", names) for n in ns]).to(device)
    game.set_flat(w_end)

    def on_point(a: float):
        for net, m in (("G", G), ("D", D)):
            with torch.no_grad():
                for n, b in m.named_buffers():
                    if b.is_floating_point():
                        b.copy_((1 - a) * start[net][n].to(b) + a * end[net][n].to(b))
        refresh_spectral_norm(D, ic.sn_power_iters)

    on_point(1.0)
    info = {"kind": "image", "n_real": len(x), "chunk": chunk, "sn_power_iters": ic.sn_power_iters}
    return Setup(game, w_start, w_end, info, on_point=on_point)


@torch.no_grad()
def refresh_spectral_norm(module: torch.nn.Module, iters: int) -> None:
    """Unit-normalise and power-iterate the u, v of every torch.nn.utils.spectral_norm layer."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    for m in module.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, SpectralNorm):
                w = hook.reshape_weight_to_matrix(getattr(m, hook.name + "_orig"))
                u, v = getattr(m, hook.name + "_u"), getattr(m, hook.name + "_v")
                u.copy_(F.normalize(u, dim=0, eps=hook.eps))
                new_u, new_v = power_iteration(w[None], u[None], v[None], iters, hook.eps)
                u.copy_(new_u[0])
                v.copy_(new_v[0])


# ---------------------------------------------------------------- entry point

def analyse(cfg) -> dict:
    """Everything for one checkpoint; returns what it wrote to `<out>/landscape_<tag>.json`."""
    rules.check(cfg, schema.Landscape, error=LandscapeError)
    run, run_cfg, start, end = open_run(cfg)
    synthetic = _setup_name(run_cfg) == "synthetic"
    threads = torch.get_num_threads()
    if synthetic:  # tiny nets: a second thread only adds sync overhead (100x on a busy machine)
        torch.set_num_threads(1)
    try:
        return _analyse(cfg, run, run_cfg, start, end, synthetic)
    finally:
        torch.set_num_threads(threads)


def _setup_name(run_cfg) -> str:
    """Which setup below measures the run: its kind's LANDSCAPE (kinds/), one line if it has none."""
    try:
        name = getattr(kinds.of(run_cfg), "LANDSCAPE", None)
    except UserError:
        name = None
    if name not in ("synthetic", "image"):
        raise LandscapeError(f"runs of kind {run_cfg.dataset.get('kind')} have no landscape setup "
                             f"(a kind's LANDSCAPE names one: synthetic or image)")
    return name


def _analyse(cfg, run, run_cfg, start, end, synthetic: bool) -> dict:
    dev = torch.device("cpu") if synthetic and cfg.device == "auto" else resolve_device(cfg.device, key="device")
    torch.manual_seed(cfg.seed)
    if dev.type == "cuda":  # deterministic kernels: the same weights give the same numbers
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    t0 = time.time()
    st = synthetic_setup(cfg, run_cfg, start, end) if synthetic else image_setup(cfg, run_cfg, start, end, dev)
    timing = {"setup": time.time() - t0}
    log.info(f"{run}: step {end['step']}, {st.info['kind']}, G {st.game.n_g:,} + D {st.game.n_d:,} "
             f"parameters, {st.info['n_real']} real points, on {dev} ({timing['setup']:.1f} s to set up)")
    tag = f"step_{end['step']:07d}" + (f"_s{cfg.seed_index}" if synthetic else "")
    out_dir = Path(cfg.out_dir or run / "landscape")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"{run_cfg.loss.name} on {run_cfg.dataset.name}, step {end['step']}"
    res = {"run_dir": str(run), "step": end["step"], "start_step": start["step"], "loss": run_cfg.loss.name,
           "dataset": run_cfg.dataset.name, **st.info, "n_params_g": st.game.n_g, "n_params_d": st.game.n_d,
           "distance": (st.w_end - st.w_start).norm().item()}
    if cfg.path.enabled:
        t1 = time.time()
        alphas = np.linspace(cfg.path.alpha_min, cfg.path.alpha_max, cfg.path.points)
        res["path_angle"] = gm.path_angle(st.game, st.w_start, st.w_end, alphas, _path_progress(st, len(alphas)))
        plots.path_angle(res["path_angle"], out_dir / f"path_angle_{tag}.png", title)
        timing["path_angle"] = time.time() - t1
    if st.on_point is not None:
        st.on_point(1.0)
    at_end = gm.field(st.game)
    res["at_checkpoint"] = {"grad_norm": at_end["v"].norm().item(), "loss_g": at_end["loss_g"],
                            "loss_d": at_end["loss_d"]}
    if cfg.eig.enabled:
        t1 = time.time()
        res["eigenvalues"] = gm.spectrum(st.game, cfg.eig, cfg.seed)
        plots.eigenvalues(res["eigenvalues"], out_dir / f"eigenvalues_{tag}.png", title)
        timing["eigenvalues"] = time.time() - t1
    if cfg.slices.enabled and st.slices is not None:
        t1 = time.time()
        log.info(f"loss slices: {cfg.slices.points} points x {len(cfg.slices.losses)} losses, "
                 f"{cfg.slices.d_steps} D steps each")
        res["loss_slices"] = st.slices()
        plots.loss_slices(res["loss_slices"], out_dir / f"loss_slices_{tag}.png", title)
        timing["loss_slices"] = time.time() - t1
    res["timing_s"] = {k: round(v, 2) for k, v in {**timing, "total": time.time() - t0}.items()}
    write_json(out_dir / f"landscape_{tag}.json", res)
    _log_summary(res, out_dir)
    return res


def _path_progress(st: Setup, n: int) -> Callable[[float], None]:
    """st.on_point, plus a line for the first and last point and one at least every PROGRESS_S."""
    t0, last, i = time.time(), [0.0], [0]

    def on_point(a: float) -> None:
        if st.on_point is not None:
            st.on_point(a)
        i[0] += 1
        now = time.time() - t0
        if i[0] in (1, n) or now - last[0] >= PROGRESS_S:
            last[0] = now
            log.info(f"path-angle: point {i[0]}/{n} (alpha {a:.3f}), {now:.1f} s")

    return on_point


def _log_summary(res: dict, out_dir: Path) -> None:
    msg = [f"{res['loss']} on {res['dataset']}, step {res['step']}: |v| at checkpoint "
           f"{res['at_checkpoint']['grad_norm']:.3g}"]
    if "eigenvalues" in res:
        msg.append(f"verdict: {res['eigenvalues']['verdict']['text']}")
    if "loss_slices" in res:
        msg += [f"slice {k}: barrier {v['barrier']:.3g}" for k, v in res["loss_slices"].items()
                if isinstance(v, dict)]
    msg.append(f"{res['timing_s']['total']:.1f} s -> {out_dir}")
    log.info("; ".join(msg))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="landscape")
def _main(cfg) -> None:
    interrupt.stop_on_ctrl_c("gl-landscape", exit_on_user_error, "gl-landscape", analyse, cfg)


def main() -> None:
    rules.check_argv("gl-landscape", schema.Landscape, schema.groups())
    _main()


if __name__ == "__main__":
    main()
