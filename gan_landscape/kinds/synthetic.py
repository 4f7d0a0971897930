"""The synthetic kind: MLP GANs on the paper's two-cluster and 5-Gaussian data, S seeds in one
batched computation and one run dir whose summary lists every seed (SyntheticRun)."""
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


def build(cfg, device):
    from gan_landscape.kinds.synthetic_run import SyntheticRun
    return SyntheticRun(cfg, device)
