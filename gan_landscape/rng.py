"""Owns the random streams: each seed draws each use (latents, data, noise) from its own generator,
never from the global RNG, so seed s of a stack draws what seed s alone draws."""
import logging

import torch

log = logging.getLogger(__name__)


def seed_generator(seed: int, salt: int, device="cpu") -> torch.Generator:
    """A seed's private stream (salt: which use)."""
    return torch.Generator(device).manual_seed(seed * 1000 + salt)


def load_generator_state(g: torch.Generator, state: torch.Tensor) -> None:
    """g.set_state(state), unless the state comes from another kind of device (a checkpoint moved
    between CPU and GPU: Mersenne Twister and Philox states do not convert); g then keeps its own."""
    if state.numel() != g.get_state().numel():
        log.warning(f"a {g.device.type} generator cannot take a random state saved on another kind "
                    f"of device; it goes on from its own seed")
        return
    g.set_state(state)
