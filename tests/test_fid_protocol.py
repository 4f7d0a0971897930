"""The paper protocol's evaluation beyond the FID: one Inception pass feeding every metric, the
reference features in the cache, the IS from its own stream of fakes, fid.weights=random and the
progress line inside a batch. Tiny images and random Inception weights (see test_fid.py)."""
import json
import logging

import numpy as np
import pytest
import torch

from conftest import make_cfg
from fakes import write_cifar10
from gan_landscape.metrics import fid, features as metrics
from test_fid import TinyG, fid_cfg

pytestmark = [pytest.mark.filterwarnings("ignore:FID statistics from"), pytest.mark.usefixtures("private_cache")]
SMALL_METRICS = ["fid.kid.subset_size=4", "fid.kid.subsets=3", "fid.prc.k=2", "fid.dc.k=2",
                 "fid.prd.clusters=3", "fid.prd.runs=2", "fid.prd.angles=11"]


@pytest.fixture
def cifar(tmp_path):
    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", n_per_batch=8)
    return tmp_path / "cifar10"


def test_paper_protocol_is_the_authors_by_default():
    f = make_cfg().fid
    assert (f.name, f.resize, f.is_n_fake, f.is_splits, f.is_logits) == ("paper", "tf1", 50000, 10, "first1000")
    assert list(f.metrics) == ["kid", "prc", "dc", "prd"] and dict(f.prd) == {
        "clusters": 20, "angles": 1001, "runs": 10, "beta": 8, "seed": 0}
    std = make_cfg("fid=standard").fid
    assert (std.resize, list(std.metrics), std.is_n_fake) == ("pytorch", [], None)


def test_one_pass_feeds_every_metric_and_the_reference_caches_features(tmp_path, cifar, weights, reads):
    cfg = fid_cfg(tmp_path, weights, cifar, *SMALL_METRICS)
    calls, real_features = [], fid.features

    def counting(inc, u8, logits=False):
        calls.append(len(u8))
        return real_features(inc, u8, logits)
    mp = pytest.MonkeyPatch()
    mp.setattr(fid, "features", counting)
    try:
        rec = fid.score_generator(TinyG(), cfg)
    finally:
        mp.undo()
    assert sum(calls) == 8 + 6  # every real once, every fake once
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "prd_f8", "prd_f1_8"):
        assert np.isfinite(rec[key]), key
    assert len(rec["prd_curve"]["recall"]) == 11 and rec["prd_n"] == 6
    assert rec["metrics"]["prd"]["clusters"] == 3 and rec["metrics"]["kid"]["subset_size"] == 4
    (npz,) = (tmp_path / "fidcache").glob("*.npz")
    with np.load(npz) as z:
        ref = torch.from_numpy(z["features"])
        assert ref.shape == (8, 64) and z["mu"] == pytest.approx(ref.double().mean(0).numpy(), rel=1e-5)
    # the record's numbers are those of the metrics on the cached reals and the same fakes
    G = TinyG()
    with fid.sampling_mode(G, "train"):
        fakes = torch.cat(list(fid.fake_batches(G, 6, 6, "truncate", 0)))
    feats = fid.features(fid.load_inception(weights, "cpu", 64, "tf1"), fakes)[0]
    assert rec["recall"] == metrics.precision_recall(feats, ref, 2)["recall"]
    assert rec["coverage"] == pytest.approx(metrics.density_coverage(feats, ref, 2)["coverage"])
    fid._REFS.clear()  # a new process: the features come from the disk, not the images
    again = fid.score_generator(TinyG(), cfg)
    assert len(reads) == 1 and again["precision"] == rec["precision"] and again["prd_f8"] == rec["prd_f8"]


def test_a_cache_without_features_is_not_used(tmp_path, cifar, weights, reads):
    cfg = fid_cfg(tmp_path, weights, cifar, "fid.metrics=[]")
    fid.score_generator(TinyG(), cfg)
    (npz,) = (tmp_path / "fidcache").glob("*.npz")
    with np.load(npz) as z:  # as an older version wrote it
        np.savez(npz, mu=z["mu"], sigma=z["sigma"], n=z["n"])
    fid._REFS.clear()
    fid.score_generator(TinyG(), cfg)
    assert len(reads) == 2


def test_inception_score_from_its_own_stream_of_fakes(tmp_path, cifar, weights):
    """is_n_fake=4, n_fake=2: the FID from the first 2 fakes, the IS from the first 4 of the same
    stream (one pass), and the FID equals a run that draws only 2."""
    base = ["fid.dims=2048", "fid.n_fake=2", "fid.n_real=2", "fid.reals=first", "fid.batch_size=2",
            "fid.metrics=[]", "fid.is_splits=1"]
    rec = fid.score_generator(TinyG(), fid_cfg(tmp_path, weights, cifar, *base,
                                               "fid.inception_score=true", "fid.is_n_fake=4"))
    alone = fid.score_generator(TinyG(), fid_cfg(tmp_path, weights, cifar, *base))
    assert rec["fid"] == pytest.approx(alone["fid"], rel=1e-9) and rec["is_n_fake"] == 4
    G = TinyG()
    with fid.sampling_mode(G, "train"):
        fakes = torch.cat(list(fid.fake_batches(G, 4, 2, "truncate", 0)))
    _, logits = fid.features(fid.load_inception(weights, "cpu", 2048, "tf1"), fakes, logits=True)
    four, two = (metrics.inception_score(logits[:n, :1000], 1)[0] - 1 for n in (4, 2))
    assert rec["is_mean"] - 1 == pytest.approx(four, rel=1e-4) and abs(four / two - 1) > 1e-3


def test_random_weights_are_an_option_and_flagged(tmp_path, cifar, caplog):
    cfg = fid_cfg(tmp_path, "random", cifar, "fid.metrics=[]")
    rec = fid.score_generator(TinyG(), cfg)
    assert rec["random_weights"] is True and "NOT a real FID" in rec["warning"]
    assert rec["weights_sha256"] == "random-s0" and "RANDOM WEIGHTS" in fid.summary_line(rec)
    path = tmp_path / "fidcache" / "random-fid-inception-s0.pth"
    assert path.is_file() and fid.weights_file(cfg.fid) == path
    other = fid.protocol(fid_cfg(tmp_path, "random", cifar, "fid.weights_seed=1"))
    assert other["weights_sha256"] == "random-s1" and other["reference_key"] != rec["reference_key"]
    with pytest.raises(fid.FIDError, match="fid.weights=random"):
        fid.check(make_cfg("+fid.random_weights=true").fid)


@pytest.mark.parametrize("override,msg", [
    ("fid.metrics=[fid]", "fid.metrics: fid is not a metric; expected any of kid, prc, dc, prd"),
    ("fid.prd.clusters=0", "fid.prd.clusters=0: expected a positive integer"),
    ("fid.is_n_fake=-1", "fid.is_n_fake=-1: expected a positive integer"),
])
def test_bad_metric_settings_are_one_line(override, msg):
    with pytest.raises(fid.FIDError) as e:
        fid.check(make_cfg(override).fid)
    assert str(e.value) == msg


def test_a_progress_line_inside_one_large_batch(tmp_path, cifar, weights, caplog):
    """One 6-image generator batch goes through Inception 2 images at a time, and a line comes
    after each (log_seconds=0), not only after the whole batch."""
    cfg = fid_cfg(tmp_path, weights, cifar, "fid.metrics=[]", "fid.log_seconds=0", "fid.inception_batch=2")
    with caplog.at_level(logging.INFO, logger="gan_landscape.metrics.fid"):
        fid.score_generator(TinyG(), cfg, desc="fakes")
    lines = [r.message for r in caplog.records if r.message.startswith("fakes: ")]
    assert [ln.split()[1] for ln in lines] == ["2/6", "4/6", "6/6"]


def test_a_record_holds_every_setting_and_is_json(tmp_path, cifar, weights):
    rec = fid.score_generator(TinyG(), fid_cfg(tmp_path, weights, cifar, *SMALL_METRICS))
    back = json.loads(json.dumps(rec))
    assert back["metrics"] == {"kid": {"coef0": 1, "degree": 3, "seed": 2020, "subset_size": 4, "subsets": 3},
                               "prc": {"k": 2}, "dc": {"k": 2},
                               "prd": {"angles": 11, "beta": 8, "clusters": 3, "runs": 2, "seed": 0}}
    assert back["versions"]["sklearn"] and back["versions"]["torch_fidelity"]
