"""Do TF32 and bf16 train like fp32? Loss curves of stacked seeds, per net and precision.

Issue 11 item 2: a lower precision becomes a default only where its losses track fp32's over a
few thousand iterations within seed-to-seed noise. For each net, one stack of S seeds (the real
ImageGAN: stacked nets, CUDA graph, the paper's optimiser settings, constant learning rates)
trains N iterations on a CIFAR-10 folder in each precision, with the same seeds every time. The D
and G losses are averaged over windows of W iterations (ImageGAN.metrics()), L_p(s, t) for seed s
and window t. Per net, loss (D, G) and precision p:

    gap   = mean_t | mean_s L_p(s, t) - mean_s L_fp32(s, t) |
    noise = mean_t std_s L_fp32(s, t) * sqrt(2 / S)      (std over fp32's seeds, n - 1)

noise is the standard deviation of the difference of two S-seed means that differ by seed noise
only, measured from fp32's own seed-to-seed spread. p tracks fp32 when gap <= noise for both
losses and no seed diverged; ratio = gap / noise is printed (with no effect at all, E|difference|
= 0.8 of its std, so ratio ~0.8; the shared seeds make it smaller early in the run).

Usage (on a GPU; prints one table, then a verdict line per net):
  python scripts/precision_check.py [CIFAR10_DIR] [--iters 3000] [--seeds 4] [--window 100]
      [--nets cnn:1,cnn:0.25,resnet:0.25] [--precisions fp32,tf32,bf16] [--out precision.json]
Without CIFAR10_DIR: data/cifar10-subset in the repository (carried to a GPU machine), else
../shared/data/cifar10-subset, else random pixels in CIFAR-10's format (then the curves say
nothing about real data: the header says which was used). Every it/s says whether the stack ran
as a captured CUDA graph. Without a GPU it says so and exits 0;
`--device cpu --iters 20 --nets cnn:0.125 --batch 8` is a smoke test of the same code (on the CPU
tf32 is fp32, and bf16 runs under CPU autocast).
"""
import argparse
import gc
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stand_in_data import cifar10_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a bare GPU machine: the package is not installed there
LOSSES = ("D", "G")


def compose_cfg(data, model: str, width: float, precision: str, seeds: int, iters: int,
                batch: int, device: str):
    from hydra import compose, initialize_config_dir

    import gan_landscape  # noqa: F401  registers the structured configs the YAML names
    overrides = ["dataset=cifar10", f"dataset.root={data}", "dataset.check_integrity=false",
                 "dataset.download=false", f"model={model}", f"width={width}", "loss=rsgan",
                 f"train.precision={precision}", f"train.num_seeds={seeds}", f"train.iters={iters}",
                 f"train.batch_size={batch}", "train.lr_decay_start=null", "train.ema=null",
                 f"train.device={device}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides)


def loss_curves(cfg, device, seeds: list[int], iters: int, window: int) -> tuple[np.ndarray, float, str]:
    """Window-mean losses [S, iters // window, 2] (D, G) of one stack, its iterations per second,
    and its CUDA-graph status (cuda_graph.Stepper.status)."""
    from gan_landscape.kinds.image_gan import ImageGAN
    gan = ImageGAN(cfg, torch.device(device), seeds)
    rows, t0 = [], time.perf_counter()
    for it in range(1, iters // window * window + 1):
        gan.step()
        if it % window == 0:
            rows.append([[m["d_loss"], m["g_loss"]] for m in gan.metrics()])  # syncs once a window
    rate = iters // window * window / (time.perf_counter() - t0)
    graph = gan.graph.status
    del gan
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return np.asarray(rows, dtype=np.float64).transpose(1, 0, 2), rate, graph


def track_stats(curves: dict[str, np.ndarray]) -> dict[str, dict]:
    """The module docstring's gap, noise and ratio of each precision against curves["fp32"]."""
    ref = curves["fp32"]
    S = ref.shape[0]
    if S < 2:
        raise ValueError("the seed-to-seed spread needs at least 2 seeds")
    noise = ref.std(axis=0, ddof=1).mean(axis=0) * math.sqrt(2 / S)  # [2]
    out = {}
    for p, c in curves.items():
        finite = bool(np.isfinite(c).all())
        gap = np.abs(c.mean(axis=0) - ref.mean(axis=0)).mean(axis=0)  # [2]
        ratio = gap / np.maximum(noise, 1e-12)
        out[p] = {"gap": gap.tolist(), "noise": noise.tolist(), "ratio": ratio.tolist(),
                  "finite": finite, "tracks": finite and bool((gap <= noise).all())}
    return out


def measure(data, nets: list[tuple[str, float]], precisions: list[str], *, iters: int, seeds: int,
            window: int, batch: int = 64, device: str = "cuda") -> dict:
    """Curves, speeds and track_stats per net ("cnn w1"), every precision on the same seeds."""
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]
    results = {}
    for model, width in nets:
        name, curves, speed, graph = f"{model} w{width:g}", {}, {}, {}
        for p in precisions:
            cfg = compose_cfg(data, model, width, p, seeds, iters, batch, device)
            curves[p], speed[p], graph[p] = loss_curves(cfg, device, list(range(seeds)), iters, window)
            print(f"{name} {p}: {iters} iterations x {seeds} seeds at {speed[p]:.1f} it/s "
                  f"(cuda_graph: {graph[p]})", flush=True)
        results[name] = {"curves": curves, "it_per_s": speed, "cuda_graph": graph,
                         "stats": track_stats(curves)}
    return results


def report(results: dict, seeds: int) -> list[str]:
    """One markdown table, then a verdict line per net."""
    lines = [f"| net | precision | it/s ({seeds} seeds) | cuda_graph | D gap | G gap | D noise | G noise | "
             "D ratio | G ratio | tracks fp32 |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = []
    for name, r in results.items():
        for p, s in r["stats"].items():
            tracks = "ref" if p == "fp32" else ("yes" if s["tracks"] else "no")
            lines.append(f"| {name} | {p} | {r['it_per_s'][p]:.1f} | {r['cuda_graph'][p]} | "
                         + " | ".join(f"{v:.4f}" for v in (*s["gap"], *s["noise"]))
                         + " | " + " | ".join(f"{v:.2f}" for v in s["ratio"])
                         + f" | {tracks}{'' if s['finite'] else ' (diverged)'} |")
        verdicts.append(f"{name}: " + "; ".join(
            f"{p} tracks fp32: {'yes' if s['tracks'] else 'no'} (ratio D {s['ratio'][0]:.2f}, "
            f"G {s['ratio'][1]:.2f})" for p, s in r["stats"].items() if p != "fp32"))
    return lines + [""] + verdicts


def parse_nets(text: str) -> list[tuple[str, float]]:
    nets = []
    for item in text.split(","):
        model, _, width = item.partition(":")
        nets.append((model.strip(), float(width or 1)))
    return nets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=None, help="a CIFAR-10 folder (default: see above)")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=4, help="seeds per stack (>= 2)")
    ap.add_argument("--window", type=int, default=None, help="iterations per loss average "
                    "(default: iters / 30)")
    ap.add_argument("--nets", default="cnn:1,cnn:0.25,resnet:0.25", help="model:width,...")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None, help="also write the curves and statistics (JSON)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"precision_check: no CUDA device here (torch {torch.__version__}); nothing measured. "
              "Run it on a GPU, or `--device cpu --iters 20 --nets cnn:0.125 --batch 8` for a "
              "smoke test.")
        return 0
    if args.seeds < 2:
        ap.error("--seeds must be at least 2 (the statistic needs fp32's seed-to-seed spread)")
    try:
        data, note = cifar10_folder(Path(tempfile.mkdtemp(prefix="precision-check-")), args.data)
    except FileNotFoundError as e:
        ap.error(str(e))
    window = args.window or max(1, args.iters // 30)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# precision_check on {where}, torch {torch.__version__}: {args.iters} iterations, "
          f"{args.seeds} seeds, batch {args.batch}, RS-GAN, losses averaged over {window} iterations; "
          f"{note}", flush=True)
    results = measure(str(data), parse_nets(args.nets),
                      args.precisions.split(","), iters=args.iters, seeds=args.seeds, window=window,
                      batch=args.batch, device=args.device)
    print("\n".join(report(results, args.seeds)))
    if args.out:
        Path(args.out).write_text(json.dumps({
            "device": where, "torch": torch.__version__, "iters": args.iters, "seeds": args.seeds,
            "window": window, "batch": args.batch, "data": note,
            "nets": {n: {"it_per_s": r["it_per_s"], "cuda_graph": r["cuda_graph"], "stats": r["stats"],
                         "curves": {p: c.tolist() for p, c in r["curves"].items()}}
                     for n, r in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
