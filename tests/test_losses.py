import math

import pytest
import torch

from gan_landscape import losses
from gan_landscape.cli import ConfigError
from gan_landscape.losses import LOSSES, GANLoss, get_loss, register

R = torch.tensor([0.5, -1.0, 2.0])   # f(x) on reals
F = torch.tensor([-0.5, 1.5, 0.0])   # f(y) on fakes


def sp(t):
    return math.log1p(math.exp(t))


def mean(xs):
    return sum(xs) / len(xs)


CLOSED = {  # name: (D loss, G loss) computed by hand from the definitions
    "jsgan": (mean([sp(-r) for r in R.tolist()]) + mean([sp(f) for f in F.tolist()]),
              mean([sp(-f) for f in F.tolist()])),
    "hinge": (mean([max(0, 1 - r) for r in R.tolist()]) + mean([max(0, 1 + f) for f in F.tolist()]),
              -mean(F.tolist())),
    "lsgan": (mean([(r - 1) ** 2 for r in R.tolist()]) + mean([f ** 2 for f in F.tolist()]),
              mean([(f - 1) ** 2 for f in F.tolist()])),
    "rsgan": (mean([sp(f - r) for r, f in zip(R.tolist(), F.tolist())]),
              mean([sp(r - f) for r, f in zip(R.tolist(), F.tolist())])),
    "rphinge": (mean([max(0, 1 + f - r) for r, f in zip(R.tolist(), F.tolist())]),
                mean([max(0, 1 + r - f) for r, f in zip(R.tolist(), F.tolist())])),
    "rplsgan": (mean([(r - f - 1) ** 2 for r, f in zip(R.tolist(), F.tolist())]),
                mean([(f - r - 1) ** 2 for r, f in zip(R.tolist(), F.tolist())])),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_closed_form(name):
    loss = get_loss(name)
    d, g = CLOSED[name]
    assert loss.d(R, F).item() == pytest.approx(d, rel=1e-6)
    assert loss.g(R, F).item() == pytest.approx(g, rel=1e-6)


def test_js_average_terms_halves_d_only():
    js = get_loss("jsgan")
    assert js.d(R, F, average_terms=True).item() == pytest.approx(CLOSED["jsgan"][0] / 2, rel=1e-6)
    assert get_loss("rsgan").d(R, F, average_terms=True).item() == pytest.approx(CLOSED["rsgan"][0])


@pytest.mark.parametrize("name", [n for n, l in LOSSES.items() if l.family == "pairing"])
def test_pairing_losses_depend_on_difference_only(name):
    loss = get_loss(name)
    shift = torch.tensor([3.0, -7.0, 0.25])  # same shift to paired real and fake
    assert torch.allclose(loss.d(R + shift, F + shift), loss.d(R, F))
    assert torch.allclose(loss.g(R + shift, F + shift), loss.g(R, F))


@pytest.mark.parametrize("name", [n for n, l in LOSSES.items() if l.family == "separable"])
def test_separable_losses_are_not_pairing(name):
    loss = get_loss(name)
    assert not torch.allclose(loss.d(R + 1, F + 1), loss.d(R, F))
    assert loss.g(None, F) == loss.g(R, F)  # G's loss never looks at reals


def test_rsgan_is_stable_for_large_logits():
    r, f = torch.tensor([1000.0]), torch.tensor([-1000.0])
    assert torch.isfinite(get_loss("rsgan").g(r, f)) and get_loss("rsgan").g(r, f).item() == pytest.approx(2000)


def test_losses_keep_leading_seed_axis():
    r, f = torch.randn(5, 7), torch.randn(5, 7)
    for loss in LOSSES.values():
        assert loss.d(r, f).shape == (5,) and loss.g(r, f).shape == (5,)


def test_unknown_loss_is_one_clear_error():
    with pytest.raises(ConfigError, match="^loss=wgan: unknown loss; .* registers jsgan, hinge"):
        get_loss("wgan")


def test_registry_carries_family_twin_and_display_order():
    assert list(LOSSES) == ["jsgan", "hinge", "lsgan", "rsgan", "rphinge", "rplsgan"]
    twins = {n: l.twin for n, l in LOSSES.items() if l.family == "pairing"}
    assert twins == {"rsgan": "jsgan", "rphinge": "hinge", "rplsgan": "lsgan"}
    assert all(l.twin is None for l in LOSSES.values() if l.family == "separable")


def test_register_refuses_a_malformed_loss(monkeypatch):
    monkeypatch.setattr(losses, "LOSSES", dict(LOSSES))
    d, g = LOSSES["rsgan"].d_terms, LOSSES["rsgan"].g_fn
    for bad in (GANLoss("x", "pairing", d, g), GANLoss("x", "pairing", d, g, twin="rsgan"),
                GANLoss("x", "separable", d, g, twin="jsgan"), GANLoss("x", "ratio", d, g)):
        with pytest.raises(ValueError, match="loss x"):
            register(bad)
    register(GANLoss("x", "pairing", d, g, twin="hinge"))
    assert list(losses.LOSSES)[-1] == "x" and "x" not in LOSSES  # appended; the real registry untouched
