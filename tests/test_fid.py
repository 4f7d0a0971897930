"""FID: exactness against pytorch-fid, protocols, the reference key and cache, sampling modes.

The Inception weights here are random (same names and shapes as the FID weights, written by the
test): these machines have no copy of the real ones, and agreement with pytorch-fid does not
depend on the values. Inception on this CPU costs ~0.5 s an image at 2048 dims, so image sets are
tiny, and tests that need no pool_3 features use fid.dims=64 (block 0 only). The reals are tiny
datasets in the real on-disk formats (tests/fakes.py), read through the real loaders.
"""
import inspect
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3

from conftest import make_cfg
from fakes import write_cifar10, write_lsun_lmdb, write_stl10
from gan_landscape import data
from gan_landscape.metrics import fid, inception

pytestmark = [pytest.mark.filterwarnings("ignore:FID statistics from"), pytest.mark.usefixtures("private_cache")]

# pytorch-fid 0.3.0's calculate_frechet_distance calls linalg.sqrtm(..., disp=False); scipy 1.18
# removed `disp`, so there (Python >= 3.12 resolves scipy 1.18) its distance and CLI crash.
SQRTM_DISP = "disp" in inspect.signature(scipy.linalg.sqrtm).parameters
NO_PFID_DISTANCE = pytest.mark.skipif(
    not SQRTM_DISP, reason=f"scipy {scipy.__version__}'s linalg.sqrtm has no `disp` argument, which "
    f"pytorch-fid 0.3.0's calculate_frechet_distance passes (sqrtm(..., disp=False)): its "
    f"distance, and so its CLI, crash here; our features and distance are checked against "
    f"pytorch-fid's activations and an independent formula instead")


@pytest.fixture
def cifar(tmp_path):
    """A CIFAR-10 folder in the official format: 8 images per batch, so an 8-image test split."""
    return write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", n_per_batch=8), \
        tmp_path / "cifar10"


def fid_cfg(tmp_path, weights, root, *overrides, dataset="cifar10"):
    """The composed gl-train config, shrunk to a few images and block-0 features."""
    return make_cfg(f"dataset={dataset}", f"dataset.root={root}", "dataset.check_integrity=false",
                    "++dataset.download=false", "fid.n_fake=6", "fid.n_real=8", "fid.batch_size=6", "fid.dims=64",
                    f"fid.cache_dir={tmp_path / 'fidcache'}", f"fid.weights={weights}", *overrides)


def smooth_images(n, seed):
    """Smooth random uint8 images [n,3,32,32]: varied enough for non-degenerate features."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear")
    return (x * 255).to(torch.uint8)


def moments(x):
    return x.mean(0), np.cov(x, rowvar=False)


def trace_sqrt_product(s1, s2) -> float:
    """tr sqrt(S1 S2) from the eigenvalues of the (non-symmetric) product: real and >= 0 in exact
    arithmetic, as S1 S2 is similar to S2^1/2 S1 S2^1/2. Independent of fid's symmetric eigh form."""
    ev = np.linalg.eigvals(s1 @ s2)
    return float(np.sqrt(np.clip(ev.real, 0, None)).sum())


def independent_fid(m1, s1, m2, s2) -> float:
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))


# ---------------------------------------------------------------- Frechet distance and statistics

@pytest.mark.parametrize("d", [8, 256])
def test_frechet_equals_an_independent_formula(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(3 * d, d))
    b = rng.normal(size=(3 * d, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.3
    (m1, s1), (m2, s2) = moments(a), moments(b)
    ours = fid.frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(independent_fid(m1, s1, m2, s2), rel=1e-8)
    assert ours > 0.1 and fid.frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-9)


@NO_PFID_DISTANCE
def test_frechet_equals_pytorch_fids_where_it_runs():
    rng = np.random.default_rng(1)
    (m1, s1), (m2, s2) = moments(rng.normal(size=(300, 32))), moments(rng.normal(size=(300, 32)) * 2)
    theirs = fid_score.calculate_frechet_distance(m1, s1, m2, s2)
    assert fid.frechet_distance(m1, s1, m2, s2) == pytest.approx(theirs, rel=1e-8)


def test_frechet_survives_singular_covariances():
    rng = np.random.default_rng(0)
    (m1, s1), (m2, s2) = moments(rng.normal(size=(5, 64))), moments(rng.normal(size=(7, 64)) + 1)
    ours = fid.frechet_distance(m1, s1, m2, s2)
    assert np.isfinite(ours) and ours > 0
    assert fid.frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-6)  # rank 4 of 64
    with pytest.raises(fid.FIDError, match="NaN"):
        fid.frechet_distance(m1 * np.nan, s1, m2, s2)


def test_moments_equal_numpy_cov_and_warn_when_few():
    x = torch.randn(50, 16, dtype=torch.float64) * 0.1 + 1e3  # large offset: no cancellation
    m = fid.Moments()
    for part in x.split(7):
        m.add(part)
    mu, sigma = m.stats()
    np.testing.assert_allclose(mu, x.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.numpy(), rowvar=False), rtol=1e-8, atol=1e-12)
    small = fid.Moments()
    small.add(x[:10])
    with pytest.warns(UserWarning, match="singular"):
        small.stats()


def test_inception_score_of_known_distributions_and_the_authors_1000_classes():
    sure = torch.eye(10).repeat(10, 1) * 50  # each image certain, classes spread evenly: IS = 10
    assert fid.inception_score(sure, splits=10)[0] == pytest.approx(10, rel=1e-6)
    assert fid.inception_score(torch.zeros(100, 10), splits=10) == pytest.approx((1.0, 0.0))
    # Each image sure of its own one of the 8 extra (non-ImageNet) outputs of the TF graph: over all
    # 1008 the IS is 8; over the first 1000 (the authors') every image is uniform, IS = 1.
    extra = torch.zeros(8, 1008)
    extra[torch.arange(8), 1000 + torch.arange(8)] = 50
    assert fid.inception_score(fid.is_logits(extra, "all"), 1)[0] == pytest.approx(8, rel=1e-6)
    assert fid.inception_score(fid.is_logits(extra, "first1000"), 1)[0] == pytest.approx(1, rel=1e-9)


def test_quantize_truncates_like_the_authors_and_rounds_like_save_image(tmp_path):
    from torchvision.utils import save_image
    x = torch.linspace(-1, 1, 3 * 4 * 4).reshape(1, 3, 4, 4)
    authors = ((x.numpy() / 2 + 0.5) * 255).astype(np.uint8)
    assert np.array_equal(fid.quantize(x.clone(), "truncate").numpy(), authors)
    save_image(x, tmp_path / "x.png", normalize=True, value_range=(-1, 1))
    png = np.asarray(Image.open(tmp_path / "x.png")).transpose(2, 0, 1)[None]
    assert np.array_equal(fid.quantize(x.clone(), "round").numpy(), png)
    with pytest.raises(fid.FIDError):
        fid.quantize(x, "floor")


def test_resize_modes_against_hand_computed_2x2_to_3x3():
    """TF1 legacy bilinear: source = dest * in/out (2/3), so columns sample 0, 2/3, 4/3 -> 1 (the
    last index). pytorch (half-pixel centres): source = (dest + 0.5) * 2/3 - 0.5 = -1/6 -> 0, 1/2,
    7/6 -> 1."""
    x = torch.tensor([[0.0, 3.0], [6.0, 9.0]])[None, None]
    tf1 = torch.tensor([[0.0, 2.0, 3.0], [4.0, 6.0, 7.0], [6.0, 8.0, 9.0]])
    half = torch.tensor([[0.0, 1.5, 3.0], [3.0, 4.5, 6.0], [6.0, 7.5, 9.0]])
    torch.testing.assert_close(inception.resize(x, "tf1", size=3)[0, 0], tf1)
    torch.testing.assert_close(inception.resize(x, "pytorch", size=3)[0, 0], half)


def test_fid_resize_picks_the_networks_resize(weights):
    """resize=tf1 is the same network after TF1's resize (resizing 299 to 299 is the identity)."""
    x01 = smooth_images(1, 5).float() / 255
    ours, tf1 = (fid.load_inception(weights, "cpu", 64, mode) for mode in ("pytorch", "tf1"))
    with torch.no_grad():
        torch.testing.assert_close(tf1(x01), ours(inception.resize(x01, "tf1")))
        assert not torch.allclose(tf1(x01), ours(x01), atol=1e-3)


# ---------------------------------------------------------------- features vs pytorch-fid

def write_pngs(images_u8, folder: Path) -> list[str]:
    folder.mkdir()
    for i, im in enumerate(images_u8):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return sorted(str(p) for p in folder.glob("*.png"))


@pytest.mark.parametrize("dims,n", [(64, 12), (2048, 2)])
def test_features_equal_pytorch_fids_activations_on_the_same_pngs(torch_home, weights, tmp_path,
                                                                   dims, n):
    """In-memory uint8 -> our Inception == pytorch-fid's InceptionV3 on the images saved as PNG
    (its own loader and network, loaded from the same hub file), features and statistics."""
    x = smooth_images(n, 1)
    files = write_pngs(x, tmp_path / "png")
    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
    theirs = fid_score.get_activations(files, net, batch_size=5, dims=dims, device="cpu",
                                       num_workers=0)
    inc = fid.load_inception(weights, "cpu", dims)
    ours = torch.cat([fid.features(inc, part)[0] for part in fid.chunks(x, 4)]).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    if n > dims:  # statistics too, where the covariance is not singular
        mu, sigma = fid_score.calculate_activation_statistics(files, net, 5, dims, "cpu", 0)
        st = fid.inception_stats(inc, fid.chunks(x, 4))
        np.testing.assert_allclose(st.mu, mu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(st.sigma, sigma, rtol=1e-3, atol=1e-6)


@NO_PFID_DISTANCE
def test_fid_equals_pytorch_fid_cli_on_the_same_pngs(torch_home, weights, tmp_path):
    """`python -m pytorch_fid dirA dirB` == ours on the same images in memory (64 dims)."""
    sets = {"a": smooth_images(16, 1), "b": smooth_images(16, 2)}
    for name, x in sets.items():
        write_pngs(x, tmp_path / name)
    cli = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", str(tmp_path / "a"), str(tmp_path / "b"),
         "--device", "cpu", "--batch-size", "5", "--num-workers", "0", "--dims", "64"],
        capture_output=True, text=True, env={**os.environ, "TORCH_HOME": str(torch_home)})
    assert cli.returncode == 0, cli.stderr[-2000:]
    theirs = float(cli.stdout.split("FID:")[-1])
    inc = fid.load_inception(weights, "cpu", 64)
    sa, sb = (fid.inception_stats(inc, fid.chunks(x, 8)) for x in sets.values())
    assert fid.frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma) == pytest.approx(theirs, rel=1e-3)


def test_IS_head_is_the_checkpoints_and_building_leaves_the_rng_alone(weights):
    rng = torch.get_rng_state()
    inception._load_inception.cache_clear()
    fid.load_inception(weights, "cpu", 64)
    assert torch.equal(torch.get_rng_state(), rng)
    inc = fid.load_inception(weights, "cpu")
    sd = torch.load(weights, weights_only=True)
    assert inc.sha == fid.sha256_short(weights) and torch.equal(inc.fc.weight, sd["fc.weight"])
    f, logits = fid.features(inc, smooth_images(1, 3), logits=True)
    assert f.shape == (1, 2048) and logits.shape == (1, 1008)
    torch.testing.assert_close(logits, f @ sd["fc.weight"].T + sd["fc.bias"])


def test_missing_weights_say_which_file_goes_where_and_create_nothing(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(fid.FIDError) as e:
        fid.load_inception()
    msg = str(e.value)
    assert str(tmp_path / "hub/checkpoints" / fid.WEIGHTS_FILE) in msg and "fid.weights=PATH" in msg
    assert not (tmp_path / "hub").exists()
    with pytest.raises(fid.FIDError, match="no such file"):
        fid.load_inception(tmp_path / "nope.pth")


@pytest.mark.parametrize("override,msg", [
    ("fid.resize=bicubic", "fid.resize=bicubic: expected pytorch or tf1"),
    ("fid.n_real=0", "fid.n_real=0: expected a positive integer"),
    ("fid.dims=100", "fid.dims=100: expected one of 64, 192, 768, 2048"),
    ("fid.reals_seed=null", "fid.reals_seed=None: fid.reals=random needs an integer seed"),
    ("fid.is_logits=1008", "fid.is_logits=1008: expected first1000 or all"),
])
def test_bad_protocol_values_are_one_line(override, msg):
    with pytest.raises(fid.FIDError) as e:
        fid.check(make_cfg(override).fid)
    assert str(e.value) == msg


# ---------------------------------------------------------------- the reference key

def test_lsun_categories_get_their_own_reference(tmp_path, weights):
    """Byte-identical church and tower folders: only the category tells them apart."""
    for cat in ("church_outdoor", "tower"):
        write_lsun_lmdb(tmp_path / "lsun", cat, n=4)
    fields = {cat: fid.reference_fields(fid_cfg(tmp_path, weights, tmp_path / "lsun",
                                                f"dataset.category={cat}", dataset="lsun"))
              for cat in ("church_outdoor", "tower")}
    church, tower = fields["church_outdoor"], fields["tower"]
    assert church["data_fingerprint"] == tower["data_fingerprint"]
    assert (church["category"], tower["category"]) == ("church_outdoor", "tower")
    assert fid.key_of(church) != fid.key_of(tower)


def test_cifar_subset_is_another_reference_and_a_moved_folder_the_same(tmp_path, weights):
    write_cifar10(tmp_path / "full" / "cifar-10-batches-py", n_per_batch=8)
    write_cifar10(tmp_path / "subset" / "cifar-10-batches-py", n_per_batch=4)
    shutil.copytree(tmp_path / "full", tmp_path / "moved" / "elsewhere")

    def key(root):
        return fid.protocol(fid_cfg(tmp_path, weights, root))["reference_key"]
    assert key(tmp_path / "full") != key(tmp_path / "subset")
    assert key(tmp_path / "full") == key(tmp_path / "moved" / "elsewhere")


REAL_SIDE = ["fid.n_real=9", "fid.n_real=null", "fid.reals=first", "fid.reals_seed=4",
             "fid.resize=pytorch", "fid.dims=192", "fid.split=train", "dataset.image_size=64",
             "fid.tf32=true", "fid.weights=random", "fid.weights=random fid.weights_seed=1"]
FAKE_SIDE = ["fid.n_fake=13", "fid.g_mode=eval", "fid.quantize=round", "fid.batch_size=4",
             "fid.seed=1", "fid.is_logits=all", "fid.inception_score=true", "fid.is_splits=2",
             "fid.inception_score=true fid.is_n_fake=20", "fid.metrics=[prd]", "fid.kid.subsets=5",
             "fid.prc.k=4", "fid.dc.k=3", "fid.prd.clusters=10", "fid.prd.runs=2", "fid.prd.seed=1"]


@pytest.mark.parametrize("override", REAL_SIDE + ["weights"] + FAKE_SIDE)
def test_each_field_changes_the_keys(tmp_path, weights, cifar, override):
    base = fid.protocol(fid_cfg(tmp_path, weights, cifar[1]))
    if override == "weights":  # another weights file, same shapes
        override = f"fid.weights={fid.random_weights(tmp_path / 'other.pth', seed=1)}"
    other = fid.protocol(fid_cfg(tmp_path, weights, cifar[1], *override.split()))
    assert other["protocol_key"] != base["protocol_key"]
    assert (other["reference_key"] != base["reference_key"]) == (override not in FAKE_SIDE)
    # operational keys change neither
    same = fid.protocol(fid_cfg(tmp_path, weights, cifar[1], "fid.log_seconds=1", "fid.inception_batch=3",
                                f"fid.cache_dir={tmp_path / 'c2'}"))
    assert same["protocol_key"] == base["protocol_key"]


# ---------------------------------------------------------------- reals, reference cache

def test_random_reals_are_a_seeded_subset_as_a_shuffled_loader(tmp_path):
    x = write_stl10(tmp_path / "stl10", n=10)
    ds = make_cfg("dataset=stl10", f"dataset.root={tmp_path / 'stl10'}", "dataset.image_size=96",
                  "dataset.check_integrity=false").dataset
    first = fid.select_reals(ds, "train", 4, "first", None)
    seed3 = fid.select_reals(ds, "train", 4, "random", 3)
    assert torch.equal(first, x[:4])
    assert torch.equal(seed3, fid.select_reals(ds, "train", 4, "random", 3))  # deterministic
    rows = [int(np.flatnonzero((x == im).flatten(1).all(1))[0]) for im in seed3]
    assert len(set(rows)) == 4 and rows == sorted(rows) and rows != [0, 1, 2, 3]
    assert not torch.equal(seed3, fid.select_reals(ds, "train", 4, "random", 4))
    assert len(fid.select_reals(ds, "train", 50, "random", 3)) == 10  # all, when fewer exist
    # LSUN is read by index from the lmdb, never whole
    write_lsun_lmdb(tmp_path / "lsun", "tower", n=6)
    lsun = make_cfg("dataset=lsun", f"dataset.root={tmp_path / 'lsun'}", "dataset.category=tower",
                    "dataset.image_size=32", "dataset.num_workers=0").dataset
    every = data.load_images(lsun, "train")
    picked = fid.select_reals(lsun, "train", 3, "random", 3)
    rows = [int(np.flatnonzero((every == im).flatten(1).all(1))[0]) for im in picked]
    assert len(set(rows)) == 3 and rows == sorted(rows)


class TinyG(nn.Module):
    """Linear -> BatchNorm -> tanh -> 3x32x32: BN makes train- and eval-mode sampling differ."""
    z_dim = 8

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc, self.bn = nn.Linear(8, 3 * 8 * 8), nn.BatchNorm1d(3 * 8 * 8)
        self.bn.running_mean.fill_(0.5)
        self.bn.running_var.fill_(4.0)

    def forward(self, z):
        x = torch.tanh(self.bn(self.fc(z))).view(-1, 3, 8, 8)
        return F.interpolate(x, size=32, mode="bilinear")


def test_score_generator_caches_reference_and_leaves_G_alone(tmp_path, weights, cifar, reads):
    cfg, G = fid_cfg(tmp_path, weights, cifar[1]), TinyG()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    rng = torch.get_rng_state()
    r1 = fid.score_generator(G, cfg)
    assert np.isfinite(r1["fid"]) and r1["fid"] > 0 and reads == [("cifar10", "test", None)]
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())  # BN stats untouched
    assert G.training and torch.equal(torch.get_rng_state(), rng)
    assert (r1["protocol"], r1["g_mode"], r1["quantize"], r1["resize"], r1["reals"],
            r1["reals_seed"], r1["is_logits"]) == ("paper", "train", "truncate", "tf1",
                                                   "random", 3, "first1000")
    assert r1["n_real"] == r1["n_real_used"] == 8 and "warning" not in r1
    (npz,) = (tmp_path / "fidcache").glob("*.npz")
    assert npz.name == f"cifar10-test-8-{r1['reference_key']}.npz" and r1["reference"] == str(npz)
    meta = json.loads(npz.with_suffix(".json").read_text())
    assert meta["n_real_used"] == 8 and meta["fields"]["data_fingerprint"] == r1["data_fingerprint"]
    with np.load(npz) as z:  # pytorch-fid's CLI reads mu and sigma from it as it is
        assert z["mu"].shape == (64,) and z["sigma"].shape == (64, 64)

    fid._REFS.clear()  # a new process: the disk cache answers, the reals are not read again
    assert fid.score_generator(G, cfg)["fid"] == pytest.approx(r1["fid"], rel=1e-9)
    assert len(reads) == 1
    r3 = fid.score_generator(G.eval(), fid_cfg(tmp_path, weights, cifar[1], "fid.g_mode=eval"))
    assert r3["g_mode"] == "eval" and r3["fid"] != pytest.approx(r1["fid"], rel=1e-3)
    assert r3["reference_key"] == r1["reference_key"] and r3["protocol_key"] != r1["protocol_key"]
    assert not G.training and len(reads) == 1


def test_too_few_reals_is_a_warning_never_a_silent_stand_in(tmp_path, weights, cifar, caplog):
    """8 test images where 12 are asked: a warning in the record and the log; cached under 8.
    The cache files get the umask's mode (readable by colleagues), not a private 0600."""
    old = os.umask(0o022)
    try:
        with caplog.at_level(logging.WARNING):
            rec = fid.score_generator(TinyG(), fid_cfg(tmp_path, weights, cifar[1], "fid.n_real=12"))
    finally:
        os.umask(old)
    assert (rec["n_real"], rec["n_real_used"]) == (12, 8)
    assert "only 8 real images" in rec["warning"] and "fid.n_real=12" in rec["warning"]
    assert any("only 8 real images" in r.message for r in caplog.records)
    (npz,) = (tmp_path / "fidcache").glob("*.npz")
    assert npz.name.startswith("cifar10-test-8-") and "-12-" not in npz.name
    assert json.loads(npz.with_suffix(".json").read_text())["fields"]["n_real"] == 12
    assert {oct(p.stat().st_mode & 0o777) for p in (npz, npz.with_suffix(".json"))} == {"0o644"}


def test_inception_score_over_the_authors_1000_logits(tmp_path, weights, cifar):
    """fid.inception_score=true under fid=paper: the IS of the same fakes, softmax over the first
    1000 of the 1008 logits (the rule itself is tested above)."""
    G = TinyG()
    rec = fid.score_generator(G, fid_cfg(tmp_path, weights, cifar[1], "fid.dims=2048",
                                         "fid.n_fake=2", "fid.n_real=2", "fid.reals=first",
                                         "fid.inception_score=true", "fid.is_n_fake=2",
                                         "fid.is_splits=1", "fid.resize=pytorch"))
    with fid.sampling_mode(G, "train"):
        fakes = torch.cat(list(fid.fake_batches(G, 2, 6, "truncate", 0)))
    _, logits = fid.features(fid.load_inception(weights), fakes, logits=True)
    # random weights give near-uniform class probabilities, IS = 1 + O(1e-4): compare IS - 1
    first1000, all1008 = (fid.inception_score(lg, 1)[0] - 1 for lg in (logits[:, :1000], logits))
    assert rec["is_logits"] == "first1000" and abs(first1000 / all1008 - 1) > 1e-3
    assert rec["is_mean"] - 1 == pytest.approx(first1000, rel=1e-4)


def test_a_cache_that_does_not_match_is_recomputed(tmp_path, weights, cifar, reads):
    cfg = fid_cfg(tmp_path, weights, cifar[1])
    fid.score_generator(TinyG(), cfg)
    (npz,) = (tmp_path / "fidcache").glob("*.npz")
    meta = json.loads(npz.with_suffix(".json").read_text())
    npz.with_suffix(".json").write_text(json.dumps({**meta, "n_real_used": 7}))
    fid._REFS.clear()
    fid.score_generator(TinyG(), cfg)
    assert len(reads) == 2

