"""make bench: wall time of the full two-cluster experiment, 100 seeds x {JS-GAN, RS-GAN}.

The authors' GAN2_2Cluster.py takes 118 s (JS) and 143 s (RS) for one seed on the project's
2-core machine. Here each loss trains its seeds as one batched run in its own process on one
thread, the two processes at once (one per core). The fused CPU kernel is compiled before the
clock starts (once per machine, then cached on disk); its compile time is printed separately.

    python scripts/bench_synthetic.py [--seeds 100] [--iters 5000] [--losses jsgan,rsgan]
                                      [--serial] [--reference]

    python scripts/bench_synthetic.py --grid [--iters 300]

--grid times experiment=synthetic_widths instead: 16 stacked 5-Gaussian seeds per width, JS and RS,
the reference path (train.cpu_kernel=false: autograd's arithmetic, mlp_step's written-out passes)
and the default one (the seeds-in-lanes kernel up to 16 hidden units, the GEMM kernel above;
data/synthetic.py step_path) back to back in one process, and projects the 90-job grid's wall time
on two cores from each.
--serial runs the losses one after the other; --reference times the autograd + torch.optim path
(train.cpu_kernel=false, the implementation before the kernel; try --iters 200, the speed-up column is
per seed and iteration, so it extrapolates).
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTHORS_S = {"jsgan": 118.0, "rsgan": 143.0}  # one seed, 5000 iterations, GAN2_2Cluster.py
AUTHORS_ITERS = 5000


def parse(argv: list[str]) -> dict:
    opts = {"seeds": 100, "iters": AUTHORS_ITERS, "losses": "jsgan,rsgan", "serial": False,
            "reference": False, "worker": None, "grid": False}
    args = iter(argv)
    for flag in args:
        key = flag.lstrip("-")
        if key not in opts:
            sys.exit(f"unknown flag {flag}; see the docstring of {__file__}")
        opts[key] = True if isinstance(opts[key], bool) else type(opts[key] or "")(next(args))
    return opts


def compose(loss: str, opts: dict):
    from hydra import compose as hydra_compose, initialize_config_dir
    overrides = [f"loss={loss}", f"train.iters={opts['iters']}", "train.device=cpu"]
    if opts["reference"]:
        overrides.append("train.cpu_kernel=false")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def worker(opts: dict) -> None:
    """Train one loss's seeds; print one JSON line."""
    import gc
    import torch
    from gan_landscape.data.synthetic import SyntheticGAN, outcome
    torch.set_num_threads(1)
    cfg = compose(opts["worker"], opts)
    gan = SyntheticGAN(cfg, list(range(opts["seeds"])), "cpu")
    gc.freeze()  # the collector would otherwise keep walking torch's million import-time objects
    t0 = time.perf_counter()
    for _ in range(opts["iters"]):
        gan.step()
    train_s = time.perf_counter() - t0
    gc.unfreeze()  # let the exit-time collection free them again (else bindings report leaks)
    print(json.dumps({"loss": opts["worker"], "train_s": train_s, "fused": gan.kernel is not None,
                      "collapse_rate": outcome(cfg.dataset, gan.samples())["collapse_rate"]}))


def compile_kernel(opts: dict) -> float:
    """Build (or load from the cache) the kernel the workers will use; seconds taken."""
    from gan_landscape.nets.mlp import build_pair
    from gan_landscape.nets.pair_kernel import pair_kernel
    t0 = time.perf_counter()
    if not opts["reference"]:
        G, D = build_pair(compose("jsgan", opts), [0])
        if pair_kernel(G, D) is None:
            print("warning: the fused kernel could not be built; timing the autograd path")
    return time.perf_counter() - t0


def launch(loss: str, opts: dict) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", loss, "--seeds", str(opts["seeds"]),
           "--iters", str(opts["iters"]), *(["--reference"] if opts["reference"] else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)


def collect(proc: subprocess.Popen, started: float) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"worker failed ({proc.returncode})")
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": time.perf_counter() - started}


GRID_WIDTHS = (1.0, 0.5, 0.25, 0.125, 0.0625)


def grid(opts: dict) -> None:
    """it/s per width (old vs new path) and the projected synthetic_widths wall time."""
    import gc
    import torch
    from hydra import compose as hydra_compose, initialize_config_dir
    from gan_landscape.data.synthetic import SyntheticGAN
    torch.set_num_threads(1)
    iters = opts["iters"] if opts["iters"] != AUTHORS_ITERS else 300
    rates = {}
    print(f"synthetic_widths slice: 16 seeds, five_gaussian, {iters} iterations a width (more at narrow "
          f"widths), 1 thread; load average now: {os.getloadavg()[0]:.1f}")
    for width in GRID_WIDTHS:
        for loss in ("jsgan", "rsgan"):
            paths = {}
            for kernel in (False, True):
                with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
                    cfg = hydra_compose("config", overrides=["dataset=five_gaussian", f"loss={loss}", f"width={width}",
                                                             f"train.cpu_kernel={kernel}"])
                gan = SyntheticGAN(cfg, list(range(16)))
                n = int(iters / max(width, 0.125)) * (1 if gan.path == "reference" else 3)
                gan.step()  # the first call builds the kernel and Adam's state
                gc.collect()
                t0 = time.perf_counter()
                for _ in range(n):
                    gan.step()
                rates[(width, loss, kernel)], paths[kernel] = n / (time.perf_counter() - t0), gan.path
            print(f"width {width:<6g} {loss}: {paths[False]} {rates[(width, loss, False)]:7.1f} it/s, "
                  f"{paths[True]} {rates[(width, loss, True)]:7.1f} it/s", flush=True)
    for kernel, name in ((False, "reference"), (True, "default (kernel / gemm)")):
        # 3 mixtures x 6 losses per width, 20k iterations a job, two jobs at once
        per_width = [20000 / (sum(rates[(w, l, kernel)] for l in ("jsgan", "rsgan")) / 2) for w in GRID_WIDTHS]
        print(f"projected synthetic_widths, {name}: {sum(per_width) * 18 / 2 / 60:.0f} min on 2 cores "
              f"(job startup and figures not included)")


def main() -> None:
    opts = parse(sys.argv[1:])
    if opts["grid"]:
        return grid(opts)
    if opts["worker"]:
        return worker(opts)
    losses = opts["losses"].split(",")
    compile_s = compile_kernel(opts)
    t0 = time.perf_counter()
    if opts["serial"]:
        results = []
        for loss in losses:
            started = time.perf_counter()
            results.append(collect(launch(loss, opts), started))
    else:
        procs = [launch(loss, opts) for loss in losses]
        results = [collect(p, t0) for p in procs]
    total = time.perf_counter() - t0
    report(results, opts, total, compile_s)


def report(results: list[dict], opts: dict, total: float, compile_s: float) -> None:
    seeds, iters = opts["seeds"], opts["iters"]
    full = iters == AUTHORS_ITERS
    path = "reference (autograd)" if opts["reference"] else \
        "fused CPU kernel" if all(r["fused"] for r in results) else "autograd (kernel unavailable)"
    print(f"two-cluster, {path}, {'serial' if opts['serial'] else 'one process per loss, in parallel'}, "
          f"1 thread each; load average now: {os.getloadavg()[0]:.1f}")
    print(f"{'loss':7} {'seeds':>5} {'iters':>5} {'wall s':>8} {'train s':>8} {'s/run':>7} "
          f"{'authors':>8} {'speed-up':>8} {'collapse':>8}")
    for r in results:
        authors = AUTHORS_S.get(r["loss"], float("nan"))
        # a run = one seed for 5000 iterations; from a shorter --iters, training time scaled up
        per_run = r["wall_s"] / seeds if full else r["train_s"] * AUTHORS_ITERS / iters / seeds
        print(f"{r['loss']:7} {seeds:5d} {iters:5d} {r['wall_s']:8.1f} {r['train_s']:8.1f} {per_run:7.3f} "
              f"{authors:8.0f} {authors / per_run:7.0f}x {r['collapse_rate']:8.2f}")
    print(f"total wall for all {seeds * len(results)} runs: {total:.1f} s "
          f"(+ {compile_s:.1f} s to build or load the kernel)")
    if not full:
        print(f"  s/run and speed-up extrapolated to {AUTHORS_ITERS} iterations; "
              f"the full experiment: ~{max(r['train_s'] for r in results) * AUTHORS_ITERS / iters:.0f} s")


if __name__ == "__main__":
    main()
