"""FID, IS and the metrics that see mode collapse (metrics.py) of generators, from one Inception
pass over the fakes, against reference features and statistics cached on disk.

Features come from the FID Inception (inception.py). Fakes are quantised from [-1, 1] to uint8
just as stored images are. The distance is our own (eigh-based, float64): pytorch-fid's sqrtm,
which fails on scipy >= 1.18, is never called.

A protocol (configs/fid/*.yaml) fixes everything that makes two FIDs comparable. Its real side
(`reference_fields`: dataset, category, data fingerprint, split, count and selection rule, image
size, dims, weights, resize) is hashed into the key of the cached reference statistics; the whole
protocol into `protocol_key`, recorded with every result. Both hashes come from `key_of`.

Every metric the protocol asks for (`fid.metrics`) and its settings are in `protocol_key` and in
each record. `fid.weights=random` (a seeded random Inception) is for smoke tests: its records carry
`random_weights: true` and a warning.

Entry points: `score_generator(G, cfg)` for the training loop and gl-eval; `protocol`,
`reference_stats`, `frechet_distance`, `inception_score` for everything else.
"""
import io
import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan_landscape import data
from gan_landscape.metrics import features as metrics
from gan_landscape.config import rules, schema
from gan_landscape.runs.identity import digest
# Re-exported: what users of the FID reach for (fid.load_inception, fid.random_weights, ...).
from gan_landscape.metrics.inception import BLOCKS, RANDOM, WEIGHTS_FILE, FIDError, Inception, features, hub_weights_path, load_inception, random_weights, random_weights_file, sha256_short, tf32_mode, weights_path
from gan_landscape.metrics.features import inception_score  # noqa: F401
from gan_landscape.progress import Progress
from gan_landscape.files import atomic_write_bytes

log = logging.getLogger(__name__)


def check(f) -> None:
    """The fid node's values, before any work: one line naming the key, the value, what is allowed
    (the rules: schema.Fid)."""
    rules.check(f, schema.Fid, "fid.", FIDError)


def weights_file(f) -> Path:
    """The Inception weights the fid node names: a file, torch hub's copy, or fid.weights=random."""
    if f.weights == RANDOM:
        return random_weights_file(f.cache_dir, f.get("weights_seed", 0))
    return weights_path(f.weights)


def weights_tag(f) -> str:
    """What the key records of the weights: the file's sha256, or random-s<seed>."""
    return f"random-s{f.get('weights_seed', 0)}" if f.weights == RANDOM else sha256_short(weights_file(f))


def inception_batch(f, device) -> int:
    """Images per Inception forward: small on a CPU, where one 500-image batch takes minutes and
    the progress line could only come after it."""
    return f.get("inception_batch") or (f.batch_size if torch.device(device).type == "cuda" else 20)


# ---------------------------------------------------------------- images -> statistics

def quantize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """[-1, 1] floats to uint8 [0, 255], the way the images being compared with are stored."""
    if mode == "truncate":    # the authors' eval.py: ((x / 2 + 0.5) * 255).astype(uint8)
        y = (x / 2 + 0.5) * 255
    elif mode == "round":     # torchvision save_image(x, normalize=True, value_range=(-1, 1))
        y = (x + 1) / 2 * 255 + 0.5
    else:
        raise FIDError(f"fid.quantize={mode}: expected truncate or round")
    return y.clamp_(0, 255).to(torch.uint8)


class Moments:
    """Running first and second moments in float64, so 50k x 2048 features never sit in memory.

    Features are shifted by the first batch's mean before the Gram matrix is accumulated: the
    covariance is shift-invariant and the shift keeps the one-pass formula free of cancellation.
    """

    def __init__(self):
        self.n, self.shift, self.sum, self.gram = 0, None, None, None

    def add(self, f: torch.Tensor) -> None:
        f = f.double()
        if self.shift is None:
            self.shift = f.mean(0)
            self.sum = torch.zeros_like(self.shift)
            self.gram = f.new_zeros(len(self.shift), len(self.shift))
        f = f - self.shift
        self.n += len(f)
        self.sum += f.sum(0)
        self.gram.addmm_(f.T, f)

    def stats(self):
        """(mu, sigma) as float64 numpy arrays; sigma is the unbiased covariance, like np.cov."""
        if self.n < 2:
            raise FIDError(f"need at least 2 images for a covariance, got {self.n}")
        m = self.sum / self.n
        sigma = (self.gram - self.n * torch.outer(m, m)) / (self.n - 1)
        if self.n <= len(m):
            warnings.warn(f"FID statistics from {self.n} images in {len(m)} dimensions: the "
                          f"covariance is singular and the FID strongly biased", stacklevel=3)
        return (m + self.shift).cpu().numpy(), sigma.cpu().numpy()


@dataclass
class Stats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int
    logits: torch.Tensor | None = None  # [N, 1008] on the CPU, kept only for the Inception Score
    features: torch.Tensor | None = None  # [n, dims] float32 on the CPU: KID, precision, PRD, ...


def inception_stats(inc: Inception, batches, logits=False, tf32=False, progress=None, sub=None,
                    n_stats=None, keep_features=True) -> Stats:
    """Moments and (if `keep_features`) features of the first `n_stats` images (all by default) of
    an iterable of uint8 batches, and the logits of all of them if asked; `sub` images go through
    Inception at a time. Keeping features copies each batch's to the host: only when a metric needs them."""
    moments, feats, kept = Moments(), [], []
    with tf32_mode(tf32):
        for u8 in batches:
            for part in chunks(u8, sub or len(u8)):
                f, lg = features(inc, part, logits)
                take = len(f) if n_stats is None else max(0, min(len(f), n_stats - moments.n))
                if take:
                    moments.add(f[:take])
                    if keep_features:
                        feats.append(f[:take].float().cpu())
                if logits:
                    kept.append(lg.cpu())
                if progress:
                    progress.update(len(part))
    mu, sigma = moments.stats()
    return Stats(mu, sigma, moments.n, torch.cat(kept) if logits else None,
                 torch.cat(feats) if keep_features else None)


def chunks(images: torch.Tensor, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size]


# ---------------------------------------------------------------- generator -> uint8 batches

@contextmanager
def sampling_mode(G: torch.nn.Module, g_mode: str):
    """Put G in train or eval mode for sampling, then restore its mode and its buffers.

    The authors never call G.eval(), so their FIDs use BatchNorm batch statistics (g_mode=train).
    Sampling in train mode would also update BN running stats (and SN power-iteration vectors) of
    the caller's generator: the buffers are copied before and written back after.
    """
    if g_mode not in ("train", "eval"):
        raise FIDError(f"fid.g_mode={g_mode}: expected train or eval")
    saved = {name: b.clone() for name, b in G.named_buffers()}
    was_training = G.training
    G.train(g_mode == "train")
    try:
        yield G
    finally:
        G.train(was_training)
        with torch.no_grad():
            for name, b in G.named_buffers():
                b.copy_(saved[name])


def fake_batches(G, n: int, batch_size: int, quantize_mode: str, seed: int = 0):
    """uint8 batches of n fakes, z ~ N(0, I) from a private RNG (the caller's RNG is left alone).

    Use inside `sampling_mode`; the batch size matters in train mode (BN batch statistics).
    """
    device = next(G.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    for i in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - i), G.z_dim, device=device, generator=gen)
        with torch.no_grad():
            yield quantize(G(z).float(), quantize_mode)


# ---------------------------------------------------------------- distances and scores

def _floor(w: torch.Tensor) -> torch.Tensor:
    """Zero eigenvalues below float64 round-off: sqrt would turn 1e-16 noise into 1e-8 each."""
    return torch.where(w > w.max().clamp(min=0) * len(w) * torch.finfo(w.dtype).eps, w, 0.0)


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * _floor(w).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=None, device="cpu") -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S2^1/2 S1 S2^1/2), in float64.

    Equal to tr sqrtm(S1 S2) (pytorch-fid's form), but the symmetric form (as TF-GAN computes it)
    has real, non-negative eigenvalues by construction: no imaginary parts to discard and no sqrtm
    failure on singular covariances. Pass `sqrt_sigma2` (see `_psd_sqrt`) to reuse a reference's.
    """
    def t(a):  # numpy or torch, any device, to float64 on `device`
        return torch.as_tensor(a, dtype=torch.float64, device=device)
    mu1, sigma1, mu2, sigma2 = t(mu1), t(sigma1), t(mu2), t(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise FIDError(f"statistics differ in shape: {tuple(mu1.shape)} vs {tuple(mu2.shape)}")
    if not all(torch.isfinite(a).all() for a in (mu1, sigma1, mu2, sigma2)):
        raise FIDError("FID statistics contain NaN or inf (did the generator diverge?)")
    r = _psd_sqrt(sigma2) if sqrt_sigma2 is None else t(sqrt_sigma2)
    m = r @ sigma1 @ r
    ev = _floor(torch.linalg.eigvalsh((m + m.T) / 2))
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * ev.sqrt().sum())


def is_logits(logits: torch.Tensor, rule: str) -> torch.Tensor:
    """first1000: the TF graph's ImageNet classes only, as the authors' IS; all: the 1008 outputs."""
    return logits[:, :1000] if rule == "first1000" else logits


# ---------------------------------------------------------------- what defines a measurement

def key_of(fields: dict) -> str:
    """16 hex digits naming a set of protocol fields: the reference cache key and protocol_key."""
    return digest(fields)


def reference_fields(cfg) -> dict:
    """Everything that defines the real side of an FID (no network is loaded, no image read)."""
    ds, f = cfg.dataset, cfg.fid
    if "image_size" not in ds:  # a capability, not a kind: any dataset of images can be scored
        raise FIDError(f"FID needs an image dataset; {ds.name} is {ds.get('kind')}")
    check(f)
    split = f.split or data.fid_split(ds)
    return {"dataset": ds.name, "category": ds.get("category"),
            "data_fingerprint": _fingerprint(ds, split), "split": split, "n_real": f.n_real,
            "reals": f.reals, "reals_seed": f.reals_seed if f.reals == "random" else None,
            "image_size": ds.image_size, "dims": f.dims, "weights_sha256": weights_tag(f),
            "resize": f.resize, "tf32": f.tf32, "cached": "features"}


def _fingerprint(ds, split: str) -> str:
    """The data's fingerprint. Data missing but downloadable now (dataset.download, a server that
    answers) is fetched first, as gl-train would; else one line says why it is not there."""
    why = data.available(ds)
    if why:
        raise data.DataError(why)
    try:
        return data.fingerprint(ds)
    except data.DataError:
        data.load_images(ds, split, limit=1)
        return data.fingerprint(ds)


def protocol(cfg, n_fake: int | None = None, real: dict | None = None) -> dict:
    """What makes two FIDs comparable: the real side (`reference_fields`, computed unless given),
    the fake side, and both keys."""
    f = cfg.fid
    real = real or reference_fields(cfg)
    n_fake = int(n_fake or f.n_fake)
    fake = {"n_fake": n_fake, "g_mode": f.g_mode, "quantize": f.quantize,
            "batch_size": f.batch_size, "seed": f.seed, "inception_score": bool(f.inception_score),
            "is_n_fake": int(f.get("is_n_fake") or n_fake) if f.inception_score else None,
            "is_logits": f.is_logits, "is_splits": f.is_splits, "metrics": metrics.settings(f)}
    return {"protocol": f.name, **real, **fake, "reference_key": key_of(real),
            "protocol_key": key_of({**real, **fake})}


# ---------------------------------------------------------------- reference statistics, cached

def select_reals(ds, split: str, n: int | None, rule: str, seed: int | None) -> torch.Tensor:
    """uint8 [N,3,H,W] reals: the first n, or n drawn at random (seeded) as a shuffled loader's
    first batch is (the authors' eval.py); all of them when fewer exist."""
    if rule == "first":
        return data.load_images(ds, split=split, limit=n)
    pool = data.image_pool(ds, split)  # LSUN: read by index from the lmdb, never whole
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    idx = perm[:n].sort().values  # sorted: the same set, read in file order
    if isinstance(pool, torch.Tensor):
        return pool[idx]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(pool, idx.tolist()),
                                         batch_size=256, num_workers=ds.get("num_workers", 0))
    return torch.cat(list(loader))


@dataclass(eq=False)
class Reference:
    stats: Stats
    fields: dict
    path: Path
    _sqrt: dict = None

    def sqrt_sigma(self, device) -> torch.Tensor:
        """sigma^1/2, computed once per process and device: each FID then needs one eigvalsh."""
        self._sqrt = self._sqrt or {}
        key = str(device)
        if key not in self._sqrt:
            self._sqrt[key] = _psd_sqrt(torch.as_tensor(self.stats.sigma, device=device))
        return self._sqrt[key]

    def warning(self) -> str | None:
        asked = self.fields["n_real"]
        if asked is not None and self.stats.n < asked:
            return (f"only {self.stats.n} real images in {self.fields['dataset']} "
                    f"{self.fields['split']}, fewer than fid.n_real={asked}: this FID is not "
                    f"comparable with FID-{asked} numbers")
        return None


_REFS: dict[str, Reference] = {}  # reference key -> statistics, for the life of the process


def _cache_name(fields: dict, n_used: int) -> str:
    """<dataset>[-<category>]-<split>-<images used>-<key>: readable, and unique by the key."""
    parts = [fields["dataset"], fields["category"], fields["split"], str(n_used), key_of(fields)]
    return "-".join(str(p) for p in parts if p is not None)


def _read_cache(cache_dir: Path, fields: dict) -> Reference | None:
    """The cached statistics for these fields, if a complete, matching pair of files is there."""
    for npz in sorted(cache_dir.glob(f"*-{key_of(fields)}.npz")):
        meta_path = npz.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(npz) as z:
                stats = Stats(z["mu"], z["sigma"], int(z["n"]), features=torch.from_numpy(z["features"]))
        except (OSError, ValueError, KeyError) as e:
            log.warning(f"ignoring unreadable FID cache {npz} ({type(e).__name__}); recomputing")
            continue
        if meta.get("fields") != fields or meta.get("n_real_used") != stats.n:
            log.warning(f"ignoring FID cache {npz}: its {meta_path.name} does not match; recomputing")
            continue
        return Reference(stats, fields, npz)
    return None


def reference_stats(cfg, inc: Inception, fields: dict | None = None, progress_s=30.0) -> Reference:
    """Inception statistics of the real images, from memory, the disk cache, or computed once.

    The cache holds <name>.npz (mu, sigma, n: pytorch-fid's CLI reads it as it is; and the features,
    float32, for every other metric) and <name>.json (the key's fields and the number of images
    used). The cache dir is created only when written.
    """
    fields = fields or reference_fields(cfg)
    key = key_of(fields)
    if key in _REFS:
        return _REFS[key]
    cache_dir = Path(str(cfg.fid.cache_dir)).expanduser()
    ref = _read_cache(cache_dir, fields)
    if ref is None:
        ds, f = cfg.dataset, cfg.fid
        reals = select_reals(ds, fields["split"], f.n_real, f.reals, f.reals_seed)
        with Progress(f"reals {ds.name} {fields['split']}", len(reals), log_seconds=progress_s, unit="img",
                      logger=log) as bar:
            stats = inception_stats(inc, chunks(reals, f.batch_size), tf32=f.tf32, progress=bar,
                                    sub=inception_batch(f, inc.device))
        path = cache_dir / f"{_cache_name(fields, stats.n)}.npz"
        meta = {"reference_key": key, "fields": fields, "n_real_used": stats.n,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": versions(f.resize)}
        buf = io.BytesIO()
        np.savez(buf, mu=stats.mu, sigma=stats.sigma, n=stats.n, features=stats.features.numpy())
        atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        atomic_write_bytes(path, buf.getvalue())  # last: an .npz is found only beside its .json
        log.info(f"reference statistics of {stats.n} images cached in {path}")
        ref = Reference(stats, fields, path)
    if ref.warning():
        log.warning(f"FID: {ref.warning()}")
    _REFS[key] = ref
    return ref


# ---------------------------------------------------------------- scoring a generator

def versions(resize_mode: str = "pytorch") -> dict:
    """Library versions behind a record (torch-fidelity: tf1 resize, IS, KID, precision/recall;
    scikit-learn: PRD's k-means, whose defaults change between versions)."""
    import pytorch_fid
    import sklearn
    import torch_fidelity
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_fid": pytorch_fid.__version__, "torch_fidelity": torch_fidelity.__version__,
            "sklearn": sklearn.__version__}


def warnings_of(f, ref: Reference) -> list[str]:
    """Why a record is not a real, full-size FID (random weights, too few reals)."""
    out = [ref.warning()] if ref.warning() else []
    if f.weights == RANDOM:
        out.insert(0, "random Inception weights (fid.weights=random): NOT a real FID, for smoke tests only")
    return out


def score_generator(G: torch.nn.Module, cfg, n_fake: int | None = None, desc: str = "fakes") -> dict:
    """FID, IS (if cfg.fid.inception_score) and cfg.fid.metrics of G against cfg.dataset's cached
    reference, from one Inception pass: the first n_fake fakes give the FID and the metrics, the
    first is_n_fake of the same stream the IS.

    Samples on G's device; G's mode, buffers and the global RNG are left as they were. The record
    holds the protocol, `n_real_used`, and a `warning` when fewer reals exist than it asks for or
    the weights are random (then also `random_weights: true`).
    """
    f = cfg.fid
    t0 = time.time()
    real = reference_fields(cfg)
    proto = protocol(cfg, n_fake, real)
    device = next(G.parameters()).device
    inc = load_inception(weights_file(f), device, f.dims, f.resize)
    ref = reference_stats(cfg, inc, real, f.log_seconds)
    n_total = max(proto["n_fake"], proto["is_n_fake"] or 0)
    batches = fake_batches(G, n_total, f.batch_size, f.quantize, f.seed)
    with sampling_mode(G, f.g_mode), Progress(desc, n_total, log_seconds=f.log_seconds, unit="img",
                                              logger=log) as bar:
        fake = inception_stats(inc, batches, logits=f.inception_score, tf32=f.tf32, progress=bar,
                               sub=inception_batch(f, device), n_stats=proto["n_fake"],
                               keep_features=bool(proto["metrics"]))
    rec = {"fid": frechet_distance(fake.mu, fake.sigma, ref.stats.mu, ref.stats.sigma,
                                   ref.sqrt_sigma(device), device=device)}
    if f.inception_score:
        rec["is_mean"], rec["is_std"] = inception_score(is_logits(fake.logits, f.is_logits),
                                                        f.is_splits)
    scores, notes = metrics.compute(proto["metrics"], fake.features.to(device),
                                    ref.stats.features.to(device)) if proto["metrics"] else ({}, [])
    rec.update(scores)
    rec.update(proto, n_real_used=ref.stats.n, reference=str(ref.path))
    if notes:
        rec["metrics_left_out"] = notes
    if f.weights == RANDOM:
        rec["random_weights"] = True
    if warnings_of(f, ref):
        rec["warning"] = "; ".join(warnings_of(f, ref))
    return {**rec, "versions": versions(f.resize), "seconds": round(time.time() - t0, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def summary_line(rec: dict) -> str:
    """One line of a record: its numbers, its protocol, and RANDOM WEIGHTS where they were."""
    names = {"is_mean": "IS", "kid_mean": "KID", "precision": "precision", "recall": "recall",
             "density": "density", "coverage": "coverage", "prd_f8": "PRD F8", "prd_f1_8": "PRD F1/8"}
    parts = [f"FID {rec['fid']:.3f}"] + [f"{label} {rec[k]:.4g}" for k, label in names.items() if k in rec]
    flag = " RANDOM WEIGHTS, not a real FID;" if rec.get("random_weights") else ""
    return (f"{', '.join(parts)} ({rec['protocol']},{flag} {rec['n_fake']} fakes vs "
            f"{rec['n_real_used']} {rec['split']} reals, {rec['seconds']:.1f} s)")
