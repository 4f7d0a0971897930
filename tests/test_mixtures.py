"""The 2-D mixtures (5-Gaussian, ring of 8, grid of 25), their mode-collapse metrics, the
5-Gaussian initialisation as the authors' script draws it, and the written-out minibatch step."""
import math

import pytest
import torch
import torch.nn as nn

from gan_landscape.metrics import modes
from gan_landscape.nets.mlp import build_pair
from gan_landscape.data.synthetic import SyntheticGAN, mode_centres, outcome
from conftest import make_cfg


# ---- 5gaussian.py's nets, transcribed (AilsaF/RS-GAN, 5gaussian.py: g_dim = d_dim = 128,
# Dlayer_num = 3, input_dim = 2; train() builds d = discriminator(dim=2), then g = generator(input_dim))
class Generator(nn.Module):
    def __init__(self, d, g_dim=128):
        super().__init__()
        self.fc1 = nn.Linear(d, g_dim)
        self.fc2 = nn.Linear(g_dim, g_dim)
        self.fc3 = nn.Linear(g_dim, 2)


class Discriminator(nn.Module):
    def __init__(self, dim, d_dim=128, dlayer_num=3):
        super().__init__()
        layers = [nn.Linear(dim, d_dim), nn.LeakyReLU(0.2)]
        for _ in range(dlayer_num - 2):
            layers += [nn.Linear(d_dim, d_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(d_dim, 1, bias=False))
        self.net = nn.Sequential(*layers)


@pytest.mark.parametrize("seed", [0, 3])
def test_five_gaussian_init_is_what_the_script_draws(seed):
    G, D = build_pair(make_cfg("dataset=five_gaussian"), [7, seed])  # seed s sits at index 1
    torch.manual_seed(seed)
    d, g = Discriminator(2), Generator(2)
    d_lin = [m for m in d.net if isinstance(m, nn.Linear)]
    for k, lin in enumerate(d_lin):
        assert torch.equal(D.weights[k][1], lin.weight.t())
        if lin.bias is not None:
            assert torch.equal(D.biases[k][1, 0], lin.bias)
    for k, lin in enumerate([g.fc1, g.fc2, g.fc3]):
        assert torch.equal(G.weights[k][1], lin.weight.t()) and torch.equal(G.biases[k][1, 0], lin.bias)


@pytest.mark.parametrize("name,k,std,extent", [("ring8", 8, 0.02, 2.0), ("grid25", 25, 0.05, 4.0),
                                               ("five_gaussian", 5, math.sqrt(0.002), 1.0)])
def test_mixtures_are_their_published_geometry(name, k, std, extent):
    cfg = make_cfg(f"dataset={name}")
    centres = mode_centres(cfg.dataset)
    assert centres.shape == (k, 2) and math.isclose(centres.abs().max().item(), extent, rel_tol=1e-6)
    x = SyntheticGAN(cfg, [0]).x[0]
    nearest, good = modes.assign(x[None], centres, cfg.dataset.mode_radius)
    assert torch.bincount(nearest[0], minlength=k).tolist() == [10000 // k] * k
    assert (x - centres[nearest[0]]).std().item() == pytest.approx(std, rel=0.03)
    assert good.float().mean() > 0.98  # 3 std in 2-D holds 98.9% of a Gaussian
    if name == "grid25":
        assert sorted(set(centres[:, 0].tolist())) == [-4, -2, 0, 2, 4]


def test_metrics_tell_off_data_from_few_modes():
    cfg = make_cfg("dataset=ring8")
    centres = mode_centres(cfg.dataset)
    g = torch.Generator().manual_seed(0)
    spread = centres.repeat(250, 1) + 0.02 * torch.randn(2000, 2, generator=g)   # every mode
    one = centres[3] + 0.02 * torch.randn(2000, 2, generator=g)                  # one mode
    two = torch.cat([one[:1500], centres[5] + 0.02 * torch.randn(500, 2, generator=g)])
    away = torch.full((2000, 2), 0.0) + 0.02 * torch.randn(2000, 2, generator=g)  # the ring's centre
    res = outcome(cfg.dataset, torch.stack([spread, one, two, away]))
    m = res["metrics"]
    assert [s["collapse_kind"] for s in m] == ["covered", "few_modes", "few_modes", "off_data"]
    assert res["verdict"] == ["covered", "collapsed", "collapsed", "collapsed"]
    assert [s["modes_captured"] for s in m] == [8, 1, 2, 0]
    assert m[0]["reverse_kl"] < 0.01 and m[1]["reverse_kl"] == pytest.approx(math.log(8), rel=1e-6)
    p = [m[2]["hq_counts"][3] / sum(m[2]["hq_counts"]), m[2]["hq_counts"][5] / sum(m[2]["hq_counts"])]
    assert m[2]["reverse_kl"] == pytest.approx(sum(q * math.log(8 * q) for q in p), rel=1e-6)
    assert m[3]["reverse_kl"] is None and m[3]["high_quality_fraction"] == 0
    assert m[0]["high_quality_fraction"] > 0.97


def test_metrics_are_computed_for_the_two_cluster_data_too():
    cfg = make_cfg("dataset=two_cluster")
    y = torch.tensor([[0.1] * 50 + [4.1] * 50, [0.1] * 100, [2.0] * 100])[..., None]
    m = outcome(cfg.dataset, y)["metrics"]
    assert [s["modes_captured"] for s in m] == [2, 1, 0]
    assert [s["collapse_kind"] for s in m] == ["covered", "few_modes", "off_data"]


@pytest.mark.parametrize("dataset,loss", [("five_gaussian", "jsgan"), ("ring8", "rsgan"), ("grid25", "lsgan"),
                                          ("five_gaussian", "rphinge"), ("ring8", "hinge"),
                                          ("grid25", "rplsgan")])
def test_written_out_step_is_bitwise_autograd(dataset, loss, monkeypatch):
    runs = []
    for manual in (False, True):
        monkeypatch.setattr(SyntheticGAN, "manual_backward", manual)
        gan = SyntheticGAN(make_cfg(f"dataset={dataset}", f"loss={loss}", "width=0.125", "train.cpu_kernel=false"), [0, 1])
        for _ in range(25):
            gan.step()
        runs.append([*gan.G.parameters(), *gan.D.parameters(), *gan.last,
                     *[v for s in gan.d_opt.state.values() for v in s.values()]])
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
