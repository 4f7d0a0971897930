"""gl-report's figures: FID vs width, collapse rate per loss, and a mosaic of final samples."""
import math
from pathlib import Path

from .report import Run, loss_key


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_fid_vs_width(rows: list[dict], path: Path) -> None:
    """One panel per dataset x model, one line per loss, error bars = std over seeds; a bottleneck
    cell is an unjoined hollow marker at its width."""
    plt = _plt()
    panels = sorted({(r["dataset"], r["model"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (ds, model) in zip(axes[0], panels):
        for i, loss in enumerate(sorted({r["loss"] for r in rows}, key=loss_key)):
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
    _save(plt, fig, path)


def plot_collapse(rows: list[dict], path: Path) -> None:
    """Collapse rate per loss, one panel per dataset, 95% Wilson intervals; separable red, pairing blue."""
    plt = _plt()
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
    _save(plt, fig, path)


def final_image(run: Run) -> Path | None:
    """The picture of a run's end: its last sample grid (image runs) or its own summary plot."""
    grids = sorted((run.path / "samples").glob("step_*.png"))
    if grids:
        return grids[-1]
    for name in ("samples.png", "trajectory.png"):
        if (run.path / name).exists():
            return run.path / name
    return None


def plot_mosaic(runs: list[Run], path: Path) -> bool:
    """Final pictures, rows = dataset x model x width (x bottleneck), columns = loss, lowest seed."""
    first = {}
    for r in sorted(runs, key=lambda r: r.pick("seed", "seed", 0)):
        img = final_image(r)
        if img is not None:
            first.setdefault(r.cell, img)
    if not first:
        return False
    plt = _plt()
    rows = sorted({k[:4] for k in first}, key=lambda k: (k[0], k[1], -k[2], k[3]))
    cols = sorted({k[4] for k in first}, key=loss_key)
    h, w = plt.imread(next(iter(first.values()))).shape[:2]
    synthetic = len(rows) == 1 and len(cols) > 2  # one image per loss: wrap them into a grid
    per_row = (1 if w > 2 * h else min(3, len(cols))) if synthetic else len(cols)  # wide plots: one a row
    shape = (math.ceil(len(cols) / per_row), per_row) if synthetic else (len(rows), len(cols))
    cell = 12 / per_row if synthetic else 3.0  # inches across one picture
    size = (cell * shape[1], (cell * h / w + 0.4) * shape[0])
    fig, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for (ri, row), (ci, loss) in ((a, b) for a in enumerate(rows) for b in enumerate(cols)):
        img = first.get((*row, loss))
        ax = axes.ravel()[ci] if synthetic else axes[ri, ci]
        if img is not None:
            ax.imshow(plt.imread(img))
            ds = f"{row[0]} " if len({r[0] for r in rows}) > 1 else ""
            ax.set_title(loss if synthetic else f"{ds}{row[1]} w{row[2]:g}{' bn' if row[3] else ''} {loss}",
                         fontsize=10)
    _save(plt, fig, path, dpi=80)  # pictures of pictures: more pixels add nothing
    return True


def _save(plt, fig, path: Path, dpi: int = 100) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
