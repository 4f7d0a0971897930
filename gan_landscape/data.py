"""Image datasets (CIFAR-10, STL-10, LSUN) and the samplers that feed real batches to training.

Everything loads as uint8 [N, 3, H, W]; `to_model_range` applies the authors' preprocessing
(scale to [-1, 1], then + U(0, 1/128) dequantisation noise) on the device that trains.

Small datasets live whole on the device (`ResidentSampler`): a batch is a handful of device ops with
no host sync, so a CUDA graph can capture it. LSUN is too big for that and streams through
DataLoader workers (`StreamSampler`).

Splits for `load_images`: CIFAR-10 `test` is `test_batch` (the authors' FID reals). STL-10 and LSUN
have one split for our purpose, so `train` and `test` both mean the unlabeled images / the training
lmdb, as in the authors' eval code, which ignores `train=False` for them.
"""
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import DictConfig, OmegaConf
from torchvision.datasets import CIFAR10, STL10
from torchvision.datasets.utils import check_integrity as md5_ok
from torchvision.io import ImageReadMode, decode_image

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
LSUN_HELP = ("get it with download.py from https://github.com/fyu/lsun "
             "(python download.py -c {c}), then unzip {c}_train_lmdb.zip into {root}")


class DataError(ValueError):
    """A dataset is missing, corrupt or misconfigured; the message says where and what to do."""


# ---------------------------------------------------------------- preprocessing

def to_model_range(x_uint8: torch.Tensor, dequantize: bool = True) -> torch.Tensor:
    """uint8 -> float in [-1, 1], + U(0, 1/128) noise as the authors' datasets.py."""
    x = (x_uint8.float() / 255 - 0.5) / 0.5
    if dequantize:
        x = x + torch.rand_like(x) / 128
    return x


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


def _find_folder(root: Path, name: str, marker: str) -> Path | None:
    """`root` may hold the official folder or be that folder itself."""
    for folder in (root / name, root):
        if (folder / marker).is_file():
            return folder
    return None


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


def _download(cls, root: Path, what: str, folder_name: str) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), download=True)
    except Exception as e:  # no network, disk full, bad archive: all end the same way
        raise DataError(f"{what}: could not download into {root} ({type(e).__name__}: {e}); "
                        f"put {folder_name}/ there by hand, or point dataset.root at it") from e


def _locate(ds, cls, marker: str, what: str) -> Path:
    """The official folder under ds.root, downloaded there first if missing and allowed."""
    root = Path(ds.root).expanduser().absolute()
    folder = _find_folder(root, cls.base_folder, marker)
    if folder is None and ds.get("download", False):
        _download(cls, root, what, cls.base_folder)
        folder = _find_folder(root, cls.base_folder, marker)
    if folder is None:
        raise DataError(f"{what}: no {cls.base_folder}/{marker} in {root} (nor {marker} directly "
                        f"in it); set dataset.download=true (needs network) or point "
                        f"dataset.root at a folder holding {cls.base_folder}/")
    return folder


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


def load_cifar10(ds, split: str) -> torch.Tensor:
    folder = _locate(ds, CIFAR10, "data_batch_1", "CIFAR-10")
    files = CIFAR10.train_list if split == "train" else CIFAR10.test_list
    missing = [name for name, _ in files if not (folder / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10: {', '.join(missing)} missing in {folder}; "
                        f"re-download or copy the whole cifar-10-batches-py folder")
    _verify(folder, files, "CIFAR-10", ds.get("check_integrity", True))
    x = torch.from_numpy(_CIFAR10(folder, train=split == "train").data)  # [N, 32, 32, 3]
    return resize_square(x.permute(0, 3, 1, 2).contiguous(), ds.image_size)


# ---------------------------------------------------------------- STL-10

class _STL10(STL10):
    def __init__(self, folder: Path):
        self.base_folder = folder.name
        super().__init__(str(folder.parent), split="unlabeled")

    def _check_integrity(self) -> bool:
        return True


def _read_stl10(folder: Path) -> torch.Tensor:
    """The unlabeled 96 px images, [N, 3, 96, 96] (torchvision undoes the column-major layout)."""
    return torch.from_numpy(_STL10(folder).data)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)  # a reader never sees half a file, even with runs started in parallel
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("could not write cache %s (%s); it will be recomputed next time", path, e)


def load_stl10(ds, split: str) -> torch.Tensor:
    """Both splits are the 100k unlabeled images (the authors train and measure FID on them)."""
    folder = _locate(ds, STL10, "unlabeled_X.bin", "STL-10")
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
    path = Path(ds.root).expanduser().absolute() / f"{ds.category}_train_lmdb"
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
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
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
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, keys)
        os.replace(tmp, cache)
    except OSError as e:
        tmp.unlink(missing_ok=True)
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


# ---------------------------------------------------------------- public entry points

def load_images(ds, split: str = "train", limit: int | None = None) -> torch.Tensor:
    """uint8 [N, 3, S, S] on CPU, S = ds.image_size; the first `limit` images when given."""
    ds = _cfg(ds)
    if split not in SPLITS:
        raise DataError(f"{ds.name}: split must be one of {SPLITS}, got {split!r}")
    if ds.name == "lsun":
        return load_lsun(ds, split, limit)
    loaders = {"cifar10": load_cifar10, "stl10": load_stl10}
    if ds.name not in loaders:
        raise DataError(f"no image dataset named {ds.name!r}; configs/dataset/ has cifar10, "
                        f"stl10, lsun")
    x = loaders[ds.name](ds, split)
    return x if limit is None or limit >= len(x) else x[:limit].clone()  # frees the rest


class ResidentSampler:
    """The whole uint8 dataset on `device`; a batch is randint + index_select + float + noise.
    No host sync and no per-call CPU tensor, so a CUDA graph can capture `sample`. Draws with
    replacement (the authors reshuffle per epoch; at 64 of 50k the difference is nil)."""

    def __init__(self, images_uint8: torch.Tensor, device):
        x = images_uint8
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"ResidentSampler wants uint8 [N,3,H,W], got {x.dtype} "
                            f"{tuple(x.shape)}")
        self.device = torch.device(device)
        self.images = images_uint8.to(self.device).contiguous()
        self.n = len(self.images)

    def sample(self, batch_size: int) -> torch.Tensor:
        idx = torch.randint(self.n, (batch_size,), device=self.device)
        return to_model_range(self.images.index_select(0, idx))


def _forever(loader):
    while True:
        yield from loader


class StreamSampler:
    """Batches from DataLoader workers, reshuffled every pass, forever (LSUN; or any dataset with
    resident=false)."""

    def __init__(self, ds, batch_size: int, device):
        ds = _cfg(ds)
        data = lsun_dataset(ds) if ds.name == "lsun" else load_images(ds, "train")
        if len(data) < batch_size:
            raise DataError(f"{ds.name}: {len(data)} images in {ds.root}, fewer than one batch "
                            f"of {batch_size}")
        self.device, self.batch_size = torch.device(device), batch_size
        workers = ds.get("num_workers", 0)
        # A plain uint8 tensor is a valid map-style dataset too: rows are images.
        loader = torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0)
        self.batches = _forever(loader)

    def sample(self, batch_size: int) -> torch.Tensor:
        if batch_size != self.batch_size:
            raise ValueError(f"StreamSampler was built for batches of {self.batch_size}, "
                             f"asked for {batch_size}")
        x = next(self.batches).to(self.device, non_blocking=True)
        return to_model_range(x)  # on the device: the workers ship 4x fewer bytes as uint8


def build_sampler(ds, batch_size: int, device):
    """ResidentSampler when ds.resident (CIFAR-10, STL-10), else StreamSampler (LSUN)."""
    ds = _cfg(ds)
    if ds.get("resident", ds.name != "lsun"):
        return ResidentSampler(load_images(ds, "train"), device)
    return StreamSampler(ds, batch_size, device)
