"""make bench-gpu: image-GAN training speed on one GPU, and what the cifar10_widths table costs.

Batch 64, RS-GAN, EMA on, the paper's optimiser settings, data resident on the GPU (random uint8
images in CIFAR-10's layout: the speed does not depend on their values). Prints:
  1. it/s per net: the authors' loop (eager plus a host sync per iteration, as their `.item()` calls),
     our eager loop, and the CUDA graph in fp32, tf32 and bf16;
  2. seed-iterations/s of stacked seeds (train.num_seeds) in one CUDA graph;
  3. the projected GPU-hours of the whole cifar10_widths table (7 cells x JS/RS x 3 seeds x 100k
     iterations) from the measured rates: stacked CUDA graph vs the eager loop, one run at a time.
Usage: python scripts/bench_gpu.py [--seconds 3] [--quick] [--precision fp32]
"""
import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # ROOT: the package need not be installed (bare GPU machine)
from fakes import write_cifar10  # noqa: E402  (real CIFAR pickles, random pixels)

NETS = [("cnn", 1.0, False), ("cnn", 0.5, False), ("cnn", 0.25, False), ("resnet", 1.0, False),
        ("resnet", 0.5, False), ("resnet", 0.25, False), ("resnet", 0.5, True)]
TABLE_SEEDS, TABLE_ITERS, TABLE_LOSSES = 3, 100_000, 2
TARGETS = {("cnn", 1.0, False): 300, ("resnet", 1.0, False): 60}       # it/s, single run
STACK_TARGETS = {("cnn", 0.25, False): 2000, ("resnet", 0.25, False): 150}  # seed-it/s


def make_gan(root, model, width, bottleneck, *, seeds=1, cuda_graph=True, precision="fp32"):
    from gan_landscape.image_gan import ImageGAN
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
    """Iterations per second after warm-up (and capture)."""
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
    eager, graph = {}, {}
    for cell in nets:
        model, width, bn = cell
        authors = rate(make_gan(root, *cell, cuda_graph=False), args.seconds, sync_each=True)
        eager[cell] = rate(make_gan(root, *cell, cuda_graph=False), args.seconds)
        row = {p: rate(make_gan(root, *cell, precision=p), args.seconds)
               for p in (("fp32",) if args.quick else ("fp32", "tf32", "bf16"))}
        graph[cell] = row["fp32"]
        name = f"{model}{' bottleneck' if bn else ''}"
        print(f"| {name} | {width:g} | {authors:.1f} | {eager[cell]:.1f} | "
              + " | ".join(f"{row[p]:.1f}" if p in row else "-" for p in ("fp32", "tf32", "bf16"))
              + f" | {TARGETS.get(cell, '')} |", flush=True)
    print("\n| net | width | seeds | seed-it/s | target |\n|---|---|---:|---:|---:|")
    stacked = {}
    for cell in nets:
        for seeds in ((TABLE_SEEDS,) if args.quick else (TABLE_SEEDS, 8, 16)):
            try:
                r = rate(make_gan(root, *cell, seeds=seeds), args.seconds) * seeds
            except torch.cuda.OutOfMemoryError:  # wide nets x many seeds: say so, measure the rest
                r = None
            if r is None:  # outside the except: its traceback no longer holds the stack's tensors
                gc.collect()
                torch.cuda.empty_cache()
                print(f"| {cell[0]}{' bottleneck' if cell[2] else ''} | {cell[1]:g} | {seeds} | "
                      "out of memory | |", flush=True)
                continue
            if seeds == TABLE_SEEDS:
                stacked[cell] = r / seeds
            print(f"| {cell[0]}{' bottleneck' if cell[2] else ''} | {cell[1]:g} | {seeds} | {r:.0f} "
                  f"| {STACK_TARGETS.get(cell, '') if seeds >= 8 else ''} |", flush=True)
    if set(stacked) == set(NETS):
        print(f"\ncifar10_widths ({len(NETS)} cells x JS/RS x {TABLE_SEEDS} seeds x {TABLE_ITERS} "
              f"iterations, fp32): {hours(stacked, True):.1f} GPU-hours with stacked seeds in CUDA "
              f"graphs vs {hours(eager, False):.1f} with the eager loop one run at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
