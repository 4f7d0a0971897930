"""make demo: JS-GAN vs RS-GAN on the paper's two-cluster data, 20 seeds each, on the CPU.

Prints how often each loss ends in the mode-collapse basin and leaves the runs (plots, metrics,
summary.json) under demo/.
"""
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from gan_landscape.commands.train import run

ROOT = Path(__file__).resolve().parents[1]
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def main():
    torch.set_num_threads(1)
    rows = []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for loss in ("jsgan", "rsgan"):
            cfg = compose("config", overrides=[f"loss={loss}", f"train.num_seeds={SEEDS}",
                                               "train.device=cpu", "experiment_name=demo"])
            [s] = run(cfg, ROOT / "demo" / loss)
            rows.append((loss, s["num_seeds"], s["collapsed"], s["collapse_rate"], s["seconds"]))
    print("\nTwo-cluster experiment (GAN2_2Cluster.py settings), seeds 0..%d:" % (SEEDS - 1))
    print("| loss  | seeds | collapsed | collapse rate | train s |")
    print("|-------|------:|----------:|--------------:|--------:|")
    for loss, n, c, rate, sec in rows:
        print(f"| {loss} | {n:5d} | {c:9d} | {rate:13.0%} | {sec:7.1f} |")
    print(f"\nplots: {ROOT / 'demo'}/<loss>/trajectory.png, d_function.png, modes_covered.png")


if __name__ == "__main__":
    main()
