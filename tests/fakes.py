"""Tiny datasets written in the real on-disk formats, so tests run the real loading code.

Each writer returns the images it wrote as uint8 [N, 3, H, W] in the intended orientation, the
ground truth a loader must reproduce.
"""
import importlib.util
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _stand_in_data():
    """scripts/stand_in_data.py (the GPU scripts' CIFAR-10 writer, which must not import tests/)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "stand_in_data.py"
    spec = importlib.util.spec_from_file_location("stand_in_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_writers = _stand_in_data()
random_images, write_cifar10 = _writers.random_images, _writers.write_cifar10


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
