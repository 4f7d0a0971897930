"""make bench-gpu: iterations/s of the image-GAN step, eager vs CUDA-graph, and packed runs.

One GPU, batch 64, the paper's optimiser settings, data resident on the GPU (random uint8 images of
CIFAR-10's shape: the speed does not depend on their values). Prints two tables:
  1. eager vs fast (`train.fast`) for the CNN at widths 1, 0.5, 0.25 and the ResNet at 1 and 0.25;
  2. aggregate it/s of 1, 4 and 8 runs trained at once on the same GPU (separate processes).
Usage: python scripts/bench_gpu.py [--seconds 10] [--precision fp32|bf16] [--channels-last]
"""
import argparse
import multiprocessing as mp
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
SINGLE = [("cnn", 1.0), ("cnn", 0.5), ("cnn", 0.25), ("resnet", 1.0), ("resnet", 0.25)]
PACKED = [("cnn", 0.25), ("cnn", 1.0)]


def make_gan(model, width, fast, args):
    from gan_landscape import image_gan
    from gan_landscape.data import ResidentSampler
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    image_gan.build_sampler = lambda ds, b, dev: ResidentSampler(images, dev)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=cifar10", f"model={model}", f"width={width}", "loss=rsgan", "train.ema=0.999",
            f"train.fast={fast}", f"train.precision={args.precision}",
            f"train.channels_last={args.channels_last}"])
    from gan_landscape.fast import make_step
    from gan_landscape.trainer import setup_backends
    device = torch.device("cuda")
    setup_backends(cfg, device)
    gan = image_gan.ImageGAN(cfg, device)
    step, _ = make_step(gan, fast)
    return step


def its_per_s(step, seconds):
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            step()
        n += 50
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _worker(model, width, seconds, args, start, out):
    step = make_gan(model, width, True, args)
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    start.wait()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            step()
        n += 50
        torch.cuda.synchronize()
    out.put(n / (time.perf_counter() - t0))


def packed(model, width, k, seconds, args):
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(model, width, seconds, args, start, out)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench-gpu: no CUDA device; run `make bench` for the CPU benchmarks")
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.precision}, "
          f"channels_last={args.channels_last}, batch 64, RS-GAN, EMA on")
    print("| net | width | n_dis | eager it/s | fast it/s | speed-up |\n|---|---|---|---|---|---|")
    for model, width in SINGLE:
        eager = its_per_s(make_gan(model, width, False, args), args.seconds)
        fast = its_per_s(make_gan(model, width, True, args), args.seconds)
        n_dis = 5 if model == "resnet" else 1
        print(f"| {model} | {width} | {n_dis} | {eager:.1f} | {fast:.1f} | {fast / eager:.1f}x |", flush=True)
    print("\n| net | width | runs | aggregate it/s | vs 1 run |\n|---|---|---|---|---|")
    for model, width in PACKED:
        one = None
        for k in (1, 4, 8):
            total = packed(model, width, k, args.seconds, args)
            one = one or total
            print(f"| {model} | {width} | {k} | {total:.1f} | {total / one:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
