"""The paper's image nets: architecture fidelity (parameter counts, init, the authors' checkpoint),
shapes at every width, one training step, and the errors for bad names and sizes."""
import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_landscape.cli import ConfigError
from gan_landscape.nets import build_discriminator, build_generator, build_nets, resnet
from gan_landscape.nets.upsample import upsample2x

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The authors' released quarter-width RS-GAN CNN G for CIFAR-10, vendored with its MIT notice.
OFFICIAL = Path(__file__).resolve().parent / "data" / "rsgan-official"
OFFICIAL_CNN_QUARTER = OFFICIAL / "RSGAN-CNN-quater-cifar.pth"
OFFICIAL_RESNET_QUARTER = OFFICIAL / "RSGAN-ResNet-quater-cifar.pth"

MODELS = {
    "cnn": dict(name="cnn", base=64, z_dim=128),
    "resnet": dict(name="resnet", base=None, d_ratio=None, bottleneck=False, z_dim=128),
    "cnn256": dict(name="cnn256", base=32, z_dim=128),
}
NET_SIZES = [("cnn", 32), ("cnn", 48), ("resnet", 32), ("resnet", 48), ("cnn256", 256)]
SMALL_LSUN = [("cnn256", 64), ("cnn256", 128)]  # not the paper's, for cheaper runs


def make_cfg(name: str, size: int, width: float = 1.0, **model):
    return OmegaConf.create(dict(model={**MODELS.get(name, dict(name=name)), **model},
                                 width=width, dataset=dict(image_size=size)))


def nets(name: str, size: int, width: float, bottleneck: bool = False, device: str = "cpu"):
    extra = dict(bottleneck=bottleneck) if name == "resnet" else {}
    with torch.device(device):
        return build_nets(make_cfg(name, size, width, **extra))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# papers.md section 1.5: (net, image size, width, bottleneck) -> (G params, D params).
PAPER_COUNTS = [
    ("cnn", 32, 1.0, False, 3_812_355, 2_935_872),
    ("cnn", 32, 0.5, False, 1_218_051, 736_800),
    ("cnn", 32, 0.25, False, 436_995, 185_616),
    ("cnn", 48, 1.0, False, 5_133_315, 2_946_112),
    ("cnn", 48, 0.5, False, 1_878_531, 741_920),
    ("cnn", 48, 0.25, False, 767_235, 188_176),
    ("resnet", 32, 1.0, False, 4_270_595, 1_086_848),
    ("resnet", 32, 0.5, False, 1_201_411, 273_088),
    ("resnet", 32, 0.25, False, 367_235, 68_960),
    ("resnet", 32, 1.0, True, 2_499_971, 568_768),
    ("resnet", 32, 0.5, True, 758_467, 143_072),  # the paper's CIFAR-10 bottleneck row
    ("resnet", 48, 1.0, False, 4_876_547, 10_141_440),
    ("resnet", 48, 0.5, False, 1_814_659, 2_537_344),
    ("resnet", 48, 0.25, False, 751_427, 635_328),
    ("resnet", 48, 1.0, True, 3_714_659, 5_421_472),
    ("cnn256", 256, 1.0, False, 13_276_608, 11_191_808),
]


@pytest.mark.parametrize("name,size,width,bottleneck,g_count,d_count", PAPER_COUNTS)
def test_param_counts_match_paper(name, size, width, bottleneck, g_count, d_count):
    g, d = nets(name, size, width, bottleneck, device="meta")  # the real code, no compute
    assert (n_params(g), n_params(d)) == (g_count, d_count)


@pytest.mark.parametrize("name,size,g_count,d_count", [
    ("cnn", 32, 3_812_355, 2_935_872), ("cnn", 48, 5_133_315, 2_946_112),
    ("resnet", 32, 4_270_595, 1_086_848), ("resnet", 48, 4_876_547, 10_141_440),
    ("cnn256", 256, 13_276_608, 11_191_808)])
def test_model_configs_give_paper_nets(name, size, g_count, d_count):
    model = OmegaConf.load(CONFIGS / "model" / f"{name}.yaml")
    cfg = OmegaConf.create(dict(model=model, width=1.0, dataset=dict(image_size=size)))
    with torch.device("meta"):
        g, d = build_nets(cfg)
    assert (n_params(g), n_params(d)) == (g_count, d_count)


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("name,size", NET_SIZES + SMALL_LSUN)
def test_shapes(name, size, width):
    g, d = nets(name, size, width)
    z = torch.randn(2, g.z_dim)
    with torch.no_grad():
        x = g(z)
        logits = d(x)
    assert g.z_dim == 128
    assert x.shape == (2, 3, size, size)
    assert x.abs().max() <= 1
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_resnet_d_width_and_bottleneck():
    """At 32 px D runs at half G's width (getGD_SN's num_features // 2); d_ratio overrides it."""
    g, d = nets("resnet", 32, 0.5, device="meta")
    assert g.l1.out_features == 128 * 16 and d.proj.in_features == 64
    with torch.device("meta"):
        d_full = build_discriminator(make_cfg("resnet", 32, 0.5, d_ratio=1.0))
    assert d_full.proj.in_features == 128
    g_b, d_b = nets("resnet", 32, 0.5, True, device="meta")
    assert g_b.block2.c1.out_channels == 64  # G: hidden = out // 2
    assert d_b.block2.c1.out_channels == 32  # D: hidden = in // 2


@pytest.mark.parametrize("name,size", NET_SIZES)
def test_every_d_layer_is_spectral_normed_and_no_g_layer(name, size):
    g, d = nets(name, size, 0.25, device="meta")
    d_layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert d_layers and all(hasattr(m, "weight_orig") for m in d_layers)
    assert not any(hasattr(m, "weight_orig") for m in g.modules())


def _assert_orthogonal(w: torch.Tensor):
    w = w.flatten(1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-4)


@pytest.mark.parametrize("name,size", NET_SIZES)
def test_d_init_is_orthogonal(name, size):
    torch.manual_seed(0)
    d = build_discriminator(make_cfg(name, size, 0.25))
    for m in d.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _assert_orthogonal(m.weight_orig.detach())


def _assert_uniform(w: torch.Tensor, bound: float):
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_cnn_g_init_xavier_on_linear_and_conv_only():
    torch.manual_seed(0)
    g = build_generator(make_cfg("cnn", 32, 0.25))
    for layer in (g.l1, g.conv4):
        fan_out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
        rf = layer.weight[0, 0].numel()
        _assert_uniform(layer.weight.detach(), math.sqrt(6 / (fan_in + fan_out * rf)))
    # Transposed convs keep PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with torch's
    # fan_in of a ConvTranspose2d weight [in, out, k, k] = out * k * k.
    w = g.deconv1.weight.detach()
    _assert_uniform(w, 1 / math.sqrt(w[0].numel()))


def test_official_cnn_quarter_generator_loads_and_samples():
    state = torch.load(OFFICIAL_CNN_QUARTER, map_location="cpu", weights_only=True)
    g = build_generator(make_cfg("cnn", 32, 0.25))
    g.load_state_dict(state, strict=True)
    g.train()  # the authors sample with batch statistics
    torch.manual_seed(0)
    with torch.no_grad():
        x = g(torch.randn(64, 128))
    assert x.shape == (64, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert x.flatten(1).std(dim=1).min() > 0.1
    dist = torch.cdist(x.flatten(1), x.flatten(1)) + 1e9 * torch.eye(64)
    assert dist.min() > 1.0
    # Natural images are smooth: neighbouring pixels correlate strongly (about 0.89 here), where a
    # freshly initialised G gives 0.3 at most.
    c = x - x.mean(dim=(2, 3), keepdim=True)
    a, b = c[..., 1:], c[..., :-1]
    corr = (a * b).sum((1, 2, 3)) / (a.pow(2).sum((1, 2, 3)) * b.pow(2).sum((1, 2, 3))).sqrt()
    assert corr.mean() > 0.7


@pytest.mark.parametrize("name,size,bottleneck", [(n, s, False) for n, s in NET_SIZES]
                         + [("resnet", 32, True)])
def test_one_adam_step_changes_weights(name, size, bottleneck):
    torch.manual_seed(0)
    extra = dict(bottleneck=bottleneck) if name == "resnet" else {}
    g, d = build_nets(make_cfg(name, size, 0.25, **extra))
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    before = copy.deepcopy((g.state_dict(), d.state_dict()))
    real = torch.rand(2, 3, size, size) * 2 - 1
    z = torch.randn(2, g.z_dim)

    d_loss = F.softplus(-d(real)).mean() + F.softplus(d(g(z).detach())).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = F.softplus(-d(g(z))).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()

    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    for net, old in zip((g, d), before):
        for key, p in net.named_parameters():
            assert not torch.equal(p.detach(), old[key]), key
    # Spectral norm's power iteration ran in the forward passes.
    u = next(k for k in before[1] if k.endswith("weight_u") and before[1][k].numel() > 1)
    assert not torch.equal(d.state_dict()[u], before[1][u])


@pytest.mark.parametrize("name", ["mlp", "dcgan"])
def test_unknown_model_name(name):
    with pytest.raises(ConfigError, match=f"model={name}: .*choose one of: cnn, resnet, cnn256$"):
        build_generator(make_cfg(name, 32))


@pytest.mark.parametrize("name,size,supported", [("cnn", 64, "32, 48"), ("resnet", 256, "32, 48"),
                                                 ("cnn256", 32, "64, 128, 256")])
def test_unsupported_image_size(name, size, supported):
    with pytest.raises(ConfigError, match=f"supports image sizes {supported} px; got .*={size}$"):
        build_discriminator(make_cfg(name, size))


def _interpolate(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 1, 6), (1, 2, 5, 1), (2, 4, 5, 7),
                                   (3, 8, 8, 8)])
def test_upsample2x_is_bilinear_interpolation(shape, dtype, memory_format):
    """Forward and gradient equal F.interpolate's, borders included (sides of 1, 5, 6, 7 and 8
    pixels), in either memory format, which the output keeps (a 1x1 input is in both)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=dtype, generator=gen).contiguous(memory_format=memory_format)
    x.requires_grad_()
    y, ref = upsample2x(x), _interpolate(x)
    assert y.is_contiguous(memory_format=memory_format) or shape[2:] == (1, 1)  # 1x1: either
    g = torch.randn(y.shape, dtype=dtype, generator=gen)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(y, ref, **tol)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                               torch.autograd.grad(ref, x, g)[0], **tol)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_upsample2x_backward_is_the_adjoint(memory_format):
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64).contiguous(memory_format=memory_format)
    x.requires_grad_()
    assert torch.autograd.gradcheck(upsample2x, x)
    assert torch.autograd.gradgradcheck(upsample2x, x)


@pytest.mark.parametrize("size,bottleneck", [(32, False), (32, True), (48, False)])
def test_resnet_g_with_upsample2x_equals_interpolate(size, bottleneck, monkeypatch):
    torch.manual_seed(0)
    g = build_generator(make_cfg("resnet", size, 0.125, bottleneck=bottleneck))
    z = torch.randn(4, g.z_dim)
    with torch.no_grad():
        x = g(z)
        monkeypatch.setattr(resnet, "_up", _interpolate)
        ref = g(z)
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)


def test_released_resnet_generator_gives_the_same_images_with_upsample2x(monkeypatch):
    """The authors' quarter-width ResNet G (CIFAR-10) loads strictly, and the exact elementwise
    upsample leaves its images as F.interpolate made them (train-mode BN, as they sample)."""
    g = build_generator(make_cfg("resnet", 32, 0.25))
    g.load_state_dict(torch.load(OFFICIAL_RESNET_QUARTER, map_location="cpu", weights_only=True), strict=True)
    z = torch.randn(64, g.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = g.train()(z)
        monkeypatch.setattr(resnet, "_up", _interpolate)
        ref = g(z)
    assert x.std() > 0.3  # real images, not a constant
    torch.testing.assert_close(x, ref, atol=1e-5, rtol=0)
