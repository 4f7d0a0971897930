"""Real batches for image-GAN training, one stream per seed of a stack.

Each seed draws its batches, indices and dequantisation noise from its own generator, so a seed's
batches do not depend on which seeds train beside it. A batch is uint8 scaled to [-1, 1] plus
U(0, 1/128) noise, as the authors' datasets.py.

- `ResidentSampler` (CIFAR-10, STL-10): the whole uint8 dataset on the device; a batch is randint +
  index_select + noise, a handful of device ops with no host sync, so a CUDA graph captures it.
- `StreamSampler` (LSUN): DataLoader workers decode batches on the host. The graph must not call the
  loader (a replay would re-read one stale batch), so filling and reading are split: `refill()`,
  called by the loop before every iteration, copies the next batches into a static device buffer
  (ahead of time, on a side stream, so the copy overlaps the running iteration); `sample()`, inside
  the iteration, only reads that buffer, slot by slot.
"""
import logging

import torch

from gan_landscape.data import DataError, image_pool, to_model_range
from gan_landscape.rng import load_generator_state, seed_generator

log = logging.getLogger(__name__)


class ResidentSampler:
    """Draws with replacement (the authors reshuffle per epoch; at 64 of 50k the difference is nil)."""

    def __init__(self, images_uint8: torch.Tensor, gens: list[torch.Generator], device):
        x = images_uint8
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"expected uint8 images [N,3,H,W], got {x.dtype} {tuple(x.shape)}")
        self.device, self.gens = torch.device(device), gens
        self.images = x.to(self.device).contiguous()
        self.n = len(self.images)

    def refill(self) -> None:
        pass  # every batch is drawn on the device inside the iteration

    def host_state(self) -> None:
        return None  # nothing of a draw lives on the host

    def load_host_state(self, state) -> None:
        pass

    def sample(self, batch_size: int) -> torch.Tensor:
        """[S, B, 3, H, W] in [-1, 1], one independent batch per seed."""
        idx = torch.stack([torch.randint(self.n, (batch_size,), device=self.device, generator=g)
                           for g in self.gens])
        x = self.images.index_select(0, idx.flatten()).view(len(self.gens), batch_size,
                                                             *self.images.shape[1:])
        noise = torch.stack([torch.rand(x.shape[1:], device=self.device, generator=g) for g in self.gens])
        return to_model_range(x, noise)

    def state_dict(self) -> list:
        return [g.get_state() for g in self.gens]

    def load_state_dict(self, states) -> None:
        for g, s in zip(self.gens, states):
            load_generator_state(g, s)


class StreamSampler:
    """`slots` batches per seed and iteration (the D steps, plus the G step of a pairing loss),
    streamed by one DataLoader per seed (shuffled by that seed's generator)."""

    def __init__(self, ds, batch_size: int, seeds: list[int], slots: int, device, salt: int):
        data = image_pool(ds, "train")
        if len(data) < batch_size:
            raise DataError(f"{ds.name}: {len(data)} images in {ds.root}, fewer than one batch "
                            f"of {batch_size}")
        self.device, self.batch_size, self.slots = torch.device(device), batch_size, slots
        workers = max(0, int(ds.get("num_workers", 0)) // max(1, len(seeds))) or \
            (1 if ds.get("num_workers", 0) else 0)
        cuda = self.device.type == "cuda"
        self.loaders = [_forever(torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
            pin_memory=cuda, persistent_workers=workers > 0,
            generator=seed_generator(s, salt))) for s in seeds]
        self.gens = [seed_generator(s, salt + 1, device) for s in seeds]
        shape = (slots, len(seeds), batch_size, 3, ds.image_size, ds.image_size)
        self.buffer = torch.zeros(shape, dtype=torch.uint8, device=self.device)  # what sample() reads
        self.staged = torch.zeros_like(self.buffer)                           # filled ahead
        self.stream = torch.cuda.Stream(self.device) if cuda else None
        self.filled = None
        self.slot = 0
        self._stage()

    def _stage(self) -> None:
        """Start copying the next iteration's batches into `staged` (async on CUDA). The loader
        pinned each batch already (in its pin-memory thread): each goes straight to its slot."""
        if self.stream is None:
            self._copy_batches(non_blocking=False)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # staged is free again
        with torch.cuda.stream(self.stream):
            self._copy_batches(non_blocking=True)
            self.filled = torch.cuda.Event()
            self.filled.record(self.stream)

    def _copy_batches(self, non_blocking: bool) -> None:
        for slot in range(self.slots):  # slot-major, then seed: the order batches are drawn in
            for k, it in enumerate(self.loaders):
                self.staged[slot, k].copy_(next(it), non_blocking=non_blocking)

    def refill(self) -> None:
        """Outside the iteration: make the staged batches the current ones, then stage the next."""
        if self.filled is not None:
            torch.cuda.current_stream(self.device).wait_event(self.filled)
        self.buffer.copy_(self.staged)
        self.slot = 0
        self._stage()

    def sample(self, batch_size: int) -> torch.Tensor:
        if batch_size != self.batch_size:
            raise ValueError(f"StreamSampler was built for batches of {self.batch_size}, "
                             f"asked for {batch_size}")
        x = self.buffer[self.slot % self.slots]  # the slot order is fixed, so a graph replays it
        self.slot += 1
        noise = torch.stack([torch.rand(x.shape[1:], device=self.device, generator=g) for g in self.gens])
        return to_model_range(x, noise)

    def host_state(self) -> int:
        """What sample() advances on the host: an iteration recorded and thrown away (a failed
        CUDA-graph capture) must leave it where it was."""
        return self.slot

    def load_host_state(self, slot: int) -> None:
        self.slot = slot

    def state_dict(self) -> list:
        return [g.get_state() for g in self.gens]

    def load_state_dict(self, states) -> None:
        for g, s in zip(self.gens, states):
            load_generator_state(g, s)


def _forever(loader):
    while True:
        yield from loader
