"""gl-train: the Hydra entry point. One run per job; synthetic data or images, same run dir layout."""
import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from .rundir import RunDir

log = logging.getLogger("gl-train")
# Configs live at the repository root (the README installs the package editable from the clone).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")

# An empty override list (plain `gl-train`) still needs a directory name.
OmegaConf.register_new_resolver("run_dir_name", lambda s: s or "defaults", replace=True)


class UserError(Exception):
    """Bad input that should end in one line, not a traceback."""


def pick_device(name: str, job_num: int | None = None) -> torch.device:
    """`auto` is CUDA when present; the jobs of a sweep go round-robin over the visible GPUs, so
    n_jobs = k x GPUs packs k runs on each GPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job_num or 0) % torch.cuda.device_count())
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but no CUDA device is available")
    return torch.device(name)


def run(cfg, run_dir) -> dict:
    """Train (or resume) the run in `run_dir`; a finished run is left untouched."""
    rd = RunDir(run_dir)
    if rd.is_finished():
        log.info(f"already finished: {rd.path} (delete the folder to train it again)")
        return rd.summary()
    OmegaConf.save(cfg, rd.path / "config.yaml", resolve=True)
    rd.update_summary(status="running")
    device = pick_device(cfg.train.device, _job_num())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    if cfg.dataset.kind == "gmm_intervals":  # Li et al.'s model: population dynamics, no nets
        from . import first_order
        return first_order.train(cfg, rd)
    # Tiny MLPs: a second intra-op thread costs more in handoffs than it saves (measured 10-100x
    # slower on a busy 2-core machine); run one job per core instead.
    threads = cfg.train.cpu_threads or (1 if cfg.dataset.kind == "synthetic" else None)
    if threads:
        torch.set_num_threads(threads)
    if cfg.dataset.kind == "synthetic":
        from . import synthetic_run
        return synthetic_run.train(cfg, rd, device)
    from . import trainer
    return trainer.train(cfg, rd, device)


def _job_num() -> int | None:
    try:
        hc = HydraConfig.get()
    except ValueError:  # called as a library, outside a Hydra app
        return None
    return hc.job.num if hc.mode == RunMode.MULTIRUN else None


def user_errors() -> tuple:
    """Exception types that mean bad input; their message is the whole story (data.DataError and
    the config checks are ValueErrors)."""
    from .checkpoint import CheckpointError
    return (UserError, CheckpointError, ValueError, FileNotFoundError)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run(cfg, run_dir)
    except Exception as e:
        known = isinstance(e, user_errors())
        msg = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        RunDir(run_dir).update_summary(status="failed", error=msg)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # One failed job must not stop the sweep: record it, log it, go on.
            (log.error if known else log.exception)(f"gl-train: {run_dir}: {msg}")
            return
        if not known:
            raise
        sys.exit(f"gl-train: {msg}")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
