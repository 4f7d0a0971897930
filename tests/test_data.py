"""Image datasets: real formats written small by tests/fakes.py, read through the real code path."""
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf

from fakes import stl10_bytes, write_cifar10, write_lsun_lmdb, write_stl10
from conftest import make_cfg
from gan_landscape import data
from gan_landscape.cli import ConfigError
from gan_landscape.kinds import validate
from gan_landscape.data import IMAGE_DATA, DataError, ImageData, image_pool, load_images, to_model_range

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dataset"
SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-subset"


def cfg(name, root, **over):
    """The real config file, pointed at `root`."""
    ds = OmegaConf.load(CONFIGS / f"{name}.yaml")
    ds.root = str(root)
    for k, v in over.items():
        ds[k] = v
    OmegaConf.set_struct(ds, True)  # as Hydra hands it over
    return ds


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_configs_have_the_schema(monkeypatch):
    monkeypatch.setenv("GL_DATA_ROOT", "/d")
    for name in ("cifar10", "stl10", "lsun"):
        ds = OmegaConf.load(CONFIGS / f"{name}.yaml")
        for key in ("name", "kind", "root", "image_size", "check_integrity", "resident",
                    "num_workers"):
            assert key in ds, (name, key)
        assert ds.name == name and ds.kind == "image" and ds.root == f"/d/{name}"
        assert name in IMAGE_DATA
    assert OmegaConf.load(CONFIGS / "lsun.yaml").category == "church_outdoor"
    # the FID reals: CIFAR-10's test batch as the authors' eval.py; STL-10 and LSUN have one split
    assert [data.fid_split(cfg(n, "/d")) for n in ("cifar10", "stl10", "lsun")] == ["test", "train", "train"]
    assert data.fid_split({"name": "toy", "fid_split": "test"}) == "test"  # a config may pin it


# ---------------------------------------------------------------- CIFAR-10

@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_pixels_land_where_the_pickle_says(tmp_path, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path / "batches"
    truth = write_cifar10(folder, n_per_batch=4)
    root = tmp_path if nested else folder
    x = load_images(cfg("cifar10", root, check_integrity=False), "train")
    assert x.dtype == torch.uint8 and x.shape == (20, 3, 32, 32)
    assert torch.equal(x, truth["train"])
    # Independent of the writer: row-major planes, so byte c*1024 + y*32 + x is pixel [c, y, x].
    raw = truth["train"][0].reshape(-1)
    assert x[0, 1, 2, 30] == raw[1 * 1024 + 2 * 32 + 30]
    test = load_images(cfg("cifar10", root, check_integrity=False), "test", limit=3)
    assert torch.equal(test, truth["test"][:3])


def test_cifar10_integrity_switch(tmp_path, caplog):
    write_cifar10(tmp_path / "cifar-10-batches-py", n_per_batch=2)
    with pytest.raises(DataError, match="check_integrity=false") as err:
        load_images(cfg("cifar10", tmp_path), "train")
    assert "md5" in one_line(err)
    with caplog.at_level(logging.WARNING, logger="gan_landscape.data"):
        load_images(cfg("cifar10", tmp_path, check_integrity=False), "train")
    assert any("NOT checked" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not SUBSET.is_dir(), reason="shared/data/cifar10-subset not beside the repo")
def test_shared_cifar10_subset(caplog):
    with caplog.at_level(logging.WARNING, logger="gan_landscape.data"):
        train = load_images(cfg("cifar10", SUBSET, check_integrity=False), "train")
        test = load_images(cfg("cifar10", SUBSET, check_integrity=False), "test")
    assert train.shape == (5085, 3, 32, 32) and test.shape == (1017, 3, 32, 32)
    assert train.dtype == torch.uint8 and 100 < train.float().mean() < 160  # real photos
    assert any("NOT checked" in r.getMessage() for r in caplog.records)
    with pytest.raises(DataError, match="dataset.check_integrity=false") as err:
        load_images(cfg("cifar10", SUBSET, check_integrity=True), "train")
    assert str(SUBSET) in one_line(err)


def test_missing_folder_names_the_path(tmp_path, monkeypatch):
    where = tmp_path / "nowhere"
    for name in ("cifar10", "stl10"):
        with pytest.raises(DataError, match="download") as err:
            load_images(cfg(name, where, download=False))
        assert str(where) in one_line(err)
    with pytest.raises(DataError, match="download.py") as err:
        load_images(cfg("lsun", where, category="tower"))
    assert str(where / "tower_train_lmdb") in one_line(err)

    def offline(*a, **k):
        raise OSError("Network is unreachable")
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download") as err:
        load_images(cfg("cifar10", where, download=True))
    assert str(where) in one_line(err)


def test_existing_folder_is_not_downloaded_again(tmp_path, monkeypatch):
    write_cifar10(tmp_path, n_per_batch=2)  # root is the batches folder itself
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive",
                        lambda *a, **k: pytest.fail("tried to download"))
    assert len(load_images(cfg("cifar10", tmp_path, download=True, check_integrity=False))) == 10


def _offline(*a, **k):
    raise OSError("Network is unreachable")


@pytest.mark.parametrize("exists", [False, True])
def test_a_failed_download_leaves_nothing_behind(tmp_path, monkeypatch, exists):
    """gl-train and gl-eval with a root that does not exist: no empty folders after the attempt;
    with one that exists: nothing new in it."""
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", _offline)
    root = tmp_path / "a" / "b" / "cifar10"
    if exists:
        root.mkdir(parents=True)
    with pytest.raises(DataError, match="could not download into .*Network is unreachable") as err:
        load_images(cfg("cifar10", root, download=True))
    assert str(root) in one_line(err)
    left = root if exists else tmp_path  # a/b/cifar10 did not exist: a/ must not either
    assert list(left.iterdir()) == []


def test_a_download_lands_whole_in_root(tmp_path, monkeypatch):
    """The archive goes to a temporary folder inside root; only the extracted folder stays."""
    def fake_download(url, download_root, filename=None, md5=None):
        (Path(download_root) / filename).write_bytes(b"archive")
        write_cifar10(Path(download_root) / "cifar-10-batches-py", n_per_batch=2)
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", fake_download)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity",  # the fake files' md5s differ
                        lambda path, md5=None: os.path.isfile(path))
    root = tmp_path / "new" / "cifar10"
    assert len(load_images(cfg("cifar10", root, download=True, check_integrity=False))) == 10
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]


def test_available_says_why_not_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "reachable", lambda url: False)
    where = tmp_path / "nowhere"
    assert data.available(cfg("cifar10", where, download=False)) == \
        f"CIFAR-10 is not in {where} and dataset.download=false"
    assert data.available(cfg("stl10", where, download=True)) == \
        f"STL-10 is not in {where} and ai.stanford.edu cannot be reached to download it"
    assert "download.py" in data.available(cfg("lsun", where, category="tower"))
    monkeypatch.setattr(data, "reachable", lambda url: True)
    assert data.available(cfg("cifar10", where, download=True)) == ""
    assert not where.exists()  # asking never creates anything
    write_cifar10(where, n_per_batch=1)
    write_lsun_lmdb(where, "tower", n=2)
    assert data.available(cfg("cifar10", where, download=False)) == ""
    assert data.available(cfg("lsun", where, category="tower")) == ""


TOY = """name: toy
kind: image
root: unused
image_size: 8
resident: true
"""


def test_a_new_image_dataset_is_one_entry_and_its_yamls(tmp_path, monkeypatch):
    """Constant-colour 8 px images: an IMAGE_DATA entry plus configs/dataset/toy.yaml and the
    recipe (optimiser and train settings) that says the CNN fits it. It validates, loads, samples and fingerprints."""
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1).expand(12, 3, 8, 8).contiguous()
    file = tmp_path / "toy.bin"
    file.write_bytes(images.numpy().tobytes())
    monkeypatch.setitem(IMAGE_DATA, "toy", ImageData(
        load=lambda ds, split, limit: images, files=lambda ds: [file], available=lambda ds: "",
        fid_split="train"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "configs" / "dataset").mkdir(parents=True)
    (tmp_path / "configs" / "recipe").mkdir()
    (tmp_path / "configs" / "dataset" / "toy.yaml").write_text(TOY)
    (tmp_path / "configs" / "recipe" / "cnn_toy.yaml").write_text(
        "# @package _global_\noptim: {name: adam, g_lr: 2.0e-4, d_lr: 2.0e-4, betas: [0.5, 0.999], momentum: null}\n")
    c = make_cfg(f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "dataset=toy", "model=cnn")
    validate(c)
    assert torch.equal(load_images(c.dataset, limit=5), images[:5])
    assert image_pool(c.dataset) is images  # small: loaded whole, its rows are the images
    assert data.fid_split(c.dataset) == "train" and data.available(c.dataset) == ""
    assert len(data.fingerprint(c.dataset)) == 16


def test_caches_follow_the_umask(tmp_path, monkeypatch):
    """Colleagues on a shared cluster can read the caches: no 0600 temp-file modes."""
    old = os.umask(0o022)
    try:
        write_stl10(tmp_path, n=2)
        load_images(cfg("stl10", tmp_path, check_integrity=False))
        write_lsun_lmdb(tmp_path, "tower", n=2)
        load_images(cfg("lsun", tmp_path, category="tower", image_size=16, num_workers=0))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        data.fingerprint(cfg("stl10", tmp_path))
    finally:
        os.umask(old)
    for f in (tmp_path / "stl10_binary" / "unlabeled_48px.pt", tmp_path / "tower_train_lmdb_keys.npy",
              tmp_path / "cache" / "gan-landscape" / "fingerprints.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# ---------------------------------------------------------------- STL-10

def test_stl10_orientation_and_resize(tmp_path):
    truth = write_stl10(tmp_path, n=3)
    x = load_images(cfg("stl10", tmp_path, image_size=96, check_integrity=False))
    assert torch.equal(x, truth)
    # By the STL-10 spec, not the writer: a bright top row (y = 0) and a dark left column.
    img = np.full((1, 3, 96, 96), 128, np.uint8)
    img[:, :, 0, :], img[:, :, :, 0] = 255, 0
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").write_bytes(
        np.ascontiguousarray(img.transpose(0, 1, 3, 2)).tobytes())
    assert stl10_bytes(img) == (tmp_path / "stl10_binary" / "unlabeled_X.bin").read_bytes()
    y = load_images(cfg("stl10", tmp_path, image_size=96, check_integrity=False))[0]
    assert (y[:, 0, 1:] == 255).all() and (y[:, 1:, 0] == 0).all()
    small = load_images(cfg("stl10", tmp_path, check_integrity=False))
    assert small.shape == (1, 3, 48, 48) and small.dtype == torch.uint8
    ref = TF.resize(torch.from_numpy(img), [48, 48], antialias=True)
    assert torch.equal(small, ref)


def test_stl10_cache_is_reused(tmp_path, monkeypatch):
    write_stl10(tmp_path, n=4)
    ds = cfg("stl10", tmp_path, check_integrity=False)
    first = load_images(ds)
    cache = tmp_path / "stl10_binary" / "unlabeled_48px.pt"
    assert cache.is_file() and not list(cache.parent.glob("*.tmp*"))
    mtime = cache.stat().st_mtime_ns
    monkeypatch.setattr(data, "_read_stl10", lambda folder: pytest.fail("cache not used"))
    assert torch.equal(load_images(ds), first) and cache.stat().st_mtime_ns == mtime
    assert len(load_images(ds, "test", limit=2)) == 2


def test_stl10_integrity_on_fails_clearly(tmp_path):
    write_stl10(tmp_path, n=1)
    with pytest.raises(DataError, match="check_integrity=false") as err:
        load_images(cfg("stl10", tmp_path))
    assert "unlabeled_X.bin" in one_line(err)


# ---------------------------------------------------------------- LSUN

def test_lsun_centre_crop_resize_and_key_cache(tmp_path):
    truth = write_lsun_lmdb(tmp_path, "tower", n=6, size=(80, 60))  # 60 high, 80 wide
    x = load_images(cfg("lsun", tmp_path, category="tower", image_size=60, num_workers=0))
    assert x.shape == (6, 3, 60, 60) and x.dtype == torch.uint8
    assert torch.equal(x, truth[:, :, :, 10:70])  # the central 60x60 square, pixel for pixel
    assert (tmp_path / "tower_train_lmdb_keys.npy").is_file()
    small = load_images(cfg("lsun", tmp_path, category="tower", image_size=32, num_workers=0),
                        limit=4)
    assert small.shape == (4, 3, 32, 32)


def test_lsun_jpeg_is_read_per_image(tmp_path):
    truth = write_lsun_lmdb(tmp_path, "church_outdoor", n=6, size=(50, 70), fmt="JPEG").int()
    pool = image_pool(cfg("lsun", tmp_path, image_size=50, num_workers=0))
    assert not isinstance(pool, torch.Tensor) and len(pool) == 6  # nothing decoded yet
    img = pool[5]
    assert img.shape == (3, 50, 50) and img.dtype == torch.uint8
    # JPEG is lossy (on noise, very): the central 50 of the 70 rows is the closest window
    err = [(img.int() - truth[5, :, top:top + 50]).abs().float().mean() for top in range(21)]
    assert min(range(21), key=err.__getitem__) == 10


def test_lsun_workers_after_the_main_process_read_it(tmp_path):
    """lmdb refuses a second open of the same files in one process; forked workers must cope."""
    write_lsun_lmdb(tmp_path, "bedroom", n=12, fmt="WEBP")  # the real LSUN encoding
    ds = cfg("lsun", tmp_path, category="bedroom", image_size=16, num_workers=0)
    assert load_images(ds).shape == (12, 3, 16, 16)  # leaves the env open here
    loader = torch.utils.data.DataLoader(image_pool(ds), batch_size=4, shuffle=True, num_workers=2)
    for _ in range(2):
        assert [b.shape for b in loader] == [(4, 3, 16, 16)] * 3
    assert load_images(ds, limit=5).shape == (5, 3, 16, 16)


# ---------------------------------------------------------------- preprocessing and names

def test_to_model_range():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).repeat(1000)
    clean = to_model_range(x)
    assert clean[0] == -1 and clean[2] == 1 and clean.dtype == torch.float32
    noisy = to_model_range(x, torch.rand(x.shape))
    noise = noisy - clean
    assert noise.min() >= 0 and noise.max() < 1 / 128 and noise.std() > 1e-3


def test_bad_split_and_name(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_images(cfg("cifar10", tmp_path), "val")
    mnist = {"name": "mnist", "root": str(tmp_path), "image_size": 28}
    line = "^dataset=mnist: no image dataset of that name; gan_landscape/data/__init__.py registers cifar10, stl10, lsun$"
    for use in (load_images, image_pool, data.data_files, data.available, data.fid_split):
        with pytest.raises(ConfigError, match=line):
            use(mnist)
