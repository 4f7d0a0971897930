"""gl-train as a user runs it (subprocesses): run dirs and identities, resume/skip, bad input in one
line with nothing written, sweeps that record failures and say so in their exit status, file modes,
progress lines."""
import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from conftest import make_cfg

TINY = ["train.iters=20", "train.log_every=10", "train.num_seeds=2", "train.cpu_kernel=false"]


def gl_train(*args, cwd, umask=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GL_DATA_ROOT": str(cwd / "no-data-here")}
    cmd = [sys.executable, "-m", "gan_landscape.commands.train", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def summary(run):
    return json.loads((run / "summary.json").read_text())


def test_every_dataset_model_pair_composes_with_the_authors_optimiser():
    for dataset, model in [("two_cluster", "mlp"), ("five_gaussian", "mlp"), ("cifar10", "cnn"),
                           ("cifar10", "resnet"), ("stl10", "cnn"), ("stl10", "resnet"), ("lsun", "cnn256")]:
        cfg = make_cfg(f"dataset={dataset}", f"model={model}")
        assert cfg.dataset.name == dataset and cfg.model.name == model
        assert cfg.optim.g_lr > 0 and cfg.train.iters > 0
    cfg = make_cfg("dataset=cifar10", "model=resnet")
    assert (cfg.train.n_dis, cfg.optim.g_lr, list(cfg.optim.betas)) == (5, 1.5e-3, [0.0, 0.9])


def test_runs_are_named_by_what_defines_them_and_rerun_skips(tmp_path):
    out = gl_train(*TINY, "loss=rsgan", "width=0.5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "runs" / "adhoc" / "two_cluster-mlp-w0.5-rsgan-s0-1-cpu_kernel_false-iters_20"
    s = summary(run)
    assert s["status"] == "finished" and s["num_seeds"] == 2 and len(s["identity"]) == 16
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    for name in ("config.yaml", "identity.json", "trajectory.png", "d_function.png", "modes_covered.png"):
        assert (run / name).exists(), name
    before = (run / "summary.json").stat().st_mtime_ns
    again = gl_train(*TINY, "loss=rsgan", "width=0.5", "train.log_every=5", cwd=tmp_path)  # logging only
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr
    assert (run / "summary.json").stat().st_mtime_ns == before
    # issue 12: an experiment's run and an ad-hoc run of the same overrides never share a dir
    smoke = gl_train("experiment=two_cluster_smoke", *TINY, "loss=rsgan", "width=0.5", cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr
    assert (tmp_path / "runs" / "two_cluster_smoke" / run.name / "summary.json").exists()


def test_a_dir_holding_another_run_is_refused_in_one_line(tmp_path):
    run = tmp_path / "r"
    assert gl_train(*TINY, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    held = summary(run)["identity"]
    out = gl_train(*TINY, "train.iters=30", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert held in line and "holds another run" in line and "iters: 20 vs 30" in line
    # the CPU kernel computes in its own float32 arithmetic: another run, not a resume
    out = gl_train(*TINY[:-1], "train.cpu_kernel=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 2 and "cpu_kernel: False vs True" in out.stderr
    assert summary(run)["identity"] == held and summary(run)["status"] == "finished"


BAD = [
    (["width=abc"], "width=abc"),
    (["train.iters=abc"], "train.iters=abc"),
    (["train.device=gpu"], "train.device=gpu"),
    (["seed=abc"], "seed=abc"),
    (["width=0"], "width=0"),
    (["width=-1"], "width=-1"),
    (["dataset=cifar10", "model=cnn", "width=-1"], "width=-1"),
    (["train.iters=-5"], "train.iters=-5"),
    (["dataset=cifar10"], "cnn"),
    (["dataset=cifar10", "model=cnn", "dataset.root=NOWHERE/cifar", "dataset.download=false"], "NOWHERE/cifar"),
]


@pytest.mark.parametrize("args,expect", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, expect):
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    out = gl_train(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gl-train: "), out.stderr
    assert expect.replace("NOWHERE", str(tmp_path / "nowhere")) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is created for a bad input"


def test_unknown_names_are_hydras_one_line(tmp_path):
    for args, expect in ((["loss=wgan"], "Could not find 'loss/wgan'"), (["train.no_such_key=1"], "no_such_key")):
        out = gl_train(*args, cwd=tmp_path)
        assert out.returncode != 0 and expect in out.stderr and "Traceback" not in out.stderr


def test_corrupt_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path):
    run, args = tmp_path / "r", [*TINY, "train.iters=30", "train.ckpt_every=10"]
    assert gl_train(*args, f"hydra.run.dir={run}", cwd=tmp_path).returncode == 0
    whole = torch.load(run / "checkpoints" / "step_0000030.pt", weights_only=False)
    # What a kill after iteration 25 leaves, plus a disk fault in the newest checkpoint and the temp
    # file of an interrupted write:
    (run / "checkpoints" / "step_0000030.pt").unlink()
    (run / "checkpoints" / "step_0000020.pt").write_bytes(b"\0" * 100)
    (run / "checkpoints" / ".step_0000025.pt.abc123").write_bytes(b"half")
    (run / "summary.json").write_text(json.dumps({**summary(run), "status": "failed", "error": "killed"}))
    out = gl_train(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "step_0000020.pt" in out.stdout + out.stderr and "from iteration 10" in out.stdout + out.stderr
    s = summary(run)
    assert s["status"] == "finished" and "error" not in s
    assert not list((run / "checkpoints").glob(".*"))
    again = torch.load(run / "checkpoints" / "step_0000030.pt", weights_only=False)
    for k, v in whole["G"].items():
        assert torch.equal(v, again["G"][k]), k


def test_sweep_records_failed_jobs_runs_the_rest_and_exits_non_zero(tmp_path):
    out = gl_train("--multirun", *TINY, "dataset=two_cluster,cifar10", "width=0.5,abc", "experiment_name=t",
                   cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    jobs = sorted(p.parent.name for p in (tmp_path / "sweeps" / "t").glob("*/summary.json"))
    statuses = {name: summary(tmp_path / "sweeps" / "t" / name)["status"] for name in jobs}
    assert sorted(statuses.values()) == ["failed", "failed", "failed", "finished"], statuses
    assert "1 finished" in out.stdout + out.stderr and "3 failed" in out.stdout + out.stderr


def test_files_honour_the_umask_and_progress_is_logged_off_a_terminal(tmp_path):
    out = gl_train(*TINY, "train.log_seconds=0.001", "hydra.run.dir=r", cwd=tmp_path, umask=0o022)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "r"
    for path in (run / "summary.json", run / "config.yaml", run / "checkpoints" / "step_0000020.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    text = out.stdout + out.stderr
    assert "10/20 (50.0%)" in text and "it/s" in text and "ETA" in text
    assert text.strip().splitlines()[-1].endswith("-> r")
