"""Image datasets (CIFAR-10, STL-10, LSUN): found on disk (or downloaded), read, fingerprinted.

Everything loads as uint8 [N, 3, H, W]; `to_model_range` applies the authors' preprocessing
(scale to [-1, 1], then + U(0, 1/128) dequantisation noise). Small datasets load whole
(`load_images`); LSUN is too big for that and is read image by image (`image_pool`), for
DataLoader workers (samplers.py feeds training from either).

Splits for `load_images`: CIFAR-10 `test` is `test_batch` (the authors' FID reals). STL-10 and LSUN
have one split for our purpose, so `train` and `test` both mean the unlabeled images / the training
lmdb, as in the authors' eval code, which ignores `train=False` for them.

Each image dataset is one `IMAGE_DATA` entry (its loader, data files, availability check, FID
split) plus its configs/dataset/<name>.yaml; nothing else asks for a dataset by name.
"""
import contextlib
import hashlib
import logging
import os
import pickle
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import DictConfig, OmegaConf
from torchvision.datasets import CIFAR10, STL10
from torchvision.datasets.utils import check_integrity as md5_ok
from torchvision.io import ImageReadMode, decode_image

from gan_landscape.config import schema
from gan_landscape.cli import UserError, lookup
from gan_landscape.data.file_digest import file_digest as digest_of  # not `file_digest`: that names the module
from gan_landscape.files import atomic_save

log = logging.getLogger(__name__)

SPLITS = schema.SPLITS  # fid.split's values too
LSUN_HELP = ("get it with download.py from https://github.com/fyu/lsun "
             "(python download.py -c {c}), then unzip {c}_train_lmdb.zip into {root}")


class DataError(UserError):
    """A dataset is missing, corrupt or misconfigured; the message says where and what to do."""


# ---------------------------------------------------------------- preprocessing

def to_model_range(x_uint8: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 -> [-1, 1] in the default float dtype, + noise / 128 for noise ~ U(0, 1): the authors'
    dequantisation (datasets.py). The caller draws the noise, from the generator it owns."""
    x = (x_uint8.to(torch.get_default_dtype()) / 255 - 0.5) / 0.5
    return x if noise is None else x + noise / 128


def resize_square(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 [N,3,h,w] -> [N,3,size,size], antialiased bilinear (PIL-like, as the authors' Resize).
    Chunked so a 100k-image dataset never needs a float copy of itself."""
    if x.shape[-2:] == (size, size):
        return x
    out = [TF.resize(x[i:i + chunk].contiguous(), [size, size], antialias=True)
           for i in range(0, len(x), chunk)]
    return torch.cat(out)


def _cfg(ds) -> DictConfig:
    return ds if isinstance(ds, DictConfig) else OmegaConf.create(dict(ds))


def _verify(folder: Path, files: list[tuple[str, str]], what: str, check: bool) -> None:
    if not check:
        log.warning("%s: md5 integrity of %s is NOT checked (dataset.check_integrity=false)",
                    what, folder)
        return
    bad = [name for name, md5 in files if not md5_ok(str(folder / name), md5)]
    if bad:
        raise DataError(f"{what}: md5 mismatch for {', '.join(bad)} in {folder}; these are not the "
                        f"official files. Re-download them, or set dataset.check_integrity=false "
                        f"to use them anyway")


def _root(ds) -> Path:
    return Path(ds.root).expanduser().absolute()


def reachable(url: str, timeout: float = 3) -> bool:
    host = urlparse(url)
    try:
        port = host.port or (443 if host.scheme == "https" else 80)
        socket.create_connection((host.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Official:
    """A dataset torchvision downloads (`cls`: its base_folder, url and download), found under
    dataset.root by the file that marks its folder; `root` may hold that folder or be it."""
    cls: type
    marker: str
    what: str

    def find(self, root: Path) -> Path | None:
        for folder in (root / self.cls.base_folder, root):
            if (folder / self.marker).is_file():
                return folder
        return None

    def locate(self, ds, download: bool = True) -> Path:
        """The official folder under ds.root, downloaded there first if missing and allowed."""
        root = _root(ds)
        folder = self.find(root)
        if folder is None and download and ds.get("download", False):
            self._download(root)
            folder = self.find(root)
        if folder is None:
            name = self.cls.base_folder
            raise DataError(f"{self.what}: no {name}/{self.marker} in {root} (nor {self.marker} "
                            f"directly in it); set dataset.download=true (needs network) or point "
                            f"dataset.root at a folder holding {name}/")
        return folder

    def _download(self, root: Path) -> None:
        """Into a temporary folder inside root, then moved into place: a failed download leaves
        nothing behind, not even the folders made for it (those still empty: a parallel job may
        have put its copy there)."""
        made = [p for p in [root, *root.parents] if not p.exists()]  # deepest first
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
                self.cls(tmp, download=True)  # downloads, extracts, checks the md5s
                try:
                    os.replace(Path(tmp) / self.cls.base_folder, root / self.cls.base_folder)
                except OSError:
                    if self.find(root) is None:  # else another job moved its copy in first
                        raise
        except Exception as e:  # no network, disk full, bad archive: all end the same way
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise DataError(f"{self.what}: could not download into {root} ({type(e).__name__}: "
                            f"{e}); put {self.cls.base_folder}/ there by hand, or point "
                            f"dataset.root at it") from e

    def available(self, ds) -> str:
        if self.find(_root(ds)) is not None:
            return ""
        where = f"{self.what} is not in {_root(ds)}"
        if not ds.get("download", False):
            return f"{where} and dataset.download=false"
        if not reachable(self.cls.url):
            return f"{where} and {urlparse(self.cls.url).hostname} cannot be reached to download it"
        return ""


# ---------------------------------------------------------------- CIFAR-10

class _CIFAR10(CIFAR10):
    """torchvision's reader on any folder name; the md5s are checked by `_verify` (or not)."""

    def __init__(self, folder: Path, train: bool):
        self.base_folder = folder.name
        super().__init__(str(folder.parent), train=train)

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:  # class names are not needed; skips its md5 check too
        pass


CIFAR10_FOLDER = Official(CIFAR10, "data_batch_1", "CIFAR-10")


def load_cifar10(ds, split: str, limit: int | None = None) -> torch.Tensor:
    folder = CIFAR10_FOLDER.locate(ds)
    files = CIFAR10.train_list if split == "train" else CIFAR10.test_list
    missing = [name for name, _ in files if not (folder / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10: {', '.join(missing)} missing in {folder}; "
                        f"re-download or copy the whole cifar-10-batches-py folder")
    _verify(folder, files, "CIFAR-10", ds.get("check_integrity", True))
    try:
        x = torch.from_numpy(_CIFAR10(folder, train=split == "train").data)  # [N, 32, 32, 3]
    except Exception as e:  # a truncated or foreign batch file: any unpickling or reshape error
        bad = next((folder / n for n, _ in files if not _cifar_batch_reads(folder / n)), folder)
        raise DataError(f"CIFAR-10: {bad} is corrupt or truncated ({type(e).__name__}: {e}); "
                        "re-download it") from None
    return resize_square(x.permute(0, 3, 1, 2).contiguous(), ds.image_size)


def _cifar_batch_reads(path: Path) -> bool:
    """Whether one batch file unpickles to whole 32x32 RGB rows (as torchvision reads it)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        return np.asarray(entry["data"]).size % 3072 == 0
    except Exception:  # what a damaged pickle raises varies: EOFError, UnpicklingError, KeyError...
        return False


# ---------------------------------------------------------------- STL-10

class _STL10(STL10):
    def __init__(self, folder: Path):
        self.base_folder = folder.name
        super().__init__(str(folder.parent), split="unlabeled")

    def _check_integrity(self) -> bool:
        return True


def _read_stl10(folder: Path) -> torch.Tensor:
    """The unlabeled 96 px images, [N, 3, 96, 96] (torchvision undoes the column-major layout)."""
    try:
        return torch.from_numpy(_STL10(folder).data)
    except ValueError as e:  # a size that is not whole images: numpy's reshape refuses it
        raise DataError(f"STL-10: {folder / 'unlabeled_X.bin'} is truncated or corrupt ({e}); "
                        "re-download it") from None


def _save_atomic(obj, path: Path) -> None:
    try:  # a reader never sees half a file, even with runs started in parallel
        atomic_save(path, lambda f: torch.save(obj, f))
    except OSError as e:
        log.warning("could not write cache %s (%s); it will be recomputed next time", path, e)


STL10_FOLDER = Official(STL10, "unlabeled_X.bin", "STL-10")


def load_stl10(ds, split: str, limit: int | None = None) -> torch.Tensor:
    """Both splits are the 100k unlabeled images (the authors train and measure FID on them)."""
    folder = STL10_FOLDER.locate(ds)
    _verify(folder, STL10.train_list[2:3], "STL-10", ds.get("check_integrity", True))
    if ds.image_size == 96:  # native size: a cache would only duplicate 2.7 GB
        return _read_stl10(folder).contiguous()
    stat = (folder / "unlabeled_X.bin").stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache = folder / f"unlabeled_{ds.image_size}px.pt"
    if cache.is_file():
        cached = torch.load(cache, weights_only=True)
        if cached["source"] == stamp:
            return cached["images"]
    x = resize_square(_read_stl10(folder), ds.image_size)
    _save_atomic({"images": x, "source": stamp}, cache)
    return x


# ---------------------------------------------------------------- LSUN

def lsun_path(ds) -> Path:
    path = _root(ds) / f"{ds.category}_train_lmdb"
    if not (path / "data.mdb").is_file():
        how = LSUN_HELP.format(c=ds.category, root=path.parent)
        raise DataError(f"LSUN {ds.category}: no data.mdb in {path}; {how}")
    return path


_ENVS = {}  # path -> (pid, env)


def _open_lmdb(path: Path):
    """One handle per lmdb per process: lmdb refuses to open the same files twice in a process,
    and a handle inherited through fork must not be used, so a forked worker drops its copy and
    reopens."""
    import lmdb  # imported here so CIFAR/STL users never need it
    pid, env = _ENVS.get(str(path), (None, None))
    if pid != os.getpid():
        if env is not None:
            env.close()
        try:
            env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
        except lmdb.Error as e:
            raise DataError(f"LSUN: {path} is not a readable lmdb ({type(e).__name__}: {e}); "
                            "re-download and unzip it") from None
        _ENVS[str(path)] = (os.getpid(), env)
    return env


def _lsun_keys(path: Path) -> np.ndarray:
    """All keys, in lmdb order. Listing millions of keys takes minutes, so they are cached beside
    the lmdb (not in the cwd, as torchvision's LSUN does). LSUN keys are hex digests, so fixed-width
    bytes lose nothing."""
    cache = path.with_name(path.name + "_keys.npy")
    env = _open_lmdb(path)
    if cache.is_file():
        keys = np.load(cache)
        if len(keys) == env.stat()["entries"]:
            return keys
    with env.begin(write=False) as txn:
        keys = np.array(list(txn.cursor().iternext(keys=True, values=False)), dtype=np.bytes_)
    try:
        atomic_save(cache, lambda f: np.save(f, keys))
    except OSError as e:
        log.warning("could not write key cache %s (%s)", cache, e)
    return keys


def center_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3,h,w] -> [3,size,size]: the central min(h,w) square, then antialiased resize.
    At 256 px this is the authors' CenterCrop+Resize (LSUN's short side is already 256)."""
    img = TF.center_crop(img, [min(img.shape[-2:])] * 2)
    return TF.resize(img, [size, size], antialias=True)


class LSUNImages(torch.utils.data.Dataset):
    """One category's official lmdb export; items are uint8 [3, size, size]."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = Path(path), size
        self.keys = _lsun_keys(self.path)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        with _open_lmdb(self.path).begin(write=False) as txn:
            buf = txn.get(bytes(self.keys[i]))
        img = decode_image(torch.frombuffer(bytearray(buf), dtype=torch.uint8), ImageReadMode.RGB)
        return center_square(img, self.size)


def lsun_dataset(ds) -> LSUNImages:
    return LSUNImages(lsun_path(ds), ds.image_size)


def load_lsun(ds, split: str, limit: int | None, b: int = 256) -> torch.Tensor:
    """The first `limit` images in lmdb order, decoded by DataLoader workers (both splits)."""
    data = lsun_dataset(ds)
    n = len(data) if limit is None else min(limit, len(data))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=b,
                                         num_workers=ds.get("num_workers", 0))
    out = torch.empty(n, 3, ds.image_size, ds.image_size, dtype=torch.uint8)
    for i, batch in enumerate(loader):  # filled in place: no second copy of 10k+ images
        out[i * b:i * b + len(batch)] = batch
    return out


def _lsun_available(ds) -> str:
    try:
        lsun_path(ds)
        return ""
    except DataError as e:
        return str(e)


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class ImageData:
    """One image dataset, found by its configs/dataset/<name>.yaml `name`:
      load(ds, split, limit) -> uint8 [N, 3, S, S], S = ds.image_size (at least the first `limit`)
      files(ds) -> the files whose bytes define it (for `fingerprint`), never downloading
      available(ds) -> "" when present or downloadable now, else a one-line reason
      fid_split: the FID reals' split when fid.split is null
      stream(ds) -> a map-style dataset of uint8 [3, S, S] read from disk per item, for data too
        big to load whole (None: `load` serves); dataset.resident=false streams it in training."""
    load: Callable
    files: Callable
    available: Callable
    fid_split: str
    stream: Callable | None = None


IMAGE_DATA: dict[str, ImageData] = {
    "cifar10": ImageData(
        load=load_cifar10, available=CIFAR10_FOLDER.available, fid_split="test",  # the authors'
        files=lambda ds: [f for f in (CIFAR10_FOLDER.locate(ds, download=False) / n
                                      for n, _ in CIFAR10.train_list + CIFAR10.test_list) if f.is_file()]),
    "stl10": ImageData(
        load=load_stl10, available=STL10_FOLDER.available, fid_split="train",
        files=lambda ds: [STL10_FOLDER.locate(ds, download=False) / "unlabeled_X.bin"]),
    "lsun": ImageData(
        load=load_lsun, available=_lsun_available, fid_split="train", stream=lsun_dataset,
        files=lambda ds: [lsun_path(ds) / "data.mdb"]),
}


def image_data(ds) -> ImageData:
    return lookup(IMAGE_DATA, "dataset", ds.name, "no image dataset of that name", "gan_landscape/data/__init__.py")


# ---------------------------------------------------------------- public entry points

def load_images(ds, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """uint8 [N, 3, S, S] on CPU, S = ds.image_size; the first `limit` images when given."""
    ds = _cfg(ds)
    if split not in SPLITS:
        raise DataError(f"{ds.name}: split must be one of {SPLITS}, got {split!r}")
    x = image_data(ds).load(ds, split, limit)
    return x if limit is None or limit >= len(x) else x[:limit].clone()  # frees the rest


def image_pool(ds, split: str = "train"):
    """Every image of a split as a map-style dataset of uint8 [3, S, S]: streamed from disk where
    the dataset is too big to load whole, else the loaded tensor (its rows are the images)."""
    ds = _cfg(ds)
    entry = image_data(ds)
    return entry.stream(ds) if entry.stream else load_images(ds, split)


def fid_split(ds) -> str:
    """The split FID reals come from when fid.split is null; a dataset config may pin it."""
    ds = _cfg(ds)
    return ds.get("fid_split") or image_data(ds).fid_split


def available(ds) -> str:
    """Empty when the dataset's files are present, or can be downloaded now (dataset.download=true
    and its server answers); else one line saying why not. Creates nothing."""
    ds = _cfg(ds)
    return image_data(ds).available(ds)


# ---------------------------------------------------------------- fingerprints

def data_files(ds) -> list[Path]:
    """The files that hold a dataset's images (what defines its content), found as loading finds them."""
    ds = _cfg(ds)
    return image_data(ds).files(ds)


def fingerprint(ds) -> str:
    """16 hex digits naming a dataset's content: file names, sizes and bytes, not where the folder is,
    so a moved folder keeps its fingerprint and a subset gets another. Cached per (path, size, mtime)."""
    h = hashlib.sha256()
    for path in data_files(ds):
        h.update(f"{path.name}:{digest_of(path)};".encode())
    return h.hexdigest()[:16]
