"""gl-train as a user runs it: composition, run dirs, resume/skip, and one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_cfg

TINY = ["train.iters=20", "train.log_every=10", "train.num_seeds=2"]


def gl_train(*args, cwd):
    cmd = [sys.executable, "-m", "gan_landscape.train", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("dataset,model", [("two_cluster", "mlp"), ("five_gaussian", "mlp"),
                                           ("cifar10", "cnn"), ("cifar10", "resnet"), ("stl10", "cnn"),
                                           ("stl10", "resnet"), ("lsun", "cnn256")])
def test_every_dataset_model_pair_composes_with_the_authors_optimiser(dataset, model):
    cfg = make_cfg(f"dataset={dataset}", f"model={model}")
    assert cfg.dataset.name == dataset and cfg.model.name == model
    assert cfg.optim.g_lr > 0 and cfg.train.iters > 0


def test_paper_settings_land_in_the_config():
    cfg = make_cfg("dataset=cifar10", "model=resnet")
    assert (cfg.train.n_dis, cfg.optim.g_lr, list(cfg.optim.betas)) == (5, 1.5e-3, [0.0, 0.9])
    cfg = make_cfg()
    assert (cfg.optim.name, cfg.optim.momentum, cfg.train.iters) == ("sgd", 0.9, 5000)


def test_run_then_rerun_skips_the_finished_run(tmp_path):
    out = gl_train(*TINY, "loss=rsgan", "width=0.5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # train.log_every is left out of the name: it does not change the result
    run = tmp_path / "runs" / "loss=rsgan,train.iters=20,train.num_seeds=2,width=0.5"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_seeds"] == 2
    assert len(summary["seeds"]) == 2 and {"seed", "mode_counts", "verdict"} <= set(summary["seeds"][0])
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    for name in ("config.yaml", "trajectory.png", "d_function.png", "modes_covered.png"):
        assert (run / name).exists(), name
    before = (run / "summary.json").stat().st_mtime_ns
    again = gl_train(*TINY, "loss=rsgan", "width=0.5", cwd=tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert (run / "summary.json").stat().st_mtime_ns == before


def test_multirun_sweeps_into_one_dir_per_job(tmp_path):
    out = gl_train("--multirun", *TINY, "loss=jsgan,rsgan", "seed=0,1", "experiment_name=t", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = sorted(p.parent.name for p in (tmp_path / "sweeps" / "t").glob("*/summary.json"))
    assert len(runs) == 4 and "loss=jsgan,seed=1," in runs[1]


@pytest.mark.parametrize("args,expect", [
    (["loss=wgan"], "Could not find 'loss/wgan'"),
    (["train.no_such_key=1"], "no_such_key"),
    (["dataset=cifar10", "model=cnn", "dataset.root=/nonexistent/cifar", "dataset.download=false"],
     "/nonexistent/cifar"),
])
def test_bad_input_ends_in_one_clear_line(tmp_path, args, expect):
    out = gl_train(*args, cwd=tmp_path)
    assert out.returncode != 0
    assert expect in out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_checkpoint_is_named_not_a_traceback(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_0000010.pt").write_bytes(b"not a checkpoint")
    out = gl_train(*TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "corrupt checkpoint" in out.stderr and "step_0000010.pt" in out.stderr
