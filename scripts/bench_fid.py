"""FID wall time: ours (generate + features + distance, cached reference) vs pytorch-fid's CLI.

    python scripts/bench_fid.py                   # CPU: 200 fakes, batch 50 (~0.1-0.5 s an image)
    python scripts/bench_fid.py --n 10000         # the CUDA default (the paper's FID-10k)
    python scripts/bench_fid.py --n 50000         # fid=standard's size
    python scripts/bench_fid.py --resize tf1      # the TF1 legacy resize (torch-fidelity)
    python scripts/bench_fid.py --metrics-n 10000 # also KID, precision/recall, density/coverage, PRD
                                                  # on 10k + 10k features (fid=paper's metrics)

The generator is the paper's CNN (random init; speed does not depend on the weights); the reals are
smooth random images written as a CIFAR-10 test split in the official format, read by the real
loader. Inception uses the FID weights from torch hub or --weights; without them, random weights
of the same shapes, and the table says so. Both sides read the same weights file, fakes and reals,
so their FIDs agree (to TF32 noise on GPU, where the CLI lets cuDNN use TF32). pytorch-fid's CLI
crashes on scipy >= 1.18 (its sqrtm(..., disp=False)): there its rows are left out, and it says so.
Targets on an H100: FID-10k under 6 s, FID-50k under 30 s.
"""
import argparse
import inspect
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import scipy.linalg
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from gan_landscape.metrics import fid, inception
from gan_landscape.nets import build_generator

REPO = Path(__file__).resolve().parents[1]
CLI_WORKS = "disp" in inspect.signature(scipy.linalg.sqrtm).parameters


def parse():
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000 if cuda else 200, help="fakes (and reals)")
    p.add_argument("--batch", type=int, default=500 if cuda else 50)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--weights", default=None, help="a local pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--resize", default="pytorch", choices=["pytorch", "tf1"])
    p.add_argument("--skip-cli", action="store_true", help="time ours only")
    p.add_argument("--metrics-n", type=int, default=0, help="also time fid=paper's metrics on this "
                   "many fake and real 2048-d features (random: their cost does not depend on values)")
    return p.parse_args()


def weights_home(args, tmp: Path) -> tuple[Path, str]:
    """A hub dir holding the weights (real if found, else random), read by both sides."""
    link = tmp / "hub" / "checkpoints" / fid.WEIGHTS_FILE
    link.parent.mkdir(parents=True)
    real = Path(args.weights) if args.weights else fid.hub_weights_path()
    if real.is_file():
        link.symlink_to(real.resolve())
        return link, f"{real} (sha256 {fid.sha256_short(real)})"
    fid.random_weights(link)
    return link, "RANDOM, shaped like the FID weights (none found; speed does not depend on values)"


def smooth_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear")
    return (x * 255).to(torch.uint8)


def write_cifar(folder: Path, test_u8: torch.Tensor) -> Path:
    """A cifar-10-batches-py folder: `test_u8` as test_batch, one image per training batch."""
    folder.mkdir(parents=True)
    for name, x in [(f"data_batch_{i}", test_u8[:1]) for i in range(1, 6)] + [("test_batch", test_u8)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x.reshape(len(x), -1).numpy(), "labels": [0] * len(x)}, f)
    return folder.parent


def config(args, tmp: Path, weights: Path):
    model = OmegaConf.load(REPO / "configs/model/cnn.yaml")
    ds = OmegaConf.merge(OmegaConf.load(REPO / "configs/dataset/cifar10.yaml"),
                         {"root": str(write_cifar(tmp / "cifar10" / "cifar-10-batches-py",
                                                  smooth_images(args.n, 1))),
                          "check_integrity": False, "download": False})
    fid_cfg = OmegaConf.merge(OmegaConf.load(REPO / "configs/fid/paper.yaml"),
                              {"n_fake": args.n, "n_real": args.n, "batch_size": args.batch,
                               "cache_dir": str(tmp / "cache"), "weights": str(weights),
                               "resize": args.resize, "log_seconds": 1e9, "metrics": []})
    return OmegaConf.create({"model": model, "width": 1.0, "dataset": ds, "fid": fid_cfg})


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def cli(a, b, args, home: Path) -> tuple[float, float]:
    workers = str(min(8, os.cpu_count() or 1) if args.device == "cuda" else 0)
    cmd = [sys.executable, "-m", "pytorch_fid", str(a), str(b), "--device", args.device,
           "--batch-size", str(args.batch), "--num-workers", workers]
    r, sec = timed(lambda: subprocess.run(cmd, capture_output=True, text=True,
                                          env={**os.environ, "TORCH_HOME": str(home)}))
    if r.returncode:
        sys.exit(f"bench_fid: pytorch-fid failed: {r.stderr.strip().splitlines()[-1]}")
    return float(r.stdout.split("FID:")[-1]), sec


def ours(G, cfg) -> list[tuple]:
    """Cold: load Inception and the cached reference from disk, then score; warm: score again."""
    inception._load_inception.cache_clear()
    fid._REFS.clear()
    rec, cold = timed(lambda: fid.score_generator(G, cfg))
    rec, warm = timed(lambda: fid.score_generator(G, cfg))
    return [("ours: generate + features + distance (warm)", warm, rec["fid"]),
            ("ours: + load Inception and cached ref (cold)", cold, rec["fid"])]


def save_pngs(images_u8, folder: Path) -> Path:
    folder.mkdir()
    for i, im in enumerate(images_u8):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i:06d}.png")
    return folder


def theirs(G, cfg, args, home: Path, tmp: Path, ref_npz: Path) -> list[tuple]:
    """The same fakes (same seed, batches, mode, uint8) as PNGs, scored by pytorch-fid's CLI."""
    def fakes():
        with fid.sampling_mode(G, cfg.fid.g_mode):
            return torch.cat([b.cpu() for b in fid.fake_batches(G, args.n, args.batch,
                                                                cfg.fid.quantize, cfg.fid.seed)])
    _, write = timed(lambda: save_pngs(fakes(), tmp / "fake"))
    save_pngs(smooth_images(args.n, 1), tmp / "real")
    f1, s1 = cli(tmp / "fake", ref_npz, args, home)
    f2, s2 = cli(tmp / "fake", tmp / "real", args, home)
    return [("pytorch-fid CLI: fake PNGs vs cached ref .npz", s1, f1),
            ("pytorch-fid CLI: fake PNGs vs real PNGs", s2, f2),
            ("  (generating + writing the fake PNGs, not counted)", write, float("nan"))]


def main():
    args = parse()
    # Fewer images than 2048 dims (the CPU default) give singular covariances: fine for timing.
    warnings.filterwarnings("ignore", message="FID statistics from")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights, about = weights_home(args, tmp)
        cfg = config(args, tmp, weights)
        G = build_generator(cfg).to(args.device)
        inc = fid.load_inception(weights, args.device, cfg.fid.dims, cfg.fid.resize)
        ref, ref_sec = timed(lambda: fid.reference_stats(cfg, inc))
        rows = ours(G, cfg)
        note = None
        if args.skip_cli:
            pass
        elif args.resize != "pytorch":
            note = "pytorch-fid's CLI left out: it resizes as fid.resize=pytorch"
        elif not CLI_WORKS:
            note = (f"pytorch-fid's CLI left out: it crashes on scipy {scipy.__version__} "
                    f"(sqrtm(..., disp=False); disp was removed in scipy 1.18)")
        else:
            rows += theirs(G, cfg, args, tmp, tmp, ref.path)
    report(args, about, ref_sec, rows, note)
    if args.metrics_n:
        time_metrics(args)


def time_metrics(args) -> None:
    """Each of fid=paper's metrics (configs/fid/paper.yaml) on N fake and N real features."""
    from gan_landscape.metrics import features as metrics
    asked = metrics.settings(OmegaConf.load(REPO / "configs/fid/paper.yaml"))
    g = torch.Generator().manual_seed(0)
    fake, real = (torch.randn(args.metrics_n, 2048, generator=g).relu().to(args.device) for _ in range(2))
    print(f"\nmetrics on {args.metrics_n} fake + {args.metrics_n} real 2048-d features, {args.device}:")
    for name, s in asked.items():
        (out, notes), sec = timed(lambda: metrics.compute({name: s}, fake, real))
        print(f"  {name:<4} {sec:8.2f} s  {notes[0] if notes else ''}")


def report(args, weights: str, ref_sec: float, rows: list[tuple], note) -> None:
    dev = torch.cuda.get_device_name() if args.device == "cuda" \
        else f"cpu ({torch.get_num_threads()} threads)"
    print(f"\nFID-{args.n}: {args.n} fakes vs {args.n} reals on {dev}, batch {args.batch}, fp32, "
          f"resize {args.resize}\nInception weights: {weights}"
          f"\nreference statistics: {ref_sec:.1f} s once, then cached\n")
    print(f"| {'method':<52} | {'seconds':>8} | {'fakes/s':>8} | {'FID':>10} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    for name, sec, value in rows:
        print(f"| {name:<52} | {sec:8.2f} | {args.n / sec:8.0f} | {value:10.4f} |")
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
