import numpy as np
import pytest
import torch
import torch.nn as nn

from gan_landscape.mlp import build_pair
from gan_landscape.synthetic import SyntheticGAN, five_gaussian_data, outcome, two_cluster_data
from conftest import make_cfg


def test_two_cluster_data_matches_the_script():
    ds = make_cfg().dataset
    x, z = two_cluster_data(ds, [0, 5])
    assert x.shape == z.shape == (2, 100, 1)
    left, right = x[:, 0::2, 0], x[:, 1::2, 0]
    assert ((left >= 0) & (left <= 0.3)).all() and ((right >= 4) & (right <= 4.3)).all()
    assert (z.abs() <= 5).all() and z.std() > 2
    # GAN2_2Cluster.py with seed_index = 0: torch.manual_seed(0); z = 10 * (torch.rand(100, 1) - 0.5)
    torch.manual_seed(0)
    assert torch.equal(z[0], 10 * (torch.rand(100, 1) - 0.5))
    np.random.seed(0)
    script_x = [np.random.rand(1) * 0.3 + [0, 4][i % 2] for i in range(100)]
    assert torch.equal(x[0], torch.tensor(np.array(script_x, dtype="float32")))


def test_five_gaussian_data():
    ds = make_cfg("dataset=five_gaussian").dataset
    x = five_gaussian_data(ds, [3])[0]
    assert x.shape == (10000, 2)
    angles = torch.atan2(x[:, 1], x[:, 0]) % (2 * np.pi)
    mode = torch.round(angles / (2 * np.pi / 5)).long() % 5
    assert torch.bincount(mode).tolist() == [2000] * 5
    centre = torch.stack([torch.cos(mode * 2 * np.pi / 5), torch.sin(mode * 2 * np.pi / 5)], 1)
    assert (x - centre).var(0).sub(0.002).abs().max() < 2e-4


def test_nets_follow_the_script_init_and_width():
    cfg = make_cfg()
    G, D = build_pair(cfg, [0, 1])
    torch.manual_seed(0)  # the script: reseed, build D (1-10-10-1), then G (1-5-5-1)
    d0 = nn.Linear(1, 10)
    assert torch.equal(D.weights[0][0], d0.weight.t()) and torch.equal(D.biases[0][0, 0], d0.bias)
    assert [w.shape[1:] for w in G.weights] == [(1, 5), (5, 5), (5, 1)]
    for width, (g_h, d_h) in {0.5: (2, 5), 2.0: (10, 20)}.items():
        G, D = build_pair(make_cfg(f"width={width}"), [0])
        assert G.weights[1].shape[1:] == (g_h, g_h) and D.weights[1].shape[1:] == (d_h, d_h)
    G, D = build_pair(make_cfg("dataset=five_gaussian", "width=0.25"), [0])
    assert [w.shape[1:] for w in D.weights] == [(2, 32), (32, 32), (32, 1)]
    assert len(D.biases) == 2  # no bias on D's last layer, as 5gaussian.py


def _train(overrides, seeds, iters):
    gan = SyntheticGAN(make_cfg(*overrides), seeds)
    for _ in range(iters):
        gan.step()
    return gan


@pytest.mark.parametrize("overrides,iters", [(["loss=jsgan"], 30),
                                             (["dataset=five_gaussian", "loss=rsgan", "width=0.25"], 60)])
def test_stacked_seeds_equal_single_seed_runs(overrides, iters):
    stacked = _train(overrides, [0, 1, 2], iters)
    alone = _train(overrides, [1], iters)
    for p_stack, p_alone in zip(stacked.G.parameters(), alone.G.parameters()):
        torch.testing.assert_close(p_stack[1], p_alone[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(stacked.G.weights[0][0], stacked.G.weights[0][1])


def test_rsgan_renormalises_d_last_layer_on_five_gaussian():
    gan = _train(["dataset=five_gaussian", "loss=rsgan", "width=0.25"], [0, 1], 3)
    norms = gan.D.weights[-1].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    js = _train(["dataset=five_gaussian", "loss=jsgan", "width=0.25"], [0], 3)
    assert not torch.allclose(js.D.weights[-1].norm(dim=1), torch.ones(1, 1))


def test_outcome_counts_modes_and_verdict():
    ds = make_cfg().dataset
    covered = torch.tensor([0.1] * 50 + [4.2] * 50)[None, :, None]
    collapsed = torch.tensor([0.1] * 95 + [4.2] * 5)[None, :, None]
    between = torch.tensor([2.0] * 100)[None, :, None]
    res = outcome(ds, torch.cat([covered, collapsed, between]))
    assert res["mode_counts"] == [[50, 50], [95, 5], [0, 0]]
    assert res["verdict"] == ["covered", "collapsed", "collapsed"]
    assert res["collapse_rate"] == pytest.approx(2 / 3)


def test_optimal_d_runs_more_d_steps():
    gan = SyntheticGAN(make_cfg("train.optimal_d=true", "train.d_converge_steps=50"), [0])
    assert gan.d_steps_now() == 50
    assert SyntheticGAN(make_cfg(), [0]).d_steps_now() == 10


def test_to_sequential_is_the_same_function():
    G, D = build_pair(make_cfg("dataset=five_gaussian", "width=0.25"), [0, 4])
    x = torch.randn(1, 9, 2)
    torch.testing.assert_close(D.to_sequential(1)(x[0]), D(x.expand(2, -1, -1))[1])
    torch.testing.assert_close(G.to_sequential(0)(x[0]), G(x.expand(2, -1, -1))[0])
