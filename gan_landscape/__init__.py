"""gan-landscape: reproduce and extend 'Towards a Better Global Loss Landscape of GANs'."""

__version__ = "0.1.0"
