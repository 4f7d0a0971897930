"""hydra/launcher=slurm: hydra-submitit-launcher's Slurm launcher, with two changes to its jobs.

- Job states come from `sacct`, or where the cluster keeps no accounting (sacct fails: a small or
  local cluster) from `scontrol show job`, which knows a job for MinJobAge after it ends. submitit
  alone warns "Bypassing sacct error" at every status poll there, and never learns that a job was
  cancelled, so the sweep would wait for it forever.
- A job that ends without a result (cancelled, killed by a time limit it could not requeue from,
  a lost node) is one line and a `failed` record in the sweep's jobs.jsonl, so the sweep's tally
  counts it and gl-train exits 1; the other jobs' results still come back.

A signalled job's checkpoint and requeue are gl-train's own (interrupt.py); nothing here.
"""
import logging
import os
import subprocess
import time
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from submitit.core import utils
from submitit.slurm import slurm

from gan_landscape.files import append_jsonl

log = logging.getLogger("gl-train")


def _output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def scontrol_states(job_ids) -> str:
    """What `sacct -o JobID,State,NodeList --parsable2` would print, from `scontrol show job`."""
    lines = ["JobID|State|NodeList"]
    for jid in job_ids:
        for rec in (_output(["scontrol", "show", "job", "-o", str(jid)]) or "").splitlines():
            f = dict(kv.split("=", 1) for kv in rec.split() if "=" in kv)
            if "JobState" not in f:
                continue
            task = f.get("ArrayTaskId")
            array = task not in (None, "N/A") and "ArrayJobId" in f
            name = f"{f['ArrayJobId']}_{task}" if array else f["JobId"]
            lines.append(f"{name}|{f['JobState']}|{f.get('NodeList', '')}")
    return "\n".join(lines)


class Watcher(slurm.SlurmInfoWatcher):
    """submitit's job-state poller, quiet and with scontrol where sacct does not work."""
    sacct = True

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        out = _output(command) if self.sacct else None
        if out is None:  # no accounting storage: sacct fails at every call, so stop asking it
            self.sacct = False
            out = scontrol_states(c for c in command if c[:1].isdigit())
        self._info_dict.update(self.read_info(out))
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:  # as submitit's own update
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


class Job(slurm.SlurmJob):  # submitit's, kept before install() rebinds the name
    watcher = Watcher(delay_s=60)
    sweep_dir: Path = Path(".")

    def results(self):
        try:
            return super().results()
        except (utils.UncompletedJobError, utils.FailedJobError) as e:
            return [self._failed(e)]

    def _failed(self, e: Exception) -> JobReturn:
        """The job's result when it produced none: one line, and a failed record for the tally."""
        from gan_landscape.commands.train import SweepTally  # train imports the package's Hydra app; only needed here
        overrides, num = self.submission().args[0], self.submission().args[2]
        why = f"Slurm job {self.job_id} (#{num}: {' '.join(overrides)}) ended {self.state} without a result"
        log.error(f"gl-train: {why}; its log: {self.paths.stderr}")
        append_jsonl(self.sweep_dir / "jobs.jsonl", {"sweep": os.environ.get(SweepTally.ENV),
                                                     "dir": str(self.paths.folder), "status": "failed",
                                                     "slurm_job": self.job_id})
        ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        ret.return_value = None
        return ret


def install(sweep_dir) -> None:
    """Make submitit create the sweep's jobs as `Job`: called by train.SweepTally at the start of a
    hydra/launcher=slurm sweep, in the sweep's process, before the launcher submits. Hydra takes a
    launcher class only from the hydra_plugins package, and submitit names SlurmJob directly when it
    makes an array's jobs, so the module's names are rebound (this process only)."""
    slurm.SlurmExecutor.job_class = slurm.SlurmJob = Job
    Job.sweep_dir = Path(str(sweep_dir))
