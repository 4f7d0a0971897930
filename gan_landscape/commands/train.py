"""gl-train: the Hydra entry point. Each job (a command, or one point of a sweep) is a job.Job;
this module keeps the Hydra glue: where the job's dir is, one line for a bad input, the sweep tally.

A bad input ends in one line before anything is written; in a sweep the job is recorded as failed
and the others run, and the sweep's exit status says whether any job failed or diverged.
"""
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from gan_landscape.cli import CONFIG_DIR, USER_ERROR_EXIT, UserError, one_line
from gan_landscape.files import append_jsonl, read_jsonl
from gan_landscape.runs import interrupt, lock
from gan_landscape.config import rules, schema
from gan_landscape.runs.job import Job, register_resolvers
from gan_landscape.runs.rundir import FAILED, RunDir

log = logging.getLogger("gl-train")
register_resolvers()


def run(cfg, job_dir, job_num: int | None = None) -> list[dict]:
    """Train (or resume) the run(s) of one job (job.py); finished runs are left untouched."""
    job = Job(cfg, job_dir, job_num)
    with lock.RunLock(job_dir):  # one process per run dir (lock.py), taken before the job writes anything
        return job.run()


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
        with interrupt.catching():  # signals end the run with a checkpoint (interrupt.py)
            summaries = run(cfg, job_dir, num)
        status = _job_status(summaries)
    except interrupt.Interrupted as e:
        status = None  # a job that submitit requeues records its outcome when it ends
        print(f"gl-train: {e}", file=sys.stderr)
        interrupt.hand_over(e.signum)  # submitit's own handler (hydra/launcher=slurm): requeue, exit
        status = interrupt.INTERRUPTED
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # a second Ctrl-C
        status = interrupt.INTERRUPTED
        print("gl-train: stopped at once by a second Ctrl-C; the same command resumes from the newest "
              "checkpoint", file=sys.stderr)
        sys.exit(128 + interrupt.SIGINT)
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
        if multirun and status:
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
    if not job_dir.is_dir() or (job_dir / "summary.json").exists() or lock.is_held(job_dir):
        return  # a dir another process holds (it may be loading its data) is its own
    if all(p.suffix == ".log" or p.name in (".hydra", lock.NAME) for p in job_dir.iterdir()):
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
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            from gan_landscape.commands import slurm  # quiet job states without sacct; a cancelled job is a failed one
            slurm.install(config.hydra.sweep.dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / "jobs.jsonl"
        sweep_id = os.environ.get(self.ENV)
        outcome = {}  # a Slurm job's last record is its outcome (slurm.py adds one for a cancelled job)
        for k, j in enumerate(read_jsonl(path)):
            if j.get("sweep") == sweep_id:
                outcome[j.get("slurm_job") or k] = j["status"]
        counts = {s: list(outcome.values()).count(s) for s in set(outcome.values())}
        os.environ[self.BAD] = str(counts.get("failed", 0) + counts.get("diverged", 0))
        tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs"
        log.info(f"gl-train: sweep {config.hydra.sweep.dir}: {tally}")

    @classmethod
    def record(cls, job_dir: Path, status: str) -> None:
        rec = {"sweep": os.environ.get(cls.ENV), "dir": str(job_dir), "status": status}
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":  # hydra/launcher=slurm: see slurm.py
            import submitit
            rec["slurm_job"] = submitit.JobEnvironment().job_id
        append_jsonl(job_dir.parent / "jobs.jsonl", rec)


def main() -> None:
    rules.check_argv("gl-train", schema.TrainApp, schema.groups())  # a misspelt key: one line
    os.environ.pop(SweepTally.BAD, None)
    _main()
    if int(os.environ.get(SweepTally.BAD, 0)):
        sys.exit(1)


if __name__ == "__main__":
    main()
