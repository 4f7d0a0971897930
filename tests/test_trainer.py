"""The image-GAN loop on CPU: the authors' update written out, EMA, stacked seeds = lone seeds, a
killed stack resumes bit-exactly, one seed diverging leaves the others, lr schedule, n_dis, and the
split between filling and reading streamed batches."""
import json

import pytest
import torch
import torch.nn.functional as F

import gan_landscape.runs.checkpoint as ckpt
from conftest import make_cfg
from fakes import write_cifar10, write_lsun_lmdb
from gan_landscape.commands import train as gl_train
from gan_landscape.kinds.image_gan import DATA_SALT, Z_SALT, ImageGAN
from gan_landscape.nets import build_nets, seed_state_dict
from gan_landscape.rng import seed_generator
from gan_landscape.data.samplers import StreamSampler


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


def cpu():
    return torch.device("cpu")


# ---------------------------------------------------------------- the update, written out

def authors_iterations(cfg, images, n):
    """n iterations of rsgan.py's loop on single nets, spelled out: a G step on a fresh real batch
    and z (D on the fakes, then on the reals), then a D step (the same order); Adam; EMA of G's
    parameters ema <- beta * ema + (1 - beta) * G (utils.soft_copy_param). Batches come from the
    seed's generators in the order the loop draws them."""
    torch.manual_seed(0)
    G, D = build_nets(cfg)
    ema = {k: v.clone() for k, v in G.named_parameters()}
    betas, B = tuple(cfg.optim.betas), cfg.train.batch_size
    g_opt = torch.optim.Adam(G.parameters(), cfg.optim.g_lr, betas=betas)
    d_opt = torch.optim.Adam(D.parameters(), cfg.optim.d_lr, betas=betas)
    z_gen, data_gen = seed_generator(0, Z_SALT, "cpu"), seed_generator(0, DATA_SALT, "cpu")

    def real():
        idx = torch.randint(len(images), (B,), generator=data_gen)
        noise = torch.rand(B, 3, 32, 32, generator=data_gen)
        return (images[idx].float() / 255 - 0.5) / 0.5 + noise / 128

    for _ in range(n):
        x = real()
        z = torch.randn(B, 128, generator=z_gen)
        y_hat = D(G(z))
        y = D(x)
        g_opt.zero_grad()
        F.softplus(y - y_hat).mean().backward()  # -log sigmoid(y_hat - y)
        g_opt.step()
        x = real()
        z = torch.randn(B, 128, generator=z_gen)
        y_hat = D(G(z).detach())
        y = D(x)
        d_opt.zero_grad()
        F.softplus(y_hat - y).mean().backward()  # -log sigmoid(y - y_hat)
        d_opt.step()
        with torch.no_grad():
            for k, p in G.named_parameters():
                ema[k].mul_(cfg.train.ema).add_((1 - cfg.train.ema) * p)
    return G, D, ema


def single(cfg, state, net="G"):
    """A plain single net holding `state` (what gl-eval and gl-landscape build from a checkpoint)."""
    G, D = build_nets(cfg)
    m = G if net == "G" else D
    m.load_state_dict(state)
    return m


@torch.no_grad()
def same_function(cfg, a: dict, b: dict, atol: float) -> None:
    """Two generator states compute the same images (train-mode BN, as the authors sample). A bias
    right before a BatchNorm has zero gradient in exact arithmetic, so Adam turns its round-off
    into lr-sized steps: compare what G computes, not those biases."""
    z = torch.randn(16, 128, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(single(cfg, a).train()(z), single(cfg, b).train()(z), rtol=0, atol=atol)


def test_two_iterations_follow_the_authors_update(cifar_root):
    cfg = image_cfg(cifar_root, "train.lr_decay_start=null")
    gan = ImageGAN(cfg, cpu(), [0])
    for _ in range(2):
        gan.step()
    G, D, ema = authors_iterations(cfg, gan.sampler.images, 2)
    mine = seed_state_dict(gan.D, 0)
    for k, v in D.state_dict().items():  # parameters and spectral-norm vectors
        torch.testing.assert_close(mine[k], v, rtol=1e-4, atol=1e-6, msg=k)
    same_function(cfg, seed_state_dict(gan.G, 0), G.state_dict(), atol=2e-4)
    same_function(cfg, seed_state_dict(gan.G_ema, 0), {**G.state_dict(), **ema}, atol=2e-4)


@pytest.fixture
def float64():
    """Round-off is where a stack and a lone run differ (grouped vs plain convolutions sum in another
    order); GAN training with Adam amplifies it ~100x an iteration, so compare in float64."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("model,width,n_dis,iters", [("cnn", 0.125, 1, 20), ("resnet", 0.0625, 2, 6)])
def test_stacked_seed_equals_the_seed_trained_alone(cifar_root, model, width, n_dis, iters, float64):
    cfg = image_cfg(cifar_root, f"model={model}", f"width={width}", f"train.n_dis={n_dis}",
                    "train.batch_size=4", f"train.iters={iters}")
    stack, alone = ImageGAN(cfg, cpu(), [0, 1, 2]), ImageGAN(cfg, cpu(), [1])
    for _ in range(iters):
        stack.step()
        alone.step()
    for net in ("G", "D", "G_ema"):
        a, b = seed_state_dict(getattr(stack, net), 1), seed_state_dict(getattr(alone, net), 0)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-7, atol=1e-8, msg=f"{model} {net}.{k}")
    seeds = stack.G.net.l1.weight.view(3, -1)
    assert not torch.allclose(seeds[0], seeds[1])
    m = stack.metrics()
    assert len(m) == 3 and m[1]["g_loss"] == pytest.approx(alone.metrics()[0]["g_loss"], rel=1e-9)


# ---------------------------------------------------------------- the loop: resume, divergence

def test_killed_stack_resumes_to_the_same_weights(cifar_root, tmp_path, monkeypatch):
    cfg = image_cfg(cifar_root, "train.num_seeds=2")
    whole = gl_train.run(cfg, tmp_path / "whole")
    assert [s["status"] for s in whole] == ["finished"] * 2 and whole[1]["seed"] == 1
    calls = {"n": 0}
    real_step = ImageGAN.step

    def dies_at_8(self):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # a kill between checkpoints 5 and 10
        real_step(self)

    monkeypatch.setattr(ImageGAN, "step", dies_at_8)
    with pytest.raises(KeyboardInterrupt):
        gl_train.run(cfg, tmp_path / "killed")
    assert ckpt.list_steps(tmp_path / "killed" / "s1") == [0, 5]
    monkeypatch.setattr(ImageGAN, "step", real_step)
    resumed = gl_train.run(cfg, tmp_path / "killed")
    assert [s["status"] for s in resumed] == ["finished"] * 2
    for seed in ("s0", "s1"):
        a, b = ckpt.latest(tmp_path / "whole" / seed), ckpt.latest(tmp_path / "killed" / seed)
        for part in ("G", "D", "G_ema"):
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), f"{seed} {part}.{k}"
        steps = [json.loads(ln)["step"] for ln in
                 (tmp_path / "killed" / seed / "metrics.jsonl").read_text().splitlines()]
        assert steps == [3, 6, 9, 12]  # records past the checkpoint were dropped, none repeated


def test_each_seed_of_a_stack_is_a_run(cifar_root, tmp_path):
    gl_train.run(image_cfg(cifar_root, "train.num_seeds=2", "seed=4"), tmp_path)
    for seed in (4, 5):
        run = tmp_path / f"s{seed}"
        state = ckpt.latest(run)
        assert {"G", "D", "G_ema", "g_opt", "d_opt", "step", "rng", "config"} <= set(state)
        assert state["step"] == 12 and state["config"]["seed"] == seed
        assert state["config"]["stack"] == {"seeds": [4, 5]}
        G, _ = build_nets(image_cfg(cifar_root))
        G.load_state_dict(state["G"])  # a plain single net: what gl-eval and gl-landscape build
        assert (run / "samples" / "step_0000012.png").exists() and (run / "samples" / "ema_step_0000012.png").exists()
        assert json.loads((run / "summary.json").read_text())["seed"] == seed
    assert not (tmp_path / "summary.json").exists()  # the job folder is not a run


def test_a_diverging_seed_stops_alone(cifar_root, tmp_path, monkeypatch):
    real_step = ImageGAN.step
    calls = {"n": 0}

    def poisoned(self):
        real_step(self)
        calls["n"] += 1
        if calls["n"] == 7:
            with torch.no_grad():
                self.G.net.l1.weight.view(2, -1)[1].fill_(float("nan"))  # seed 1: the second block

    monkeypatch.setattr(ImageGAN, "step", poisoned)
    s0, s1 = gl_train.run(image_cfg(cifar_root, "train.num_seeds=2"), tmp_path)
    assert s0["status"] == "finished" and s1["status"] == "diverged" and "iteration 9" in s1["error"]
    assert ckpt.list_steps(tmp_path / "s1") == [0, 5] and ckpt.list_steps(tmp_path / "s0")[-1] == 12
    good = ckpt.latest(tmp_path / "s1")
    assert all(torch.isfinite(v).all() for v in good["G"].values() if v.is_floating_point())
    # a rerun resumes nothing and trains nothing: both runs are final
    again = gl_train.run(image_cfg(cifar_root, "train.num_seeds=2"), tmp_path)
    assert [s["status"] for s in again] == ["finished", "diverged"]


def test_learning_rate_decays_linearly_to_zero(cifar_root):
    gan = ImageGAN(image_cfg(cifar_root), cpu(), [0])
    lrs = []
    for _ in range(12):
        gan.step()
        lrs.append(gan.metrics()[0]["g_lr"])
    g_lr = 5e-4
    assert lrs[:6] == [g_lr] * 6
    assert lrs[6] == pytest.approx(g_lr * 6 / 6) and lrs[8] == pytest.approx(g_lr * 4 / 6)
    assert lrs[11] == pytest.approx(g_lr * 1 / 6)


@pytest.mark.parametrize("model,n_dis", [("cnn", 1), ("resnet", 2)])
def test_one_iteration_runs_n_dis_d_steps(cifar_root, model, n_dis):
    gan = ImageGAN(image_cfg(cifar_root, f"model={model}", f"train.n_dis={n_dis}"), cpu(), [0])
    d_before = [p.clone() for p in gan.D.parameters()]
    gan.step()
    assert all(not torch.equal(a, b) for a, b in zip(d_before, gan.D.parameters()))
    assert gan.d_opt.state[next(gan.D.parameters())]["step"] == n_dis
    assert gan.g_opt.state[next(gan.G.parameters())]["step"] == 1


# ---------------------------------------------------------------- streamed data

def test_streamed_batches_are_filled_outside_the_iteration_and_only_read_inside(tmp_path):
    write_lsun_lmdb(tmp_path, "tower", n=12, size=(40, 36))
    ds = make_cfg("dataset=lsun", "model=cnn256", "dataset.category=tower", f"dataset.root={tmp_path}",
                  "dataset.image_size=64", "dataset.num_workers=0").dataset
    sampler = StreamSampler(ds, 4, [0, 1], slots=2, device="cpu", salt=DATA_SALT)
    sampler.refill()
    first = sampler.buffer.clone()
    assert first.shape == (2, 2, 4, 3, 64, 64) and not torch.equal(first[0, 0], first[0, 1])
    a, b = sampler.sample(4), sampler.sample(4)   # slot 0 then slot 1, both seeds
    assert a.shape == (2, 4, 3, 64, 64)
    torch.testing.assert_close(a, (first[0].float() / 255 - 0.5) / 0.5, atol=1 / 128, rtol=0)
    torch.testing.assert_close(b, (first[1].float() / 255 - 0.5) / 0.5, atol=1 / 128, rtol=0)
    for _ in range(3):
        sampler.sample(4)  # reading never advances the loaders
    assert torch.equal(sampler.buffer, first)
    sampler.refill()
    assert not torch.equal(sampler.buffer, first)  # the next batches (4 per loader pass of 12)
