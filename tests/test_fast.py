"""The optimised (CUDA-graph) step against the eager one, and checkpoints across the two.

The equality test needs a GPU; on CPU the same ImageGAN code runs eagerly, which test_trainer.py
covers, and the cross-loading of optimiser states (capturable on CUDA, plain on CPU) is tested here.
"""
import pytest
import torch

from gan_landscape.fast import make_step
from gan_landscape.image_gan import ImageGAN, _load_opt
from conftest import make_cfg
from fakes import write_cifar10

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=16)
    return root


def cfg_for(root, device, *extra):
    return make_cfg("dataset=cifar10", "model=cnn", "width=0.25", "loss=rsgan", f"dataset.root={root}",
                    "dataset.check_integrity=false", f"train.device={device}", "train.ema=0.999",
                    "train.iters=1000", "train.lr_decay_start=50", *extra)


def test_eager_step_is_make_step_on_cpu(cifar_root):
    gan = ImageGAN(cfg_for(cifar_root, "cpu"), torch.device("cpu"))
    step, done = make_step(gan, fast=True)
    assert step == gan.train_step and done == 0  # train.fast is a CUDA feature


def test_fast_saved_optimiser_state_loads_into_an_eager_cpu_run(cifar_root):
    gan = ImageGAN(cfg_for(cifar_root, "cpu"), torch.device("cpu"))
    gan.train_step()
    saved = gan.g_opt.state_dict()
    # what a CUDA-graph run saves: capturable, lr as a tensor, step counters as float tensors
    saved["param_groups"][0].update(capturable=True, lr=torch.tensor(1.25e-4))
    for st in saved["state"].values():
        st["step"] = torch.tensor(float(st["step"]))
    other = ImageGAN(cfg_for(cifar_root, "cpu"), torch.device("cpu"))
    _load_opt(other.g_opt, saved)
    group = other.g_opt.param_groups[0]
    assert group["capturable"] is False and group["lr"] == pytest.approx(1.25e-4)
    other.train_step()  # and it trains
    assert all(st["step"].item() == 2 for st in other.g_opt.state.values())


@cuda
def test_fast_step_gives_the_eager_losses_for_100_iterations(cifar_root):
    """fp32, same seed: losses agree to rtol 1e-3 / atol 1e-4 per iteration (cuDNN deterministic)."""
    torch.backends.cudnn.deterministic = True
    losses = {}
    for fast in (False, True):
        torch.manual_seed(0)
        gan = ImageGAN(cfg_for(cifar_root, "cuda", "train.tf32=false"), torch.device("cuda"))
        torch.backends.cudnn.benchmark = False
        step, done = make_step(gan, fast)
        seq = []
        for _ in range(100 - done):
            step()
            seq.append(gan.acc[:2].clone())
        losses[fast] = torch.stack(seq).diff(dim=0, prepend=torch.zeros(1, 2, device="cuda"))
    torch.testing.assert_close(losses[True], losses[False][3:], rtol=1e-3, atol=1e-4)


@cuda
def test_fast_checkpoint_loads_in_eager_and_back(cifar_root, tmp_path):
    fast = ImageGAN(cfg_for(cifar_root, "cuda"), torch.device("cuda"))
    step, _ = make_step(fast, True)
    for _ in range(5):
        step()
    state = {**fast.state_dict(), "step": int(fast.step.item())}
    eager_cpu = ImageGAN(cfg_for(cifar_root, "cpu"), torch.device("cpu"))
    eager_cpu.load_state_dict({k: _to_cpu(v) for k, v in state.items()})
    eager_cpu.train_step()
    again = ImageGAN(cfg_for(cifar_root, "cuda"), torch.device("cuda"))
    again.load_state_dict(state)
    step, _ = make_step(again, True)
    step()
    assert int(again.step.item()) == 5 + 3 + 1


def _to_cpu(v):
    if torch.is_tensor(v):
        return v.cpu()
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    return v
