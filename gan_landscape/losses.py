"""The loss zoo: separable GANs and relativistic pairing GANs, one registry found by name.

Every loss takes the discriminator's raw outputs on real samples f(x) and fake samples f(y) and
returns what each player *minimises*, averaged over the last dimension. Leading dimensions are kept,
so a stack of independent seeds of shape [S, N] gives one loss per seed of shape [S].

Separable:   L_D = E phi1(f(x)) + E phi2(f(y)),   L_G depends on f(y) only.
Pairing:     L_D = E phi(f(x) - f(y)),            L_G = E phi(f(y) - f(x)),  the i-th real paired
             with the i-th fake, as in the authors' rsgan.py.

A new loss is its `register(GANLoss(...))` below plus configs/loss/<name>.yaml (`name: <name>`).
Everything else (training, the landscape, gl-report's families and order) reads `LOSSES`; the
fused CPU kernel implements the losses in pair_kernel.KERNEL_LOSSES, and any other loss takes the
autograd path.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from gan_landscape.cli import lookup

Tensor = torch.Tensor
FAMILIES = ("separable", "pairing")


@dataclass(frozen=True)
class GANLoss:
    name: str
    family: str  # "separable" or "pairing"
    d_terms: Callable[[Tensor, Tensor], tuple[Tensor, ...]]
    g_fn: Callable[[Tensor, Tensor], Tensor]
    twin: str | None = None  # a pairing loss's separable counterpart (the report's comparison)

    def d(self, f_real: Tensor, f_fake: Tensor, average_terms: bool = False) -> Tensor:
        """Discriminator loss. `average_terms` halves a separable loss's two terms: the authors'
        two-cluster script does that for JS-GAN, which changes SGD's effective step size."""
        terms = [t.mean(-1) for t in self.d_terms(f_real, f_fake)]
        total = sum(terms)
        return total / len(terms) if average_terms else total

    def g(self, f_real: Tensor, f_fake: Tensor) -> Tensor:
        return self.g_fn(f_real, f_fake).mean(-1)

    @property
    def needs_real_for_g(self) -> bool:
        return self.family == "pairing"


LOSSES: dict[str, GANLoss] = {}  # registry order is the order of tables and figures


def register(loss: GANLoss) -> GANLoss:
    if loss.family not in FAMILIES:
        raise ValueError(f"loss {loss.name}: family must be one of {FAMILIES}, not {loss.family!r}")
    if loss.family == "pairing":
        twin_ok = loss.twin in LOSSES and LOSSES[loss.twin].family == "separable"
    else:
        twin_ok = loss.twin is None
    if not twin_ok:
        raise ValueError(f"loss {loss.name}: a pairing loss names a registered separable twin, "
                         f"a separable loss none (twin={loss.twin!r})")
    LOSSES[loss.name] = loss
    return loss


# Original minimax D loss with the non-saturating G loss (vanillaGAN.py, GAN2_2Cluster.py).
register(GANLoss("jsgan", "separable",
                 lambda r, f: (F.softplus(-r), F.softplus(f)),
                 lambda r, f: F.softplus(-f)))
register(GANLoss("hinge", "separable",
                 lambda r, f: (F.relu(1 - r), F.relu(1 + f)),
                 lambda r, f: -f))
# Mao et al. with targets a=0, b=c=1, the form in Jolicoeur-Martineau's reference code.
register(GANLoss("lsgan", "separable",
                 lambda r, f: ((r - 1) ** 2, f ** 2),
                 lambda r, f: (f - 1) ** 2))
# softplus is the numerically stable BCE-with-logits the authors spell out by hand.
register(GANLoss("rsgan", "pairing",
                 lambda r, f: (F.softplus(f - r),),
                 lambda r, f: F.softplus(r - f), twin="jsgan"))
register(GANLoss("rphinge", "pairing",
                 lambda r, f: (F.relu(1 + f - r),),
                 lambda r, f: F.relu(1 + r - f), twin="hinge"))
# Pairing form of LS (phi(t) = (t - 1)^2); the reference code only has the averaged RaLSGAN.
register(GANLoss("rplsgan", "pairing",
                 lambda r, f: ((r - f - 1) ** 2,),
                 lambda r, f: (f - r - 1) ** 2, twin="lsgan"))


def get_loss(name: str) -> GANLoss:
    return lookup(LOSSES, "loss", name, "unknown loss", "gan_landscape/losses.py")
