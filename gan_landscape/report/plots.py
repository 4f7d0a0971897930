"""Every figure of the package: the synthetic runs' own plots (gl-train), the report's (gl-report),
the landscape's (gl-landscape) and the first-order experiment's. Each function takes plain numbers
(dicts, lists, numpy arrays) and a file path; nothing here imports another module of the package."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path, dpi: int = 110):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def trajectory_1d(steps, fakes, real, verdicts, seeds, path, title=""):
    """G's points over iterations, one panel per plotted seed. fakes: [T, S_plot, N] numpy."""
    n = fakes.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False, sharey=True)
    for k, ax in enumerate(axes[0]):
        t = np.repeat(np.asarray(steps)[:, None], fakes.shape[2], 1)
        ax.scatter(t, fakes[:, k], s=1, c="tab:red", alpha=0.3, lw=0)
        for lo, hi in _bands(real[k]):
            ax.axhspan(lo, hi, color="tab:blue", alpha=0.2)
        ax.set_title(f"seed {seeds[k]}: {verdicts[k]}", fontsize=9)
        ax.set_xlabel("iteration")
    axes[0, 0].set_ylabel("G(z)")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _bands(x, gap=1.0):
    """Real 1-D data as intervals, splitting where consecutive sorted points are far apart."""
    x = np.sort(np.asarray(x).ravel())
    cuts = np.where(np.diff(x) > gap)[0]
    starts = np.r_[x[0], x[cuts + 1]]
    ends = np.r_[x[cuts], x[-1]]
    return list(zip(starts, ends))


def d_function_1d(grid, d_steps, d_values, fakes_at, real, path, title=""):
    """The paper's bad-basin figure: D(x) over x with real (blue) and fake (red) points at a few
    iterations of one seed. d_values: [T, grid]; fakes_at: [T, N]."""
    n = len(d_steps)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 2.8), squeeze=False, sharey=True)
    for k, ax in enumerate(axes[0]):
        ax.plot(grid, d_values[k], c="k", lw=1.2, label="D(x)")
        ax.plot(real, np.full_like(real, 0.02), "|", c="tab:blue", ms=10, label="real")
        ax.plot(fakes_at[k], np.full_like(fakes_at[k], -0.02), "|", c="tab:red", ms=10, label="fake")
        ax.set_ylim(-0.08, 1.05)
        ax.set_title(f"iteration {d_steps[k]}", fontsize=9)
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("sigmoid(f(x))")
    axes[0, 0].legend(fontsize=7, loc="center left")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def scatter_2d(fakes, real, verdicts, seeds, path, lim=1.5, title=""):
    """Final G samples (red) over the real data (blue), one small panel per seed in a grid; a seed
    whose verdict is not `covered` gets a red frame and its verdict in red."""
    n = len(fakes)
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    size = 2.8 if n <= 4 else 1.7
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.4), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for k, ax in enumerate(axes.ravel()[:n]):
        ax.scatter(real[k][:, 0], real[k][:, 1], s=1, c="tab:blue", alpha=0.3, lw=0)
        ax.scatter(fakes[k][:, 0], fakes[k][:, 1], s=2, c="tab:red", alpha=0.5, lw=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        bad = verdicts[k] != "covered"
        ax.set_title(f"seed {seeds[k]}: {verdicts[k]}", fontsize=9 if n <= 4 else 7,
                     color="tab:red" if bad else "black")
        if bad:
            for side in ax.spines.values():
                side.set_color("tab:red")
                side.set_linewidth(2)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def modes_histogram(modes_covered, num_modes, path, title=""):
    """How many modes each seed's generator covers at the end."""
    fig, ax = plt.subplots(figsize=(3.6, 2.8))
    counts = np.bincount(np.asarray(modes_covered), minlength=num_modes + 1)
    ax.bar(np.arange(num_modes + 1), counts, color="tab:gray")
    ax.set_xlabel("modes covered")
    ax.set_ylabel("seeds")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


# ---------------------------------------------------------------- gl-report

def fid_vs_width(rows: list[dict], path) -> None:
    """One panel per dataset x model, one line per loss (in the rows' order), error bars = std over
    seeds; a bottleneck cell is an unjoined hollow marker at its width."""
    panels = sorted({(r["dataset"], r["model"]) for r in rows})
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (ds, model) in zip(axes[0], panels):
        for i, loss in enumerate(losses):
            for bn in (False, True):
                line = [r for r in rows if r["fid_mean"] is not None
                        and (r["dataset"], r["model"], r["loss"], r["bottleneck"]) == (ds, model, loss, bn)]
                pts = sorted((r["width"], r["fid_mean"], r["fid_std"] or 0) for r in line)
                if pts:
                    x, y, e = zip(*pts)
                    ax.errorbar(x, y, yerr=e, capsize=3, color=f"C{i}", ls="none" if bn else "-",
                                marker="s" if bn else "o", mfc="none" if bn else f"C{i}",
                                label=f"{loss} (bottleneck)" if bn else loss)
        ax.set_xscale("log", base=2)
        ticks = sorted({r["width"] for r in rows if r["model"] == model})
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks], minor=False)
        ax.minorticks_off()
        ax.set_xlabel("width (1 = the paper's regular net)")
        ax.set_ylabel("FID (lower is better)")
        ax.set_title(f"{ds}, {model}", fontsize=10)
        ax.legend(fontsize=8)
    _save(fig, path, dpi=100)


def collapse_rates(rows: list[dict], path) -> None:
    """Collapse rate per loss, one panel per dataset, 95% Wilson intervals; separable red, pairing blue."""
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        rs = [r for r in rows if r["dataset"] == ds and r["seeds"]]
        rate = [r["collapse_rate"] for r in rs]
        err = [[p - r["ci_low"] for p, r in zip(rate, rs)], [r["ci_high"] - p for p, r in zip(rate, rs)]]
        ax.bar(range(len(rs)), rate, yerr=err, capsize=4,
               color=["tab:red" if r["family"] == "separable" else "tab:blue" for r in rs])
        ax.set_xticks(range(len(rs)), [f"{r['loss']}\n{r['seeds']} seeds" for r in rs], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("collapse rate")
        ax.set_title(f"{ds}: red separable, blue pairing (95% CI)", fontsize=10)
    _save(fig, path, dpi=100)


def mosaic(pictures: dict, path, losses: list[str]) -> None:
    """pictures: {(dataset, model, width, bottleneck, loss): image file}; rows = dataset x model x
    width (widest first) x bottleneck, columns = `losses` in that order. One row of many losses (the
    synthetic experiments) wraps into a grid."""
    rows = sorted({k[:4] for k in pictures}, key=lambda k: (k[0], k[1], -k[2], k[3]))
    cols = [loss for loss in losses if any(k[4] == loss for k in pictures)]
    h, w = plt.imread(next(iter(pictures.values()))).shape[:2]
    wrap = len(rows) == 1 and len(cols) > 2
    per_row = (1 if w > 2 * h else min(3, len(cols))) if wrap else len(cols)  # wide plots: one a row
    shape = (math.ceil(len(cols) / per_row), per_row) if wrap else (len(rows), len(cols))
    cell = 12 / per_row if wrap else 3.0  # inches across one picture
    fig, axes = plt.subplots(*shape, figsize=(cell * shape[1], (cell * h / w + 0.4) * shape[0]), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    many_datasets = len({r[0] for r in rows}) > 1
    for (ri, row), (ci, loss) in ((a, b) for a in enumerate(rows) for b in enumerate(cols)):
        img = pictures.get((*row, loss))
        ax = axes.ravel()[ci] if wrap else axes[ri, ci]
        if img is not None:
            ax.imshow(plt.imread(img))
            ds = f"{row[0]} " if many_datasets else ""
            ax.set_title(loss if wrap else f"{ds}{row[1]} w{row[2]:g}{' bn' if row[3] else ''} {loss}",
                         fontsize=10)
    _save(fig, path, dpi=80)  # pictures of pictures: more pixels add nothing


def metric_vs_width(rows: list[dict], metric: str, label: str, path) -> None:
    """One panel per dataset: `metric` (mean over seeds, 95% interval) against width, one line per
    loss family (rows: dataset, width, family, metric, metric_lo, metric_hi)."""
    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for fam, colour, shift in (("separable", "tab:red", 0.97), ("pairing", "tab:blue", 1.03)):
            pts = sorted((r["width"], r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"]) for r in rows
                         if r["dataset"] == ds and r["family"] == fam and r[metric] is not None)
            if not pts:
                continue
            x, y, lo, hi = zip(*pts)
            err = [[m - (a if a is not None else m) for m, a in zip(y, lo)],
                   [(b if b is not None else m) - m for m, b in zip(y, hi)]]
            ax.errorbar([w * shift for w in x], y, yerr=err, capsize=3, color=colour, marker="o", label=fam)
        ax.set_xscale("log", base=2)
        ticks = sorted({r["width"] for r in rows})
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks], minor=False)
        ax.minorticks_off()
        ax.set_xlabel("width (1 = 128 hidden units)")
        ax.set_ylabel(label)
        ax.set_title(f"{ds} (95% intervals over seeds)", fontsize=10)
        ax.legend(fontsize=8)
    _save(fig, path, dpi=100)


OUTCOME_COLOURS = {"converged": "tab:green", "collapsed": "tab:red", "oscillating": "tab:orange",
                   "stuck": "tab:gray"}


def first_order(res: dict, path) -> None:
    """Li et al.'s model: outcome fractions per discriminator setting, then the (mu_1, mu_2)
    trajectories of the optimal D, the first and the last first-order setting."""
    sets = res["settings"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.0))
    bottom = np.zeros(len(sets))
    for o, c in OUTCOME_COLOURS.items():
        vals = np.array([s.get(o, 0.0) for s in sets])
        axes[0].bar([s["name"] for s in sets], vals, bottom=bottom, color=c, label=o)
        bottom += vals
    axes[0].set_ylabel("fraction of initialisations")
    axes[0].legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    axes[0].tick_params(axis="x", labelsize=8)
    ms = res["mu_star"]
    for ax, s in zip(axes[1:], (sets[0], sets[min(1, len(sets) - 1)], sets[-1])):
        traj = np.asarray(s["trajectories"])
        for i in range(traj.shape[1]):
            ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.8)
            ax.plot(*traj[0, i], "o", ms=3, c="k")
        ax.plot([ms[0], ms[1]], [ms[1], ms[0]], "*", ms=12, c="gold", mec="k")
        ax.plot([-3, 3], [-3, 3], c="gray", lw=0.5, ls="--")  # mu_1 = mu_2: mode collapse
        lo, hi = min(traj.min(), min(ms)), max(traj.max(), max(ms))
        pad = 0.1 * (hi - lo + 1e-9)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
        ax.set_title(f"{s['name']}: trajectories of (mu_1, mu_2)", fontsize=9)
    fig.suptitle("Optimal vs first-order discriminator (Li et al., 2018)", fontsize=10)
    _save(fig, path)


# ---------------------------------------------------------------- gl-landscape

def path_angle(p: dict, path, title: str) -> None:
    """Berard et al.'s path-angle plot: cos(v, w_start - w_end) and |v| along the path."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    a = np.asarray(p["alpha"])
    axes[0].plot(a, p["cosine"], c="k")
    axes[0].axhline(0, c="gray", lw=0.6)
    axes[0].set_ylabel("path-angle  cos(v, w_start - w_end)")
    axes[1].semilogy(a, np.maximum(p["grad_norm"], 1e-300), c="tab:red")
    axes[1].set_ylabel("|v|  (game vector field norm)")
    for ax in axes:
        ax.axvline(1, c="tab:blue", ls="--", lw=0.8)
        ax.set_xlabel("alpha  (0 = start, 1 = checkpoint)")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def eigenvalues(s: dict, path, title: str) -> None:
    """The game Jacobian's eigenvalues in the complex plane and each player's Hessian's, ranked."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    j = np.asarray(s["jacobian"]["top"] + s["jacobian"]["smallest"], dtype=float).reshape(-1, 2)
    axes[0].scatter(j[:, 0], j[:, 1], s=14, c="tab:purple")
    axes[0].axvline(0, c="gray", lw=0.6)
    axes[0].axhline(0, c="gray", lw=0.6)
    axes[0].set_xlabel("Re")
    axes[0].set_ylabel("Im")
    axes[0].set_title("game Jacobian eigenvalues", fontsize=9)
    for ax, name, label in ((axes[1], "hessian_g", "G"), (axes[2], "hessian_d", "D")):
        vals = np.unique(np.round(np.asarray(s[name]["top"] + s[name]["smallest"], dtype=float), 12))[::-1]
        ax.bar(np.arange(len(vals)), vals, color=np.where(vals >= 0, "tab:green", "tab:red"))
        ax.axhline(0, c="gray", lw=0.6)
        ax.set_title(f"{label}'s Hessian: top-{len(s[name]['top'])} |eig| and smallest", fontsize=9)
        ax.set_xlabel("rank")
    fig.suptitle(f"{title}: {s['verdict']['text']}", fontsize=10)
    _save(fig, path)


def loss_slices(sl: dict, path, title: str) -> None:
    """max_D (-L_D) along the line from a collapsed to a covering generator, one panel per loss."""
    names = [k for k in sl if isinstance(sl[k], dict)]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(sl["t"], sl[name]["value"], c="k", marker=".", ms=3)
        ax.set_title(f"{name}: barrier {sl[name]['barrier']:.3g}", fontsize=9)
        ax.set_xlabel("t  (0 = collapsed Y, 1 = covering Y)")
    axes[0, 0].set_ylabel("max_D (-L_D)  with D re-optimised")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
