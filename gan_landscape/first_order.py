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
from pathlib import Path

import numpy as np
from scipy.special import ndtr

log = logging.getLogger(__name__)
ALPHA = 0.5          # both mixtures weight their components equally
OUTCOMES = ("converged", "collapsed", "oscillating", "stuck")


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


def simulate(mu_star, mu0, l0, r0, k, steps, g_lr, d_lr, grid_points=400):
    """Trajectories mu [steps + 1, R, 2] from mu0 [R, 2]. k=None: optimal D (l0, r0 unused); else k
    projected gradient-ascent steps on D's endpoints (from l0, r0 [R, 2], carried over) per G step."""
    mu = mu0.copy()
    ms = np.broadcast_to(mu_star, mu.shape)
    if k is not None:
        e = project_endpoints(np.stack([l0[:, 0], r0[:, 0], l0[:, 1], r0[:, 1]], 1))
    traj = [mu.copy()]
    for _ in range(steps):
        if k is None:
            g = optimal_mu_grad(mu_star, mu, grid_points)
        else:
            for _ in range(k):
                e = project_endpoints(e + d_lr * SIDE * (mix_pdf(e, ms) - mix_pdf(e, mu)))
            g = ALPHA * (SIDE[None, :, None] * phi(e[:, :, None] - mu[:, None, :])).sum(1)
        mu = mu - g_lr * g
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


def sweep(cfg) -> dict:
    """Every setting (optimal D, then each k in dataset.d_steps) from the same initial points."""
    ds, opt = cfg.dataset, cfg.optim
    mu_star = np.asarray(ds.mu_star, dtype=float)
    mu0, l0, r0 = initial_points(ds, cfg.seed)
    out = {"mu_star": mu_star.tolist(), "steps": cfg.train.iters, "num_inits": len(mu0),
           "g_lr": opt.g_lr, "d_lr": opt.d_lr, "tol": ds.tol, "collapse_frac": ds.collapse_frac,
           "move_tol": ds.move_tol, "settings": []}
    for k in [None, *ds.d_steps]:
        traj = simulate(mu_star, mu0, l0, r0, k, cfg.train.iters, opt.g_lr, opt.d_lr, ds.grid_points)
        lab = classify(traj, mu_star, ds.tol, ds.collapse_frac, ds.move_tol)
        frac = {o: float(np.mean(lab == o)) for o in OUTCOMES}
        stride = max(1, len(traj) // 500)  # the plot needs the shape, not every step
        out["settings"].append({"name": "optimal D" if k is None else f"k = {k}", "k": k, **frac,
                                "labels": lab.tolist(), "final_mu": traj[-1].tolist(),
                                "trajectories": traj[::stride, : ds.plot_inits].tolist()})
        log.info(f"{out['settings'][-1]['name']}: " + ", ".join(f"{o} {frac[o]:.0%}" for o in OUTCOMES))
    return out


# ---------------------------------------------------------------- report

def table(res: dict) -> str:
    """Markdown: one row per setting, the fraction of initialisations ending in each outcome."""
    head = (f"Li et al.'s model: mu* = {res['mu_star']}, {res['num_inits']} random initialisations, "
            f"{res['steps']} generator steps, step sizes G {res['g_lr']} / D {res['d_lr']}.\n\n")
    rows = ["| discriminator | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    rows += [f"| {s['name']} | " + " | ".join(f"{s[o]:.1%}" for o in OUTCOMES) + " |"
             for s in res["settings"]]
    sep = abs(res["mu_star"][1] - res["mu_star"][0])
    notes = (f"\n\nconverged: both means within {res['tol']} of mu* (up to swapping); collapsed: "
             f"|mu_1 - mu_2| < {res['collapse_frac'] * sep:g}; oscillating: still moving (path length of "
             f"mu over the last half of the run > {res['move_tol']}); stuck: settled elsewhere "
             "(vanishing gradient: D's interval ends sit where g* - g_mu is ~0). k = first-order D "
             "steps per G step; optimal D = the exact maximiser before every G step.\n")
    return head + "\n".join(rows) + notes


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = res["settings"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.0))
    bottom = np.zeros(len(sets))
    for o, c in zip(OUTCOMES, ("tab:green", "tab:red", "tab:orange", "tab:gray")):
        vals = np.array([s[o] for s in sets])
        axes[0].bar([s["name"] for s in sets], vals, bottom=bottom, color=c, label=o)
        bottom += vals
    axes[0].set_ylabel("fraction of initialisations")
    axes[0].legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    axes[0].tick_params(axis="x", labelsize=8)
    for ax, s in zip(axes[1:], (sets[0], sets[1], sets[-1])):
        traj = np.asarray(s["trajectories"])
        for i in range(traj.shape[1]):
            ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.8)
            ax.plot(*traj[0, i], "o", ms=3, c="k")
        ms = res["mu_star"]
        ax.plot([ms[0], ms[1]], [ms[1], ms[0]], "*", ms=12, c="gold", mec="k")
        ax.plot([-3, 3], [-3, 3], c="gray", lw=0.5, ls="--")  # mu_1 = mu_2: mode collapse
        ax.set_xlim(*_lims(traj, ms))
        ax.set_ylim(*_lims(traj, ms))
        ax.set_aspect("equal")
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
        ax.set_title(f"{s['name']}: trajectories of (mu_1, mu_2)", fontsize=9)
    fig.suptitle("Optimal vs first-order discriminator (Li et al., 2018)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lims(traj, ms):
    lo, hi = min(traj.min(), min(ms)), max(traj.max(), max(ms))
    pad = 0.1 * (hi - lo + 1e-9)
    return lo - pad, hi + pad


def write(res: dict, folder) -> dict:
    """first_order_dynamics.{md,png} in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"table": folder / "first_order_dynamics.md", "plot": folder / "first_order_dynamics.png"}
    paths["table"].write_text("# First-order vs optimal discriminator\n\n" + table(res))
    plot(res, paths["plot"])
    return paths


def train(cfg, rd) -> dict:
    """gl-train's branch for dataset.kind = gmm_intervals: the sweep, its table, plot and JSON in
    the run dir (and in `results_dir` when set)."""
    import time
    from .rundir import write_json
    t0 = time.time()
    res = sweep(cfg)
    write_json(rd.path / "first_order_dynamics.json", res)
    paths = write(res, rd.path)
    if cfg.get("results_dir"):
        paths = write(res, cfg.results_dir)
    log.info(f"first-order dynamics: table {paths['table']}, plot {paths['plot']}")
    rows = {s["name"]: {o: s[o] for o in OUTCOMES} for s in res["settings"]}
    return rd.update_summary(status="finished", experiment=cfg.experiment_name, dataset=cfg.dataset.name,
                             seconds=round(time.time() - t0, 1), outcomes=rows)
