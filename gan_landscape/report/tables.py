"""gl-report's sections: per run kind (its module's REPORT), the rows, markdown tables, csv and
figures of one experiment's report, planned as a `Report` whose files are written later
(commands/report.py writes them, with their provenance)."""
import csv
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gan_landscape import kinds
from gan_landscape.cli import UserError
from gan_landscape.kinds.first_order import OUTCOMES
from gan_landscape.losses import LOSSES
from gan_landscape.report import plots, scores
from gan_landscape.runs.reader import FIRST_ORDER, Run, load_dict, positive, seeds_asked

PAPER = Path(__file__).resolve().parent / "paper"
WIDTH_NAME = {1.0: "regular", 0.5: "half", 0.25: "quarter"}


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
    """The registry's order (losses.LOSSES), then unknown losses by name."""
    order = list(LOSSES)
    return (order.index(loss) if loss in LOSSES else len(order), loss)


def family(loss: str) -> str:
    return LOSSES[loss].family if loss in LOSSES else "?"


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

def _notes(runs: list[Run], recs: dict) -> str:
    """What kept runs out of the mean: diverged, failed, unfinished or not scored under this key."""
    c = Counter(r.status if r.status != "finished" else ("" if r.path in recs else "not scored") for r in runs)
    return ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s)


SCORED = {"fid": "fid", "is": "is_mean", "precision": "precision", "recall": "recall"}


def image_rows(runs: list[Run], asked: int | None, recs: dict | None = None, key: str = "") -> list[dict]:
    """One row per cell under one protocol key; recs: {run path: its record under that key}."""
    recs = recs or {}
    cells = defaultdict(list)
    for r in runs:
        cells[r.cell].append(r)

    def values(cell, field):
        return [float(recs[r.path][field]) for r in cells.get(cell, []) if r.status == "finished"
                and r.path in recs and scores._number(recs[r.path].get(field))]
    paper, rows = paper_fid(), []
    for cell in sorted(cells, key=lambda k: (k[0], k[1], -k[2], k[3], loss_key(k[4]))):
        ds, model, width, bn, loss = cell
        twin = LOSSES[loss].twin if loss in LOSSES else None
        row = {"protocol_key": key, "dataset": ds, "model": model, "width": width, "bottleneck": bn,
               "loss": loss}
        for name, key_in_record in SCORED.items():
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values(cell, key_in_record))
        m, p, n = row["fid_mean"], paper.get(cell, {}), len(values(cell, "fid"))
        gaps = {name: None if row[f"{name}_mean"] is None or not values((ds, model, width, bn, twin), f)
                else row[f"{name}_mean"] - mean_std(values((ds, model, width, bn, twin), f))[0]
                for name, f in (("fid", "fid"), ("recall", "recall"))}
        rows.append({**row, "n": n, "n_asked": asked, "flag": asked is not None and n < asked,
                     "paper_fid": p.get("fid"), "diff": None if m is None or p.get("fid") is None else m - p["fid"],
                     "gap_vs_separable": gaps["fid"], "recall_gap_vs_separable": gaps["recall"],
                     "notes": _notes(cells[cell], recs),
                     "paper_source": p.get("source", "not in the paper's table")})
    return rows


def synthetic_rows(runs: list[Run], asked: int | None) -> list[dict]:
    cells = defaultdict(list)
    for r in runs:
        cells[(r.cell[0], r.cell[4])].append(r)
    paper, rows = paper_synthetic(), []
    for key in sorted(cells, key=lambda k: (k[0], loss_key(k[1]))):
        done = [r for r in cells[key] if r.status in ("finished", "diverged")
                and isinstance(r.summary.get("seeds"), list)]
        seeds = [s for r in done for s in r.summary["seeds"] if isinstance(s, dict) and "verdict" in s]
        n, k = len(seeds), sum(s["verdict"] != "covered" for s in seeds)
        lo, hi = wilson(k, n)
        p = paper.get(key, {})
        covered = [s.get("modes_covered") for s in seeds if isinstance(s.get("modes_covered"), int)]
        rows.append({"dataset": key[0], "loss": key[1], "family": family(key[1]), "seeds": n,
                     "seeds_asked": asked, "flag": asked is not None and n < asked, "collapsed": k,
                     "collapse_rate": k / n if n else None, "ci_low": lo, "ci_high": hi,
                     "diverged": sum(s["verdict"] == "diverged" for s in seeds),
                     "modes_covered_mean": sum(covered) / len(covered) if covered else None,
                     "seconds": round(sum(positive(r.summary.get("seconds")) or 0 for r in done), 1),
                     "notes": ", ".join(f"{r.path.name}: {r.status}" for r in cells[key] if r not in done),
                     "paper_collapse_rate": p.get("rate"), "paper_claim": p.get("claim", ""),
                     "paper_source": p.get("source", "")})
    return rows


def _pm(r: dict, name: str, digits: int) -> str:
    m, s = r[f"{name}_mean"], r[f"{name}_std"]
    return fmt(m, digits) + ("" if s is None else f" ± {fmt(s, digits)}")


def image_markdown(rows: list[dict]) -> list[str]:
    out = ["| dataset | model | width | bottleneck | loss | FID mean | std | seeds | IS | precision | recall "
           "| paper FID | diff | Rp − sep gap | Rp − sep recall gap | notes |",
           "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        w = f"{r['width']:g}" + (f" ({WIDTH_NAME[r['width']]})" if r["width"] in WIDTH_NAME else "")
        pairing = family(r["loss"]) == "pairing"
        gap = fmt(r["gap_vs_separable"]) if pairing else ""
        rgap = fmt(r["recall_gap_vs_separable"], 3) if pairing and r["recall_gap_vs_separable"] is not None else ""
        out.append(f"| {r['dataset']} | {r['model']} | {w} | {'yes' if r['bottleneck'] else ''} "
                   f"| {r['loss']} | {fmt(r['fid_mean'])} | {fmt(r['fid_std'])} "
                   f"| {count_flag(r['n'], r['n_asked'])} | {_pm(r, 'is', 2) if r['is_mean'] is not None else ''} "
                   f"| {_pm(r, 'precision', 3) if r['precision_mean'] is not None else ''} "
                   f"| {_pm(r, 'recall', 3) if r['recall_mean'] is not None else ''} "
                   f"| {fmt(r['paper_fid'])} | {fmt(r['diff'])} | {gap} | {rgap} | {r['notes']} |")
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


def first_order_table(res: dict) -> list[str]:
    """Li et al.'s model: one row per discriminator setting, the fraction of initialisations ending
    in each outcome (first_order.sweep's result)."""
    sep = abs(res["mu_star"][1] - res["mu_star"][0])
    rows = ["| discriminator | " + " | ".join(OUTCOMES) + " |", "|---|" + "---:|" * len(OUTCOMES)]
    rows += [f"| {s['name']} | " + " | ".join(f"{s[o]:.1%}" for o in OUTCOMES) + " |" for s in res["settings"]]
    return [f"Li et al.'s model: mu* = {res['mu_star']}, {res['num_inits']} random initialisations, "
            f"{res['steps']} generator steps, step sizes G {res['g_lr']} / D {res['d_lr']}.", "", *rows, "",
            f"converged: both means within {res['tol']} of mu* (up to swapping); collapsed: "
            f"|mu_1 - mu_2| < {res['collapse_frac'] * sep:g}; oscillating: still moving (path length of "
            f"mu over the last half of the run > {res['move_tol']}); stuck: settled elsewhere (vanishing "
            "gradient: D's interval ends sit where g* - g_mu is ~0). k = first-order D steps per G step; "
            "optimal D = the exact maximiser before every G step."]


def unplaced_markdown(runs: list[Run]) -> list[str]:
    if not runs:
        return []
    out = ["", "Runs not in the table (their config.yaml is missing or says nothing usable):", "",
           "| run | status | error |", "|---|---|---|"]
    return out + [f"| {r.path} | {r.status} | {r.error.replace('|', '/')} |" for r in runs]


def _flag(asked) -> str:
    return (f"`n/{asked}*`: fewer seeds than the {asked} asked (diverged, failed, unfinished or "
            f"unscored runs are not counted; see notes)." if asked else "")


def _synthetic_legend(asked, args) -> list[str]:
    return [f"Collapsed = a seed whose generator misses a mode (or diverged). {_flag(asked)}".rstrip(),
            "Paper rates: NOT FOUND in any reachable source; the claims are quoted from the abstract "
            "(gan_landscape/report/paper/sun2020_synthetic.csv)."]


def _image_legend(asked, args) -> list[str]:
    flag = _flag(asked)
    pairs = ", ".join(f"{n} − {loss.twin}" for n, loss in LOSSES.items() if loss.twin)
    return [f"FID: {args.protocol} protocol, {args.generator} generator, final checkpoint; one table per "
            f"protocol_key (only records of equal keys are averaged); std over seeds (n − 1). {flag}".rstrip(),
            "IS, precision and recall: mean ± std over the same seeds, where the records have them "
            "(precision/recall: Kynkäänniemi et al. 2019, k = 3; recall falls when modes are dropped).",
            f"Rp − sep gap: on a pairing loss's row, its mean FID (recall) minus its separable twin's ({pairs}); "
            "negative FID gap (positive recall gap) = the pairing loss is better.",
            "Paper FID: n/a = NOT FOUND in any reachable source (gan_landscape/report/paper/sun2020_fid.csv); the "
            "sourced claim is \"RS-GAN can beat JS-GAN by 5-10 FID scores in narrower nets\" (HKUST talk)."]


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else round(v, 4) if isinstance(v, float) else v
                        for k, v in r.items()})


# ---------------------------------------------------------------- a report: its files, then writing

@dataclass
class Report:
    """One experiment's report: the files it will write, each with the function that writes it."""
    name: str
    runs: list[Run]
    out: Path
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)


def final_pictures(runs: list[Run]) -> dict:
    """{cell: the picture of its lowest seed's end}: the last sample grid (image runs) or the run's
    own summary plot (synthetic runs)."""
    pictures = {}
    for r in sorted(runs, key=lambda r: positive(r.pick("seed", "seed", 0)) or 0.0):
        grids = sorted((r.path / "samples").glob("step_*.png"))
        own = [r.path / n for n in ("samples.png", "trajectory.png") if (r.path / n).exists()]
        if grids or own:
            pictures.setdefault(r.cell, (grids or own)[-1 if grids else 0])
    return pictures


def _image_tables(rep: Report, runs: list[Run], args, asked) -> tuple[list[dict], list[str]]:
    """One table (and one FID-and-recall figure) per protocol key: rows of different keys are never
    averaged together."""
    groups = scores.by_key(runs, args.protocol, args.generator) or {"": {}}
    rows, md = [], []
    for key, recs in groups.items():
        part = image_rows(runs, asked, recs, key)
        rows += part
        if key:
            first = next(iter(recs.values()))
            md += [f"### FID protocol `{key}`", "", scores.describe(first), ""]
            bad = scores.flags(list(recs.values()))
            md += [f"**Not a paper FID**: {'; '.join(bad)}.", ""] if bad else []
        md += image_markdown(part) + [""]
        if any(r["fid_mean"] is not None for r in part):
            png = f"{rep.name}_fid_recall_vs_width" + (f"_{key.replace(':', '-')}" if len(groups) > 1 else "") + ".png"
            rep.files[png] = lambda p, part=part: scores.width_figure(part, p)
            md += [f"![FID and recall vs width]({png})", ""]
    return rows, md


def _tables(rep: Report, runs: list[Run], args, rows: list[dict], md: list[str], pics: list, legend) -> list[str]:
    """A section's table: its .csv, its figures and the final-samples mosaic, its legend."""
    if not rows:
        return []
    rep.files[f"{rep.name}.csv"] = lambda p: write_csv(rows, p)
    pictures = final_pictures(runs)
    if pictures:
        losses = sorted({k[4] for k in pictures}, key=loss_key)
        pics.append(("samples", "final samples, first seed of each cell",
                     lambda p: plots.mosaic(pictures, p, losses)))
    for suffix, _, draw in pics:
        rep.files[f"{rep.name}_{suffix}.png"] = draw
    flagged = seeds_asked(runs, args.seeds) if any(r["flag"] for r in rows) else None
    return md + ["", *legend(flagged, args), ""] + [f"![{alt}]({rep.name}_{suffix}.png)" for suffix, alt, _ in pics]


def _placed(rep: Report, runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.cell is not None]


def synthetic_section(rep: Report, runs: list[Run], args) -> tuple[list[str], list[Run]]:
    """Collapse rates per cell (kinds whose REPORT is "synthetic")."""
    placed = _placed(rep, runs)
    rows = synthetic_rows(placed, seeds_asked(placed, args.seeds))
    pics = [("collapse_rate", "collapse rate per loss", lambda p: plots.collapse_rates(rows, p))] \
        if any(r["seeds"] for r in rows) else []
    return _tables(rep, placed, args, rows, synthetic_markdown(rows) if rows else [], pics, _synthetic_legend), placed


def image_section(rep: Report, runs: list[Run], args) -> tuple[list[str], list[Run]]:
    """FID and the metrics beside it per cell, one table per protocol key (REPORT "image")."""
    placed = _placed(rep, runs)
    rows, md = _image_tables(rep, placed, args, seeds_asked(placed, args.seeds))
    return _tables(rep, placed, args, rows, md, [], _image_legend), placed


def population_section(rep: Report, runs: list[Run], args) -> tuple[list[str], list[Run]]:
    """Li et al.'s outcome table and figure (REPORT "population")."""
    results = [(r, _first_order_result(r)) for r in runs]
    done = [(r, res) for r, res in results if res is not None]
    return _first_order(rep, done), [r for r, _ in done]


SECTIONS = {"synthetic": synthetic_section, "image": image_section, "population": population_section}


def section_of(kind: str | None):
    """The report section a run kind names (its module's REPORT); None for an unknown kind."""
    try:
        return SECTIONS.get(getattr(kinds.get(kind), "REPORT", None)) if kind else None
    except UserError:  # a kind this installation does not have: its runs are listed, not tabled
        return None


def _first_order(rep: Report, runs: list[tuple[Run, dict]]) -> list[str]:
    md = ["First-order vs optimal discriminator (Li, Madry, Peebles, Schmidt, 2018).", ""]
    for run, res in runs:
        png = f"{rep.name}.png" if len(runs) == 1 else f"{rep.name}_{run.path.name}.png"
        rep.files[png] = lambda p, res=res: plots.first_order(res, p)
        md += ([f"## {run.path}", ""] if len(runs) > 1 else []) + first_order_table(res)
        md += ["", f"![first-order dynamics]({png})", ""]
    return md


def _first_order_result(run: Run) -> dict | None:
    problems = []
    res = load_dict(run.path / FIRST_ORDER, json.loads, problems)
    if res is not None and not all(k in res for k in ("settings", "mu_star", "num_inits")):
        res, problems = None, [f"{FIRST_ORDER} lacks settings, mu_star or num_inits"]
    run.problem = "; ".join([run.problem, *problems]).strip("; ")
    return res


def plan(name: str, kind: str | None, runs: list[Run], out: Path, args) -> Report:
    """What the report of `runs` holds; nothing is written yet."""
    rep = Report(name, runs, out)
    tally = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r.status for r in runs).items()))
    md = [f"# {name}", "", f"{len(runs)} run(s) under {', '.join(sorted({str(r.source) for r in runs}))}: "
          f"{tally}. Written by `gl-report`; {name}.sources.json lists the runs.", ""]
    section, placed = section_of(kind), []
    if section is not None:
        part, placed = section(rep, [r for r in runs if r.kind == kind], args)
        md += part
    md += unplaced_markdown([r for r in runs if r not in placed])
    rep.files[f"{name}.md"] = lambda p: p.write_text("\n".join(md) + "\n")
    return rep
