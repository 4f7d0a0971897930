import copy
import ctypes
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from gan_landscape import losses
from gan_landscape.data import synthetic
from gan_landscape.cli import ConfigError
from gan_landscape.kinds import validate
from gan_landscape.losses import LOSSES, GANLoss, register
from gan_landscape.nets.mlp import build_pair
from gan_landscape.nets.pair_kernel import KERNEL_ACTS, KERNEL_LOSSES, CSRC, KernelOptim, _KernelArgs, _pointers
from gan_landscape.data.synthetic import SYNTHETIC, SyntheticData, SyntheticGAN, five_gaussian_data, mode_centres, num_modes, outcome, two_cluster_data
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
    return fused, SyntheticGAN(make_cfg(*overrides, "train.cpu_kernel=false"), seeds)


def _momentum(gan):
    return [gan.d_opt.state[p]["momentum_buffer"] for p in gan.d_params] + \
           [gan.g_opt.state[p]["momentum_buffer"] for p in gan.g_params]


def test_kernel_table_is_the_cpp_enum_and_covers_the_paper_losses():
    enum = re.search(r"enum \{ (JSGAN[^}]*), N_LOSSES \}", (CSRC / "kernel.h").read_text()).group(1)
    assert [n.lower() for n in enum.split(", ")] == list(KERNEL_LOSSES)
    assert set(KERNEL_LOSSES) <= set(LOSSES) and len(KERNEL_LOSSES) == 6


def test_kernel_refuses_a_loss_it_does_not_implement():
    fused, _ = _fused_and_reference([], [0])
    params = [p.detach().clone() for p in fused.g_params + fused.d_params]
    g, d = KernelOptim.of(fused.g_opt), KernelOptim.of(fused.d_opt)
    with pytest.raises(ConfigError, match="^loss=wgan: the fused CPU kernel implements jsgan.*cpu_kernel=false"):
        fused.kernel.iteration(fused.x, fused.z, g, d, d_steps=1, g_steps=1, loss="wgan", pairing=False,
                               d_scale=1.0, g_scale=1.0)
    # the C++ alone: an unknown loss number is refused before anything is touched
    args = _KernelArgs(1, 100, _pointers([fused.x])[0], _pointers([fused.z])[0], *g.pointers, *d.pointers,
                       1, 1, len(KERNEL_LOSSES), 0, 0, d.args, g.args, 0.01, 0.01,
                       torch.zeros(4, 1, 100).data_ptr())
    assert fused.kernel.lib.iteration(ctypes.byref(args), 1) == -1
    assert all(torch.equal(a, b) for a, b in zip(params, fused.g_params + fused.d_params))


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
    torch.testing.assert_close(kernel_activation(fused.kernel, act, x)[:len(x)], want, rtol=3e-7, atol=0)


def kernel_activation(kernel, name: str, t: torch.Tensor) -> torch.Tensor:
    """The kernel's activation alone, through its exported `activation` (n a multiple of its lanes)."""
    t = torch.nn.functional.pad(t.float().flatten(), (0, -t.numel() % kernel.lanes)).contiguous()
    out = torch.empty_like(t)
    kernel.lib.activation.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    kernel.lib.activation(KERNEL_ACTS.index(name), t.data_ptr(), out.data_ptr(), t.numel())
    return out


# ---------------------------------------------------------------- the registries

def test_an_unknown_synthetic_dataset_is_one_line_not_five_gaussian():
    cfg = make_cfg("dataset=five_gaussian", "dataset.name=three_moons")
    line = "dataset=three_moons: no synthetic dataset of that name; gan_landscape/data/synthetic.py registers"
    for use in (lambda: SyntheticGAN(cfg, [0]), lambda: mode_centres(cfg.dataset), lambda: validate(cfg)):
        with pytest.raises(ConfigError, match=f"^{line} two_cluster, five_gaussian, ring8, grid25$"):
            use()
    assert num_modes(make_cfg().dataset) == 2 and num_modes(make_cfg("dataset=five_gaussian").dataset) == 5


def _config_dir(tmp_path, files: dict) -> str:
    """A config dir searched beside the project's, holding the YAML of a new loss or dataset."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return f"hydra.searchpath=[file://{tmp_path}]"


def test_a_new_loss_is_its_formula_and_its_yaml(tmp_path, monkeypatch):
    """JS-GAN again under another name: registered in losses.py's registry, its YAML in a config
    dir. Nothing else is touched, it validates, and it trains on the autograd path to the same
    weights as JS-GAN (so the registry's formula is what trains)."""
    monkeypatch.setattr(losses, "LOSSES", dict(LOSSES))
    js = LOSSES["jsgan"]
    register(GANLoss("js_again", "separable", js.d_terms, js.g_fn))
    cfg = make_cfg(_config_dir(tmp_path, {"loss/js_again.yaml": "name: js_again\n"}), "loss=js_again")
    validate(cfg)
    new, ref = SyntheticGAN(cfg, [0, 1]), SyntheticGAN(make_cfg("train.cpu_kernel=false"), [0, 1])
    assert new.kernel is None  # not in KERNEL_LOSSES: the autograd path, without being asked
    for _ in range(3):
        new.step()
        ref.step()
    assert all(torch.equal(a, b) for a, b in zip(new.G.parameters(), ref.G.parameters()))


RING = """name: ring
kind: synthetic
num_points: 60
num_modes: 3
mode_radius: 0.3
cover_frac: 0.2
average_d_terms: false
eval_samples: 90
plot_range: [-1.5, 1.5]
mlp: {g_hidden: [8], g_act: relu, d_hidden: [8], d_act: leaky_relu, d_last_bias: true, z_dim: 2, x_dim: 2}
init_order: [g, d]
"""


def test_a_new_synthetic_dataset_is_one_entry_and_its_yamls(tmp_path, monkeypatch):
    """Three points on a circle: a SYNTHETIC entry plus configs/dataset/ring.yaml and the
    recipe (optimiser and train settings) that says MLPs fit it. It validates, trains in minibatches and is judged."""
    def ring(ds, seeds):
        angles = 2 * np.pi * torch.arange(ds.num_modes) / ds.num_modes
        centres = torch.stack([angles.cos(), angles.sin()], 1)
        return centres.repeat(ds.num_points // ds.num_modes, 1).expand(len(seeds), -1, -1).contiguous(), None
    monkeypatch.setitem(SYNTHETIC, "ring", SyntheticData(
        data=ring, centres=lambda ds: ring(ds, [0])[0][0, :ds.num_modes], full_batch=False))
    cfg = make_cfg(_config_dir(tmp_path, {
        "dataset/ring.yaml": RING,
        "recipe/mlp_ring.yaml": "# @package _global_\noptim: {name: adam, g_lr: 1.0e-3, d_lr: 1.0e-3, "
                               "betas: [0.5, 0.9], momentum: null}\ntrain: {batch_size: 30}\n"}),
        "dataset=ring", "loss=rsgan")
    validate(cfg)
    gan = SyntheticGAN(cfg, [0, 1])
    assert gan.path == "kernel" and gan.z is None and gan.samples().shape == (2, 90, 2)
    for _ in range(3):
        gan.step()
    assert gan.step_count == 3 and num_modes(cfg.dataset) == 3
    real = outcome(cfg.dataset, gan.x)  # the data themselves cover every mode
    assert real["modes_covered"] == [3, 3] and real["collapse_rate"] == 0


def test_every_kernel_source_ships_in_the_package():
    """A wheel without kernel.h would build no kernel and fall back, silently, to the slow path."""
    import fnmatch
    import tomllib
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["gan_landscape"]
    sources = [f"nets/csrc/{p.name}" for p in CSRC.iterdir()]
    assert {"nets/csrc/kernel.h", "nets/csrc/gemm_kernel.cpp", "nets/csrc/pair_kernel.cpp"} <= set(sources)
    assert all(any(fnmatch.fnmatch(s, g) for g in globs) for s in sources)
