"""FID: exactness against pytorch-fid, statistics caching, sampling modes, gl-eval bookkeeping.

The Inception weights here are random (same names and shapes as the FID weights, written by the
test into a temporary torch hub dir): these machines have no copy of the real ones, and agreement
with pytorch-fid does not depend on the values. Inception on this CPU costs ~0.1 s an image, so
image sets are tiny, and tests that need no pool_3 features use fid.dims=64 (block 0 only); the
CLI comparison at 2048 dims runs with GL_SLOW_TESTS=1 (minutes: scipy's sqrtm at 2048).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance

from gan_landscape import checkpoint, evaluate, fid

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = Path("/work/shared/data/rsgan-official/RSGAN-CNN-quater-cifar.pth")
pytestmark = pytest.mark.filterwarnings("ignore:FID statistics from")


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """TORCH_HOME with random FID weights where pytorch-fid's own loader looks for them."""
    home = tmp_path_factory.mktemp("torch_home")
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(home / "hub"))
    fid.random_weights(fid.hub_weights_path())
    yield home
    torch.hub.set_dir(old)


@pytest.fixture(autouse=True)
def fresh_memo():
    fid._REFS.clear()


def images(n, seed):
    """Smooth random uint8 images [n,3,32,32]: varied enough for non-degenerate features."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear")
    return (x * 255).to(torch.uint8)


def moments(x):
    return x.mean(0), np.cov(x, rowvar=False)


# ---------------------------------------------------------------- Frechet distance and statistics

@pytest.mark.parametrize("d", [8, 256])
def test_frechet_equals_pytorch_fid(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(3 * d, d))
    b = rng.normal(size=(3 * d, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.3
    (m1, s1), (m2, s2) = moments(a), moments(b)
    ours = fid.frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(calculate_frechet_distance(m1, s1, m2, s2), rel=1e-8)
    assert fid.frechet_distance(m1, s1, m1, s1) == pytest.approx(0, abs=1e-9)


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


def test_inception_score_of_known_distributions():
    sure = torch.eye(10).repeat(10, 1) * 50  # each image certain, classes spread evenly: IS = 10
    assert fid.inception_score(sure, splits=10)[0] == pytest.approx(10, rel=1e-6)
    assert fid.inception_score(torch.zeros(100, 10), splits=10) == pytest.approx((1.0, 0.0))


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


# ---------------------------------------------------------------- features vs pytorch-fid

# 2048-d costs minutes here (scipy's sqrtm of a 2048 x 2048 product on 2 busy cores).
SLOW = pytest.mark.skipif(not os.environ.get("GL_SLOW_TESTS"), reason="GL_SLOW_TESTS=1 to run")


@pytest.mark.parametrize("dims", [64, pytest.param(2048, marks=SLOW)])
def test_fid_equals_pytorch_fid_cli_on_the_same_pngs(torch_home, tmp_path, dims):
    """In-memory uint8 -> InceptionV3 == `python -m pytorch_fid dirA dirB` on the images as PNG."""
    sets = {"a": images(16, 1), "b": images(16, 2)}
    for name, x in sets.items():
        (tmp_path / name).mkdir()
        for i, im in enumerate(x):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i:03d}.png")
    cli = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", str(tmp_path / "a"), str(tmp_path / "b"),
         "--device", "cpu", "--batch-size", "5", "--num-workers", "0", "--dims", str(dims)],
        capture_output=True, text=True, env={**os.environ, "TORCH_HOME": str(torch_home)})
    assert cli.returncode == 0, cli.stderr[-2000:]
    theirs = float(cli.stdout.split("FID:")[-1])
    inc = fid.load_inception(device="cpu", dims=dims)
    sa, sb = (fid.inception_stats(inc, fid.chunks(x, 8)) for x in sets.values())
    ours = fid.frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    assert ours == pytest.approx(theirs, rel=1e-3)


def test_features_do_not_depend_on_batch_size_and_IS_head_is_the_checkpoints(torch_home):
    inc = fid.load_inception(device="cpu")
    assert inc.sha == fid.sha256_short(fid.hub_weights_path()) and inc.fc[0].shape == (1008, 2048)
    x = images(2, 3)
    whole, logits = fid.features(inc, x, logits=True)
    parts = torch.cat([fid.features(inc, p)[0] for p in x.split(1)])
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-6)
    assert whole.shape == (2, 2048) and logits.shape == (2, 1008)
    assert fid.inception_score(logits, splits=1)[0] >= 1


# ---------------------------------------------------------------- generators, reference cache

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


def fid_cfg(tmp_path, **fid_overrides):
    """configs/fid/paper.yaml, shrunk to a few images and block-0 features."""
    f = OmegaConf.load(REPO / "configs/fid/paper.yaml")
    f = OmegaConf.merge(f, {"n_fake": 12, "n_real": 12, "batch_size": 6, "dims": 64,
                            "cache_dir": str(tmp_path / "cache")}, fid_overrides)
    ds = {"name": "toy", "kind": "image", "image_size": 32, "fid_split": "test"}
    return OmegaConf.create({"dataset": ds, "fid": f, "model": {"name": "tiny"}, "width": 1.0})


@pytest.fixture
def reals(monkeypatch):
    """Replace the dataset with fixed images; counts how often the real images are read."""
    calls = []

    def load(ds, split, limit):
        calls.append((ds.name, split, limit))
        return images(limit or 12, 99)
    monkeypatch.setattr(fid, "load_reals", load)
    return calls


def test_score_generator_caches_reference_and_leaves_G_alone(torch_home, tmp_path, reals):
    cfg, G = fid_cfg(tmp_path), TinyG()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    rng = torch.get_rng_state()
    r1 = fid.score_generator(G, cfg)
    assert np.isfinite(r1["fid"]) and r1["fid"] > 0 and reals == [("toy", "test", 12)]
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())  # BN stats untouched
    assert G.training and torch.equal(torch.get_rng_state(), rng)
    for k in ("protocol", "n_fake", "n_real", "split", "dataset", "g_mode", "quantize",
              "weights_sha256", "versions", "seconds", "time"):
        assert k in r1
    assert (r1["protocol"], r1["g_mode"], r1["quantize"]) == ("paper", "train", "truncate")
    assert len(list((tmp_path / "cache").glob("toy-test-12-32px-d64-*.npz"))) == 1

    fid._REFS.clear()  # a new process: the disk cache answers, the reals are not read again
    assert fid.score_generator(G, cfg)["fid"] == pytest.approx(r1["fid"], rel=1e-9)
    assert len(reals) == 1
    r3 = fid.score_generator(G.eval(), fid_cfg(tmp_path, g_mode="eval"))
    assert r3["g_mode"] == "eval" and r3["fid"] != pytest.approx(r1["fid"], rel=1e-3)
    assert not G.training


# ---------------------------------------------------------------- gl-eval

def eval_cfg(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def make_run(run, ema: bool, steps=(0, 10)):
    cfg = fid_cfg(run)  # the run's own fid node is ignored: gl-eval scores under its own protocol
    for step in steps:
        state = {"config": OmegaConf.to_container(cfg), "G": TinyG(step).state_dict(),
                 "G_ema": TinyG(step + 1).state_dict() if ema else None}
        checkpoint.save(run, step, state)


def records(jsonl):
    return [json.loads(ln) for ln in jsonl.read_text().splitlines()]


def test_gl_eval_scores_multirun_once_and_updates_summary(torch_home, tmp_path, reals, monkeypatch):
    monkeypatch.setattr(evaluate, "build_generator", lambda cfg: TinyG())
    sweep = tmp_path / "sweep"
    make_run(sweep / "a", ema=True)
    make_run(sweep / "b", ema=False)
    small = [f"run={sweep}", "fid.n_fake=12", "fid.n_real=12", "fid.batch_size=6", "fid.dims=64",
             f"fid.cache_dir={tmp_path / 'cache'}", "device=cpu"]
    assert evaluate.evaluate(eval_cfg(*small)) == 3  # a: raw + ema, b: raw (no EMA kept)
    a = records(sweep / "a/fid.jsonl")
    assert [(r["step"], r["generator"]) for r in a] == [(10, "raw"), (10, "ema")]
    assert a[0]["weights_sha256"] == fid.sha256_short(fid.hub_weights_path())
    assert set(a[0]["versions"]) == {"torch", "torchvision", "pytorch_fid"}
    summary = json.loads((sweep / "a/summary.json").read_text())["fid"]
    assert summary == {"protocol": "paper", "step": 10, "raw": a[0]["fid"], "ema": a[1]["fid"]}

    assert evaluate.evaluate(eval_cfg(*small)) == 0  # already scored
    assert evaluate.evaluate(eval_cfg(*small, "step=all")) == 3  # step 0 is new
    assert evaluate.evaluate(eval_cfg(*small, "force=true", "which=[ema]")) == 1
    assert [r["step"] for r in records(sweep / "a/fid.jsonl")] == [10, 10, 0, 0, 10]
    assert len(reals) == 1  # one reference for all of it
    with pytest.raises(evaluate.EvalError, match="no checkpoint for step 5"):
        evaluate.evaluate(eval_cfg(*small, "step=5"))


def test_gl_eval_bad_input_ends_in_one_line(torch_home, tmp_path):
    make_run(tmp_path / "run", ema=False, steps=(0,))
    cli = subprocess.run(
        [sys.executable, "-c", "from gan_landscape.evaluate import main; main()",
         f"run={tmp_path / 'run'}", f"fid.weights={tmp_path / 'nope.pth'}",
         f"hydra.run.dir={tmp_path / 'hydra'}"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [
        f"gl-eval: fid.weights={tmp_path / 'nope.pth'}: no such file (it should be a copy of "
        f"{fid.WEIGHTS_FILE})"]
    for bad, msg in ((["run=/nonexistent"], "no such directory"),
                     ([f"run={tmp_path}", "step=latest"], "expected final, all"),
                     ([], "exactly one of run=DIR or checkpoint=PATH")):
        with pytest.raises(evaluate.EvalError, match=msg):
            evaluate.evaluate(eval_cfg(*bad))


def test_missing_weights_say_which_file_goes_where(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(fid.FIDError) as e:
        fid.load_inception()
    msg = str(e.value)
    assert str(tmp_path / "hub/checkpoints" / fid.WEIGHTS_FILE) in msg and "fid.weights=PATH" in msg
    with pytest.raises(fid.FIDError, match="synthetic"):
        ds = {"name": "two_cluster", "kind": "synthetic"}
        fid.reference_path(OmegaConf.create({"dataset": ds, "fid": {}}), None)


@pytest.mark.skipif(not OFFICIAL.exists(), reason="the authors' released generator is not here")
def test_gl_eval_bare_state_dict_of_the_authors(torch_home, tmp_path, reals):
    """The released quarter-width CNN generator loads into model=cnn width=0.25 and gets an FID."""
    args = [f"checkpoint={OFFICIAL}", "model=cnn", "dataset=cifar10", "fid.n_fake=12",
            "fid.n_real=12", "fid.batch_size=6", "fid.dims=64", "device=cpu",
            f"fid.cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'out.jsonl'}"]
    assert evaluate.evaluate(eval_cfg(*args, "width=0.25")) == 1
    (rec,) = records(tmp_path / "out.jsonl")
    assert rec["checkpoint"] == str(OFFICIAL) and np.isfinite(rec["fid"])
    assert (rec["dataset"], rec["split"], rec["g_mode"]) == ("cifar10", "test", "train")
    with pytest.raises(evaluate.EvalError, match="do not fit"):
        evaluate.evaluate(eval_cfg(*args, "width=0.5"))
