"""The FID Inception: its weights file, the network built from it, and uint8 images -> features.

The network is pytorch-fid's port of the TF FID graph (its FIDInception* blocks, its weights,
2048-d pool_3 and the 1008-way classifier), built here from the weights file we resolved
(`fid.weights`, $GL_FID_WEIGHTS, or torch hub's copy), so nothing reaches for the network on its
own. Images enter as uint8 / 255, the float32 tensor pytorch-fid's PNG loader (ToTensor) builds:
with `resize=pytorch` the features equal pytorch-fid's on the same images saved as PNG.
"""
import functools
import hashlib
import io
import math
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_fid import inception as pfi

from gan_landscape.cli import UserError
from gan_landscape.files import atomic_write_bytes

WEIGHTS_URL = pfi.FID_WEIGHTS_URL
WEIGHTS_FILE = WEIGHTS_URL.rsplit("/", 1)[-1]  # pt_inception-2015-12-05-6726825d.pth
SHA_LEN = 8  # torch hub names files by this many hex digits of their sha256
BLOCKS = pfi.InceptionV3.BLOCK_INDEX_BY_DIM  # feature dims -> last Inception block needed


class FIDError(UserError):
    """Bad input or a missing file: the tools print the message as one line."""


# ---------------------------------------------------------------- weights

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
        try:  # into a temp dir first: a failed download leaves no folders behind
            with tempfile.TemporaryDirectory() as tmp:
                torch.hub.download_url_to_file(WEIGHTS_URL, f"{tmp}/{WEIGHTS_FILE}", progress=False)
                atomic_write_bytes(path, Path(f"{tmp}/{WEIGHTS_FILE}").read_bytes())
        except Exception as e:  # offline: say exactly which file goes where
            raise FIDError(f"FID Inception weights not found and not downloadable "
                           f"({type(e).__name__}): put {WEIGHTS_FILE} at {path}, "
                           f"or pass fid.weights=PATH (or set GL_FID_WEIGHTS)") from None
    return path


RANDOM = "random"  # fid.weights=random: a seeded random Inception, for smoke tests and CI


def random_weights_file(cache_dir, seed: int = 0) -> Path:
    """fid.weights=random's file: `random_weights(seed)`, written once into the FID cache dir."""
    path = Path(str(cache_dir)).expanduser() / f"random-fid-inception-s{seed}.pth"
    return path if path.is_file() else random_weights(path, seed)


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


# ---------------------------------------------------------------- network

def _fid_inception_v3() -> nn.Module:
    """pytorch-fid's `fid_inception_v3()` without its download: torchvision's Inception v3 with the
    blocks the TF FID graph computes differently (pytorch-fid's FIDInception* classes)."""
    import torchvision
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                          init_weights=False)
    for name, in_ch, pool in (("5b", 192, 32), ("5c", 256, 64), ("5d", 288, 64)):
        setattr(net, f"Mixed_{name}", pfi.FIDInceptionA(in_ch, pool_features=pool))
    for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        setattr(net, f"Mixed_{name}", pfi.FIDInceptionC(768, channels_7x7=c7))
    net.Mixed_7b, net.Mixed_7c = pfi.FIDInceptionE_1(1280), pfi.FIDInceptionE_2(2048)
    return net


def resize(x: torch.Tensor, mode: str, size: int = 299) -> torch.Tensor:
    """Bilinear resize of float images [B,3,H,W] to size x size.

    pytorch: pytorch-fid's F.interpolate(align_corners=False), half-pixel centres.
    tf1: TF1's legacy tf.image.resize_bilinear (the paper's TF FID code): source = dest * in/out.
    """
    if mode == "pytorch":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    try:  # only this protocol needs torch-fidelity
        from torch_fidelity.interpolate_compat_tensorflow import \
            interpolate_bilinear_2d_like_tensorflow1x as tf1
    except ImportError:
        raise FIDError("fid.resize=tf1 needs torch-fidelity: pip install torch-fidelity") from None
    return tf1(x, size=(size, size), align_corners=False)


class Inception(nn.Module):
    """The FID Inception up to the block giving `dims` features, plus its 1008-way classifier.

    The same layers in the same order as pytorch-fid's InceptionV3(resize_input=True,
    normalize_input=True): resize to 299, scale [0, 1] to [-1, 1], blocks 0..3.
    """

    def __init__(self, state_dict: dict, dims: int, resize_mode: str, sha: str):
        super().__init__()
        t = _fid_inception_v3()
        t.load_state_dict(state_dict)
        blocks = [[t.Conv2d_1a_3x3, t.Conv2d_2a_3x3, t.Conv2d_2b_3x3, nn.MaxPool2d(3, stride=2)],
                  [t.Conv2d_3b_1x1, t.Conv2d_4a_3x3, nn.MaxPool2d(3, stride=2)],
                  [t.Mixed_5b, t.Mixed_5c, t.Mixed_5d, t.Mixed_6a, t.Mixed_6b, t.Mixed_6c,
                   t.Mixed_6d, t.Mixed_6e],
                  [t.Mixed_7a, t.Mixed_7b, t.Mixed_7c, nn.AdaptiveAvgPool2d((1, 1))]]
        self.body = nn.Sequential(*[m for b in blocks[:BLOCKS[dims] + 1] for m in b])
        self.fc = t.fc
        self.dims, self.resize_mode, self.sha = dims, resize_mode, sha

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Feature maps of images in [0, 1]; [B, dims, 1, 1] at 2048 dims."""
        return self.body(2 * resize(x01, self.resize_mode) - 1)


def load_inception(weights=None, device="cpu", dims=2048, resize_mode="pytorch") -> Inception:
    path = weights_path(weights)
    st = path.stat()
    return _load_inception(str(path), st.st_mtime_ns, str(torch.device(device)), dims, resize_mode)


@functools.lru_cache(maxsize=4)
def _load_inception(path: str, mtime_ns: int, device: str, dims: int, resize_mode: str):
    if dims not in BLOCKS:
        raise FIDError(f"fid.dims={dims}: expected one of {', '.join(map(str, BLOCKS))}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # Building layers draws from the global RNG: fork it, or a training run's random stream would
    # depend on whether it logged an FID.
    try:
        with torch.random.fork_rng(devices=[]):
            net = Inception(sd, dims, resize_mode, sha256_short(path))
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        raise FIDError(f"{path} is not the FID Inception state dict: {msg}") from None
    return net.eval().requires_grad_(False).to(device)


def random_weights(path, seed=0) -> Path:
    """A stand-in for the FID weights: same names and shapes, random values (tests and benchmarks).

    He-normal convolutions keep activations O(1) through the ~90 ReLU layers, so FIDs stay finite
    and well scaled; speed does not depend on the values.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        sd = _fid_inception_v3().state_dict()
    for name, t in sd.items():
        if name.endswith("conv.weight"):
            t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2.0 / t[0].numel()))
        elif name == "fc.weight":
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[1]))
    buf = io.BytesIO()
    torch.save(sd, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


# ---------------------------------------------------------------- images -> features

@contextmanager
def tf32_mode(enabled: bool):
    """cuDNN convolutions default to TF32 on Ampere and later; FIDs are specified in fp32."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def features(inc: Inception, images_u8: torch.Tensor, logits=False):
    """Pool features [B, dims] of uint8 images [B,3,H,W]; also the 1008 logits if asked."""
    x = images_u8
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise FIDError(f"expected uint8 images [B,3,H,W], got {x.dtype} {tuple(x.shape)}")
    if logits and inc.dims != 2048:
        raise FIDError("the Inception Score needs fid.dims=2048 (its classifier reads pool_3)")
    x = x.to(inc.device, non_blocking=True).float() / 255  # == ToTensor on the PNG
    with torch.no_grad():
        f = inc(x)
        if f.shape[2:] != (1, 1):  # dims < 2048: pytorch-fid pools the feature maps the same way
            f = F.adaptive_avg_pool2d(f, (1, 1))
        f = f.flatten(1)
        return f, (inc.fc(f) if logits else None)
