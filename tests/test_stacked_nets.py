"""Stacked nets: S seeds as one module equal S single nets, in init, forward, gradients, spectral
norm's u, v, BatchNorm's running statistics, optimizer steps, and per-seed state dicts."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_landscape.nets import build_nets, build_stacked, load_seed_state_dict, seed_state_dict

RELEASED_CNN_QUARTER = (Path(__file__).resolve().parent / "data" / "rsgan-official"
                        / "RSGAN-CNN-quater-cifar.pth")
SEEDS = [3, 0, 7]  # not 0..S-1, so a seed mixed up with its index in the stack shows

# (model, image size, width, bottleneck): every architecture, small enough for a CPU test.
ARCHS = {
    "cnn32": ("cnn", 32, 0.0625, False),
    "cnn48": ("cnn", 48, 0.0625, False),
    "resnet32": ("resnet", 32, 0.0625, False),
    "resnet32-bottleneck": ("resnet", 32, 0.0625, True),
    "resnet48": ("resnet", 48, 0.0625, False),
    "cnn256-64px": ("cnn256", 64, 0.125, False),
}
BASES = {"cnn": 64, "resnet": None, "cnn256": 32}


def make_cfg(arch: str):
    name, size, width, bottleneck = ARCHS[arch]
    model = dict(name=name, base=BASES[name], z_dim=128)
    if name == "resnet":
        model.update(d_ratio=None, bottleneck=bottleneck)
    return OmegaConf.create(dict(model=model, width=width, dataset=dict(image_size=size)))


def singles(cfg, seeds):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build_nets(cfg))
    return out


def stacked_and_singles(arch: str):
    cfg = make_cfg(arch)
    G, D = build_stacked(cfg, SEEDS)
    return cfg, G, D, singles(cfg, SEEDS)


def inputs(cfg, batch: int = 3, seed: int = 123):
    gen = torch.Generator().manual_seed(seed)
    size = cfg.dataset.image_size
    z = torch.randn(len(SEEDS), batch, cfg.model.z_dim, generator=gen)
    real = torch.rand(len(SEEDS), batch, 3, size, size, generator=gen) * 2 - 1
    return z, real


def stacked_loss(G, D, z, real):
    """The seeds' JS-GAN losses summed: each seed's gradient is its own loss's."""
    fake = G(z)
    per_seed = F.softplus(-D(real)).mean(1) + F.softplus(D(fake)).mean(1)
    return per_seed.sum(), fake


def single_loss(g, d, z, real):
    fake = g(z)
    return F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean(), fake


def assert_seed_equals(stack, single, i, atol=1e-5, grads=True):
    """Every parameter, grad and buffer of seed i of the stack against the single net's."""
    state = seed_state_dict(stack, i)
    assert list(state) == list(single.state_dict())
    for key, t in single.state_dict().items():
        torch.testing.assert_close(state[key], t, atol=atol, rtol=1e-4,
                                   msg=lambda m: f"{key}: {m}")
    if grads:
        for key, p in stack.net.named_parameters():
            grad = p.grad.unflatten(0, (stack.num_seeds, -1))[i]  # seeds: leading blocks
            torch.testing.assert_close(grad, single.get_parameter(key).grad, atol=atol,
                                       rtol=1e-4, msg=lambda m: f"grad of {key}: {m}")


def assert_equal_state(a: dict, b: dict):
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", ARCHS)
def test_init_is_each_seeds_single_net_and_rng_untouched(arch):
    cfg = make_cfg(arch)
    torch.manual_seed(99)
    before = torch.get_rng_state()
    G, D = build_stacked(cfg, SEEDS)
    assert torch.equal(torch.get_rng_state(), before)
    assert G.num_seeds == D.num_seeds == 3 and G.z_dim == 128
    for i, (g, d) in enumerate(singles(cfg, SEEDS)):
        for stack, single in ((G, g), (D, d)):
            state = seed_state_dict(stack, i)
            assert_equal_state(state, single.state_dict())
            single.load_state_dict(state, strict=True)
            # Same parameter order: per-seed optimizer state is a slice of the stack's.
            assert [k for k, _ in stack.net.named_parameters()] == \
                [k for k, _ in single.named_parameters()]


@pytest.mark.parametrize("arch", ARCHS)
def test_train_steps_equal_single_nets(arch):
    """Two SGD steps on both nets: outputs, every gradient, and then parameters, spectral-norm
    u, v (two power iterations a step: D sees reals and fakes) and BN running statistics.
    (SGD, as Adam's first steps, lr * g / |g|, blow rounding in near-zero gradients up to lr.)"""
    cfg, G, D, nets = stacked_and_singles(arch)
    opt = torch.optim.SGD([*G.parameters(), *D.parameters()], 0.01)
    opts = [torch.optim.SGD([*g.parameters(), *d.parameters()], 0.01) for g, d in nets]
    for step in range(2):
        z, real = inputs(cfg, seed=step)
        opt.zero_grad()
        loss, fake = stacked_loss(G, D, z, real)
        loss.backward()
        assert fake.shape == (3, 3, 3, cfg.dataset.image_size, cfg.dataset.image_size)
        for i, ((g, d), o) in enumerate(zip(nets, opts)):
            o.zero_grad()
            loss_i, fake_i = single_loss(g, d, z[i], real[i])
            loss_i.backward()
            torch.testing.assert_close(fake[i], fake_i, atol=1e-5, rtol=1e-4)
            assert_seed_equals(G, g, i)
            assert_seed_equals(D, d, i)
            o.step()
        opt.step()
    for i, (g, d) in enumerate(nets):
        assert_seed_equals(G, g, i, grads=False)
        assert_seed_equals(D, d, i, grads=False)


@pytest.mark.parametrize("arch", ["cnn32", "resnet32-bottleneck", "resnet48", "cnn256-64px"])
def test_eval_mode_equals_single_nets_and_keeps_buffers(arch):
    cfg, G, D, nets = stacked_and_singles(arch)
    z, real = inputs(cfg)
    stacked_loss(G, D, z, real)  # one train-mode pass: running stats and u, v move off init
    for i, (g, d) in enumerate(nets):
        single_loss(g, d, z[i], real[i])
    for net in (G, D, *[m for pair in nets for m in pair]):
        net.eval()
        net.zero_grad()
    buffers = {k: t.clone() for k, t in [*G.named_buffers(), *D.named_buffers()]}
    loss, fake = stacked_loss(G, D, z, real)
    loss.backward()
    for k, t in [*G.named_buffers(), *D.named_buffers()]:
        assert torch.equal(t, buffers[k]), f"{k} changed in eval mode"
    for i, (g, d) in enumerate(nets):
        loss_i, fake_i = single_loss(g, d, z[i], real[i])
        loss_i.backward()
        torch.testing.assert_close(fake[i], fake_i, atol=1e-5, rtol=1e-4)
        assert_seed_equals(G, g, i)
        assert_seed_equals(D, d, i)


def test_spectral_norm_divides_by_sigma_from_the_updated_vectors():
    """Against the definition, not only against torch: after one train call, layer weight =
    W / (u^T W v) with the u, v that call left in the buffers, per seed."""
    cfg = make_cfg("cnn32")
    _, D = build_stacked(cfg, SEEDS)
    layer = D.net.conv3
    u0 = layer.weight_u.view(3, -1).clone()
    D(torch.randn(3, 2, 3, 32, 32))
    w = layer.weight_orig.detach()
    mat = w.reshape(3, w.shape[0] // 3, -1)
    u, v = layer.weight_u.view(3, -1), layer.weight_v.view(3, -1)
    assert not torch.equal(u, u0)
    sigma = torch.einsum("so,soi,si->s", u, mat, v)
    expected = (w.unflatten(0, (3, -1)) / sigma.view(3, 1, 1, 1, 1)).flatten(0, 1)
    torch.testing.assert_close(layer.stacked_weight(), expected)
    with torch.no_grad():
        for i in range(3):  # one power iteration from u0, per seed
            v_i = F.normalize(mat[i].T @ u0[i], dim=0, eps=1e-12)
            torch.testing.assert_close(v[i], v_i)


def test_seed_state_dict_round_trip_touches_one_seed():
    cfg = make_cfg("resnet32-bottleneck")
    G, D = build_stacked(cfg, SEEDS)
    torch.manual_seed(42)
    g, d = build_nets(cfg)
    d(torch.randn(2, 3, 32, 32))  # u, v off their init
    for stack, single in ((G, g), (D, d)):
        others = [seed_state_dict(stack, i) for i in (0, 2)]
        load_seed_state_dict(stack, 1, single.state_dict())
        assert_equal_state(seed_state_dict(stack, 1), single.state_dict())
        for i, old in zip((0, 2), others):
            assert_equal_state(seed_state_dict(stack, i), old)


def test_seed_state_dict_is_a_copy_of_one_seed():
    G, _ = build_stacked(make_cfg("cnn32"), SEEDS)
    state = seed_state_dict(G, 0)
    w = state["l1.weight"]
    assert w.untyped_storage().nbytes() == w.numel() * w.element_size()  # saves one seed only
    w.zero_()
    assert G.net.l1.weight[0].abs().sum() > 0


def test_load_seed_state_dict_rejects_a_mismatch_and_changes_nothing():
    cfg = make_cfg("cnn32")
    G, _ = build_stacked(cfg, SEEDS)
    before = {k: t.clone() for k, t in G.state_dict().items()}
    good = seed_state_dict(G, 0)
    for bad, message in [({k: v for k, v in good.items() if k != "conv4.bias"}, "missing key"),
                         ({**good, "extra": torch.zeros(1)}, "unexpected key"),
                         ({**good, "l1.weight": torch.zeros(3, 3)}, "size mismatch")]:
        bad = {k: v + 1 for k, v in bad.items()}
        with pytest.raises(RuntimeError, match=message):
            load_seed_state_dict(G, 1, bad)
    assert_equal_state(G.state_dict(), before)


def test_released_generator_in_a_stack_gives_the_single_nets_images():
    """The authors' quarter-width RS-GAN CNN G loaded into seed 1 of a stack: the same images as
    the single net (train-mode BN, as the authors sample), and it reads back unchanged."""
    released = torch.load(RELEASED_CNN_QUARTER, map_location="cpu", weights_only=True)
    cfg = OmegaConf.create(dict(model=dict(name="cnn", base=64, z_dim=128), width=0.25,
                                dataset=dict(image_size=32)))
    G, _ = build_stacked(cfg, [0, 1, 2])
    load_seed_state_dict(G, 1, released)
    assert_equal_state(seed_state_dict(G, 1), released)
    g, _ = build_nets(cfg)
    g.load_state_dict(released, strict=True)
    z = torch.randn(3, 16, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, x_single = G(z), g(z[1])
    torch.testing.assert_close(x[1], x_single, atol=1e-5, rtol=1e-4)
    assert x_single.flatten(1).std(dim=1).min() > 0.1  # real images, not a blank net's output


def test_deepcopy_and_capturable_adam():
    G, D = build_stacked(make_cfg("resnet32"), SEEDS)
    z = torch.randn(3, 2, 128)
    D(G(z)).sum().backward()  # after a step, as when an EMA copy is made on resume
    ema = copy.deepcopy(G)
    torch.testing.assert_close(ema(z), G(z))
    copy.deepcopy(D)
    with torch.no_grad():
        ema.net.l1.weight.zero_()
    assert G.net.l1.weight.abs().sum() > 0
    # capturable Adam steps only on CUDA; on the CPU, check that it takes the parameters.
    for net in (G, D):
        opt = torch.optim.Adam(net.parameters(), 2e-4, betas=(0.5, 0.999), foreach=True,
                               capturable=True)
        assert len(opt.param_groups[0]["params"]) == len(list(net.parameters()))


@pytest.mark.parametrize("arch", ["cnn32", "resnet32-bottleneck"])
def test_channels_last_gives_the_same_step(arch):
    """`.to(memory_format=torch.channels_last)` (conv weights are 4-D) changes layout, not math;
    seed_state_dict gives standard contiguous tensors either way."""
    cfg = make_cfg(arch)
    nets = [build_stacked(cfg, SEEDS) for _ in range(2)]
    G_cl, D_cl = (m.to(memory_format=torch.channels_last) for m in nets[1])
    assert G_cl.net.get_submodule("block2.c1" if "resnet" in arch else "deconv1").weight \
        .is_contiguous(memory_format=torch.channels_last)
    z, real = inputs(cfg)
    for G, D in nets:
        loss, fake = stacked_loss(G, D, z, real)
        loss.backward()
    for stack, stack_cl in zip(*nets):
        for i in range(3):
            plain, cl = seed_state_dict(stack, i), seed_state_dict(stack_cl, i)
            assert all(t.is_contiguous() for t in cl.values())
            for k in plain:
                torch.testing.assert_close(cl[k], plain[k], atol=1e-5, rtol=1e-4)
        for (k, p), p_cl in zip(stack.named_parameters(), stack_cl.parameters()):
            torch.testing.assert_close(p_cl.grad, p.grad, atol=1e-5, rtol=1e-4, msg=k)
    load_seed_state_dict(nets[1][0], 2, seed_state_dict(nets[0][0], 0))
    assert_equal_state(seed_state_dict(nets[1][0], 2), seed_state_dict(nets[0][0], 0))


@pytest.mark.parametrize("arch", ["cnn32", "resnet32-bottleneck", "cnn256-64px"])
def test_forward_and_backward_need_no_tensor_values(arch):
    """On the meta device nothing has a value, so .item(), .tolist() or data-dependent Python
    control flow would raise: a proxy (without a GPU) for a step a CUDA graph can capture."""
    cfg = make_cfg(arch)
    G, D = (m.to("meta") for m in build_stacked(cfg, SEEDS))
    z, real = (t.to("meta") for t in inputs(cfg))
    loss, _ = stacked_loss(G, D, z, real)
    loss.backward()
    assert all(p.grad is not None for p in [*G.parameters(), *D.parameters()])


def test_wrong_number_of_seeds_is_refused():
    G, D = build_stacked(make_cfg("cnn32"), SEEDS)
    with pytest.raises(ValueError, match="3 seeds first"):
        G(torch.randn(2, 4, 128))
    with pytest.raises(ValueError, match="3 seeds first"):
        D(torch.randn(4, 3, 32, 32))
