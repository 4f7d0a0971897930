"""Capture a whole training iteration in a CUDA graph and replay it.

Narrow GANs on a modern GPU are bound by kernel launches: an eager iteration is hundreds of ~10 us
launches from Python, a replayed graph costs ~1 us per kernel. The iteration must already be free of
host syncs and keep all its state in fixed device tensors (see image_gan.py); then capturing it is
the recipe from PyTorch's "whole network capture" docs: warm up on a side stream (Adam's state,
cuDNN's autotuning and the allocator settle), capture once, replay forever.
"""
import torch


class CapturedStep:
    def __init__(self, step_fn, warmup: int = 3):
        """Runs `warmup` real iterations eagerly, then captures one more (which runs on the first
        replay). The warm-up iterations count as training: the caller's step counter advances."""
        self.step_fn = step_fn
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step_fn()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step_fn()
        self.warmup = warmup

    def __call__(self):
        self.graph.replay()


def make_step(gan, fast: bool):
    """Returns (step callable, iterations already run while preparing it)."""
    if not (fast and gan.device.type == "cuda"):
        return gan.train_step, 0
    captured = CapturedStep(gan.train_step)
    return captured, captured.warmup
