"""A synthetic run for a gl-train job (job.py): S seeds of a SyntheticGAN in one run dir, their
trajectories recorded for the figures, judged (collapsed / covered / diverged) per seed at the end."""
import gc

import numpy as np
import torch

from gan_landscape.report import plots
from gan_landscape.data.synthetic import SyntheticGAN, mode_centres, outcome

PLOT_SEEDS = 4          # seeds drawn in the figures
PLOT_POINTS = 500       # G samples kept per snapshot and plotted seed
SNAPSHOTS = 100         # trajectory snapshots over a run
D_SNAPSHOTS = (0, 0.01, 0.1, 0.5, 1.0)  # fractions of the run at which D's function is recorded


class SyntheticRun:
    def __init__(self, cfg, device):
        self.cfg = cfg
        self.gan = SyntheticGAN(cfg, [cfg.seed + k for k in range(cfg.train.num_seeds)], device)
        self.hist = {"steps": [], "fakes": [], "d_steps": [], "d_values": [], "d_fakes": []}
        iters = cfg.train.iters
        self.snap_every = max(1, iters // SNAPSHOTS)
        self.d_at = {round(f * iters) for f in D_SNAPSHOTS}
        self.grid = torch.linspace(*cfg.dataset.plot_range, 200)
        gc.freeze()  # nothing built so far is garbage; the collector scanning it cost ~7% of a run

    @property
    def label(self) -> str:
        n = len(self.gan.seeds)
        return f"{self.cfg.loss.name} on {self.cfg.dataset.name}" + (f" x{n} seeds" if n > 1 else "")

    @property
    def step_count(self) -> int:
        return self.gan.step_count

    def step(self) -> None:
        it = self.gan.step_count
        if it % self.snap_every == 0 or it in self.d_at:
            self._snapshot(it)
        self.gan.step()
        if self.gan.step_count == self.cfg.train.iters:
            self._snapshot(self.gan.step_count)

    @torch.no_grad()
    def _snapshot(self, it: int) -> None:
        hist, y = self.hist, self.gan.samples()[:PLOT_SEEDS, :PLOT_POINTS].cpu()
        if (it % self.snap_every == 0 or it == self.cfg.train.iters) and it not in hist["steps"]:
            hist["steps"].append(it)
            hist["fakes"].append(y.half())
        if it in self.d_at and self.gan.ds.mlp.x_dim == 1 and it not in hist["d_steps"]:
            hist["d_steps"].append(it)
            hist["d_values"].append(self.gan.d_function(self.grid)[:PLOT_SEEDS].cpu())
            hist["d_fakes"].append(y[..., 0])

    # ---------------------------------------------------------------- the Trainable protocol (job.py)
    def state_dicts(self) -> list[dict]:
        return [{**self.gan.state_dict(), "history": self.hist}]

    def load_state_dicts(self, states: list, step: int) -> None:
        self.gan.load_state_dict(states[0])
        self.hist = states[0]["history"]

    def _finite(self) -> torch.Tensor:
        d, g = self.gan.last
        return torch.isfinite(d) & torch.isfinite(g)

    def metrics(self) -> list[dict]:
        d, g = self.gan.last
        ok = self._finite()
        res = outcome(self.cfg.dataset, self.gan.samples())
        nan = float("nan")
        return [{"d_loss": d[ok].mean().item() if ok.any() else nan,
                 "g_loss": g[ok].mean().item() if ok.any() else nan,
                 "collapse_rate": res["collapse_rate"],
                 "modes_covered_mean": float(np.mean(res["modes_covered"])),
                 "diverged_seeds": int((~ok).sum())}]

    def weights_finite(self) -> list[bool]:
        return [True]  # a seed that diverged is judged `diverged` in the outcome, the rest go on

    def outcome(self) -> list[dict]:
        gan = self.gan
        res = outcome(self.cfg.dataset, gan.samples())
        ok = self._finite().tolist() if gan.last else [True] * len(gan.seeds)
        self.verdicts = [v if fine else "diverged" for v, fine in zip(res["verdict"], ok)]
        self.modes_covered = res["modes_covered"]
        # collapse_kind splits a non-covered verdict: off_data (G never reached the data) or
        # few_modes (it collapsed onto some); a diverged seed keeps only "diverged"
        self.kinds = [m["collapse_kind"] if fine else "diverged" for m, fine in zip(res["metrics"], ok)]
        per_seed = [{"seed": s, "mode_counts": c, "modes_covered": m, "verdict": v, **met, "collapse_kind": k}
                    for s, c, m, v, met, k in zip(gan.seeds, res["mode_counts"], res["modes_covered"],
                                                  self.verdicts, res["metrics"], self.kinds)]
        n_collapsed = sum(v != "covered" for v in self.verdicts)
        return [{"status": "diverged" if not any(ok) else "finished", "step_path": gan.path,
                 "collapse_rate": n_collapsed / len(gan.seeds), "collapsed": n_collapsed,
                 **{k: self.kinds.count(k) for k in ("off_data", "few_modes")}, "seeds": per_seed}]

    def artifacts(self, step: int, final: bool) -> list[dict]:
        """The figures of a run that ended (the trajectory snapshots are taken in step())."""
        return [{".": self._figures}] if final else [{}]

    def _figures(self, out) -> None:
        """Trajectories (1-D), D's function (1-D), final samples (2-D), modes covered, into `out`."""
        cfg, gan, hist = self.cfg, self.gan, self.hist
        k = min(PLOT_SEEDS, len(gan.seeds))
        seeds, title, verdicts = gan.seeds[:k], f"{cfg.loss.name} on {cfg.dataset.name}", self.verdicts
        real = gan.x[:k].cpu().numpy()
        plots.modes_histogram(self.modes_covered, len(mode_centres(cfg.dataset)), out / "modes_covered.png", title)
        if cfg.dataset.mlp.x_dim == 1:
            fakes = torch.stack(hist["fakes"]).float().numpy()[..., 0]
            plots.trajectory_1d(hist["steps"], fakes, real[..., 0], verdicts[:k], seeds,
                                out / "trajectory.png", title)
            grid = np.linspace(*cfg.dataset.plot_range, 200)
            plots.d_function_1d(grid, hist["d_steps"], [v[0].numpy() for v in hist["d_values"]],
                                [f[0].numpy() for f in hist["d_fakes"]], real[0, :, 0],
                                out / "d_function.png", f"{title}, seed {seeds[0]}")
        else:  # every seed of the stack, so that no collapsed seed goes unseen
            fakes = gan.samples()[:, :PLOT_POINTS].cpu().numpy()
            plots.scatter_2d(fakes, gan.x[:, :PLOT_POINTS].cpu().numpy(), self.kinds, gan.seeds,
                             out / "samples.png", lim=max(map(abs, cfg.dataset.plot_range)), title=title)
