"""The metrics beside the FID, all from the same Inception pass (fid.score_generator):

- IS: torch-fidelity's, unshuffled, so splits are the authors' contiguous i*N//splits slices;
- KID (unbiased MMD^2, cubic polynomial kernel, subsets): torch-fidelity's;
- improved precision and recall (Kynkaanniemi et al. 2019, k-NN balls): torch-fidelity's;
- density and coverage (Naeem et al. 2020): prdc's definitions (strict <), chunked in torch;
- PRD (Sajjadi et al. 2018): the authors' prd_score.py (compare_gan's), with sklearn's
  MiniBatchKMeans, reported as F_8 (recall) and F_1/8 (precision) plus the curve.

Recall and coverage are the numbers that fall when a generator drops modes; the FID mixes that
with sample quality. Each metric's settings come from the fid node (configs/fid/*.yaml).
"""
import numpy as np
import torch

NAMES = ("kid", "prc", "dc", "prd")  # fid.metrics may list any of these


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of exp E_x KL(p(y|x) || p(y)), p(y|x) = softmax(logits)."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    out = isc_features_to_metric(logits.cpu(), splits=splits, shuffle=False)
    return out["inception_score_mean"], out["inception_score_std"]


def kid(fake: torch.Tensor, real: torch.Tensor, subsets: int, subset_size: int, degree: int,
        coef0: float, seed: int) -> dict:
    from torch_fidelity.metric_kid import kid_features_to_metric
    out = kid_features_to_metric(
        fake.cpu(), real.cpu(), kid_subsets=subsets, kid_subset_size=subset_size, kid_kernel="poly",
        kid_kernel_poly_degree=degree, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=coef0,
        rng_seed=seed, verbose=False)
    return {"kid_mean": out["kernel_inception_distance_mean"],
            "kid_std": out["kernel_inception_distance_std"]}


def precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int) -> dict:
    from torch_fidelity.metric_prc import prc_features_to_metric
    out = prc_features_to_metric(fake, real, prc_neighborhood=k, prc_batch_size=10000,
                                 save_cpu_ram=False, verbose=False)
    return {"precision": out["precision"], "recall": out["recall"]}


def _kth_distances(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest neighbour other than itself."""
    return torch.cat([torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)])


def density_coverage(fake: torch.Tensor, real: torch.Tensor, k: int, chunk: int = 2048) -> dict:
    """Density: the mean over fakes of how many real k-NN balls hold it, / k. Coverage: the share
    of reals whose k-NN ball holds a fake. float64 distances, as sklearn upcasts float32 ones."""
    fake, real = fake.double(), real.double()
    radii = _kth_distances(real, k, chunk)
    inside, covered = torch.zeros(len(fake), dtype=torch.float64, device=fake.device), []
    for part, r in zip(real.split(chunk), radii.split(chunk)):
        d = torch.cdist(part, fake)
        inside += (d < r[:, None]).sum(0)
        covered.append(d.min(1).values < r)
    return {"density": float(inside.mean() / k), "coverage": float(torch.cat(covered).double().mean())}


# ---------------------------------------------------------------- PRD, as the authors' prd_score.py

def prd_curve(eval_dist: np.ndarray, ref_dist: np.ndarray, angles: int = 1001, epsilon: float = 1e-10):
    """PRD curve of two histograms over the same bins: precision and recall at `angles` slopes."""
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=angles))
    precision = np.minimum(ref_dist[None, :] * slopes[:, None], eval_dist[None, :]).sum(axis=1)
    return precision, precision / slopes


def _bins(eval_data, ref_data, clusters: int, rng: np.random.RandomState):
    from sklearn.cluster import MiniBatchKMeans
    labels = MiniBatchKMeans(n_clusters=clusters, n_init=10, random_state=rng).fit(
        np.vstack([eval_data, ref_data])).labels_
    hist = [np.histogram(part, bins=clusters, range=[0, clusters], density=True)[0]
            for part in (labels[:len(eval_data)], labels[len(eval_data):])]
    return hist[0], hist[1]


def f_beta(precision, recall, beta: float, epsilon: float = 1e-10):
    return (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall + epsilon)


def prd(fake: torch.Tensor, real: torch.Tensor, clusters: int, angles: int, runs: int, beta: float,
        seed: int) -> dict:
    """compute_prd_from_embedding(fake, real) averaged over `runs` clusterings, then the maximum
    F_beta (recall) and F_1/beta (precision). The authors' k-means draws from numpy's global RNG,
    unseeded; here one RandomState(seed) plays that role, so the numbers repeat."""
    eval_data, ref_data = (np.asarray(x.cpu(), dtype=np.float64) for x in (fake, real))
    rng = np.random.RandomState(seed)
    curves = [prd_curve(*_bins(eval_data, ref_data, clusters, rng), angles) for _ in range(runs)]
    precision, recall = (np.mean([c[i] for c in curves], axis=0) for i in (0, 1))
    return {"prd_f8": float(np.max(f_beta(precision, recall, beta))),
            "prd_f1_8": float(np.max(f_beta(precision, recall, 1 / beta))),
            "prd_curve": {"precision": np.round(precision, 6).tolist(),
                          "recall": np.round(recall, 6).tolist()}}


# ---------------------------------------------------------------- all that a protocol asks for

def settings(f) -> dict:
    """{metric: its settings} for the metrics the fid node asks for: part of the protocol key."""
    out = {}
    for name in f.get("metrics") or []:
        node = f.get(name) or {}
        out[name] = {k: node[k] for k in sorted(node)}
    return out


def needs(name: str, s: dict) -> int:
    """The fewest fakes (and reals) a metric can be computed from."""
    return {"kid": lambda: s["subset_size"], "prc": lambda: s["k"] + 1, "dc": lambda: s["k"] + 1,
            "prd": lambda: s["clusters"]}[name]()


def compute(asked: dict, fake: torch.Tensor, real: torch.Tensor) -> tuple[dict, list[str]]:
    """Every asked metric of fake vs real features; a metric short of points is left out with a
    note (a training-time FID of a few hundred fakes cannot have a KID over subsets of 1000).
    PRD needs as many fakes as reals (the authors' enforce_balance): it takes the first of each."""
    out, notes = {}, []
    for name, s in asked.items():
        n = min(len(fake), len(real))
        if n < needs(name, s):
            notes.append(f"{name} left out: {n} images, it needs {needs(name, s)}")
            continue
        if name == "kid":
            out.update(kid(fake, real, s["subsets"], s["subset_size"], s["degree"], s["coef0"], s["seed"]))
        elif name == "prc":
            out.update(precision_recall(fake, real, s["k"]))
        elif name == "dc":
            out.update(density_coverage(fake, real, s["k"]))
        elif name == "prd":
            out.update(prd(fake[:n], real[:n], s["clusters"], s["angles"], s["runs"], s["beta"], s["seed"]))
            out["prd_n"] = n
    return out, notes
