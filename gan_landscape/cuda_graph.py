"""Replay a whole training iteration as one CUDA graph (train.cuda_graph).

Narrow GANs on a modern GPU are bound by kernel launches: an eager iteration is hundreds of ~10 us
launches from Python, a replayed graph costs ~1 us per kernel. The iteration must already be free of
host syncs and keep all its state in fixed device tensors (image_gan.py); then the recipe is
PyTorch's "whole network capture": warm up on a side stream (Adam's state, cuDNN's autotuning and
the allocator settle), capture once, replay forever. The graph runs the same kernels as eager mode.

Every call of `Stepper.step()` is exactly one training iteration: the first WARMUP calls run
eagerly on the side stream, the next captures the iteration and replays it once. The per-seed
generators are registered with the graph, so each replay draws fresh numbers from them.
"""
import logging
import warnings
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)
WARMUP = 3


class Stepper:
    def __init__(self, iteration, device, generators=(), enabled=True):
        self.iteration, self.generators = iteration, list(generators)
        self.enabled = enabled and torch.device(device).type == "cuda"
        self.calls, self.graph = 0, None
        self.stream = torch.cuda.Stream(device) if self.enabled else None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def step(self) -> None:
        if not self.enabled:
            self.iteration()
        elif self.graph is not None:
            self.graph.replay()
        elif self.calls < WARMUP:
            self._on_side_stream(self.iteration)
        else:
            self._capture()
        self.calls += 1

    def _on_side_stream(self, fn) -> None:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream), _quiet_stream_mismatch():
            fn()
        torch.cuda.current_stream().wait_stream(self.stream)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        for g in self.generators:  # before capture begins: registering resets the graph's RNG offsets
            graph.register_generator_state(g)
        stream = torch.cuda.current_stream()
        try:
            self.stream.wait_stream(stream)
            # The warm-ups ran on this stream too: autograd's nodes then see one stream throughout.
            # thread_local: a DataLoader's pin-memory thread may allocate pinned memory meanwhile,
            # which the default "global" mode would count as an error of this capture.
            with _quiet_stream_mismatch(), torch.cuda.graph(graph, stream=self.stream,
                                                            capture_error_mode="thread_local"):
                self.iteration()
            stream.wait_stream(self.stream)
        except RuntimeError as e:  # an op that cannot be captured: train eagerly rather than not at all
            log.warning(f"train.cuda_graph: capture failed ({str(e).splitlines()[0]}); training eagerly")
            self._recover(stream)
            self.iteration()
            return
        self.graph = graph
        graph.replay()

    def _recover(self, stream) -> None:
        """After a failed capture nothing captured has run, so the training state is as before it;
        but torch.cuda.graph's exit raised before leaving the side stream, and (torch < 2.13) the
        generators stay in capture mode, where any eager draw raises. Give each generator a fresh
        state at the same seed and offset, and go back to the caller's stream."""
        self.enabled = False
        torch.cuda.set_stream(stream)
        device = torch.device(stream.device)
        for g in self.generators + [torch.cuda.default_generators[device.index or 0]]:
            fresh = torch.Generator(device)
            fresh.set_state(g.get_state())
            g.graphsafe_set_state(fresh)
        torch.cuda.synchronize(device)


@contextmanager
def _quiet_stream_mismatch():
    """Autograd warns when a leaf's AccumulateGrad node was first seen on another stream than the
    one its gradient arrives on; here every backward of warm-up and capture runs on one side stream
    and gradients are returned by autograd.grad, so the warning carries no information."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*AccumulateGrad.*stream")
        yield
