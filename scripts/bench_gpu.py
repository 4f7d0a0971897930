"""make bench-gpu: image-GAN training speed on one GPU, and what the cifar10_widths table costs.

Batch 64, RS-GAN, EMA on, the paper's optimiser settings, data resident on the GPU (random uint8
images in CIFAR-10's layout: the speed does not depend on their values). Prints:
  1. it/s per net: the authors' loop (eager plus a host sync per iteration, as their `.item()` calls),
     our eager loop, and the CUDA graph in fp32, tf32 and bf16;
  2. seed-iterations/s of stacked seeds (train.num_seeds) in one CUDA graph;
  3. the projected GPU-hours of the whole cifar10_widths table (7 cells x JS/RS x 3 seeds x 100k
     iterations) from the measured rates: stacked CUDA graph vs the eager loop, one run at a time.
Every graph figure says whether its iteration was captured ("[graph]") or fell back to eager
("[EAGER: why]"); the bench then exits 1, so that no eager figure passes for a graph one.
Usage: python scripts/bench_gpu.py [--seconds 3] [--quick]
"""
import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from stand_in_data import write_cifar10  # real CIFAR pickles, random pixels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package need not be installed (a bare GPU machine)

NETS = [("cnn", 1.0, False), ("cnn", 0.5, False), ("cnn", 0.25, False), ("resnet", 1.0, False),
        ("resnet", 0.5, False), ("resnet", 0.25, False), ("resnet", 0.5, True)]
TABLE_SEEDS, TABLE_ITERS, TABLE_LOSSES = 3, 100_000, 2
TARGETS = {("cnn", 1.0, False): 300, ("resnet", 1.0, False): 60}       # it/s, single run
STACK_TARGETS = {("cnn", 0.25, False): 2000, ("resnet", 0.25, False): 150}  # seed-it/s


def make_gan(root, model, width, bottleneck, *, seeds=1, cuda_graph=True, precision="fp32"):
    from gan_landscape.kinds.image_gan import ImageGAN
    # The last row's GAN holds its memory until the cyclic GC runs (its Stepper holds its bound
    # step method): free it before the next one warms up, not at that one's capture.
    gc.collect()
    torch.cuda.empty_cache()
    overrides = ["dataset=cifar10", f"dataset.root={root}", "dataset.check_integrity=false",
                 f"model={model}", f"width={width}", "loss=rsgan", "train.ema=0.999",
                 f"train.cuda_graph={cuda_graph}", f"train.precision={precision}", f"train.num_seeds={seeds}"]
    if bottleneck:
        overrides.append("model.bottleneck=true")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return ImageGAN(cfg, torch.device("cuda"), list(range(seeds)))


def rate(gan, seconds: float, sync_each=False) -> float:
    """Iterations per second after warm-up (and capture); gan.graph.status says which it was."""
    for _ in range(10):
        gan.step()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1 if sync_each else 20):
            gan.step()
            if sync_each:
                gan.acc.sum().item()  # the authors print/append loss.item() every iteration
        n += 1 if sync_each else 20
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def measure(root, cell, seconds: float, sync_each=False, **kw) -> tuple[float | None, str]:
    """(it/s, graph status) of one configuration; (None, "out of memory") where it does not fit."""
    try:
        gan = make_gan(root, *cell, **kw)
        return rate(gan, seconds, sync_each), gan.graph.status
    except torch.cuda.OutOfMemoryError:  # wide nets x many seeds: say so, measure the rest
        pass
    gan = None  # outside the except: its traceback no longer holds the tensors
    gc.collect()
    torch.cuda.empty_cache()
    return None, "out of memory"


def cell_text(r: float | None, status: str, scale: float = 1.0, digits: int = 1) -> str:
    """A figure and how it ran: "[graph]", or "[EAGER: why]" for a graph row that fell back."""
    if r is None:
        return status
    tag = {"captured": " [graph]", "off": ""}.get(status, f" [EAGER: {status}]")
    return f"{r * scale:.{digits}f}{tag}"


def fell_back(status: str) -> bool:
    return status not in ("captured", "out of memory")


def hours(rates: dict, stacked: bool) -> float:
    """GPU-hours of the table from per-cell rates (it/s of one job; a stacked job trains 3 seeds)."""
    total = 0.0
    for cell in NETS:
        jobs = TABLE_LOSSES * (1 if stacked else TABLE_SEEDS)
        total += jobs * TABLE_ITERS / rates[cell] / 3600
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per row")
    ap.add_argument("--quick", action="store_true", help="fewer rows (make gpu-check)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench-gpu: no CUDA device; run `make bench` for the CPU benchmarks")
    root = Path(tempfile.mkdtemp()) / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=1000)
    nets = NETS if not args.quick else [("cnn", 1.0, False), ("cnn", 0.25, False), ("resnet", 0.25, False)]
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, batch 64, RS-GAN, EMA on")
    print("| net | width | authors' loop | eager | graph fp32 | graph tf32 | graph bf16 | target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    eager, eager_graphs = {}, []
    for cell in nets:
        model, width, bn = cell
        authors = measure(root, cell, args.seconds, sync_each=True, cuda_graph=False)
        eager[cell], _ = measure(root, cell, args.seconds, cuda_graph=False)
        row = {p: measure(root, cell, args.seconds, precision=p)
               for p in (("fp32",) if args.quick else ("fp32", "tf32", "bf16"))}
        eager_graphs += [f"{model} w{width:g} {p}" for p, (_, st) in row.items() if fell_back(st)]
        name = f"{model}{' bottleneck' if bn else ''}"
        print(f"| {name} | {width:g} | {cell_text(*authors)} | {cell_text(eager[cell], 'off')} | "
              + " | ".join(cell_text(*row[p]) if p in row else "-" for p in ("fp32", "tf32", "bf16"))
              + f" | {TARGETS.get(cell, '')} |", flush=True)
    print("\n| net | width | seeds | seed-it/s | target |\n|---|---|---:|---:|---:|")
    stacked = {}
    for cell in nets:
        for seeds in ((TABLE_SEEDS,) if args.quick else (TABLE_SEEDS, 8, 16)):
            r, status = measure(root, cell, args.seconds, seeds=seeds)
            if fell_back(status):
                eager_graphs.append(f"{cell[0]} w{cell[1]:g} x{seeds} seeds")
            elif r is not None and seeds == TABLE_SEEDS:
                stacked[cell] = r
            print(f"| {cell[0]}{' bottleneck' if cell[2] else ''} | {cell[1]:g} | {seeds} | "
                  f"{cell_text(r, status, scale=seeds, digits=0)} "
                  f"| {STACK_TARGETS.get(cell, '') if seeds >= 8 else ''} |", flush=True)
    if set(stacked) == set(NETS) and None not in eager.values():
        print(f"\ncifar10_widths ({len(NETS)} cells x JS/RS x {TABLE_SEEDS} seeds x {TABLE_ITERS} "
              f"iterations, fp32): {hours(stacked, True):.1f} GPU-hours with stacked seeds in CUDA "
              f"graphs vs {hours(eager, False):.1f} with the eager loop one run at a time")
    elif not args.quick:
        print("\ncifar10_widths: no projection (a stacked row was not measured as a captured graph)")
    if eager_graphs:
        print(f"\nbench-gpu: {len(eager_graphs)} graph figure(s) ran EAGERLY, not as a CUDA graph: "
              + ", ".join(eager_graphs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
