"""gl-report: runs of one or more sweeps -> results/<experiment>.md, .csv and plots.

    gl-report sweeps/two_cluster sweeps/five_gaussian          # -> results/two_cluster.md, ...
    gl-report sweeps/cifar10_widths --out results --protocol paper --generator raw

Image experiments: FID mean, std and count over seeds per dataset x model x width x bottleneck x
loss, beside the paper's value (gan_landscape/paper/sun2020_fid.csv) and the pairing-minus-separable
gap. Synthetic experiments: collapse rate per loss with a 95% interval. A cell with fewer seeds than
the experiment asked (its config's plan.seeds) is flagged `n/asked*`.
"""
import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

PAPER = Path(__file__).resolve().parent / "paper"
PAIRS = {"rsgan": "jsgan", "rphinge": "hinge", "rplsgan": "lsgan"}  # pairing -> its separable twin
FAMILY = {**{k: "pairing" for k in PAIRS}, **{v: "separable" for v in PAIRS.values()}}
LOSS_ORDER = ["jsgan", "hinge", "lsgan", "rsgan", "rphinge", "rplsgan"]
WIDTH_NAME = {1.0: "regular", 0.5: "half", 0.25: "quarter"}


class ReportError(Exception):
    """Bad input: ends gl-report with one line."""


@dataclass
class Run:
    path: Path
    summary: dict
    config: dict
    source: str = ""  # the directory gl-report was given that holds this run
    fid: float | None = None

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def get(self, dotted: str, default=None):
        """A value of the run's resolved config.yaml (None where it has no such key)."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def pick(self, dotted: str, summary_key: str, default=None):
        """Config first; summary.json names the same things for a run whose config.yaml is missing."""
        value = self.get(dotted)
        return self.summary.get(summary_key, default) if value is None else value

    @property
    def experiment(self) -> str:
        return self.pick("experiment_name", "experiment") or self.path.parent.name

    @property
    def synthetic(self) -> bool:
        return self.get("dataset.kind") == "synthetic" or "collapse_rate" in self.summary

    @property
    def dataset(self) -> str:
        name, cat = self.pick("dataset.name", "dataset"), self.get("dataset.category")
        return f"{name}/{cat}" if cat else str(name)

    @property
    def cell(self) -> tuple:
        """dataset, model, width, bottleneck, loss: what a table row is about."""
        return (self.dataset, str(self.pick("model.name", "model")),
                float(self.pick("width", "width", 1.0)), bool(self.get("model.bottleneck", False)),
                str(self.pick("loss.name", "loss")))


# ---------------------------------------------------------------- reading runs

def _read_fid(run: Run, protocol: str, generator: str) -> None:
    """The FID of the run's final checkpoint: the last matching fid.jsonl record, else summary.json."""
    final = run.summary.get("iters")
    recs = []
    path = run.path / "fid.jsonl"
    if path.exists():
        recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    recs = [r for r in recs if r.get("generator", "raw") == generator and r.get("protocol") == protocol]
    if recs:
        last = max(r["step"] for r in recs) if final is None else final
        recs = [r for r in recs if r["step"] == last]
    if recs:
        run.fid = float(recs[-1]["fid"])
        return
    s = run.summary.get("fid") or {}
    if s.get("protocol") == protocol and s.get(generator) is not None and s.get("step") in (final, None):
        run.fid = float(s[generator])


def find_runs(dirs, protocol="paper", generator="raw") -> list[Run]:
    runs = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise ReportError(f"no such directory: {d}")
        found = sorted(p.parent for p in d.rglob("summary.json") if ".submitit" not in p.parts)
        if not found:
            raise ReportError(f"no runs (summary.json) in or below {d}")
        for path in found:
            cfg_path = path / "config.yaml"
            config = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
            run = Run(path, json.loads((path / "summary.json").read_text()), config or {}, str(d))
            if not run.synthetic:
                _read_fid(run, protocol, generator)
            runs.append(run)
    return runs


def seeds_asked(runs: list[Run], override: int | None) -> int | None:
    if override:
        return override
    asked = [r.get("plan.seeds") for r in runs if isinstance(r.get("plan.seeds"), int)]
    return max(asked) if asked else None


# ---------------------------------------------------------------- numbers

def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is None for fewer than two values."""
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n: sensible at 0/n and n/n, unlike p +- 2 se."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fmt(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def count_flag(n: int, asked: int | None) -> str:
    if asked is None:
        return str(n)
    return f"{n}/{asked}" + ("*" if n < asked else "")


def loss_key(loss: str):
    return (LOSS_ORDER.index(loss) if loss in LOSS_ORDER else len(LOSS_ORDER), loss)


# ---------------------------------------------------------------- the paper's values

def _read_csv(name: str) -> list[dict]:
    lines = [ln for ln in (PAPER / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def paper_fid() -> dict:
    table = {}
    for r in _read_csv("sun2020_fid.csv"):
        key = (r["dataset"], r["model"], float(r["width"]), r["bottleneck"] == "true", r["loss"])
        table[key] = {"fid": float(r["fid"]) if r["fid"] else None, "source": r["source"],
                      "note": r["note"]}
    return table


def paper_synthetic() -> dict:
    return {(r["dataset"], r["loss"]): {"rate": float(r["collapse_rate"]) if r["collapse_rate"] else None,
                                        "source": r["source"], "claim": r["claim"]}
            for r in _read_csv("sun2020_synthetic.csv")}


# ---------------------------------------------------------------- tables

def _notes(runs: list[Run]) -> str:
    """What kept runs out of the mean: diverged, failed, unfinished or not yet scored."""
    c = defaultdict(int)
    for r in runs:
        c[r.status if r.status != "finished" else ("not scored" if r.fid is None else "")] += 1
    return ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s)


def image_rows(runs: list[Run], asked: int | None) -> list[dict]:
    cells = defaultdict(list)
    for r in runs:
        cells[r.cell].append(r)
    paper = paper_fid()
    means = {k: mean_std([r.fid for r in v if r.status == "finished" and r.fid is not None])[0]
             for k, v in cells.items()}
    rows = []
    for key in sorted(cells, key=lambda k: (k[0], k[1], -k[2], k[3], loss_key(k[4]))):
        ds, model, width, bn, loss = key
        fids = [r.fid for r in cells[key] if r.status == "finished" and r.fid is not None]
        m, s = mean_std(fids)
        p = paper.get(key, {})
        twin = means.get((ds, model, width, bn, PAIRS.get(loss)))
        rows.append({"dataset": ds, "model": model, "width": width, "bottleneck": bn, "loss": loss,
                     "fid_mean": m, "fid_std": s, "n": len(fids), "n_asked": asked,
                     "flag": asked is not None and len(fids) < asked, "paper_fid": p.get("fid"),
                     "diff": None if m is None or p.get("fid") is None else m - p["fid"],
                     "gap_vs_separable": None if m is None or twin is None else m - twin,
                     "notes": _notes(cells[key]),
                     "paper_source": p.get("source", "not in the paper's table")})
    return rows


def synthetic_rows(runs: list[Run], asked: int | None) -> list[dict]:
    cells = defaultdict(list)
    for r in runs:
        cells[(r.dataset, r.cell[4])].append(r)
    paper = paper_synthetic()
    rows = []
    for key in sorted(cells, key=lambda k: (k[0], loss_key(k[1]))):
        done = [r for r in cells[key] if r.status in ("finished", "diverged") and r.summary.get("seeds")]
        seeds = [s for r in done for s in r.summary["seeds"]]
        n, k = len(seeds), sum(s["verdict"] != "covered" for s in seeds)
        lo, hi = wilson(k, n)
        p = paper.get(key, {})
        rows.append({"dataset": key[0], "loss": key[1], "family": FAMILY.get(key[1], "?"), "seeds": n,
                     "seeds_asked": asked, "flag": asked is not None and n < asked, "collapsed": k,
                     "collapse_rate": k / n if n else None, "ci_low": lo, "ci_high": hi,
                     "diverged": sum(s["verdict"] == "diverged" for s in seeds),
                     "modes_covered_mean": (sum(s["modes_covered"] for s in seeds) / n) if n else None,
                     "seconds": round(sum(r.summary.get("seconds", 0) for r in done), 1),
                     "notes": ", ".join(f"{r.path.name}: {r.status}" for r in cells[key] if r not in done),
                     "paper_collapse_rate": p.get("rate"), "paper_claim": p.get("claim", ""),
                     "paper_source": p.get("source", "")})
    return rows


def image_markdown(rows: list[dict]) -> list[str]:
    out = ["| dataset | model | width | bottleneck | loss | FID mean | std | seeds | paper FID | diff "
           "| Rp − sep gap | notes |", "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        w = f"{r['width']:g}" + (f" ({WIDTH_NAME[r['width']]})" if r["width"] in WIDTH_NAME else "")
        bn = "yes" if r["bottleneck"] else ""
        out.append(f"| {r['dataset']} | {r['model']} | {w} | {bn} | {r['loss']} "
                   f"| {fmt(r['fid_mean'])} | {fmt(r['fid_std'])} | {count_flag(r['n'], r['n_asked'])} "
                   f"| {fmt(r['paper_fid'])} | {fmt(r['diff'])} "
                   f"| {fmt(r['gap_vs_separable']) if r['loss'] in PAIRS else ''} | {r['notes']} |")
    return out


def synthetic_markdown(rows: list[dict]) -> list[str]:
    out = ["| dataset | loss | family | seeds | collapsed | collapse rate | 95% CI | diverged "
           "| modes covered (mean) | train s | paper rate | paper claim | notes |",
           "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        seeds, ci = count_flag(r["seeds"], r["seeds_asked"]), f"{r['ci_low']:.2f}–{r['ci_high']:.2f}"
        out.append(f"| {r['dataset']} | {r['loss']} | {r['family']} | {seeds} "
                   f"| {r['collapsed']} | {fmt(r['collapse_rate'])} | {ci} "
                   f"| {r['diverged']} | {fmt(r['modes_covered_mean'])} | {r['seconds']:g} "
                   f"| {fmt(r['paper_collapse_rate'])} | {r['paper_claim']} | {r['notes']} |")
    return out


# ---------------------------------------------------------------- writing

def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else round(v, 4) if isinstance(v, float) else v
                        for k, v in r.items()})


def report(name: str, runs: list[Run], out: Path, args) -> Path:
    """Tables and plots of one experiment; returns the markdown file."""
    out.mkdir(parents=True, exist_ok=True)
    asked = seeds_asked(runs, args.seeds)
    synthetic = all(r.synthetic for r in runs)
    rows = synthetic_rows(runs, asked) if synthetic else image_rows(runs, asked)
    write_csv(rows, out / f"{name}.csv")
    from .report_plots import plot_collapse, plot_fid_vs_width, plot_mosaic
    pics = []
    if synthetic:
        plot_collapse(rows, out / f"{name}_collapse_rate.png")
        pics.append((f"{name}_collapse_rate.png", "collapse rate per loss"))
    elif any(r["fid_mean"] is not None for r in rows):
        plot_fid_vs_width(rows, out / f"{name}_fid_vs_width.png")
        pics.append((f"{name}_fid_vs_width.png", "FID vs width"))
    if plot_mosaic(runs, out / f"{name}_samples.png"):
        pics.append((f"{name}_samples.png", "final samples, first seed of each cell"))
    md = [f"# {name}", "", f"Runs: {len(runs)} under {', '.join(sorted({r.source for r in runs}))}. "
          f"Written by `gl-report`.", ""]
    md += synthetic_markdown(rows) if synthetic else image_markdown(rows)
    md += ["", *_legend(synthetic, asked if any(r["flag"] for r in rows) else None, args), ""]
    md += [f"![{alt}]({png})" for png, alt in pics]
    path = out / f"{name}.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _legend(synthetic: bool, asked, args) -> list[str]:
    flag = (f"`n/{asked}*`: fewer seeds than the {asked} asked (diverged, failed, unfinished or "
            f"unscored runs are not counted; see notes)." if asked else "")
    if synthetic:
        return [f"Collapsed = a seed whose generator misses a mode (or diverged). {flag}".rstrip(),
                "Paper rates: NOT FOUND in any reachable source; the claims are quoted from the abstract "
                "(gan_landscape/paper/sun2020_synthetic.csv)."]
    return [f"FID: {args.protocol} protocol, {args.generator} generator, final checkpoint; std over seeds "
            f"(n − 1). {flag}".rstrip(),
            "Rp − sep gap: on a pairing loss's row, its mean FID minus its separable twin's "
            "(rsgan − jsgan, rphinge − hinge, rplsgan − lsgan); negative = the pairing loss is better.",
            "Paper FID: n/a = NOT FOUND in any reachable source (gan_landscape/paper/sun2020_fid.csv); the "
            "sourced claim is \"RS-GAN can beat JS-GAN by 5-10 FID scores in narrower nets\" (HKUST talk)."]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gl-report", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", help="sweep dirs (or single run dirs) holding summary.json files")
    p.add_argument("--out", default="results", help="where <experiment>.md/.csv/.png go (default: results)")
    p.add_argument("--protocol", default="paper", help="which FID protocol to report (default: paper)")
    p.add_argument("--generator", default="raw", choices=["raw", "ema"])
    p.add_argument("--seeds", type=int, default=None, help="seeds asked per cell (default: plan.seeds)")
    return p.parse_args(argv)


def build(argv=None) -> list[Path]:
    """gl-report without the exit: the markdown files written."""
    args = parse_args(argv)
    try:
        runs = find_runs(args.dirs, args.protocol, args.generator)
    except ReportError as e:
        sys.exit(f"gl-report: {e}")
    by_exp = defaultdict(list)
    for r in runs:
        by_exp[r.experiment].append(r)
    for name, rs in list(by_exp.items()):
        kinds = {r.get("dataset.kind") for r in rs} - {None, "synthetic", "image"}
        if kinds:  # e.g. Li et al.'s first-order dynamics: its own experiment writes its own results
            print(f"gl-report: skipped {name}: dataset kind {', '.join(sorted(kinds))} has no table here")
            del by_exp[name]
    written = []
    for name in sorted(by_exp):
        path = report(name, by_exp[name], Path(args.out), args)
        print(path.read_text())
        print(f"gl-report: wrote {path} and {path.with_suffix('.csv').name}")
        written.append(path)
    return written


def main(argv=None) -> None:
    build(argv)  # a console script's return value becomes its exit status


if __name__ == "__main__":
    main()
