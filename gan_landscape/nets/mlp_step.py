"""Forward and backward passes of a StackedMLP written out, for the minibatch synthetic step.

Autograd spends more on building and walking its graph than the small MLPs of the 2-D mixtures cost
to compute, and it runs G forward twice per iteration (once for D's fake batch, once for G's step).
Here each pass is the same ATen call that autograd's derivative formula makes (baddbmm / bmm and
their transposed products, sum_to_size for a bias, the activation's own *_backward), on the same
tensors, so the gradients are bitwise those of autograd (tests/test_mixtures.py checks torch.equal
after many iterations); only the bookkeeping around them is gone. (The CPU's faster paths are the
fused kernels, nets/pair_kernel.py.)
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


def forward(net, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """net(x) [S, N, out] and what backward needs: per layer (input, pre-activation, output)."""
    act, last, cache = ACT_FORWARD[net.act_name], len(net.weights) - 1, []
    for n, w in enumerate(net.weights):
        a = torch.baddbmm(net.biases[n], x, w) if n < len(net.biases) else torch.bmm(x, w)
        h = act(a) if n < last else a
        cache.append((x, a, h))
        x = h
    return x, cache


def backward(net, cache: list, grad: torch.Tensor, params: bool, inputs: bool):
    """Gradients of sum(grad * net(x)): ([dW..., db...] in net.parameters() order, or None;
    d/dx, or None)."""
    act_bwd, last = ACT_BACKWARD[net.act_name], len(net.weights) - 1
    gw, gb = [None] * len(net.weights), [None] * len(net.biases)
    for n in range(last, -1, -1):
        x, a, h = cache[n]
        if n < last:
            grad = act_bwd(grad, a, h)
        if params:
            gw[n] = torch.bmm(x.transpose(1, 2), grad)
            if n < len(net.biases):
                gb[n] = grad.sum_to_size(net.biases[n].shape)
        if n > 0 or inputs:
            grad = torch.bmm(grad, net.weights[n].transpose(1, 2))
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
        p.grad = g


def minibatch_iteration(gan, x: torch.Tensor, z: torch.Tensor):
    """One iteration of the minibatch schedule (5gaussian.py's: G(z) once, d_steps D steps on it,
    then g_steps G steps on the same x and z); returns (d_loss [S], g_loss [S])."""
    n, loss = x.shape[1], gan.loss
    y, g_cache = forward(gan.G, z)
    fake = y.detach()
    for _ in range(gan.d_steps_now()):
        f, cache = forward(gan.D, torch.cat([x, fake], 1))
        d_loss, gf = logit_grad(lambda f: loss.d(f[:, :n, 0], f[:, n:, 0], average_terms=gan.average_d_terms), f)
        _set_grads(gan.d_params, backward(gan.D, cache, gf, params=True, inputs=False)[0])
        gan.d_opt.step()
        if gan.renorm:
            w = gan.D.weights[-1]
            w.copy_(F.normalize(w, dim=1))
    for k in range(gan.g_steps):
        if k:  # G moved: its next step starts from a new forward pass
            y, g_cache = forward(gan.G, z)
        inp = torch.cat([x, y], 1) if loss.needs_real_for_g else y
        f, cache = forward(gan.D, inp)
        if loss.needs_real_for_g:
            g_loss, gf = logit_grad(lambda f: loss.g(f[:, :n, 0], f[:, n:, 0]), f)
        else:
            g_loss, gf = logit_grad(lambda f: loss.g(None, f[..., 0]), f)
        g_in = backward(gan.D, cache, gf, params=False, inputs=True)[1]
        g_y = g_in[:, n:] if loss.needs_real_for_g else g_in
        _set_grads(gan.g_params, backward(gan.G, g_cache, g_y, params=True, inputs=False)[0])
        gan.g_opt.step()
    return d_loss, g_loss

