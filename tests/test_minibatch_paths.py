"""The minibatch synthetic runs' faster paths (data/synthetic.py step_path): the seeds-in-lanes
kernel for nets of up to 32 hidden units, the seed-at-a-time GEMM kernel above. Each computes what
the reference path (autograd's arithmetic) computes, up to float rounding; each is its own run."""
import copy
import json

import pytest
import torch

from gan_landscape import kinds
from gan_landscape.data.synthetic import SyntheticGAN, step_path
from conftest import make_cfg
from test_cli import gl_train

CPU = torch.device("cpu")
SGD = ["optim.name=sgd", "optim.momentum=0.9", "optim.g_lr=0.05", "optim.d_lr=0.05"]


def pair(*overrides, seeds=(0, 1)):
    """(the default path's run, the reference path's run) of one config."""
    new = SyntheticGAN(make_cfg(*overrides), list(seeds))
    if new.path == "reference":
        pytest.skip("the fused CPU kernel could not be built here (no C++ compiler?)")
    return new, SyntheticGAN(make_cfg(*overrides, "train.cpu_kernel=false"), list(seeds))


def state_tensors(gan) -> list[torch.Tensor]:
    gan.state_dict()  # the kernel's Adam step count goes into the optimiser state here
    return [*gan.G.parameters(), *gan.D.parameters(),
            *[v for opt in (gan.g_opt, gan.d_opt) for s in opt.state.values() for v in s.values()]]


def test_the_path_follows_width_device_and_switch():
    assert step_path(make_cfg("dataset=five_gaussian", "width=0.125"), CPU) == "kernel"
    assert step_path(make_cfg("dataset=grid25", "width=0.25"), CPU) == "gemm"
    assert step_path(make_cfg("dataset=ring8", "width=0.25", "train.cpu_kernel=false"), CPU) == "reference"
    assert step_path(make_cfg("dataset=ring8", "width=0.25"), torch.device("cuda")) == "reference"
    assert step_path(make_cfg("dataset=two_cluster"), CPU) == "kernel"


def test_the_path_is_part_of_the_identity_where_it_rounds_differently():
    kind = kinds.get("synthetic")
    assert kinds.arithmetic(kind, make_cfg("dataset=five_gaussian", "width=0.125"), CPU) == "minibatch_kernel"
    assert kinds.arithmetic(kind, make_cfg("dataset=five_gaussian"), CPU) == "minibatch_gemm"
    assert kinds.arithmetic(kind, make_cfg("dataset=five_gaussian", "train.cpu_kernel=false"), CPU) is None
    assert kinds.arithmetic(kind, make_cfg("dataset=two_cluster"), CPU) is None  # train.cpu_kernel says it


@pytest.mark.parametrize("width,path", [(0.125, "kernel"), (0.5, "gemm")])
@pytest.mark.parametrize("dataset,loss", [("five_gaussian", "rsgan"), ("ring8", "jsgan"), ("grid25", "rphinge"),
                                          ("five_gaussian", "lsgan"), ("ring8", "rplsgan"), ("grid25", "hinge")])
def test_kernel_minibatch_iteration_matches_the_reference(dataset, loss, width, path):
    """With SGD the paths agree to float rounding step after step (RS-GAN: D's last weight
    renormalised after each D step); 20 seeds fill one SIMD block and part of another."""
    new, ref = pair(f"dataset={dataset}", f"loss={loss}", f"width={width}", *SGD, seeds=range(20))
    assert new.path == path
    for _ in range(5):
        new.step()
        ref.step()
        for a, b in zip(new.last, ref.last):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(state_tensors(new), state_tensors(ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_gemm_kernel_takes_any_width_batch_and_thread_count(monkeypatch):
    """Layers that are not a whole number of SIMD vectors (38 units), a batch that is not either
    (30), and seeds spread over two threads: still the reference's arithmetic, up to rounding."""
    new, ref = pair("dataset=grid25", "loss=rsgan", "width=0.3", "train.batch_size=30", *SGD, seeds=range(5))
    assert new.path == "gemm" and new.G.sizes == [2, 38, 38, 2]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # what _fused_step hands the kernel
    for _ in range(4):
        new.step()
        ref.step()
    for a, b in zip(state_tensors(new), state_tensors(ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", [0.125, 0.5])
def test_adam_on_the_faster_paths_is_torch_adam(width):
    """5gaussian.py's Adam (betas 0, 0.9): the moments and step counts agree, and so do the weights.
    (Not RS-GAN here: where the real and fake terms of a pair cancel exactly, as for the biases
    feeding its D's last layer, the gradient is rounding noise that Adam scales up to ~lr.)"""
    new, ref = pair("dataset=five_gaussian", "loss=jsgan", f"width={width}")
    steps, lr = 4, new.cfg.optim.d_lr
    for _ in range(steps):
        new.step()
        ref.step()
    new.state_dict()  # the kernel's Adam step count goes into the optimiser state here
    for opt_new, opt_ref in ((new.g_opt, ref.g_opt), (new.d_opt, ref.d_opt)):
        for s, r in zip(opt_new.state.values(), opt_ref.state.values()):
            assert float(s["step"]) == float(r["step"]) == steps
            torch.testing.assert_close(s["exp_avg_sq"], r["exp_avg_sq"], rtol=1e-3, atol=1e-10)
    for a, b in zip([*new.G.parameters(), *new.D.parameters()], [*ref.G.parameters(), *ref.D.parameters()]):
        assert (a - b).abs().max() <= 2 * lr * steps
        assert (a - b).abs().mean() < 1e-3 * lr  # most weights agree to rounding


@pytest.mark.parametrize("width", [0.125, 0.5])
def test_a_checkpoint_resumes_bitwise_on_the_same_path(width):
    straight = SyntheticGAN(make_cfg("dataset=ring8", "loss=rsgan", f"width={width}"), [3, 4])
    for _ in range(6):
        straight.step()
    first = SyntheticGAN(make_cfg("dataset=ring8", "loss=rsgan", f"width={width}"), [3, 4])
    for _ in range(3):
        first.step()
    resumed = SyntheticGAN(make_cfg("dataset=ring8", "loss=rsgan", f"width={width}"), [3, 4])
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    for _ in range(3):
        resumed.step()
    for a, b in zip(state_tensors(straight), state_tensors(resumed)):
        assert torch.equal(a, b)


def test_gl_train_records_the_path(tmp_path):
    run = tmp_path / "r"
    out = gl_train("dataset=ring8", "width=0.125", "loss=rsgan", "train.iters=4", "train.num_seeds=2",
                   "train.batch_size=16", "dataset.num_points=64", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    identity = json.loads((run / "identity.json").read_text())
    assert json.dumps(identity).count('"arithmetic": "minibatch_kernel"') == 1
    assert json.loads((run / "summary.json").read_text())["step_path"] == "kernel"
