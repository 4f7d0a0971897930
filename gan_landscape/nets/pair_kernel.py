"""Fused CPU kernels for the synthetic experiments: one iteration of their schedule per call, on
the two-cluster full batch (GAN2_2Cluster.py, SGD) or on a minibatch (5gaussian.py, Adam).
pair_kernel.cpp puts seeds in SIMD lanes (narrow nets), gemm_kernel.cpp takes a seed at a time on
MKL's GEMMs (wider minibatch nets); both read the same arguments (csrc/kernel.h)."""
import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # for the annotations only: mlp.py does not need this module
    from gan_landscape.nets.mlp import StackedMLP

from gan_landscape.cli import ConfigError
from gan_landscape.files import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

# On the CPU the two-cluster nets are too small for the framework: a 200 x 10 x 10 matmul per seed
# is a fraction of a microsecond of arithmetic but costs more than that in dispatch, and autograd,
# the optimiser and the activations each stream [S, N, 10] tensors through memory. The kernel below
# runs one whole iteration per call with the seeds in the SIMD lanes: a block of 8-16 seeds keeps its
# two nets, gradients and optimiser buffers in L1 (two-cluster: for all 20 steps). The layer loops are
# unrolled at compile time, which pays up to 16 hidden units (the 2-D mixtures at width <= 1/8);
# wider nets are faster a seed at a time on MKL's GEMMs (KERNEL_MAX_HIDDEN; gemm_kernel.cpp).

KERNEL_ACTS = ("tanh", "sigmoid", "relu", "leaky_relu")           # the C++ enums, in order
# The losses whose derivatives the C++ spells out (d_loss_grad, g_loss_grad); a registered loss not
# listed here trains on the autograd path.
KERNEL_LOSSES = ("jsgan", "hinge", "lsgan", "rsgan", "rphinge", "rplsgan")
# Measured, 16 seeds of 5gaussian.py's RS-GAN, 1 thread: lanes vs gemm_kernel.cpp at h=16 2463 vs 1610
# it/s, at h=32 527 vs 846 (and the lanes' compile: 17 s vs 69 s).
KERNEL_MAX_HIDDEN = 16

# The C++ lives beside this file; it is compiled on first use.
CSRC = Path(__file__).parent / "csrc"


class _OptimArgs(ctypes.Structure):  # kernel.h's Optim
    _fields_ = [("kind", ctypes.c_int), ("step", ctypes.c_int),
                *[(name, ctypes.c_float) for name in ("lr", "momentum", "beta1", "beta2", "eps")]]


class _KernelArgs(ctypes.Structure):  # kernel.h's Args
    _fields_ = [("S", ctypes.c_int), ("N", ctypes.c_int), ("x", ctypes.c_void_p), ("z", ctypes.c_void_p),
                *[(name, ctypes.POINTER(ctypes.c_void_p))
                  for name in ("g_params", "g_bufs", "g_bufs2", "d_params", "d_bufs", "d_bufs2")],
                *[(name, ctypes.c_int) for name in ("d_steps", "g_steps", "loss", "pairing", "renorm")],
                ("d_opt", _OptimArgs), ("g_opt", _OptimArgs),
                *[(name, ctypes.c_float) for name in ("d_scale", "g_scale")],
                ("logits", ctypes.c_void_p)]


class KernelOptim:
    """A torch.optim.SGD or Adam as the kernel reads it: its parameters, its state tensors (which the
    kernel updates in place, so checkpoints and the torch paths see them) and its hyper-parameters.
    Plain SGD with momentum or Adam, as synthetic.make_optim builds them (step_path picks the kernel
    only for those)."""

    def __init__(self, opt, bufs, bufs2, args: _OptimArgs):
        self.opt, self.params = opt, opt.param_groups[0]["params"]
        self.bufs, self.bufs2, self.args = bufs, bufs2, args
        # the pointers, once: the tensors are updated in place until a checkpoint loads (then `of` again)
        self.pointers = [_pointers(self.params), _pointers(bufs), None if bufs2 is None else _pointers(bufs2)]
        if args.kind == 1:  # Adam: one step count for all parameters (torch keeps equal copies)
            self.step = opt.state[self.params[0]]["step"]
            for p in self.params:
                opt.state[p]["step"] = self.step
            args.step = int(self.step)

    @classmethod
    def of(cls, opt) -> "KernelOptim":
        (g,) = opt.param_groups
        plain = not (g.get("weight_decay") or g.get("maximize") or torch.is_tensor(g["lr"]))
        if plain and isinstance(opt, torch.optim.SGD) and not g["dampening"] and not g["nesterov"]:
            bufs = [cls._state(opt, p, "momentum_buffer") for p in g["params"]]
            return cls(opt, bufs, None, _OptimArgs(0, 0, g["lr"], g["momentum"], 0, 0, 0))
        if plain and type(opt) is torch.optim.Adam and not g["amsgrad"] and not torch.is_tensor(g["betas"][0]):
            bufs, bufs2 = ([cls._state(opt, p, k) for p in g["params"]] for k in ("exp_avg", "exp_avg_sq"))
            return cls(opt, bufs, bufs2, _OptimArgs(1, 0, g["lr"], 0, *g["betas"], g["eps"]))
        raise ValueError(f"the fused kernel implements plain SGD and Adam, not this {type(opt).__name__}: {g}")

    @staticmethod
    def _state(opt, p, key: str) -> torch.Tensor:
        """The state tensor as torch.optim creates it before its first step (zeros; Adam's step 0)."""
        state = opt.state[p]
        if isinstance(opt, torch.optim.Adam) and "step" not in state:
            state["step"] = torch.tensor(0.0)
        if state.get(key) is None:
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state[key]

    def after(self, steps: int) -> None:
        self.args.step += steps  # into the state by `sync` (a tensor op per step costs 5% here)

    def sync(self) -> None:
        """Write Adam's step count into the optimiser's state (before a checkpoint)."""
        if self.args.kind == 1:
            self.step.fill_(self.args.step)


def _pointers(tensors) -> ctypes.Array:
    for t in tensors:  # the kernel reads and writes them in place
        if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError("the fused kernel needs contiguous float32 CPU tensors")
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class PairKernel:
    """A kernel's source compiled for one (G, D) architecture."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        self.lanes = lib.lanes()
        lib.iteration.argtypes = [ctypes.POINTER(_KernelArgs), ctypes.c_int]
        lib.iteration.restype = ctypes.c_int
        if lib.num_losses() != len(KERNEL_LOSSES):
            raise RuntimeError(f"kernel.h has {lib.num_losses()} losses, KERNEL_LOSSES "
                               f"{len(KERNEL_LOSSES)}")

    def iteration(self, x, z, g: KernelOptim, d: KernelOptim, *, d_steps: int, g_steps: int, loss: str,
                  pairing: bool, d_scale: float, g_scale: float, renorm: bool = False,
                  threads: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
        """One iteration, in place: G(z) once, d_steps D steps on it, g_steps G steps. x, z: [S, N,
        dim]; g, d: the nets' optimisers; *_scale: dL/d(logit) of one pair's term (1 / N for a
        mean); renorm: D's last weight renormalised after each D step. Returns the logits [4, S, N]:
        D's f(x), f(y) at its last step and G's at its last step (f(x) zero where the loss does not
        need it); into `out` when given."""
        if loss not in KERNEL_LOSSES:
            raise ConfigError(f"loss={loss}: the fused CPU kernel implements {', '.join(KERNEL_LOSSES)}; "
                              f"set train.cpu_kernel=false")
        S, N = x.shape[:2]
        logits = torch.zeros(4, S, N) if out is None else out
        args = _KernelArgs(S, N, _pointers([x])[0], _pointers([z])[0], *g.pointers, *d.pointers,
                           d_steps, g_steps, KERNEL_LOSSES.index(loss), int(pairing), int(renorm),
                           d.args, g.args, d_scale, g_scale, logits.data_ptr())
        if self.lib.iteration(ctypes.byref(args), threads) != 0:  # the C++ refuses an unknown loss id
            raise RuntimeError(f"kernel.h does not know loss {loss} (KERNEL_LOSSES and its "
                               f"enum differ)")
        d.after(d_steps)
        g.after(g_steps)
        return logits


_kernels: dict = {}


def pair_kernel(G: "StackedMLP", D: "StackedMLP") -> PairKernel | None:
    """The seeds-in-lanes kernel for this (G, D) architecture: any width (the two-cluster full batch),
    but slow past KERNEL_MAX_HIDDEN units, to run and to compile (17 s at 16, 69 s at 32). None
    where it cannot be built."""
    return _kernel("pair_kernel.cpp", G, D)


def gemm_kernel(G: "StackedMLP", D: "StackedMLP") -> PairKernel | None:
    """The seed-at-a-time kernel on MKL's GEMMs, for wider minibatch nets (a few seconds to build)."""
    return _kernel("gemm_kernel.cpp", G, D)


def _kernel(source: str, G: "StackedMLP", D: "StackedMLP") -> PairKernel | None:
    """`source` compiled for this (G, D) architecture on first use and cached on disk; None where it
    cannot be built (no C++ compiler, an activation it lacks)."""
    if G.act_name not in KERNEL_ACTS or D.act_name not in KERNEL_ACTS or not G.has_last_bias:
        return None
    defines = {"G_SIZES": ",".join(map(str, G.sizes)), "D_SIZES": ",".join(map(str, D.sizes)),
               "G_ACT": KERNEL_ACTS.index(G.act_name), "D_ACT": KERNEL_ACTS.index(D.act_name),
               "D_LAST_BIAS": int(D.has_last_bias)}
    key = (source, *defines.items())
    if key not in _kernels:
        try:
            _kernels[key] = PairKernel(ctypes.CDLL(str(_compile(source, defines))))
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", b"") or b""
            log.warning(f"fused CPU kernel unavailable, using the autograd path: {e} {detail.decode()[-2000:]}")
            _kernels[key] = None
    return _kernels[key]


def _compile(source: str, defines: dict) -> Path:
    """g++ against torch's headers (at::vec, the SIMD layer inductor's C++ uses) and libtorch_cpu
    (its Sleef exp, MKL's sgemm). -march=native, so the CPU is part of the cache key."""
    torch_dir = Path(torch.__file__).parent
    cap = torch.backends.cpu.get_cpu_capability()
    cmd = [os.environ.get("CXX", "g++"), "-O3", "-DNDEBUG", "-march=native", "-fopenmp", "-std=c++17",
           "-shared", "-fPIC", f"-I{torch_dir / 'include'}", *[f"-D{k}={v}" for k, v in defines.items()],
           *([f"-DCPU_CAPABILITY_{cap}"] if cap in ("AVX2", "AVX512") else [])]
    libs = [f"-L{torch_dir / 'lib'}", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}"]
    texts = {name: (CSRC / name).read_text() for name in (source, "kernel.h")}
    tag = "\n".join([*texts.values(), *cmd, *libs, torch.__version__, _cpu_model()])
    cache = cache_dir()
    out = cache / f"{Path(source).stem}_{hashlib.sha256(tag.encode()).hexdigest()[:20]}.so"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # then an atomic rename: jobs may race
            for name, text in texts.items():
                (Path(tmp) / name).write_text(text)
            subprocess.run([*cmd, f"{tmp}/{source}", "-o", f"{tmp}/k.so", *libs], check=True, capture_output=True)
            atomic_write_bytes(out, Path(f"{tmp}/k.so").read_bytes())
    return out


def _cpu_model() -> str:
    try:
        return next(line for line in open("/proc/cpuinfo") if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return platform.processor()
