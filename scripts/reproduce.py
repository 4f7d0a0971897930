"""make reproduce: every experiment this machine can run, in order, then gl-report.

    python scripts/reproduce.py                     # all it can: synthetic anywhere, images on a GPU
    python scripts/reproduce.py --synthetic-only    # make reproduce-synthetic: the CPU part
    python scripts/reproduce.py --smoke             # the *_smoke variants, to try the pipeline
    python scripts/reproduce.py --dry-run           # the plan: what would run, what is skipped, why

Each experiment is `gl-train --multirun experiment=<name>` (plus its plan.extra_sweeps, into the same
sweeps/<name>), then `gl-eval run=sweeps/<name>` for image experiments. Re-running skips finished
runs and resumes unfinished ones, so an interrupted reproduction picks up where it stopped. One
failed experiment is reported and the next one starts. Logs: sweeps/<name>/reproduce.log.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# First-order dynamics (Li et al. 2018): one gl-train run (~40 s on a CPU), reported by gl-report with
# the sweeps; a finished run in runs/first_order_dynamics is skipped when run again.
FIRST_ORDER_CMD = ["gl-train", "experiment=first_order_dynamics"]
FIRST_ORDER_DIR = "runs/first_order_dynamics"


@dataclass
class Experiment:
    name: str
    kind: str                      # synthetic | image | command
    command: list | None = None    # kind=command only
    jobs: int = 0                  # gl-train jobs the sweep(s) will have
    runs: int = 0                  # run dirs they make (an image job trains train.num_seeds seeds)
    sweeps: list = field(default_factory=list)   # extra override lists, one per gl-train call
    eval_args: list = field(default_factory=list)
    skip: str = ""                 # why it does not run here ("" = it runs)
    report: str = ""               # "widths": written by gan_landscape/report/widths.py, not gl-report


EXPERIMENTS = [  # in this order: cheap and CPU-only first, so a GPU-less machine still gets a report
    Experiment("two_cluster", "synthetic"),
    Experiment("five_gaussian", "synthetic"),
    Experiment("synthetic_widths", "synthetic"),   # ~1 h of both cores: see the README
    Experiment("first_order_dynamics", "command", command=FIRST_ORDER_CMD),
    Experiment("width_claim", "image"),            # the smallest test of the image claim (~30 GPU-min)
    Experiment("cifar10_widths", "image"),
    Experiment("stl10_widths", "image"),
    Experiment("lsun256", "image"),
]


def compose(name: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    import gan_landscape  # noqa: F401  registers the structured configs the YAML names
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)


def count_jobs(params: dict, extra: list) -> int:
    """Jobs of one gl-train --multirun: the product of the sweep lengths, extra overrides winning."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    merged = {**{str(k): str(v) for k, v in params.items()}, **dict(x.split("=", 1) for x in extra)}
    n = 1
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in merged.items()]):
        if o.is_sweep_override():
            n *= len(list(o.sweep_string_iterator()))
    return n


def missing_data(cfg) -> str:
    """Why the dataset is not usable here, or "" when it is (present, or downloadable now)."""
    from omegaconf import OmegaConf

    from gan_landscape import data
    ds = OmegaConf.create(OmegaConf.to_container(cfg.dataset, resolve=True))
    if not Path(ds.root).expanduser().is_absolute():  # gl-train runs in ROOT: resolve it there
        ds.root = str(ROOT / ds.root)
    cats = str(cfg.hydra.sweeper.params.get("dataset.category", ds.get("category") or "")).split(",")
    why = []
    for cat in cats:
        if cat:
            ds.category = cat
        why.append(data.available(ds))
    return "; ".join(w for w in why if w)


def plan(exp: Experiment, gpus: int, smoke: bool) -> Experiment:
    if exp.kind == "command":
        return exp
    name = exp.name + ("_smoke" if smoke else "")
    cfg = compose(name)
    exp.name = name
    params = cfg.hydra.sweeper.params
    exp.sweeps = [[]] + [list(x) for x in cfg.plan.extra_sweeps]
    exp.jobs = sum(count_jobs(params, x) for x in exp.sweeps)
    exp.runs = exp.jobs * (cfg.train.num_seeds if exp.kind == "image" else 1)
    exp.eval_args = list(cfg.plan.eval_overrides)
    exp.report = cfg.plan.get("report") or ""
    if exp.kind == "image":
        exp.skip = "no GPU (image runs need one; even the smoke variant is hours on a CPU)" if gpus == 0 \
            else missing_data(cfg)
    return exp


# ---------------------------------------------------------------- progress

def run_fraction(run: Path) -> float:
    """1 for a run that ended (finished, diverged, failed); else its last logged step / its iters."""
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    if summary.get("status") in ("finished", "diverged", "failed"):
        return 1.0
    metrics, config = run / "metrics.jsonl", run / "config.yaml"
    try:  # both are being written while we read: a half line or file is simply "no progress yet"
        iters = yaml.safe_load(config.read_text())["train"]["iters"]
        step = json.loads(metrics.read_text().splitlines()[-1])["step"]
        return min(1.0, step / iters)
    except (OSError, IndexError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return 0.0


def progress(sweep: Path) -> tuple[float, int]:
    runs = [p.parent for p in sweep.rglob("summary.json")]
    fractions = [run_fraction(r) for r in runs]
    return sum(fractions), sum(f == 1.0 for f in fractions)


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def watch(proc, exp: Experiment, sweep: Path, every: float = 30.0) -> int:
    """Wait for gl-train, printing runs done, elapsed time and an ETA from the progress made so far
    (whole runs plus the logged steps of unfinished ones) whenever a run ends, else every `every` s."""
    t0, start = time.time(), progress(sweep)[0]
    last_done, last_print = -1, 0.0
    while proc.poll() is None:
        time.sleep(2.0)
        work, done = progress(sweep)
        if done == last_done and time.time() - last_print < every:
            continue
        elapsed, made = time.time() - t0, work - start
        eta = hms(elapsed / made * max(exp.runs - work, 0.0)) if made > 0.01 else "?"
        print(f"[{exp.name}] {done}/{exp.runs} runs done | {hms(elapsed)} elapsed | ETA {eta}", flush=True)
        last_done, last_print = done, time.time()
    return proc.returncode


# ---------------------------------------------------------------- running

def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def execute(exp: Experiment, args, gpus: int) -> str:
    """Run one experiment; returns "" on success, else what went wrong."""
    sweep = ROOT / "sweeps" / exp.name
    sweep.mkdir(parents=True, exist_ok=True)
    with open(sweep / "reproduce.log", "a") as log:
        return _execute(exp, args, gpus, sweep, log)


def _execute(exp: Experiment, args, gpus: int, sweep: Path, log) -> str:
    if exp.kind == "command":
        print(f"[{exp.name}] $ {' '.join(command_of(exp, args))}", flush=True)
        cmd = command_of(exp, args)
        code = subprocess.call([tool(cmd[0]), *cmd[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return f"exited with {code}; see {log.name}" if code else ""
    env = dict(os.environ)
    if not gpus:
        env["OMP_NUM_THREADS"] = "1"  # one core per job: small batched MLPs gain nothing from threads
    n_jobs = args.jobs or (2 * gpus if gpus else os.cpu_count() or 1)  # a job already stacks seeds
    launcher = ["hydra/launcher=joblib_gpu", f"hydra.launcher.n_jobs={n_jobs}"]
    for extra in exp.sweeps:
        cmd = [tool("gl-train"), "--multirun", f"experiment={exp.name}", *launcher, *extra, *args.overrides]
        print(f"[{exp.name}] $ gl-train {' '.join(cmd[2:])}", flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        if watch(proc, exp, sweep, args.every) != 0:
            return f"gl-train exited with {proc.returncode}; see {log.name}"
    if exp.kind == "image":
        cmd = [tool("gl-eval"), f"run={sweep}", *exp.eval_args]
        print(f"[{exp.name}] $ gl-eval {' '.join(cmd[1:])}", flush=True)
        code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return f"gl-eval exited with {code}; see {log.name}" if code else ""
    return ""


def write_reports(ran: list, out: str, failed: list) -> list:
    """Each experiment's report into `out`; returns the (experiment, runs dir) whose reports were
    written. gl-report writes all of its reports or none (failed gets the reason), and the index
    must not credit this invocation with a report it did not write."""
    dirs = [FIRST_ORDER_DIR if e.kind == "command" else str(Path("sweeps") / e.name) for e in ran]
    own = [(e, d) for e, d in zip(ran, dirs) if e.report == "widths"]
    rest = [(e, d) for e, d in zip(ran, dirs) if e.report != "widths"]
    if own:
        write_widths(own, ROOT / out)
    if rest:
        rc = subprocess.call([tool("gl-report"), *[d for _, d in rest], "--out", out], cwd=ROOT)
        if rc:  # e.g. a committed report of other runs, refused: said above in one line
            failed.append(f"gl-report exited {rc}")
            rest = []
    return [x for x in zip(ran, dirs) if x in own or x in rest]


def write_widths(own: list, out: Path) -> None:
    """The width experiment's report: per mixture x width x loss, not gl-report's per-loss table."""
    from gan_landscape.report import widths as widths_report
    for exp, d in own:
        paths = widths_report.write([ROOT / d], out, exp.name)
        print(f"[{exp.name}] report: {', '.join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths) or 'no finished runs'}")


def write_index(out: Path, seconds: float, gpus: int, command: str, made: list, dirs: list) -> Path:
    """<out>/README.md: every report in <out> (this run's and any other experiment's), after a
    sentence per command saying which of them it made, on what machine, and how long their training
    took. What each experiment's report came from is kept in <out>/provenance.json, so a run of
    some experiments (`--only`) keeps the others' account."""
    import platform
    import torch
    from gan_landscape.files import atomic_write_bytes
    parts = sorted(p for p in out.glob("*.md") if p.name != "README.md")
    gpu = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else "no GPU"
    machine = f"{os.cpu_count()} CPU cores, {gpu} ({platform.machine()}, torch {torch.__version__})"
    prov_file = out / "provenance.json"
    prov = json.loads(prov_file.read_text()) if prov_file.exists() else {}
    prov = {name: p for name, p in prov.items() if name not in made and (out / f"{name}.md").exists()}
    for name, d in zip(made, dirs):
        trained = sum(json.loads(p.read_text()).get("seconds", 0) for p in (ROOT / d).rglob("summary.json"))
        prov[name] = {"command": command, "machine": machine, "wall_s": round(seconds), "trained_s": round(trained)}
    atomic_write_bytes(prov_file, (json.dumps(prov, indent=1) + "\n").encode())
    head = ["# Results", "", " ".join(_provenance(prov)) + " Every section is one report file in this folder; "
            "the gl-report ones come with a .csv of the same name.", ""]
    texts = [p.read_text() for p in parts]
    body = [("#" if t.startswith("# ") else "") + t for t in texts]  # each title one level down
    index = out / "README.md"
    index.write_text("\n".join(head + body))
    return index


def _provenance(prov: dict) -> list[str]:
    """One sentence per invocation, naming the reports it made that are still its own."""
    runs: dict = {}
    for name, p in prov.items():
        runs.setdefault((p["command"], p["machine"], p["wall_s"]), []).append((name, p["trained_s"]))
    return [f"`{command}` made {', '.join(n for n, _ in names)} on {machine}: {hms(sum(t for _, t in names))} "
            f"of training summed over runs, {hms(wall)} wall time for its last invocation (a re-run skips "
            f"finished runs)." for (command, machine, wall), names in runs.items()]


def _size(e: Experiment) -> str:
    return f"{e.jobs} jobs, {e.runs} runs" if e.runs != e.jobs else f"{e.runs} runs"


def out_dir(args) -> str:
    return args.out or ("sweeps/smoke_results" if args.smoke else "results")


def command_of(exp: Experiment, args) -> list[str]:
    return list(exp.command)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic-only", action="store_true", help="the CPU experiments alone")
    p.add_argument("--smoke", action="store_true", help="the *_smoke variants (minutes each)")
    p.add_argument("--only", nargs="+", default=None, help="these experiments only (base names)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--jobs", type=int, default=0, help="jobs at once (default: 2 per GPU, else CPU cores)")
    p.add_argument("--out", default=None, help="report folder (default: results, or sweeps/smoke_results)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("overrides", nargs="*", help="gl-train overrides for every sweep (e.g. train.device=cpu)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    gpus = torch.cuda.device_count()
    print(f"reproduce: {gpus} GPU(s), {os.cpu_count()} CPU core(s); sweeps in {ROOT / 'sweeps'}")
    todo = [e for e in EXPERIMENTS if not args.only or e.name in args.only]
    if args.synthetic_only:
        todo = [e for e in todo if e.kind != "image"]
    todo = [plan(e, gpus, args.smoke) for e in todo]
    for e in todo:
        print(f"  {'SKIP' if e.skip else 'run '} {e.name:<24} "
              + (e.skip or (" ".join(command_of(e, args)) if e.kind == "command" else _size(e))))
    if args.dry_run:
        return 0
    ran, failed, t0 = [], [], time.time()
    for e in [e for e in todo if not e.skip]:
        print(f"== {e.name}" + ("" if e.kind == "command" else f" ({_size(e)})") + " ==", flush=True)
        why = execute(e, args, gpus)
        (failed.append(f"{e.name}: {why}") if why else ran.append(e))
    out = out_dir(args)
    reported = write_reports(ran, out, failed)
    if reported:
        given = list(argv if argv is not None else sys.argv[1:])
        command = {(): "make reproduce", ("--synthetic-only",): "make reproduce-synthetic"}.get(
            tuple(given), " ".join(["python scripts/reproduce.py", *given]))
        write_index(ROOT / out, time.time() - t0, gpus, command, [e.name for e, _ in reported],
                    [d for _, d in reported])
    print(f"\nreproduce: {len(ran)} experiment(s) ran in {hms(time.time() - t0)}; report in {out}/")
    for line in [f"skipped {e.name}: {e.skip}" for e in todo if e.skip] + [f"FAILED {f}" for f in failed]:
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
