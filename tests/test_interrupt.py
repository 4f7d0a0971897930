"""Runs that survive interruption (issue 21): a signal ends every kind of run with a checkpoint, a
one-line message, status `interrupted` and exit 128 + signal, and the same command resumes from that
iteration exactly; one process per run dir; a run killed without a word reads as `stale`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fakes import write_cifar10
from gan_landscape.runs import interrupt, lock
from gan_landscape.runs.reader import read_run

SYNTH = ["train.num_seeds=2", "train.cpu_kernel=false", "train.log_every=20"]


def popen(*args, cwd: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GL_DATA_ROOT": str(cwd / "no-data-here")}
    return subprocess.Popen([sys.executable, "-m", "gan_landscape.commands.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def gl_train(*args, cwd: Path):
    p = popen(*args, cwd=cwd)
    out, err = p.communicate(timeout=300)
    return p.returncode, out + err


def wait_for(cond, proc, what: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"gl-train ended before {what}: {proc.communicate()}"
        assert time.time() < end, f"no {what} after {timeout} s"
        time.sleep(0.05)


def logged(run: Path):
    return lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def weights(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items()}


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root / "cifar-10-batches-py")
    return root


def image_args(cifar: Path) -> list[str]:
    return ["dataset=cifar10", "model=cnn", "width=0.125", f"dataset.root={cifar}", "dataset.check_integrity=false",
            "train.batch_size=8", "train.device=cpu", "train.log_every=2", "train.lr_decay_start=null"]


KINDS = {  # kind -> (overrides, the run dir below hydra.run.dir whose metrics show it is training)
    "synthetic": (SYNTH, "."),
    "image": ([], "."),
    "stacked image": (["train.num_seeds=2"], "s0"),
    "population": (["experiment=first_order_dynamics", "train.log_every=2"], "."),
}


@pytest.mark.parametrize("kind,sig", [("synthetic", signal.SIGTERM), ("image", signal.SIGINT),
                                      ("stacked image", signal.SIGUSR1), ("population", signal.SIGUSR2)])
def test_a_signal_ends_every_kind_with_a_checkpoint_and_one_line(tmp_path, cifar, kind, sig):
    extra, member = KINDS[kind]
    args = [*(image_args(cifar) if "image" in kind else []), *extra, "train.iters=100000", "hydra.run.dir=r"]
    proc = popen(*args, cwd=tmp_path)
    run = tmp_path / "r" / member
    wait_for(logged(run), proc, "a metrics row")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    s = summary(run)
    step = s["iters"]
    assert s["status"] == "interrupted" and s["signal"] == sig.name and step > 0, s
    assert err.strip().splitlines()[-1] == (f"gl-train: interrupted by {sig.name} at iteration {step} of 100000; "
                                            "checkpoint written; the same command resumes")
    assert "Traceback" not in err
    assert (run / "checkpoints" / f"step_{step:07d}.pt").exists()
    assert lock.is_held(tmp_path / "r") is False, "the lock is released"


def test_the_rerun_resumes_from_the_signalled_iteration_bitwise(tmp_path):
    args = [*SYNTH, "train.iters=600"]
    proc = popen(*args, "hydra.run.dir=cut", cwd=tmp_path)
    wait_for(logged(tmp_path / "cut"), proc, "a metrics row")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    step = summary(tmp_path / "cut")["iters"]
    assert 0 < step < 600
    rc, text = gl_train(*args, "hydra.run.dir=cut", cwd=tmp_path)
    assert rc == 0 and f"from iteration {step}" in text, text
    assert summary(tmp_path / "cut")["status"] == "finished"
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(20, 601, 20)), "every row once, none twice"
    assert gl_train(*args, "hydra.run.dir=whole", cwd=tmp_path)[0] == 0
    a, b = (weights(tmp_path / d / "checkpoints" / "step_0000600.pt") for d in ("cut", "whole"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_process_on_the_same_run_dir_is_refused_in_one_line(tmp_path):
    proc = popen(*SYNTH, "train.iters=100000", "hydra.run.dir=r", cwd=tmp_path)
    try:
        wait_for(logged(tmp_path / "r"), proc, "a metrics row")
        rc, text = gl_train(*SYNTH, "train.iters=100000", "hydra.run.dir=r", cwd=tmp_path)
        assert rc == 2, text
        [line] = [ln for ln in text.splitlines() if ln.startswith("gl-train:")]
        assert "is being trained by another process" in line and f"pid {proc.pid} on " in line
        assert summary(tmp_path / "r")["status"] == "running"
        assert read_run(tmp_path / "r", tmp_path).status == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    rows = [json.loads(ln)["step"] for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(set(rows)), "one writer"


def test_a_run_killed_without_a_word_is_stale_and_its_lock_is_taken_over(tmp_path):
    proc = popen(*SYNTH, "train.iters=100000", "hydra.run.dir=r", cwd=tmp_path)
    wait_for(logged(tmp_path / "r"), proc, "a metrics row")
    proc.kill()
    proc.communicate(timeout=60)
    run = read_run(tmp_path / "r", tmp_path)
    assert run.summary["status"] == "running" and run.status == "stale"
    assert f"pid {proc.pid} on " in (tmp_path / "r" / ".lock").read_text()
    held = popen(*SYNTH, "train.iters=100000", "hydra.run.dir=r", cwd=tmp_path)
    wait_for(lambda: f"pid {held.pid} " in (tmp_path / "r" / ".lock").read_text(), held, "the lock")
    held.send_signal(signal.SIGTERM)
    out, err = held.communicate(timeout=120)
    assert held.returncode == 143 and "took over the lock of" in out + err and f"pid {proc.pid}" in out + err


def test_a_stacked_seed_reads_its_job_dirs_lock(tmp_path):
    for s in ("s0", "s1"):
        (tmp_path / "job" / s).mkdir(parents=True)
        (tmp_path / "job" / s / "summary.json").write_text(json.dumps({"status": "running"}))
    with lock.RunLock(tmp_path / "job"):
        assert read_run(tmp_path / "job" / "s0", tmp_path).status == "running"
    assert read_run(tmp_path / "job" / "s1", tmp_path).status == "stale"


def test_the_first_signal_is_a_flag_and_a_second_ctrl_c_stops_at_once():
    with interrupt.catching():
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.pending() == signal.SIGUSR1
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert interrupt.pending() is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_submitits_handler_runs_after_the_checkpoint():
    """hydra/launcher=slurm: submitit's SIGUSR2 handler (requeue the job) was there before ours."""
    calls = []
    before = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(s))
    try:
        with interrupt.catching():
            os.kill(os.getpid(), signal.SIGUSR2)
            assert calls == [] and interrupt.pending() == signal.SIGUSR2
            interrupt.hand_over(signal.SIGUSR2)
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, before)
