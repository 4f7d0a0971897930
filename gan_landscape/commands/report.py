"""gl-report: the runs of sweeps or single run dirs -> one report per experiment: <name>.md, <name>.csv,
figures, and <name>.sources.json saying which runs made them.

    gl-report sweeps/two_cluster sweeps/five_gaussian   # -> sweeps/two_cluster/report/two_cluster.md, ...
    gl-report sweeps/cifar10_widths --out results --protocol paper --generator raw
    gl-report runs/first_order_dynamics               # -> runs/first_order_dynamics/report/first_order_dynamics.md

Where: by default beside the runs, in `report/` inside the folder named on the command line (a sweep
dir, a run dir); `--out DIR` puts every report in DIR. A file there is replaced
only if its <name>.sources.json says gl-report made it from runs that are all among the ones reported
now (the same runs again, or the same sweep grown); a file of other runs or without provenance is
refused unless --force.

Image experiments: one table per FID `protocol_key` (never an average across keys; scores.py), each
with its protocol in words and a "not a paper FID" flag where records came from random Inception
weights or fewer images than the protocol asks; per dataset x model x width x bottleneck x loss the
FID, IS, precision and recall (mean, std, seeds), the paper's FID (gan_landscape/report/paper/sun2020_fid.csv)
and the gap to the pairing loss's separable twin; a figure of FID and recall against width.
Synthetic experiments: collapse rate per loss with a 95% interval. First-order
dynamics (a run dir with first_order_dynamics.json): its outcome table and figure. A cell with fewer
seeds than asked (config plan.seeds) is flagged `n/asked*`; failed, diverged and unfinished runs are
named in the notes, and runs whose config says nothing usable are listed under the table.
"""
import argparse
import json
import os
from pathlib import Path

from gan_landscape.cli import exit_on_user_error
from gan_landscape.files import write_json
from gan_landscape.report.tables import Report, plan
from gan_landscape.runs.reader import ReportError, Run, find_runs, groups, load_dict


def out_dir(name: str, runs: list[Run], args) -> Path:
    """--out, else `report/` in the folder given on the command line that holds the report's runs
    (a sweep dir, a run dir); runs from several of them need --out."""
    if args.out:
        return Path(args.out)
    given = sorted({str(r.source) for r in runs})
    if len(given) > 1:
        raise ReportError(f"the runs of {name} come from several folders ({', '.join(given)}); pass --out DIR")
    return Path(given[0]) / "report"


# ---------------------------------------------------------------- provenance

def run_key(entry: dict) -> str:
    """A run by its identity (summary.json); one without (a job that failed before it had a
    config) by its path relative to the report's folder."""
    return entry["identity"] or f"path:{entry['path']}"


def sources(rep: Report) -> dict:
    runs = [{"identity": r.summary.get("identity"), "status": r.status,
             "path": Path(os.path.relpath(r.path.resolve(), rep.out.resolve())).as_posix()} for r in rep.runs]
    return {"made_by": "gl-report", "report": rep.name, "files": sorted(rep.files),
            "runs": sorted(runs, key=lambda e: e["path"])}


def _made(rep: Report) -> dict | None:
    made = load_dict(rep.out / f"{rep.name}.sources.json", json.loads, [])
    ok = made and isinstance(made.get("files"), list) and isinstance(made.get("runs"), list)
    return made if ok else None


def check(rep: Report, force: bool) -> None:
    """Refuse to replace a file unless gl-report made it from runs all among these (or --force)."""
    existing = [f for f in rep.files if (rep.out / f).exists()]
    if force or not existing:
        return
    made, hint = _made(rep), "; pass --force to overwrite it, or --out DIR"
    if made is None:
        raise ReportError(f"{rep.out / existing[0]} exists and has no {rep.name}.sources.json, so it was "
                          f"not made by gl-report from these runs{hint}")
    foreign = [f for f in existing if f not in made["files"]]
    if foreign:
        raise ReportError(f"{rep.out / foreign[0]} exists and {rep.name}.sources.json does not list it{hint}")
    old, new = {run_key(e) for e in made["runs"]}, {run_key(e) for e in sources(rep)["runs"]}
    if not old <= new:
        raise ReportError(f"{rep.out / existing[0]} was made from other runs ({len(old - new)} of its "
                          f"{len(old)} are not among the {len(new)} given here, e.g. {min(old - new)}){hint}")


def writable(out: Path) -> None:
    """--out (or report/) can take files: one line before anything is written, not a traceback."""
    folder = next(p for p in [out, *out.parents] if p.exists())
    if not folder.is_dir():
        raise ReportError(f"cannot write the report into {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write the report into {out}: {folder} is not writable")


def write(rep: Report) -> None:
    """The provenance first (a report cut short is still known as ours), then every file; the files
    of the previous report that this one no longer makes are removed."""
    rep.out.mkdir(parents=True, exist_ok=True)
    stale = set((_made(rep) or {}).get("files", [])) - set(rep.files)
    write_json(rep.out / f"{rep.name}.sources.json", sources(rep))
    for name in stale:
        if Path(name).name == name:
            (rep.out / name).unlink(missing_ok=True)
    for name, draw in rep.files.items():
        draw(rep.out / name)


# ---------------------------------------------------------------- entry point

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gl-report", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", help="sweep dirs or run dirs (folders with summary.json), searched recursively")
    p.add_argument("--out", default=None, help="where every report goes (default: report/ beside each "
                   "experiment's runs)")
    p.add_argument("--force", action="store_true", help="overwrite files made from other runs or without "
                   "provenance")
    p.add_argument("--protocol", default="paper", help="which FID protocol to report (default: paper)")
    p.add_argument("--generator", default="raw", choices=["raw", "ema"])
    p.add_argument("--seeds", type=int, default=None, help="seeds asked per cell (default: plan.seeds)")
    return p.parse_args(argv)


def build(argv=None) -> list[Path]:
    """gl-report as a function: every report is planned and checked before anything is written;
    returns the markdown files."""
    args = parse_args(argv)
    runs = find_runs(args.dirs)
    reports = [plan(name, kind, rs, out_dir(name, rs, args), args) for name, kind, rs in groups(runs)]
    for rep in reports:
        check(rep, args.force)
        writable(rep.out)
    for rep in reports:
        try:
            write(rep)
        except OSError as e:  # a full disk, a quota, a folder made read-only since the check
            raise ReportError(f"cannot write the report into {rep.out}: {e.strerror or e}") from None
        print((rep.out / f"{rep.name}.md").read_text())
        print(f"gl-report: wrote {', '.join(rep.files)} and {rep.name}.sources.json in {rep.out}")
    return [rep.out / f"{rep.name}.md" for rep in reports]


def main(argv=None) -> None:
    exit_on_user_error("gl-report", build, argv)


if __name__ == "__main__":
    main()
