import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from gan_landscape.losses import LOSSES
from gan_landscape.mlp import build_pair
from gan_landscape.pair_kernel import KERNEL_ACTS, KERNEL_LOSSES
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


# ---------------------------------------------------------------- the fused CPU kernel

def _fused_and_reference(overrides, seeds):
    fused = SyntheticGAN(make_cfg(*overrides), seeds)
    if fused.kernel is None:
        pytest.skip("the fused CPU kernel could not be built here (no C++ compiler?)")
    return fused, SyntheticGAN(make_cfg(*overrides, "train.fast=false"), seeds)


def _momentum(gan):
    return [gan.d_opt.state[p]["momentum_buffer"] for p in gan.d_params] + \
           [gan.g_opt.state[p]["momentum_buffer"] for p in gan.g_params]


def test_every_loss_has_a_kernel_derivative():
    assert set(KERNEL_LOSSES) == set(LOSSES)


@pytest.mark.parametrize("overrides", [[f"loss={loss}"] for loss in KERNEL_LOSSES] + [
    ["loss=rsgan", "dataset.num_points=37"],  # an odd number of points
    ["loss=hinge", "width=0.5", "model.g_act=relu", "model.d_act=leaky_relu", "model.d_last_bias=false"]])
def test_fused_iteration_matches_the_autograd_path(overrides):
    # 20 seeds: more than one SIMD block, and a partial one, for 8 and for 16 lanes.
    fused, ref = _fused_and_reference(overrides, list(range(20)))
    # float rounding differs (FMA, summation order), and can flip a relu or hinge near its kink
    for _ in range(4):
        fused.step()
        ref.step()
        for a, b in zip(fused.last, ref.last):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(fused.d_params + fused.g_params + _momentum(fused),
                    ref.d_params + ref.g_params + _momentum(ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_checkpoint_resumes_on_either_path():
    fused, ref = _fused_and_reference(["loss=rsgan"], [0, 1])
    for _ in range(3):
        fused.step()
    # as a checkpoint file would (optimisers load state tensors without copying them)
    ref.load_state_dict(copy.deepcopy(fused.state_dict()))  # the momentum is in torch.optim's state
    again = SyntheticGAN(make_cfg("loss=rsgan"), [0, 1])
    again.load_state_dict(copy.deepcopy(fused.state_dict()))
    for _ in range(2):
        for gan in (fused, ref, again):
            gan.step()
    for a, b, c in zip(fused.G.parameters(), ref.G.parameters(), again.G.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(a, c)


@pytest.mark.parametrize("act", KERNEL_ACTS)
def test_kernel_activations_match_torch(act):
    fused, _ = _fused_and_reference([], [0])
    x = torch.cat([torch.linspace(-12, 12, 20001), torch.logspace(-30, 1.5, 2000), -torch.logspace(-30, 1.5, 2000)])
    want = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
            "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.2)}[act](x)
    # tanh is Cephes' polynomial in the kernel: within 1.4 ulp, torch's within 1
    torch.testing.assert_close(fused.kernel.activation(act, x)[:len(x)], want, rtol=3e-7, atol=0)
