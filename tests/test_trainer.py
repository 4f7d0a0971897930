"""The image-GAN loop on CPU: resume equality, atomic checkpoints, divergence, lr schedule."""
import json

import pytest
import torch

import gan_landscape.checkpoint as ckpt
from gan_landscape import train as gl_train
from gan_landscape.image_gan import ImageGAN
from conftest import make_cfg
from fakes import write_cifar10


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=16)
    return root


def image_cfg(root, *extra):
    return make_cfg("dataset=cifar10", "model=cnn", "width=0.125", "loss=rsgan", f"dataset.root={root}",
                    "dataset.check_integrity=false", "train.device=cpu", "train.batch_size=8",
                    "train.iters=12", "train.lr_decay_start=6", "train.ema=0.9", "train.log_every=3",
                    "train.ckpt_every=5", "train.sample_every=6", *extra)


def weights(run_dir):
    return ckpt.latest(run_dir)


def test_killed_run_resumes_to_the_same_weights(cifar_root, tmp_path, monkeypatch):
    cfg = image_cfg(cifar_root)
    whole = gl_train.run(cfg, tmp_path / "whole")
    assert whole["status"] == "finished" and whole["iters"] == 12

    calls = {"n": 0}
    real_step = ImageGAN.train_step

    def dies_at_8(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # a kill between checkpoints 5 and 10
        real_step(self)

    monkeypatch.setattr(ImageGAN, "train_step", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        gl_train.run(cfg, tmp_path / "killed")
    assert ckpt.list_steps(tmp_path / "killed") == [0, 5]
    monkeypatch.setattr(ImageGAN, "train_step", real_step)
    resumed = gl_train.run(cfg, tmp_path / "killed")
    assert resumed["status"] == "finished"
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part}.{k}")
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 12]  # records past the checkpoint were dropped, none repeated


def test_checkpoint_has_everything_to_resume(cifar_root, tmp_path):
    gl_train.run(image_cfg(cifar_root), tmp_path)
    state = weights(tmp_path)
    assert {"G", "D", "G_ema", "g_opt", "d_opt", "step", "rng", "config"} <= set(state)
    assert state["step"] == 12 and state["config"]["model"]["name"] == "cnn"
    assert (tmp_path / "samples" / "step_0000012.png").exists()
    assert (tmp_path / "samples" / "ema_step_0000012.png").exists()


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    ckpt.save(tmp_path, 5, {"x": torch.ones(3)})

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        ckpt.save(tmp_path, 5, {"x": torch.zeros(3)})
    assert torch.equal(ckpt.load(ckpt.path_for(tmp_path, 5))["x"], torch.ones(3))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000005.pt"]


def test_nan_loss_stops_as_diverged_and_keeps_the_last_good_checkpoint(cifar_root, tmp_path, monkeypatch):
    real_step = ImageGAN.train_step
    calls = {"n": 0}

    def poisoned(self):
        real_step(self)
        calls["n"] += 1
        if calls["n"] == 7:
            with torch.no_grad():
                next(self.G.parameters()).fill_(float("nan"))

    monkeypatch.setattr(ImageGAN, "train_step", poisoned)
    summary = gl_train.run(image_cfg(cifar_root), tmp_path)
    assert summary["status"] == "diverged" and "iteration" in summary["error"]
    assert ckpt.list_steps(tmp_path) == [0, 5]
    good = ckpt.latest(tmp_path)
    assert all(torch.isfinite(v).all() for v in good["G"].values() if v.is_floating_point())


def test_learning_rate_decays_linearly_to_zero(cifar_root):
    gan = ImageGAN(image_cfg(cifar_root), torch.device("cpu"))
    lrs = []
    for _ in range(12):
        gan.train_step()
        lrs.append(gan.lrs()[0])
    g_lr = 5e-4
    assert lrs[:6] == [g_lr] * 6
    assert lrs[6] == pytest.approx(g_lr * 6 / 6) and lrs[8] == pytest.approx(g_lr * 4 / 6)
    assert lrs[11] == pytest.approx(g_lr * 1 / 6)


@pytest.mark.parametrize("model,n_dis", [("cnn", 1), ("resnet", 2)])
def test_one_iteration_runs_n_dis_d_steps(cifar_root, model, n_dis):
    cfg = image_cfg(cifar_root, f"model={model}", f"train.n_dis={n_dis}")
    gan = ImageGAN(cfg, torch.device("cpu"))
    d_before = [p.clone() for p in gan.D.parameters()]
    g_before = [p.clone() for p in gan.G.parameters()]
    gan.train_step()
    assert all(not torch.equal(a, b) for a, b in zip(d_before, gan.D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, gan.G.parameters()))
    assert gan.d_opt.state[next(gan.D.parameters())]["step"] == n_dis
    losses = gan.pop_losses()
    assert all(map(lambda v: v == v, losses.values()))
