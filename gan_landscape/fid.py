"""FID (and optionally IS) of generators, against reference statistics cached on disk.

Features come from pytorch-fid's InceptionV3 (the TF FID graph ported to PyTorch, 2048-d pool_3).
Fakes are quantised from [-1, 1] to uint8 just as stored images are, then fed in memory as
uint8 / 255: the same float32 tensor pytorch-fid's PNG loader (ToTensor) builds, so there is no file
round trip and no difference from `python -m pytorch_fid` on the same images saved as PNG.

Entry points: `score_generator(G, cfg)` for the training loop and gl-eval; `frechet_distance`,
`inception_score`, `reference_stats`, `load_inception` for everything else.
"""
import functools
import hashlib
import io
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_fid import inception as pfi

from .rundir import atomic_write_bytes

WEIGHTS_URL = pfi.FID_WEIGHTS_URL
WEIGHTS_FILE = WEIGHTS_URL.rsplit("/", 1)[-1]  # pt_inception-2015-12-05-6726825d.pth
SHA_LEN = 8  # torch hub names files by this many hex digits of their sha256


class FIDError(RuntimeError):
    """Bad input or a missing file: gl-eval prints the message as one line."""


# ---------------------------------------------------------------- Inception weights and network

def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_path(weights=None) -> Path:
    """The FID Inception weights: `fid.weights`, else torch hub's copy (downloaded if possible)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FIDError(f"fid.weights={weights}: no such file "
                           f"(it should be a copy of {WEIGHTS_FILE})")
        return path
    path = hub_weights_path()
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(WEIGHTS_URL, str(path), progress=False)
        except Exception as e:  # offline: say exactly which file goes where
            raise FIDError(f"FID Inception weights not found and not downloadable "
                           f"({type(e).__name__}): put {WEIGHTS_FILE} at {path}, "
                           f"or pass fid.weights=PATH") from None
    return path


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:SHA_LEN]


def sha256_short(path) -> str:
    """First 8 hex digits of the file's sha256 (the official weights' name ends in theirs)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, eq=False)
class Inception:
    net: torch.nn.Module   # pytorch-fid InceptionV3, eval mode, returns [pool features]
    fc: tuple              # (weight [1008, 2048], bias [1008]): the checkpoint's classifier
    sha: str
    dims: int
    device: torch.device


def load_inception(weights=None, device="cpu", dims=2048) -> Inception:
    path = weights_path(weights)
    st = path.stat()
    return _load_inception(str(path), st.st_mtime_ns, str(torch.device(device)), dims)


@functools.lru_cache(maxsize=2)
def _load_inception(path: str, mtime_ns: int, device: str, dims: int) -> Inception:
    blocks = pfi.InceptionV3.BLOCK_INDEX_BY_DIM
    if dims not in blocks:
        raise FIDError(f"fid.dims={dims}: pytorch-fid offers {sorted(blocks)}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # pytorch-fid builds its patched Inception and fetches weights by URL in one call; hand it the
    # file we resolved (fid.weights or the hub copy), so it never reaches for the network itself.
    # Building layers draws from the global RNG: fork it, or a training run's random stream would
    # depend on whether it logged an FID.
    try:
        with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: sd), \
                torch.random.fork_rng(devices=[]):
            net = pfi.InceptionV3([blocks[dims]])
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        raise FIDError(f"{path} is not the FID Inception state dict: {msg}") from None
    fc = (sd["fc.weight"].to(device), sd["fc.bias"].to(device))
    return Inception(net.eval().to(device), fc, sha256_short(path), dims, torch.device(device))


def random_weights(path, seed=0) -> Path:
    """A stand-in for the FID weights: same names and shapes, random values (tests and benchmarks).

    He-normal convolutions keep activations O(1) through the ~90 ReLU layers, so FIDs stay finite
    and well scaled; speed does not depend on the values.
    """
    import torchvision
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                              init_weights=False)
    sd = net.state_dict()
    for name, t in sd.items():
        if name.endswith("conv.weight"):
            fan_in = t[0].numel()
            t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan_in))
        elif name == "fc.weight":
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[1]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(sd, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- images -> features -> statistics

def quantize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """[-1, 1] floats to uint8 [0, 255], the way the images being compared with are stored."""
    if mode == "truncate":    # the authors' eval.py: ((x / 2 + 0.5) * 255).astype(uint8)
        y = (x / 2 + 0.5) * 255
    elif mode == "round":     # torchvision save_image(x, normalize=True, value_range=(-1, 1))
        y = (x + 1) / 2 * 255 + 0.5
    else:
        raise FIDError(f"fid.quantize={mode}: expected truncate or round")
    return y.clamp_(0, 255).to(torch.uint8)


@contextmanager
def _tf32(enabled: bool):
    """cuDNN convolutions default to TF32 on Ampere and later; FIDs are specified in fp32."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def features(inc: Inception, images_u8: torch.Tensor, logits=False):
    """Pool features [B, dims] of uint8 images [B,3,H,W]; also the 1008-way logits if asked."""
    x = images_u8
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise FIDError(f"expected uint8 images [B,3,H,W], got {x.dtype} {tuple(x.shape)}")
    if logits and inc.dims != 2048:
        raise FIDError("the Inception Score needs fid.dims=2048 (its classifier reads pool_3)")
    x = x.to(inc.device, non_blocking=True).float() / 255  # == ToTensor on the PNG
    with torch.no_grad():
        f = inc.net(x)[0]
        if f.shape[2:] != (1, 1):  # dims < 2048: pytorch-fid pools the feature maps the same way
            f = F.adaptive_avg_pool2d(f, (1, 1))
        f = f.flatten(1)
        return f, (f @ inc.fc[0].T + inc.fc[1] if logits else None)


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
    logits: torch.Tensor | None = None  # [n, 1008] on the CPU, kept only for the Inception Score


def inception_stats(inc: Inception, batches, logits=False, tf32=False) -> Stats:
    """Statistics of an iterable of uint8 image batches."""
    moments, kept = Moments(), []
    with _tf32(tf32):
        for u8 in batches:
            f, lg = features(inc, u8, logits)
            moments.add(f)
            if logits:
                kept.append(lg.cpu())
    mu, sigma = moments.stats()
    return Stats(mu, sigma, moments.n, torch.cat(kept) if logits else None)


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

    Equal to pytorch-fid's tr sqrtm(S1 S2), but the symmetric form (as TF-GAN computes it) has real,
    non-negative eigenvalues by construction: no imaginary parts to discard and no sqrtm failure on
    singular covariances. Pass `sqrt_sigma2` (see `_psd_sqrt`) to reuse a reference's square root.
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


def inception_score(logits: torch.Tensor, splits: int = 10):
    """(mean, std) over splits of exp E_x KL(p(y|x) || p(y)), from the 1008-way Inception logits."""
    logp = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for part in np.array_split(np.arange(len(logp)), splits):
        lp = logp[torch.as_tensor(part)]
        log_py = torch.logsumexp(lp, 0) - math.log(len(lp))  # log of the split's marginal p(y)
        scores.append(torch.exp((lp.exp() * (lp - log_py)).sum(1).mean()).item())
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------- reference statistics, cached

@dataclass(eq=False)
class Reference:
    stats: Stats
    split: str
    path: Path
    _sqrt: dict = None

    def sqrt_sigma(self, device) -> torch.Tensor:
        """sigma^1/2, computed once per process and device: each FID then needs one eigvalsh."""
        self._sqrt = self._sqrt or {}
        key = str(device)
        if key not in self._sqrt:
            self._sqrt[key] = _psd_sqrt(torch.as_tensor(self.stats.sigma, device=device))
        return self._sqrt[key]


_REFS: dict[str, Reference] = {}


def load_reals(ds, split: str, limit):
    """uint8 [N,3,H,W] real images (a seam: tests replace it)."""
    from .data import load_images
    return load_images(ds, split=split, limit=limit)


def reference_path(cfg, inc: Inception) -> tuple[Path, str]:
    """Cache file of cfg.dataset's reals: one per (dataset, split, count, size, dims, weights)."""
    ds, f = cfg.dataset, cfg.fid
    if ds.get("kind") == "synthetic":
        raise FIDError(f"FID needs an image dataset; {ds.name} is synthetic")
    split = f.split or ds.get("fid_split") or "test"
    name = f"{ds.name}-{split}-{f.n_real or 'all'}-{ds.image_size}px-d{inc.dims}-{inc.sha}.npz"
    return Path(str(f.cache_dir)).expanduser() / name, split


def reference_stats(cfg, inc: Inception) -> Reference:
    """Inception statistics of the real images, from memory, the disk cache, or computed once."""
    path, split = reference_path(cfg, inc)
    if str(path) in _REFS:
        return _REFS[str(path)]
    if path.exists():
        with np.load(path) as z:
            stats = Stats(z["mu"], z["sigma"], int(z["n"]))
    else:
        reals = load_reals(cfg.dataset, split, cfg.fid.n_real)
        stats = inception_stats(inc, chunks(reals, cfg.fid.batch_size), tf32=cfg.fid.tf32)
        buf = io.BytesIO()  # keys mu/sigma: pytorch-fid's CLI reads this .npz as it is
        np.savez(buf, mu=stats.mu, sigma=stats.sigma, n=stats.n)
        atomic_write_bytes(path, buf.getvalue())
    _REFS[str(path)] = Reference(stats, split, path)
    return _REFS[str(path)]


# ---------------------------------------------------------------- scoring a generator

def versions() -> dict:
    import pytorch_fid
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_fid": pytorch_fid.__version__}


def protocol(cfg, inc: Inception, ref: Reference, n_fake: int) -> dict:
    """What makes two FIDs comparable; recorded with every result."""
    f, ds = cfg.fid, cfg.dataset
    return {"protocol": f.name, "dataset": ds.name, "split": ref.split, "n_real": ref.stats.n,
            "n_fake": n_fake, "image_size": ds.image_size, "dims": inc.dims, "g_mode": f.g_mode,
            "quantize": f.quantize, "batch_size": f.batch_size, "seed": f.seed,
            "weights_sha256": inc.sha}


def score_generator(G: torch.nn.Module, cfg, n_fake: int | None = None) -> dict:
    """FID (and IS if cfg.fid.inception_score) of G against cfg.dataset's cached reference.

    Samples on G's device; G's mode, buffers and the global RNG are left as they were.
    """
    f = cfg.fid
    n_fake = int(n_fake or f.n_fake)
    device = next(G.parameters()).device
    t0 = time.time()
    inc = load_inception(f.weights, device, f.dims)
    ref = reference_stats(cfg, inc)
    with sampling_mode(G, f.g_mode):
        fake = inception_stats(inc, fake_batches(G, n_fake, f.batch_size, f.quantize, f.seed),
                               logits=f.inception_score, tf32=f.tf32)
    rec = {"fid": frechet_distance(fake.mu, fake.sigma, ref.stats.mu, ref.stats.sigma,
                                   ref.sqrt_sigma(device), device=device)}
    if f.inception_score:
        rec["is_mean"], rec["is_std"] = inception_score(fake.logits, f.is_splits)
    return {**rec, **protocol(cfg, inc, ref, n_fake), "versions": versions(),
            "seconds": round(time.time() - t0, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
