"""Tiny datasets written in the real on-disk formats, so tests run the real loading code.

Each writer returns the images it wrote as uint8 [N, 3, H, W] in the intended orientation, the
ground truth a loader must reproduce.
"""
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def random_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str`, as the official (Python 2) files do, so that they load as
    str under encoding="latin1" (torchvision) and as bytes under encoding="bytes"."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_cifar10(folder, n_per_batch: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """`folder` becomes a cifar-10-batches-py folder: data_batch_1..5, test_batch, batches.meta,
    each a dict like the official one (b'data' uint8 [n, 3072] = R, G, B planes, row-major).
    Returns {"train": [5n,3,32,32], "test": [n,3,32,32]}. md5s differ from the official files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images = {}
    for i, name in enumerate(names):
        x = random_images(n_per_batch, 32, 32, seed * 100 + i)
        label = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
        _pickle(folder / name, {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in np.arange(n_per_batch) % 10],
            b"data": x.reshape(n_per_batch, 3072),
            b"filenames": [f"fake_{i}_{j}.png".encode() for j in range(n_per_batch)],
        })
        images[name] = x
    _pickle(folder / "batches.meta", {
        b"num_cases_per_batch": n_per_batch, b"num_vis": 3072,
        b"label_names": [s.encode() for s in ("airplane automobile bird cat deer dog frog horse "
                                              "ship truck").split()],
    })
    train = np.concatenate([images[n] for n in names[:5]])
    return {"train": torch.from_numpy(train), "test": torch.from_numpy(images["test_batch"])}


def stl10_bytes(images: np.ndarray) -> bytes:
    """The official layout: per image, per channel, 96x96 in column-major (Matlab) order."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(folder, n: int = 10, seed: int = 0, images=None) -> torch.Tensor:
    """<folder>/stl10_binary/unlabeled_X.bin holding `images` (uint8 [n,3,96,96], else random)."""
    x = random_images(n, 96, 96, seed) if images is None else np.asarray(images, dtype=np.uint8)
    out = Path(folder) / "stl10_binary"
    out.mkdir(parents=True, exist_ok=True)
    (out / "unlabeled_X.bin").write_bytes(stl10_bytes(x))
    return torch.from_numpy(x)


def encode(image_chw: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_chw.transpose(1, 2, 0)).save(buf, fmt)
    return buf.getvalue()


def write_lsun_lmdb(folder, category: str, n: int = 6, size=(80, 60), fmt: str = "PNG",
                    seed: int = 0) -> torch.Tensor:
    """<folder>/<category>_train_lmdb like the official export: key = 40 hex chars, value =
    encoded image bytes (the real data are WebP; PNG keeps pixels exact). `size` is PIL's
    (width, height). Keys sort in write order, so the returned [n,3,h,w] is in lmdb order."""
    import lmdb

    w, h = size
    x = random_images(n, h, w, seed)
    path = Path(folder) / f"{category}_train_lmdb"
    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, img in enumerate(x):
            txn.put(f"{i:040x}".encode(), encode(img, fmt))
    env.close()
    return torch.from_numpy(x)
