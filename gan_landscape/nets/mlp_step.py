"""Forward and backward passes of a StackedMLP written out, for the minibatch synthetic step.

Autograd spends more on building and walking its graph than the small MLPs of the 2-D mixtures cost
to compute, and it runs G forward twice per iteration (once for D's fake batch, once for G's step).
Here each pass is the same ATen call that autograd's derivative formula makes (baddbmm / bmm and
their transposed products, sum_to_size for a bias, the activation's own *_backward), on the same
tensors, so the gradients are bitwise those of autograd (tests/test_mixtures.py checks torch.equal
after many iterations); only the bookkeeping around them is gone.

With fast=True (data/synthetic.py's "fast" path, its own run) the skinny products (D's one-logit
layer, G's 2-D output) take the form MKL runs 4-10x faster than bmm, and a pairing loss's G step
back-propagates through D's fakes only; the rounding then differs from autograd's.
"""
import torch
import torch.nn.functional as F

aten = torch.ops.aten

# d(act)/dx from what autograd saves for it: the input (leaky ReLU) or the output (the others).
ACT_BACKWARD = {
    "relu": lambda g, a, h: aten.threshold_backward(g, h, 0),
    "leaky_relu": lambda g, a, h: aten.leaky_relu_backward(g, a, 0.2, False),
    "tanh": lambda g, a, h: aten.tanh_backward(g, h),
    "sigmoid": lambda g, a, h: aten.sigmoid_backward(g, h),
}
ACT_FORWARD = {
    "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
}
# In place, for the fast path: one [S, N, h] tensor fewer to allocate and stream per layer. The
# backward above still holds, given the output for the input: leaky ReLU's slope is positive, so
# the output is positive exactly where the input is.
ACT_INPLACE = {
    "relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_,
    "leaky_relu": lambda x: F.leaky_relu_(x, 0.2),
}


def _skinny(b: torch.Tensor) -> bool:
    return b.shape[-1] <= 2 or b.shape[-2] == 1


def skinny_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, [S, n, k] x [S, k, m], for m <= 2 or k == 1: bmm on such shapes runs at ~2 GFLOP/s
    here (h=128: 520 us for D's logits of 256 points), its transpose or a broadcast product in
    70 us or less."""
    return a * b if b.shape[-2] == 1 else torch.bmm(b.mT, a.mT).mT


def _mm(a, b, fast: bool) -> torch.Tensor:
    return skinny_bmm(a, b) if fast and _skinny(b) else torch.bmm(a, b)


def forward(net, x: torch.Tensor, fast: bool = False) -> tuple[torch.Tensor, list]:
    """net(x) [S, N, out] and what backward needs: per layer (input, pre-activation, output)."""
    act, last, cache = (ACT_INPLACE if fast else ACT_FORWARD)[net.act_name], len(net.weights) - 1, []
    for n, w in enumerate(net.weights):
        if fast and _skinny(w):
            a = skinny_bmm(x, w) + net.biases[n] if n < len(net.biases) else skinny_bmm(x, w)
        else:
            a = torch.baddbmm(net.biases[n], x, w) if n < len(net.biases) else torch.bmm(x, w)
        h = act(a) if n < last else a
        cache.append((x, a, h))
        x = h
    return x, cache


def backward(net, cache: list, grad: torch.Tensor, params: bool, inputs: bool, fast: bool = False):
    """Gradients of sum(grad * net(x)): ([dW..., db...] in net.parameters() order, or None;
    d/dx, or None)."""
    act_bwd, last = ACT_BACKWARD[net.act_name], len(net.weights) - 1
    gw, gb = [None] * len(net.weights), [None] * len(net.biases)
    for n in range(last, -1, -1):
        x, a, h = cache[n]
        if n < last:
            grad = act_bwd(grad, a, h)
        if params:
            gw[n] = _mm(x.transpose(1, 2), grad, fast)
            if n < len(net.biases):
                gb[n] = grad.sum_to_size(net.biases[n].shape)
        if n > 0 or inputs:
            grad = _mm(grad, net.weights[n].transpose(1, 2), fast)
    return (gw + gb if params else None), (grad if inputs else None)


def logit_grad(loss_fn, f: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [S], d sum(loss) / d f) for a loss of the logits: autograd on the logits alone."""
    f = f.detach().requires_grad_()
    with torch.enable_grad():
        loss = loss_fn(f, *args)
        (g,) = torch.autograd.grad(loss.sum(), f)
    return loss.detach(), g


def _set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = g.contiguous()  # a skinny product's is a transposed view; fused Adam reads grads as laid out like p


def minibatch_iteration(gan, x: torch.Tensor, z: torch.Tensor, fast: bool = False):
    """One iteration of the minibatch schedule (5gaussian.py's: G(z) once, d_steps D steps on it,
    then g_steps G steps on the same x and z); returns (d_loss [S], g_loss [S])."""
    n, loss = x.shape[1], gan.loss
    y, g_cache = forward(gan.G, z, fast)
    fake = y.detach()
    for _ in range(gan.d_steps_now()):
        f, cache = forward(gan.D, torch.cat([x, fake], 1), fast)
        d_loss, gf = logit_grad(lambda f: loss.d(f[:, :n, 0], f[:, n:, 0], average_terms=gan.average_d_terms), f)
        _set_grads(gan.d_params, backward(gan.D, cache, gf, params=True, inputs=False, fast=fast)[0])
        gan.d_opt.step()
        if gan.renorm:
            w = gan.D.weights[-1]
            w.copy_(F.normalize(w, dim=1))
    for k in range(gan.g_steps):
        if k:  # G moved: its next step starts from a new forward pass
            y, g_cache = forward(gan.G, z, fast)
        inp = torch.cat([x, y], 1) if loss.needs_real_for_g else y
        f, cache = forward(gan.D, inp, fast)
        if loss.needs_real_for_g:
            g_loss, gf = logit_grad(lambda f: loss.g(f[:, :n, 0], f[:, n:, 0]), f)
            if fast:  # G's gradient flows through the fakes alone
                cache, gf = [tuple(t[:, n:] for t in layer) for layer in cache], gf[:, n:]
        else:
            g_loss, gf = logit_grad(lambda f: loss.g(None, f[..., 0]), f)
        g_in = backward(gan.D, cache, gf, params=False, inputs=True, fast=fast)[1]
        g_y = g_in[:, n:] if loss.needs_real_for_g and not fast else g_in
        _set_grads(gan.g_params, backward(gan.G, g_cache, g_y, params=True, inputs=False, fast=fast)[0])
        gan.g_opt.step()
    return d_loss, g_loss

