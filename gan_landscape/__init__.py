"""gan-landscape: reproduce and extend 'Towards a Better Global Loss Landscape of GANs'."""
import sys

import torch

__version__ = "0.1.0"

# torch.optim imports torch._dynamo, which imports triton when the CUDA wheel ships it; without a
# GPU triton is unusable, and its bindings print dozens of "nanobind: leaked function" lines at
# exit. Marking it absent makes torch take its no-triton path, which it would on this machine anyway.
if not torch.cuda.is_available():
    sys.modules.setdefault("triton", None)
