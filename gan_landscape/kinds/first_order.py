"""Optimal vs first-order discriminator dynamics in Li, Madry, Peebles, Schmidt (ICML 2018)'s model.

True distribution G* = 1/2 N(mu*_1, 1) + 1/2 N(mu*_2, 1); generator G_mu = 1/2 N(mu_1, 1) + 1/2 N(mu_2, 1);
discriminator D = indicator of [l_1, r_1] u [l_2, r_2]. The objective, exact (population, no samples):

    L(mu, l, r) = E_{G*} D + E_{G_mu} (1 - D) = 1 + sum_i [H(r_i) - H(l_i)],  H = CDF* - CDF_mu,

D ascends L, G descends it; the formula holds while l_1 <= r_1 <= l_2 <= r_2, and every D step is
projected back onto that set (projected gradient ascent), so D stays a union of two intervals.
Gradients (phi the standard normal pdf):
dL/dr_i = g*(r_i) - g_mu(r_i), dL/dl_i = -(g*(l_i) - g_mu(l_i)),
dL/dmu_j = 1/2 sum_i [phi(r_i - mu_j) - phi(l_i - mu_j)]. Signs are derived here, not copied from
the third-party code, which uses the opposite convention (papers.md 2.3).

- optimal D: before every G step, D = {x : g*(x) > g_mu(x)} (the roots of g* - g_mu, at most 3),
  so G descends TV(G*, G_mu) (envelope theorem);
- first order: k gradient-ascent steps on (l, r) per G step, D carried over between G steps.

All runs of one setting are one vectorised numpy computation over the random initialisations.
"""
import logging

import numpy as np
from scipy.special import ndtr


log = logging.getLogger(__name__)
ALPHA = 0.5          # both mixtures weight their components equally
OUTCOMES = ("converged", "collapsed", "oscillating", "stuck")
RESULT_FILE = "first_order_dynamics.json"  # the table's numbers and the trajectories, for gl-report


def phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def mix_pdf(x, mu):
    """x [R, ...], mu [R, 2] -> [R, ...]: the density of 1/2 N(mu_1, 1) + 1/2 N(mu_2, 1)."""
    m = mu.reshape(mu.shape[0], *([1] * (x.ndim - 1)), 2)
    return ALPHA * phi(x[..., None] - m).sum(-1)


def mix_cdf(x, mu):
    m = mu.reshape(mu.shape[0], *([1] * (x.ndim - 1)), 2)
    return ALPHA * ndtr(x[..., None] - m).sum(-1)


def objective(mu_star, mu, l, r):
    """L(mu, l, r) per run: mu, l, r [R, 2]; mu_star [2]."""
    ms = np.broadcast_to(mu_star, mu.shape)
    H = lambda x: mix_cdf(x, ms) - mix_cdf(x, mu)  # noqa: E731
    return 1 + (H(r) - H(l)).sum(-1)


def grads(mu_star, mu, l, r):
    """(dL/dmu, dL/dl, dL/dr), each [R, 2]."""
    ms = np.broadcast_to(mu_star, mu.shape)
    h = lambda x: mix_pdf(x, ms) - mix_pdf(x, mu)  # noqa: E731
    d_mu = ALPHA * (phi(r[:, :, None] - mu[:, None, :]) - phi(l[:, :, None] - mu[:, None, :])).sum(1)
    return d_mu, -h(l), h(r)


def _h_and_slope(x, ms, mu):
    """h = g* - g_mu and dh/dx at x [n] for runs ms, mu [n, 2]."""
    d_star, d_mu = x[:, None] - ms, x[:, None] - mu
    h = ALPHA * (phi(d_star) - phi(d_mu)).sum(1)
    slope = ALPHA * (-d_star * phi(d_star) + d_mu * phi(d_mu)).sum(1)
    return h, slope


def optimal_mu_grad(mu_star, mu, grid_points: int = 400, span: float = 8.0):
    """dL/dmu at the optimal D: every root x of h = g* - g_mu is an interval end; right ends
    (h goes + to -) add phi(x - mu_j), left ends subtract it, and unbounded ends add nothing. Roots:
    sign changes on a per-run grid, then Newton steps kept inside the bracketing cell, all runs at
    once. A cell 8 sd past every mean is past every root that carries weight."""
    R = mu.shape[0]
    ms = np.broadcast_to(mu_star, mu.shape)
    lo = np.minimum(mu.min(1), min(mu_star)) - span
    hi = np.maximum(mu.max(1), max(mu_star)) + span
    xs = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, grid_points)[None]
    h = mix_pdf(xs, ms) - mix_pdf(xs, mu)
    ri, ci = np.nonzero((h[:, :-1] > 0) != (h[:, 1:] > 0))
    a, b, ha, hb = xs[ri, ci], xs[ri, ci + 1], h[ri, ci], h[ri, ci + 1]
    x = a + (b - a) * ha / (ha - hb)                  # linear interpolation, then Newton
    for _ in range(6):
        hx, slope = _h_and_slope(x, ms[ri], mu[ri])
        step = np.divide(hx, slope, out=np.zeros_like(hx), where=slope != 0)
        x = np.clip(x - step, a, b)
    sign = np.where(ha > 0, 1.0, -1.0)
    g = np.zeros((R, 2))
    for j in range(2):
        np.add.at(g[:, j], ri, ALPHA * sign * phi(x - mu[ri, j]))
    return g


SIDE = np.array([-1.0, 1.0, -1.0, 1.0])  # endpoints e = (l_1, r_1, l_2, r_2): d e_k L = SIDE_k h(e_k)


def project_endpoints(e):
    """Euclidean projection of e [R, 4] onto l_1 <= r_1 <= l_2 <= r_2, so that D stays a union of
    two disjoint intervals (an empty interval is l_i = r_i). Isotonic regression of the four numbers
    by the min-max formula, e_i = max_{j<=i} min_{k>=i} mean(e_j..e_k), on the rows that need it."""
    bad = (np.diff(e, axis=1) < 0).any(1)
    if bad.any():
        e = e.copy()
        c = np.concatenate([np.zeros((bad.sum(), 1)), np.cumsum(e[bad], 1)], 1)
        mean = lambda j, k: (c[:, k + 1] - c[:, j]) / (k - j + 1)  # noqa: E731
        e[bad] = np.stack([np.max([np.min([mean(j, k) for k in range(i, 4)], 0) for j in range(i + 1)], 0)
                           for i in range(4)], 1)
    return e


def d_endpoints(l0, r0):
    """D's starting endpoints (l_1, r_1, l_2, r_2) [R, 4], made feasible."""
    return project_endpoints(np.stack([l0[:, 0], r0[:, 0], l0[:, 1], r0[:, 1]], 1))


def advance(mu_star, mu, e, k, g_lr, d_lr, grid_points=400):
    """One generator step from mu [R, 2]: after the optimal D (k=None; e unused), or after k projected
    gradient-ascent steps on D's endpoints e [R, 4] (carried over). Returns the new (mu, e)."""
    if k is None:
        return mu - g_lr * optimal_mu_grad(mu_star, mu, grid_points), e
    ms = np.broadcast_to(mu_star, mu.shape)
    for _ in range(k):
        e = project_endpoints(e + d_lr * SIDE * (mix_pdf(e, ms) - mix_pdf(e, mu)))
    g = ALPHA * (SIDE[None, :, None] * phi(e[:, :, None] - mu[:, None, :])).sum(1)
    return mu - g_lr * g, e


def simulate(mu_star, mu0, l0, r0, k, steps, g_lr, d_lr, grid_points=400):
    """Trajectories mu [steps + 1, R, 2] from mu0 [R, 2]; k and D's start (l0, r0) as `advance`."""
    mu, e = mu0.copy(), None if k is None else d_endpoints(l0, r0)
    traj = [mu.copy()]
    for _ in range(steps):
        mu, e = advance(mu_star, mu, e, k, g_lr, d_lr, grid_points)
        traj.append(mu.copy())
    return np.stack(traj)


def classify(traj, mu_star, tol, collapse_frac, move_tol, window: float = 0.5):
    """Outcome of each run from its trajectory [T + 1, R, 2], in this order of precedence:
    converged (both final means within tol of mu*, up to swapping), collapsed (the final means
    closer than collapse_frac * |mu*_1 - mu*_2|), oscillating (not settled: the means' path length
    over the last `window` of the run exceeds move_tol), else stuck (settled away from mu*: the
    vanishing-gradient failure, D's interval ends out where g* - g_mu is ~0)."""
    end = np.sort(traj[-1], 1)
    err = np.abs(end - np.sort(mu_star)).max(1)
    gap = end[:, 1] - end[:, 0]
    w = max(1, int(window * (len(traj) - 1)))
    moving = np.abs(np.diff(traj[-w - 1:], axis=0)).sum((0, 2)) > move_tol
    sep = abs(mu_star[1] - mu_star[0])
    return np.where(err < tol, "converged", np.where(gap < collapse_frac * sep, "collapsed",
                                                     np.where(moving, "oscillating", "stuck")))


def initial_points(ds, seed: int):
    """num_inits random starts: mu ~ U(mu_init_range)^2 and four sorted D endpoints ~ U(d_init_range),
    so the intervals start disjoint and ordered (l_1 < r_1 < l_2 < r_2)."""
    rng = np.random.RandomState(seed)
    n = ds.num_inits
    mu0 = rng.uniform(*ds.mu_init_range, size=(n, 2))
    ends = np.sort(rng.uniform(*ds.d_init_range, size=(n, 4)), 1)
    return mu0, ends[:, [0, 2]], ends[:, [1, 3]]


class FirstOrderRun:
    """Every setting (the optimal D, then each k in dataset.d_steps) from the same random starts, one
    generator step of all of them per iteration: the trainable of a gl-train job (job.py). Its final
    artifact is RESULT_FILE (the table's numbers and the trajectories) for gl-report."""

    def __init__(self, cfg):
        self.cfg, ds = cfg, cfg.dataset
        self.mu_star = np.asarray(ds.mu_star, dtype=float)
        mu0, l0, r0 = initial_points(ds, cfg.seed)
        self.ks = [None, *ds.d_steps]
        self.mu = [mu0.copy() for _ in self.ks]
        self.e = [None if k is None else d_endpoints(l0, r0) for k in self.ks]
        self.traj = [[mu0.copy()] for _ in self.ks]
        self.step_count = 0
        self.label = "first-order dynamics"

    def step(self) -> None:
        opt, ds = self.cfg.optim, self.cfg.dataset
        for i, k in enumerate(self.ks):
            self.mu[i], self.e[i] = advance(self.mu_star, self.mu[i], self.e[i], k, opt.g_lr, opt.d_lr,
                                            ds.grid_points)
            self.traj[i].append(self.mu[i].copy())
        self.step_count += 1

    def _labels(self, i: int) -> np.ndarray:
        ds = self.cfg.dataset
        return classify(np.stack(self.traj[i]), self.mu_star, ds.tol, ds.collapse_frac, ds.move_tol)

    @staticmethod
    def name(k) -> str:
        return "optimal D" if k is None else f"k = {k}"

    def result(self) -> dict:
        """The numbers of the table and the figure (the format gl-report reads)."""
        ds, opt = self.cfg.dataset, self.cfg.optim
        out = {"mu_star": self.mu_star.tolist(), "steps": self.step_count, "num_inits": len(self.mu[0]),
               "g_lr": opt.g_lr, "d_lr": opt.d_lr, "tol": ds.tol, "collapse_frac": ds.collapse_frac,
               "move_tol": ds.move_tol, "settings": []}
        for i, k in enumerate(self.ks):
            traj, lab = np.stack(self.traj[i]), self._labels(i)
            stride = max(1, len(traj) // 500)  # the plot needs the shape, not every step
            out["settings"].append({"name": self.name(k), "k": k,
                                    **{o: float(np.mean(lab == o)) for o in OUTCOMES},
                                    "labels": lab.tolist(), "final_mu": traj[-1].tolist(),
                                    "trajectories": traj[::stride, : ds.plot_inits].tolist()})
        return out

    # ---------------------------------------------------------------- the Trainable protocol (job.py)
    def state_dicts(self) -> list[dict]:
        return [{"mu": self.mu, "e": self.e, "traj": [np.stack(t) for t in self.traj]}]

    def load_state_dicts(self, states: list, step: int) -> None:
        self.mu, self.e = states[0]["mu"], states[0]["e"]
        self.traj = [list(t) for t in states[0]["traj"]]
        self.step_count = step

    def metrics(self) -> list[dict]:
        return [{f"converged ({self.name(k)})": float(np.mean(self._labels(i) == "converged"))
                 for i, k in enumerate(self.ks)}]

    def weights_finite(self) -> list[bool]:
        return [all(np.isfinite(m).all() for m in self.mu)]

    def outcome(self) -> list[dict]:
        res = self.result()
        return [{"outcomes": {s["name"]: {o: s[o] for o in OUTCOMES} for s in res["settings"]}}]

    def artifacts(self, step: int, final: bool) -> list[dict]:
        if not final:
            return [{}]
        res = self.result()
        for s in res["settings"]:
            log.info(f"{s['name']}: " + ", ".join(f"{o} {s[o]:.0%}" for o in OUTCOMES))
        return [{RESULT_FILE: res}]


def sweep(cfg) -> dict:
    """The whole experiment in one call: what a finished FirstOrderRun's result holds."""
    run = FirstOrderRun(cfg)
    for _ in range(cfg.train.iters):
        run.step()
    return run.result()
