"""The metrics beside the FID against their references on fixed features: the authors' IS
(inception_score_tf.py) and PRD (prd_score.py, compare_gan's) transcribed here, prdc's density,
coverage, precision and recall transcribed here, torch-fidelity's KID and precision/recall called
directly; and that recall, coverage and PRD's F_8 fall when a generator drops modes."""
import numpy as np
import pytest
import sklearn.cluster
import sklearn.metrics
import torch

from gan_landscape.metrics import features as metrics


def modes(n, d=16, k=8, keep=None, seed=0):
    """n points around k well-separated centres in d dims; `keep` centres only (a collapsed G)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(k, d)) * 6
    which = rng.integers(0, keep or k, size=n)
    return torch.tensor(centres[which] + rng.normal(size=(n, d)), dtype=torch.float32)


# ---------------------------------------------------------------- references, as published

def authors_preds2score(preds, splits=10):
    """RS-GAN's inception_score_tf.py (from tsc2017/Inception-Score)."""
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        kl = np.mean(np.sum(kl, 1))
        scores.append(np.exp(kl))
    return np.mean(scores), np.std(scores)


def prd_compute_prd(eval_dist, ref_dist, num_angles=1001, epsilon=1e-10):
    angles = np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles)
    slopes = np.tan(angles)
    slopes_2d = np.expand_dims(slopes, 1)
    ref_dist_2d = np.expand_dims(ref_dist, 0)
    eval_dist_2d = np.expand_dims(eval_dist, 0)
    precision = np.minimum(ref_dist_2d * slopes_2d, eval_dist_2d).sum(axis=1)
    recall = precision / slopes
    return precision, recall


def prd_cluster_into_bins(eval_data, ref_data, num_clusters):
    cluster_data = np.vstack([eval_data, ref_data])
    kmeans = sklearn.cluster.MiniBatchKMeans(n_clusters=num_clusters, n_init=10)
    labels = kmeans.fit(cluster_data).labels_
    eval_labels = labels[:len(eval_data)]
    ref_labels = labels[len(eval_data):]
    eval_bins = np.histogram(eval_labels, bins=num_clusters, range=[0, num_clusters], density=True)[0]
    ref_bins = np.histogram(ref_labels, bins=num_clusters, range=[0, num_clusters], density=True)[0]
    return eval_bins, ref_bins


def prd_compute_prd_from_embedding(eval_data, ref_data, num_clusters=20, num_angles=1001, num_runs=10):
    eval_data = np.array(eval_data, dtype=np.float64)
    ref_data = np.array(ref_data, dtype=np.float64)
    precisions, recalls = [], []
    for _ in range(num_runs):
        eval_dist, ref_dist = prd_cluster_into_bins(eval_data, ref_data, num_clusters)
        precision, recall = prd_compute_prd(eval_dist, ref_dist, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    return np.mean(precisions, axis=0), np.mean(recalls, axis=0)


def prd_f_beta(precision, recall, beta=1, epsilon=1e-10):
    return (1 + beta ** 2) * (precision * recall) / ((beta ** 2 * precision) + recall + epsilon)


def prd_to_max_f_beta_pair(precision, recall, beta=8):
    return np.max(prd_f_beta(precision, recall, beta)), np.max(prd_f_beta(precision, recall, 1 / beta))


def prdc_compute_prdc(real_features, fake_features, nearest_k):
    """clovaai/generative-evaluation-prdc's compute_prdc."""
    def pairwise(x, y=None):
        return sklearn.metrics.pairwise_distances(x, x if y is None else y, metric="euclidean")

    def kth(unsorted, k):
        indices = np.argpartition(unsorted, k, axis=-1)[..., :k]
        return np.take_along_axis(unsorted, indices, axis=-1).max(axis=-1)
    real_nn = kth(pairwise(real_features), nearest_k + 1)
    fake_nn = kth(pairwise(fake_features), nearest_k + 1)
    d = pairwise(real_features, fake_features)
    return dict(precision=(d < np.expand_dims(real_nn, axis=1)).any(axis=0).mean(),
                recall=(d < np.expand_dims(fake_nn, axis=0)).any(axis=1).mean(),
                density=(1. / float(nearest_k)) * (d < np.expand_dims(real_nn, axis=1)).sum(axis=0).mean(),
                coverage=(d.min(axis=1) < real_nn).mean())


# ---------------------------------------------------------------- equal to the references

def test_inception_score_equals_the_authors_on_uneven_splits():
    logits = torch.randn(103, 1000, generator=torch.Generator().manual_seed(0)) * 3
    preds = torch.softmax(logits.double(), 1).numpy()
    ours = metrics.inception_score(logits, splits=10)
    np.testing.assert_allclose(ours, authors_preds2score(preds, 10), rtol=1e-10)


def test_kid_is_torch_fidelitys_and_the_unbiased_mmd():
    from torch_fidelity.metric_kid import kid_features_to_metric
    fake, real = modes(60, keep=3), modes(50, seed=1)
    ours = metrics.kid(fake, real, subsets=7, subset_size=20, degree=3, coef0=1, seed=5)
    theirs = kid_features_to_metric(fake, real, kid_subsets=7, kid_subset_size=20, rng_seed=5, verbose=False)
    assert (ours["kid_mean"], ours["kid_std"]) == (theirs["kernel_inception_distance_mean"],
                                                  theirs["kernel_inception_distance_std"])
    # one subset of every point: the textbook unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3
    x, y = fake[:40].double().numpy(), real[:40].double().numpy()
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    m = len(x)
    off = lambda kk: (kk.sum() - np.trace(kk)) / (m * (m - 1))  # noqa: E731
    mmd = off(k(x, x)) + off(k(y, y)) - 2 * k(x, y).mean()
    one = metrics.kid(fake[:40], real[:40], subsets=1, subset_size=40, degree=3, coef0=1, seed=0)
    assert one["kid_mean"] == pytest.approx(mmd, rel=1e-4)


def test_precision_recall_equal_torch_fidelity_and_prdc():
    from torch_fidelity.metric_prc import prc_features_to_metric
    fake, real = modes(120, keep=4, seed=2), modes(100, seed=3)
    ours = metrics.precision_recall(fake, real, k=3)
    tf = prc_features_to_metric(fake, real, prc_neighborhood=3, verbose=False)
    assert ours == {"precision": tf["precision"], "recall": tf["recall"]}
    ref = prdc_compute_prdc(real.numpy(), fake.numpy(), 3)  # torch-fidelity averages in float32
    assert ours["precision"] == pytest.approx(ref["precision"], abs=1e-6) and 0 < ours["precision"] < 1
    assert ours["recall"] == pytest.approx(ref["recall"], abs=1e-6) and 0 < ours["recall"] < 1


@pytest.mark.parametrize("k", [5, 2])
def test_density_coverage_equal_prdc(k):
    fake, real = modes(130, keep=5, seed=4), modes(110, seed=5)
    ours = metrics.density_coverage(fake, real, k, chunk=32)  # chunks smaller than the sets
    ref = prdc_compute_prdc(real.numpy(), fake.numpy(), k)
    assert ours["density"] == pytest.approx(ref["density"], abs=1e-12)
    assert ours["coverage"] == pytest.approx(ref["coverage"], abs=1e-12)


def test_prd_equals_the_authors_prd_score_with_the_same_rng():
    """The authors' k-means draws from numpy's global RNG; seeded here, it is our RandomState."""
    fake, real = modes(300, keep=5, seed=6), modes(300, seed=7)
    ours = metrics.prd(fake, real, clusters=20, angles=1001, runs=3, beta=8, seed=11)
    np.random.seed(11)
    precision, recall = prd_compute_prd_from_embedding(fake.numpy(), real.numpy(), num_runs=3)
    f8, f1_8 = prd_to_max_f_beta_pair(precision, recall, beta=8)
    assert (ours["prd_f8"], ours["prd_f1_8"]) == pytest.approx((f8, f1_8), abs=1e-12)
    np.testing.assert_allclose(ours["prd_curve"]["precision"], precision, atol=5e-7)
    np.testing.assert_allclose(ours["prd_curve"]["recall"], recall, atol=5e-7)
    assert len(ours["prd_curve"]["recall"]) == 1001
    again = metrics.prd(fake, real, clusters=20, angles=1001, runs=3, beta=8, seed=11)
    assert again == ours  # seeded: the same numbers every time


# ---------------------------------------------------------------- they see mode collapse

def test_dropping_modes_lowers_recall_coverage_and_prd_f8_not_precision():
    real = modes(400, seed=10)
    full, collapsed = modes(400, seed=11), modes(400, keep=2, seed=12)  # 2 of 8 modes
    asked = {"prc": {"k": 3}, "dc": {"k": 5}, "prd": {"clusters": 20, "angles": 101, "runs": 2, "beta": 8, "seed": 0}}
    good, _ = metrics.compute(asked, full, real)
    bad, _ = metrics.compute(asked, collapsed, real)
    assert bad["recall"] < 0.5 < good["recall"]
    assert bad["coverage"] < 0.5 < good["coverage"]
    assert bad["prd_f8"] < 0.5 < good["prd_f8"]
    assert bad["precision"] > 0.7 and bad["prd_f1_8"] > 0.8  # what it draws is good


def test_metrics_short_of_points_are_left_out_with_a_note():
    asked = {"kid": {"subsets": 2, "subset_size": 1000, "degree": 3, "coef0": 1, "seed": 0},
             "prd": {"clusters": 20, "angles": 11, "runs": 1, "beta": 8, "seed": 0}, "prc": {"k": 3}}
    out, notes = metrics.compute(asked, modes(12), modes(10, seed=1))
    assert set(out) == {"precision", "recall"}
    assert notes == ["kid left out: 10 images, it needs 1000", "prd left out: 10 images, it needs 20"]
