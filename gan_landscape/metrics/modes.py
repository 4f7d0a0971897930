"""Mode-collapse metrics of the synthetic-mixture literature, per seed.

Definitions as VEEGAN (Srivastava et al., NeurIPS 2017) and PacGAN (Lin et al., NeurIPS 2018; its
synthetic-data table, results/Table1.png in its repository) use them on the ring of 8 and the grid
of 25 Gaussians, and as PacGAN's code computes them (github.com/fjxmlzn/PacGAN, synthetic_data_experiments/PacGAN/pacgan/
extensions.py, MetricLogger: each sample goes to its nearest mode and counts if it lies within
`dis_thre` = 3 standard deviations of it):
  - high-quality sample: within 3 standard deviations of the nearest mode's mean;
  - modes captured: modes that are the nearest mode of at least one high-quality sample;
  - reverse KL: KL(generated || true) between the histogram of the high-quality samples over the
    modes and the true mode weights (uniform here): sum_k p_k log(p_k K). PacGAN's code logs the
    Jensen-Shannon form of the same comparison; its paper's Table 1 reports this reverse KL.
The window is the dataset's `mode_radius`: 3 standard deviations for the Gaussian mixtures; for the
uniform two-cluster data, its own 1.2 x cluster-width window (the authors' count).

Beside them each seed gets a `collapse_kind` from the project's own coverage count (`modes_covered`:
modes holding at least `cover_frac` of the samples): `off_data` (no mode covered: G never reached
the data), `few_modes` (some but not all covered: collapse onto a subset) or `covered`.
"""
import math

import torch

KINDS = ("covered", "few_modes", "off_data")


def assign(y: torch.Tensor, centres: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """y [S, N, dim] -> (nearest mode index [S, N], high-quality mask [S, N])."""
    d = torch.cdist(y.float(), centres.to(y.device).float().expand(y.shape[0], -1, -1))
    dist, nearest = d.min(-1)
    return nearest, dist < radius


def reverse_kl(counts: list[int]) -> float | None:
    """KL(p || uniform) of a histogram; None for an empty one (no high-quality sample)."""
    total, k = sum(counts), len(counts)
    if total == 0:
        return None
    return sum(c / total * math.log(c / total * k) for c in counts if c)


def collapse_kind(modes_covered: int, num_modes: int) -> str:
    return "off_data" if modes_covered == 0 else "few_modes" if modes_covered < num_modes else "covered"


def mode_metrics(y: torch.Tensor, centres: torch.Tensor, radius: float, modes_covered: list[int]) -> list[dict]:
    """Per seed: high_quality_fraction, modes_captured, reverse_kl, hq_counts, collapse_kind."""
    k = len(centres)
    nearest, good = assign(y, centres, radius)
    counts = torch.zeros(y.shape[0], k, dtype=torch.long, device=y.device)
    counts.scatter_add_(1, nearest, good.long())
    out = []
    for c, covered in zip(counts.tolist(), modes_covered):
        out.append({"high_quality_fraction": sum(c) / y.shape[1], "modes_captured": sum(n > 0 for n in c),
                    "reverse_kl": reverse_kl(c), "hq_counts": c, "collapse_kind": collapse_kind(covered, k)})
    return out
