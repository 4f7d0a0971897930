"""gl-train: the Hydra entry point. Each job (a command, or one point of a sweep): check the config,
bind its run dirs to its identity, build the run, train it through loop.py.

A bad input ends in one line before anything is written; in a sweep the job is recorded as failed
and the others run, and the sweep's exit status says whether any job failed or diverged.
"""
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from . import loop
from .cli import CONFIG_DIR, USER_ERROR_EXIT, UserError, one_line, resolve_device
from .config import validate
from .identity import register_resolvers
from .rundir import FAILED, RunDir

log = logging.getLogger("gl-train")
register_resolvers()


def build(cfg, device):
    """The trainable for cfg's kind of run (loop.py's interface)."""
    kind = cfg.dataset.kind
    if kind == "image":
        from .image_gan import ImageGAN
        return ImageGAN(cfg, device, loop.stacked_seeds(cfg))
    if kind == "synthetic":
        from .synthetic_run import SyntheticRun
        return SyntheticRun(cfg, device)
    from .first_order import FirstOrderRun  # kind "population": Li et al.'s exact dynamics
    return FirstOrderRun(cfg)


def _fingerprint(cfg) -> str | None:
    """The image data's fingerprint, or None (synthetic data; image data not on disk yet)."""
    if cfg.dataset.kind != "image":
        return None
    from . import data  # torchvision: 3 s of imports a synthetic run does not need
    try:
        return data.fingerprint(cfg.dataset)
    except data.DataError:
        return None


def run(cfg, job_dir, job_num: int | None = None) -> list[dict]:
    """Train (or resume) the run(s) of one job; finished runs are left untouched."""
    validate(cfg)
    device = resolve_device(cfg.train.device, job_num)
    members = loop.plan_members(cfg, Path(job_dir))
    fp = _fingerprint(cfg)
    if loop.all_final(members) and (fp is not None or cfg.dataset.kind != "image"):
        loop.bind_identities(members, fp)
        log.info(f"already finished: {job_dir} (delete it to train again)")
        return [m.run.summary() for m in members]
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Tiny MLPs: a second intra-op thread costs more in handoffs than it saves (measured 10-100x
    # slower on a busy 2-core machine); run one job per core instead.
    threads = cfg.train.cpu_threads or (1 if cfg.dataset.kind == "synthetic" else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    trainable = build(cfg, device)           # loads (or downloads) the data: errors come before writes
    if fp is None and cfg.dataset.kind == "image":
        from . import data
        fp = data.fingerprint(cfg.dataset)
    loop.bind_identities(members, fp)
    if loop.all_final(members):
        log.info(f"already finished: {job_dir} (delete it to train again)")
        return [m.run.summary() for m in members]
    loop.start(members)
    try:
        return loop.train(trainable, members, cfg)
    except Exception as e:
        if not isinstance(e, KeyboardInterrupt):
            _mark_failed(members, e)
        raise


def _mark_failed(members, e: BaseException) -> None:
    for m in members:
        if m.alive:
            m.run.write_summary(**loop.base_fields(m), status=FAILED, error=one_line(type(e).__name__, e))


# ---------------------------------------------------------------- Hydra app

def _job() -> tuple[Path, bool, int | None]:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return Path(hc.runtime.output_dir), multirun, hc.job.num if multirun else None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(cfg) -> None:
    job_dir, multirun, num = _job()
    status = "failed"
    try:
        summaries = run(cfg, job_dir, num)
        status = _job_status(summaries)
    except UserError as e:
        if not multirun:
            _remove_if_unused(job_dir)
            print(one_line("gl-train", e), file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        log.error(one_line(f"gl-train: {job_dir}", e))
        _record_failure(job_dir, e)
    except Exception as e:
        if not multirun:
            raise
        log.exception(f"gl-train: {job_dir}: {type(e).__name__}: {e}")  # a bug: keep the traceback
        _record_failure(job_dir, e)
    finally:
        if multirun:
            SweepTally.record(job_dir, status)


def _job_status(summaries: list[dict]) -> str:
    statuses = {s.get("status") for s in summaries}
    return next((s for s in ("failed", "diverged", "running") if s in statuses), "finished")


def _record_failure(job_dir: Path, e: BaseException) -> None:
    """A sweep job that could not start: a summary saying why, so gl-report lists it as failed."""
    rd = RunDir(job_dir).create()
    if not rd.summary():
        rd.write_summary(status=FAILED, error=one_line(type(e).__name__, e))


def _remove_if_unused(job_dir: Path) -> None:
    """A single run that failed on its input leaves nothing: Hydra made the dir before we looked."""
    if not job_dir.is_dir() or (job_dir / "summary.json").exists():
        return
    if all(p.suffix == ".log" or p.name == ".hydra" for p in job_dir.iterdir()):
        shutil.rmtree(job_dir, ignore_errors=True)
        stop = Path.cwd().resolve()
        parent = job_dir.resolve().parent
        while parent != stop and stop in parent.parents and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


class SweepTally(Callback):
    """At the end of a sweep, one line counting its jobs by outcome; the exit status is 1 when any
    job failed or diverged. Jobs (in this process or in launcher workers) append their outcome to
    <sweep>/jobs.jsonl under this sweep's id. The count of bad jobs goes back to `main` through the
    environment: under `python -m`, Hydra's instance of this class lives in another module object."""
    ENV, BAD = "GL_SWEEP_ID", "GL_SWEEP_BAD"

    def on_multirun_start(self, config, **kwargs) -> None:
        os.environ[self.ENV] = f"{os.getpid()}-{time.time_ns()}"

    def on_multirun_end(self, config, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / "jobs.jsonl"
        sweep_id = os.environ.get(self.ENV)
        jobs = [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []
        counts = {}
        for j in jobs:
            if j.get("sweep") == sweep_id:
                counts[j["status"]] = counts.get(j["status"], 0) + 1
        os.environ[self.BAD] = str(counts.get("failed", 0) + counts.get("diverged", 0))
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs"
        log.info(f"gl-train: sweep {config.hydra.sweep.dir}: {tally}")

    @classmethod
    def record(cls, job_dir: Path, status: str) -> None:
        line = json.dumps({"sweep": os.environ.get(cls.ENV), "dir": str(job_dir), "status": status})
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(job_dir.parent / "jobs.jsonl", "a") as f:
            f.write(line + "\n")


def main() -> None:
    os.environ.pop(SweepTally.BAD, None)
    _main()
    if int(os.environ.get(SweepTally.BAD, 0)):
        sys.exit(1)


if __name__ == "__main__":
    main()
