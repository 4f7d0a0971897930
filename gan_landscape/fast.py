"""Capture a whole training iteration in a CUDA graph and replay it.

Narrow GANs on a modern GPU are bound by kernel launches: an eager iteration is hundreds of ~10 us
launches from Python, a replayed graph costs ~1 us per kernel. The iteration must already be free of
host syncs and keep all its state in fixed device tensors (see image_gan.py); then capturing it is
the recipe from PyTorch's "whole network capture" docs: warm up on a side stream (Adam's state,
cuDNN's autotuning and the allocator settle), capture once, replay forever.
"""
import logging

import torch

log = logging.getLogger(__name__)
WARMUP = 3


def warm_up(step_fn, n: int) -> None:
    """Real training iterations, run eagerly on a side stream as capture requires."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(n):
            step_fn()
    torch.cuda.current_stream().wait_stream(side)


def capture(step_fn) -> torch.cuda.CUDAGraph:
    """Records one iteration; nothing runs until the graph is replayed."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step_fn()
    return graph


def make_step(gan, fast: bool):
    """Returns (a callable running one iteration, iterations already run while preparing it)."""
    if not (fast and gan.device.type == "cuda"):
        return gan.train_step, 0
    warm_up(gan.train_step, WARMUP)
    try:
        graph = capture(gan.train_step)
    except RuntimeError as e:  # an op that cannot be captured: train eagerly rather than not at all
        log.warning(f"train.fast: CUDA graph capture failed ({e}); training eagerly")
        return gan.train_step, WARMUP
    return graph.replay, WARMUP
