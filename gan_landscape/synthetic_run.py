"""One synthetic run: S seeds trained together, logged, checkpointed, judged and plotted."""
import gc
import logging
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from . import checkpoint, plots
from .synthetic import SyntheticGAN, outcome

log = logging.getLogger(__name__)
PLOT_SEEDS = 4          # seeds drawn in the figures
PLOT_POINTS = 500       # G samples kept per snapshot and plotted seed
SNAPSHOTS = 100         # trajectory snapshots over a run
D_SNAPSHOTS = (0, 0.01, 0.1, 0.5, 1.0)  # fractions of the run at which D's function is recorded


def train(cfg, rd, device) -> dict:
    seeds = [cfg.seed + k for k in range(cfg.train.num_seeds)]
    gan = SyntheticGAN(cfg, seeds, device)
    iters = cfg.train.iters
    hist = {"steps": [], "fakes": [], "d_steps": [], "d_values": [], "d_fakes": []}
    state = checkpoint.latest(rd.path, map_location=device)
    if state is None:
        checkpoint.save(rd.path, 0, _state(cfg, gan, hist))
    else:
        gan.load_state_dict(state)
        hist = state["history"]
        rd.truncate_metrics(gan.step_count)
        log.info(f"resuming {rd.path} from iteration {gan.step_count}")
    snap_every = max(1, iters // SNAPSHOTS)
    d_at = {round(f * iters) for f in D_SNAPSHOTS}
    grid = torch.linspace(*cfg.dataset.plot_range, 200)
    gc.freeze()  # nothing built so far is garbage; the collector scanning it cost ~7% of a run
    start, t0 = gan.step_count, time.time()
    bar = tqdm(range(start, iters), initial=start, total=iters, desc=f"{cfg.loss.name} x{len(seeds)}",
               disable=None, mininterval=1.0)
    for it in bar:
        if it % snap_every == 0 or it in d_at:
            _snapshot(gan, hist, grid, it, it % snap_every == 0, it in d_at)
        gan.step()
        done = it + 1
        if done % cfg.train.log_every == 0 or done == iters:
            rec = _metrics(cfg, gan, done)
            rd.log_metrics(rec)
            bar.set_postfix(d=f"{rec['d_loss']:.3f}", g=f"{rec['g_loss']:.3f}",
                            collapsed=f"{rec['collapse_rate']:.2f}")
            if rec["diverged_seeds"] == len(seeds):
                return _finish(cfg, rd, gan, hist, time.time() - t0, done - start, "diverged")
        if done % cfg.train.ckpt_every == 0 and done < iters:
            checkpoint.save(rd.path, done, _state(cfg, gan, hist), keep=2)
    _snapshot(gan, hist, grid, iters, True, iters in d_at)
    checkpoint.save(rd.path, iters, _state(cfg, gan, hist), keep=2)
    return _finish(cfg, rd, gan, hist, time.time() - t0, iters - start, "finished")


def _state(cfg, gan, hist) -> dict:
    return {**gan.state_dict(), "history": hist, "config": OmegaConf.to_container(cfg, resolve=True)}


def _finite(gan) -> torch.Tensor:
    d, g = gan.last
    return torch.isfinite(d) & torch.isfinite(g)


def _metrics(cfg, gan, step) -> dict:
    d, g = gan.last
    ok = _finite(gan)
    res = outcome(cfg.dataset, gan.samples())
    return {"step": step, "d_loss": d[ok].mean().item() if ok.any() else float("nan"),
            "g_loss": g[ok].mean().item() if ok.any() else float("nan"),
            "collapse_rate": res["collapse_rate"], "modes_covered_mean": float(np.mean(res["modes_covered"])),
            "diverged_seeds": int((~ok).sum())}


@torch.no_grad()
def _snapshot(gan, hist, grid, it, fakes, dfun):
    y = gan.samples()[:PLOT_SEEDS, :PLOT_POINTS].cpu()
    if fakes and (not hist["steps"] or hist["steps"][-1] != it):
        hist["steps"].append(it)
        hist["fakes"].append(y.half())
    if dfun and gan.ds.mlp.x_dim == 1 and it not in hist["d_steps"]:
        hist["d_steps"].append(it)
        hist["d_values"].append(gan.d_function(grid)[:PLOT_SEEDS].cpu())
        hist["d_fakes"].append(y[..., 0])


def _finish(cfg, rd, gan, hist, seconds, iters_done, status) -> dict:
    res = outcome(cfg.dataset, gan.samples())
    ok = _finite(gan).tolist() if gan.last else [True] * len(gan.seeds)
    verdicts = [v if fine else "diverged" for v, fine in zip(res["verdict"], ok)]
    per_seed = [{"seed": s, "mode_counts": c, "modes_covered": m, "verdict": v}
                for s, c, m, v in zip(gan.seeds, res["mode_counts"], res["modes_covered"], verdicts)]
    n_collapsed = sum(v != "covered" for v in verdicts)
    summary = rd.update_summary(
        status=status, experiment=cfg.experiment_name, dataset=cfg.dataset.name, loss=cfg.loss.name,
        model=cfg.model.name, width=cfg.width, num_seeds=len(gan.seeds), iters=gan.step_count,
        collapse_rate=n_collapsed / len(gan.seeds), collapsed=n_collapsed, seeds=per_seed,
        seconds=round(seconds, 2), it_per_s=round(iters_done / max(seconds, 1e-9), 1))
    _plot(cfg, rd, gan, hist, verdicts, res["modes_covered"])
    log.info(f"{cfg.loss.name} on {cfg.dataset.name}: {n_collapsed}/{len(gan.seeds)} seeds collapsed "
             f"({summary['collapse_rate']:.0%}) in {seconds:.1f} s -> {rd.path}")
    return summary


def _plot(cfg, rd, gan, hist, verdicts, modes_covered):
    k = min(PLOT_SEEDS, len(gan.seeds))
    seeds, title = gan.seeds[:k], f"{cfg.loss.name} on {cfg.dataset.name}"
    real = gan.x[:k].cpu().numpy()
    plots.modes_histogram(modes_covered, _num_modes(cfg), rd.path / "modes_covered.png", title)
    if cfg.dataset.mlp.x_dim == 1:
        fakes = torch.stack(hist["fakes"]).float().numpy()[..., 0]
        plots.trajectory_1d(hist["steps"], fakes, real[..., 0], verdicts[:k], seeds,
                            rd.path / "trajectory.png", title)
        grid = np.linspace(*cfg.dataset.plot_range, 200)
        plots.d_function_1d(grid, hist["d_steps"], [v[0].numpy() for v in hist["d_values"]],
                            [f[0].numpy() for f in hist["d_fakes"]], real[0, :, 0],
                            rd.path / "d_function.png", f"{title}, seed {seeds[0]}")
    else:
        fakes = hist["fakes"][-1].float().numpy()
        plots.scatter_2d(fakes, real, verdicts[:k], seeds, rd.path / "samples.png",
                         title=title)


def _num_modes(cfg):
    return len(cfg.dataset.cluster_starts) if cfg.dataset.name == "two_cluster" else cfg.dataset.num_modes
