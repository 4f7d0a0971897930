"""Figures for the synthetic experiments: the paper's bad-basin picture and where G's points go."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    """Final G samples (red) over the real data (blue), one panel per plotted seed."""
    n = len(fakes)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n, 2.9), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.scatter(real[k][:, 0], real[k][:, 1], s=1, c="tab:blue", alpha=0.3, lw=0)
        ax.scatter(fakes[k][:, 0], fakes[k][:, 1], s=2, c="tab:red", alpha=0.5, lw=0)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"seed {seeds[k]}: {verdicts[k]}", fontsize=9)
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
