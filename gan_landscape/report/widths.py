"""The width experiment's report (experiment=synthetic_widths, written by scripts/reproduce.py):
<name>.md, <name>.csv and figures of modes captured and high-quality fraction against width, per
mixture, separable vs pairing losses, with 95% intervals over seeds. The text states what the
numbers show and nothing more."""
import csv
import math
from collections import defaultdict
from pathlib import Path

from scipy import stats

from gan_landscape.report import plots
from gan_landscape.losses import LOSSES
from gan_landscape.runs.reader import find_runs

METRICS = ("modes_captured", "high_quality_fraction", "reverse_kl")


def mean_ci(xs: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean and its 95% Student-t interval over seeds (None where there is nothing to average)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None, None
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - h, m + h


def family(loss: str) -> str:
    return LOSSES[loss].family if loss in LOSSES else "?"


def seed_rows(dirs) -> list[dict]:
    """One row per (run, seed) of every finished or diverged synthetic run below `dirs`."""
    rows = []
    for run in find_runs(dirs):
        if run.kind != "synthetic" or run.cell is None or run.status not in ("finished", "diverged"):
            continue
        ds, _, width, _, loss = run.cell
        for s in run.summary.get("seeds") or []:
            if isinstance(s, dict) and "modes_captured" in s:
                rows.append({"dataset": ds, "width": width, "loss": loss, "family": family(loss), **s})
    return rows


def cell_rows(seeds: list[dict], by: tuple) -> list[dict]:
    """Mean and 95% interval of each metric, per cell of `by` (e.g. dataset, width, loss)."""
    cells = defaultdict(list)
    for s in seeds:
        cells[tuple(s[k] for k in by)].append(s)
    out = []
    for key in sorted(cells, key=lambda k: tuple(-v if isinstance(v, float) else str(v) for v in k)):
        group, row = cells[key], dict(zip(by, key))
        row["seeds"] = len(group)
        for metric in METRICS:
            m, lo, hi = mean_ci([s.get(metric) for s in group])
            row.update({metric: m, f"{metric}_lo": lo, f"{metric}_hi": hi})
        for kind in ("covered", "few_modes", "off_data", "diverged"):
            row[kind] = sum(s.get("collapse_kind") == kind for s in group)
        out.append(row)
    return out


def _f(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _interval(r: dict, metric: str, digits=2) -> str:
    lo, hi = r[f"{metric}_lo"], r[f"{metric}_hi"]
    return f"{_f(r[metric], digits)} ({_f(lo, digits)}–{_f(hi, digits)})" if lo is not None else _f(r[metric], digits)


def findings(fam: list[dict]) -> list[str]:
    """Per mixture and width: does pairing capture more modes than separable, by intervals that
    do not overlap? Says only that, cell by cell."""
    lines = []
    by = defaultdict(dict)
    for r in fam:
        by[(r["dataset"], r["width"])][r["family"]] = r
    for (ds, width), f in sorted(by.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        sep, pair = f.get("separable"), f.get("pairing")
        if not sep or not pair or sep["modes_captured"] is None or pair["modes_captured"] is None:
            continue
        if None in (sep["modes_captured_lo"], pair["modes_captured_lo"]):
            verdict = "too few seeds for an interval"
        elif pair["modes_captured_lo"] > sep["modes_captured_hi"]:
            verdict = "pairing higher (intervals do not overlap)"
        elif sep["modes_captured_lo"] > pair["modes_captured_hi"]:
            verdict = "separable higher (intervals do not overlap)"
        else:
            verdict = "not told apart (intervals overlap)"
        lines.append(f"- {ds}, width {width:g}: modes captured, separable {_interval(sep, 'modes_captured')} "
                     f"vs pairing {_interval(pair, 'modes_captured')}: {verdict}; off the data "
                     f"{sep['off_data']}/{sep['seeds']} vs {pair['off_data']}/{pair['seeds']} seeds, collapsed "
                     f"onto few modes {sep['few_modes']}/{sep['seeds']} vs {pair['few_modes']}/{pair['seeds']}.")
    return lines


def markdown(name: str, cells: list[dict], fam: list[dict], n_runs: int) -> list[str]:
    md = [f"# {name}", "",
          f"{n_runs} run(s); per mixture x width x loss the mean over seeds and its 95% Student-t interval. "
          "Modes captured, high-quality fraction and reverse KL as VEEGAN / PacGAN define them "
          "(gan_landscape/metrics/modes.py); `off data` = no mode covered (G never reached the data), `few modes` = "
          "collapsed onto some of them. Every mixture uses 5gaussian.py's nets and optimiser.", "",
          "## Separable vs pairing, per mixture and width", "", *findings(fam), "",
          "## Every cell", "",
          "| dataset | width | loss | family | seeds | modes captured | high-quality fraction | reverse KL | "
          "covered | few modes | off data | diverged |",
          "|---|---:|---|---|---:|---|---|---|---:|---:|---:|---:|"]
    for r in cells:
        md.append(f"| {r['dataset']} | {r['width']:g} | {r['loss']} | {family(r['loss'])} | {r['seeds']} | "
                  f"{_interval(r, 'modes_captured')} | {_interval(r, 'high_quality_fraction')} | "
                  f"{_interval(r, 'reverse_kl')} | {r['covered']} | {r['few_modes']} | {r['off_data']} | "
                  f"{r['diverged']} |")
    return md


def write(dirs, out: Path, name: str = "synthetic_widths") -> list[Path]:
    """Write <out>/<name>.md, .csv and the two figures from the runs below `dirs`."""
    seeds = seed_rows(dirs)
    if not seeds:
        return []
    out.mkdir(parents=True, exist_ok=True)
    cells = cell_rows(seeds, ("dataset", "width", "loss"))
    fam = cell_rows(seeds, ("dataset", "width", "family"))
    paths = [out / f"{name}.csv", out / f"{name}_modes.png", out / f"{name}_hq.png", out / f"{name}.md"]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cells[0]))
        w.writeheader()
        w.writerows(cells)
    plots.metric_vs_width(fam, "modes_captured", "modes captured", paths[1])
    plots.metric_vs_width(fam, "high_quality_fraction", "high-quality fraction", paths[2])
    n_runs = len({(s["dataset"], s["width"], s["loss"]) for s in seeds})
    md = markdown(name, cells, fam, n_runs) + ["", f"![modes captured]({paths[1].name})",
                                               f"![high-quality fraction]({paths[2].name})", ""]
    paths[3].write_text("\n".join(md))
    return paths
