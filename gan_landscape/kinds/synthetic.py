"""The synthetic kind: MLP GANs on the two-cluster data and the 2-D mixtures, S seeds in one
batched computation and one run dir whose summary lists every seed (SyntheticRun)."""
import ctypes

from gan_landscape.config import BOOL, FRACTION, POS_INT, POS_NUMBER, nullable

NAME = "{dataset}-{model}-w{width}-{loss}-{seeds}"
REPORT = "synthetic"  # its section in gl-report (report.py SECTIONS)
LANDSCAPE = "synthetic"  # how gl-landscape sets up its game (landscape.py)
# Tiny MLPs: a second intra-op thread costs more in handoffs than it saves (measured 10-100x
# slower on a busy 2-core machine); run one job per core instead.
CPU_THREADS = 1
RULES = {"dataset.num_points": POS_INT, "dataset.d_steps": POS_INT, "dataset.g_steps": POS_INT,
         "dataset.mode_radius": POS_NUMBER, "dataset.cover_frac": FRACTION,
         "dataset.average_d_terms": BOOL}


def check(cfg) -> None:
    from gan_landscape.config import check_key
    from gan_landscape.data.synthetic import synthetic_data
    full_batch = synthetic_data(cfg.dataset).full_batch  # every point in every step: no batch size
    check_key(cfg, "train.batch_size", nullable(POS_INT) if full_batch else POS_INT)


def arithmetic(cfg, device) -> str | None:
    """A minibatch run on either fused kernel (data/synthetic.py step_path) rounds
    differently from autograd: another run. The two-cluster kernel is named by train.cpu_kernel."""
    from gan_landscape.data.synthetic import step_path, synthetic_data
    if synthetic_data(cfg.dataset).full_batch:
        return None
    path = step_path(cfg, device)
    return None if path == "reference" else f"minibatch_{path}"


def build(cfg, device):
    from gan_landscape.kinds.synthetic_run import SyntheticRun
    keep_freed_memory()
    return SyntheticRun(cfg, device)


def keep_freed_memory() -> None:
    """glibc hands each freed block over 128 KiB-32 MiB back to the OS, so on the torch-ops paths
    every iteration's 2 MB activations of a wide MLP are fresh pages that fault in again: measured
    52 -> 64 it/s at width 1 when it keeps them (the mallopt equivalent of MALLOC_MMAP_THRESHOLD_ /
    MALLOC_TRIM_THRESHOLD_). The fused kernels keep their buffers between calls."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD, glibc's maximum: below it, blocks come from the heap
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD: the heap keeps up to 1 GiB free
    except (OSError, AttributeError):  # not glibc: its allocator's defaults
        pass
