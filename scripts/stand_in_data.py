"""CIFAR-10 for the GPU scripts: the real folder when there is one, else random pixels written in
CIFAR-10's own format (the loading code is then the real one; only the numbers mean nothing).

A GPU machine gets the repository, not ../shared: carry the subset into the repository's ignored
data/ folder (`cp -r ../shared/data/cifar10-subset data/`, then name `data/cifar10-subset` among
the device call's carried paths). tests/fakes.py re-uses the writers.
"""
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# Where the scripts look when no folder is named, in order: carried into the repository, shared.
CIFAR10_PLACES = (ROOT / "data" / "cifar10-subset", ROOT.parent / "shared" / "data" / "cifar10-subset")


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


def py2_pickle(path: Path, obj) -> None:
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
        py2_pickle(folder / name, {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in np.arange(n_per_batch) % 10],
            b"data": x.reshape(n_per_batch, 3072),
            b"filenames": [f"fake_{i}_{j}.png".encode() for j in range(n_per_batch)],
        })
        images[name] = x
    py2_pickle(folder / "batches.meta", {
        b"num_cases_per_batch": n_per_batch, b"num_vis": 3072,
        b"label_names": [s.encode() for s in ("airplane automobile bird cat deer dog frog horse "
                                              "ship truck").split()],
    })
    train = np.concatenate([images[n] for n in names[:5]])
    return {"train": torch.from_numpy(train), "test": torch.from_numpy(images["test_batch"])}


def cifar10_folder(tmp: Path, named: str | None = None, places=CIFAR10_PLACES) -> tuple[Path, str]:
    """The CIFAR-10 folder to use and a line saying which it is. A folder the user named must
    exist (FileNotFoundError); else the first of `places` that exists; else random pixels in
    CIFAR-10's format, written under `tmp`."""
    if named:
        data = Path(named).resolve()
        if not data.is_dir():
            raise FileNotFoundError(f"no CIFAR-10 folder at {named}")
        return data, f"data: {data}"
    for data in places:
        if data.is_dir():
            return data.resolve(), f"data: {data.resolve()}"
    fake = Path(tmp) / "cifar-10-batches-py"
    write_cifar10(fake, n_per_batch=1000)
    return fake, (f"data: random pixels in CIFAR-10's format (none of {', '.join(map(str, places))} "
                  "exists): the pipeline is checked, the numbers mean nothing")
