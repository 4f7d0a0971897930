"""Replay a whole training iteration as one CUDA graph (train.cuda_graph).

Narrow GANs on a modern GPU are bound by kernel launches: an eager iteration is hundreds of ~10 us
launches from Python, a replayed graph costs ~1 us per kernel. The iteration must already be free of
host syncs and keep all its state in fixed device tensors (image_gan.py); then the recipe is
PyTorch's "whole network capture": warm up on a side stream (Adam's state, cuDNN's autotuning and
the allocator settle), capture once, replay forever. The graph runs the same kernels as eager mode.

Every call of `Stepper.step()` is exactly one training iteration: the first WARMUP calls run
eagerly on the side stream, the next captures the iteration and replays it once. The per-seed
generators are registered with the graph, so each replay draws fresh numbers from them.

A capture fails in two ways. The iteration may not be capturable (an op that syncs with the host,
work on a stream the capture does not follow: CUDA's stream-capture errors): training goes on
eagerly, with a warning, and `status` says so wherever a figure or a summary is written. Anything
else (out of memory, a kernel fault, a bug) is raised: a silent eager run would pass for a graph
one. Either way the failed capture is undone first, which PyTorch does only in part before 2.13:
the allocator may still route to the graph's memory pool (pytorch#180395), the pool is never
released (pytorch#190348), the generators stay in capture mode, and host-side state that the
iteration advanced while it was recorded (a sampler's slot counter) is restored.
"""
import logging
import re
import warnings
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)
WARMUP = 3
# CUDA's stream-capture errors (cudaErrorStreamCapture*, 900-908) and PyTorch's "... during CUDA
# graph capture" checks all name the capture; out of memory, kernel faults and bugs do not.
_CAPTURE_ERROR = re.compile(r"captur", re.IGNORECASE)
# Failed graphs are kept alive: on torch < 2.12 the pinned-host allocator may still hold a filter
# that points at the graph object, and no Python call ends it. A reset graph holds no memory.
_ABANDONED: list = []


def not_capturable(exc: BaseException) -> str | None:
    """Why to train eagerly when `exc`, and every exception it was raised from or while handling,
    is a stream-capture error; None when any of them is something else (to be raised)."""
    chain, e = [], exc
    while e is not None and all(e is not c for c in chain):
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, torch.cuda.OutOfMemoryError) or not isinstance(e, RuntimeError):
            return None
        if not _CAPTURE_ERROR.search(str(e)):
            return None
    root = str(chain[-1]).strip().splitlines()
    return (root[0] if root else type(chain[-1]).__name__)[:160]


class Stepper:
    """`host_state`: (get, set) of the host-side values the iteration advances, restored after a
    failed capture so that the eager retry sees them as the capture found them."""

    def __init__(self, iteration, device, generators=(), enabled=True, host_state=None):
        self.iteration, self.generators = iteration, list(generators)
        self.get_host_state, self.set_host_state = host_state or (lambda: None, lambda state: None)
        self.enabled = enabled and torch.device(device).type == "cuda"
        self.requested = self.enabled
        self.calls, self.graph, self.pool, self.fallback, self.error = 0, None, None, None, None
        self.stream = torch.cuda.Stream(device) if self.enabled else None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    @property
    def status(self) -> str:
        """"captured", "eager (why)" or "off" (train.cuda_graph=false, or not a CUDA device);
        "failed (error)" after a capture error that was raised."""
        if self.graph is not None:
            return "captured"
        if self.error:
            return f"failed ({self.error})"
        if self.fallback:
            return f"eager ({self.fallback})"
        if not self.requested:
            return "off"
        return f"eager (not captured yet: {self.calls} of {WARMUP} warm-up iterations run)"

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
        caller = torch.cuda.current_stream()
        host = self.get_host_state()
        graph, pool = torch.cuda.CUDAGraph(), _new_pool()
        for g in self.generators:  # before capture begins: registering resets the graph's RNG offsets
            graph.register_generator_state(g)
        pool_refs = pool.use_count() if pool is not None else 0
        try:
            self._record(graph, pool, caller)
        except Exception as e:
            self._abandon(graph, pool, pool_refs, caller)
            self.set_host_state(host)
            reason = not_capturable(e)
            if reason is None:
                self.error = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"
                raise
            log.warning(f"train.cuda_graph: the iteration cannot be captured ({reason}); training eagerly")
            self.fallback, self.enabled = reason, False
        else:
            self.graph, self.pool = graph, pool
            graph.replay()
            return
        # Out of the except block: the exception's frames no longer hold the capture's tensors.
        del graph, pool
        torch.cuda.empty_cache()
        self.iteration()

    def _record(self, graph, pool, caller) -> None:
        self.stream.wait_stream(caller)
        # The warm-ups ran on this stream too: autograd's nodes then see one stream throughout.
        # thread_local: a DataLoader's pin-memory thread may allocate pinned memory meanwhile,
        # which the default "global" mode would count as an error of this capture.
        with _quiet_stream_mismatch(), torch.cuda.graph(graph, pool=pool.id if pool is not None else None,
                                                        stream=self.stream, capture_error_mode="thread_local"):
            self.iteration()
        caller.wait_stream(self.stream)

    def _abandon(self, graph, pool, pool_refs: int, caller) -> None:
        """Undo a failed capture. Nothing captured has run, so the training state on the device is
        as before it; what is left is PyTorch's bookkeeping (see the module docstring)."""
        torch.cuda.set_stream(caller)  # torch.cuda.graph's exit raised before leaving the side stream
        device = caller.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        if pool is not None:
            end = getattr(torch._C, "_cuda_endAllocateToPool", None) or \
                getattr(torch._C, "_cuda_endAllocateCurrentStreamToPool", None)
            try:
                end(index, pool.id)
            except (RuntimeError, TypeError):
                pass  # this torch ended the routing itself ("not currently recording to mempool_id")
        try:
            graph.reset()
        except Exception as e:  # a half-made graph: what reset() could not undo is undone below
            log.debug(f"resetting the failed graph: {e}")
        _ABANDONED.append(graph)
        self._fresh_generators(device)
        torch.cuda.synchronize(device)
        if pool is not None and pool.use_count() > pool_refs:  # reset() kept the graph's reference
            torch._C._cuda_releasePool(index, pool.id)

    def _fresh_generators(self, device) -> None:
        """(torch < 2.13) the generators stay in capture mode, where any eager draw raises: give
        each a fresh state at the same seed and offset."""
        for g in self.generators + [torch.cuda.default_generators[device.index or 0]]:
            fresh = torch.Generator(device)
            fresh.set_state(g.get_state())
            g.graphsafe_set_state(fresh)


def _new_pool():
    """The graph's memory pool as a MemPool, whose reference count tells whether a failed
    capture's pool still needs releasing; None on a torch without one (the graph makes its own)."""
    try:
        return torch.cuda.MemPool()
    except (AttributeError, RuntimeError, TypeError):
        return None


@contextmanager
def _quiet_stream_mismatch():
    """Autograd warns when a leaf's AccumulateGrad node was first seen on another stream than the
    one its gradient arrives on; here every backward of warm-up and capture runs on one side stream
    and gradients are returned by autograd.grad, so the warning carries no information."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*AccumulateGrad.*stream")
        yield
