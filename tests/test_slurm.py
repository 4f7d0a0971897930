"""gl-train sweeps on a real Slurm (issue 21), on CPU: `scripts/slurm_local.sh up` starts a one-node
Slurm without accounting (.ci/run does it before `make test`). Marked `slurm`: they run where `sinfo`
answers and skip, saying why, elsewhere. About a minute and a half in all."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_landscape.commands import report


def _slurm_missing() -> str:
    if not shutil.which("sinfo"):
        return "no Slurm here (sinfo not found): scripts/slurm_local.sh up starts one"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not any(s in out.stdout for s in ("idle", "mixed", "allocated")):
        return f"Slurm does not answer (sinfo: {(out.stderr or out.stdout).strip()[:200]}): scripts/slurm_local.sh up"
    return ""


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(bool(_slurm_missing()), reason=_slurm_missing() or "-")]
ON_CPU = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
          "hydra.launcher.mem_gb=1", "train.device=cpu"]
SYNTH = ["train.num_seeds=2", "train.cpu_kernel=false", "train.log_every=20"]


def sweep(*args, cwd: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "gan_landscape.commands.train", "--multirun", *ON_CPU, *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert "Bypassing sacct" not in out and "sacct" not in out, "no per-poll sacct warnings"
    return out


def job_id_once_training(folder: Path, proc) -> str:
    """The Slurm job of the sweep's one run, once it has logged a metrics row."""
    end = time.time() + 120
    while not any(p.read_text().strip() for p in folder.glob("*/metrics.jsonl")):
        assert proc.poll() is None and time.time() < end, proc.communicate()[0]
        time.sleep(0.2)
    return next(p.name for p in (folder / ".submitit").iterdir() if p.name[0].isdigit())


def test_a_sweep_runs_to_the_end_and_gl_report_reads_it(tmp_path):
    out = finish(sweep("experiment=two_cluster_smoke", "train.iters=20", "train.num_seeds=1", cwd=tmp_path))
    assert "gl-train: sweep sweeps/two_cluster_smoke: 6 finished" in out, out
    [md] = report.build([str(tmp_path / "sweeps" / "two_cluster_smoke"), "--out", str(tmp_path / "report")])
    assert md.exists() and "finished" in (tmp_path / "report" / "two_cluster_smoke.sources.json").read_text()


def test_a_signalled_job_checkpoints_is_requeued_and_resumes_bitwise(tmp_path):
    proc = sweep(*SYNTH, "train.iters=1000", "experiment_name=u", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "u"
    job = job_id_once_training(folder, proc)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    [run] = [p.parent for p in folder.glob("*/summary.json")]
    end = time.time() + 60
    while json.loads((run / "summary.json").read_text())["status"] != "interrupted":
        assert time.time() < end, "no checkpoint at the signal"
        time.sleep(0.2)
    step = json.loads((run / "summary.json").read_text())["iters"]
    # Slurm holds a requeued job about two minutes (BeginTime); the test does not wait for that
    while subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True).returncode:
        assert time.time() < end + 60, "the job was not requeued"
        time.sleep(0.5)
    out = finish(proc)
    assert "sweeps/u: 1 finished" in out, out
    assert f"from iteration {step}" in (run / "train.log").read_text() and step > 0
    whole = subprocess.run([sys.executable, "-m", "gan_landscape.commands.train", *SYNTH, "train.iters=1000",
                            "train.device=cpu", "hydra.run.dir=whole"], cwd=tmp_path, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    a, b = (torch.load(d / "checkpoints" / "step_0001000.pt", weights_only=True) for d in (run, tmp_path / "whole"))
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net


def test_a_cancelled_job_is_a_failed_job_and_the_sweep_exits_1(tmp_path):
    proc = sweep(*SYNTH, "train.iters=100000", "experiment_name=c", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "c"
    job = job_id_once_training(folder, proc)
    subprocess.run(["scancel", job], check=True)
    out = finish(proc)
    assert proc.returncode == 1, out
    assert f"Slurm job {job} (#0: " in out and "ended CANCELLED without a result" in out
    assert "gl-train: sweep sweeps/c: 1 failed" in out.splitlines()[-1], out
    [run] = [p.parent for p in folder.glob("*/summary.json")]
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"  # resumable
